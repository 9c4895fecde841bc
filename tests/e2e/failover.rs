//! Losing the primary. Clients write steadily through every node (a fixed seed picks the nodes
//! they write through) while the primary is killed (SIGKILL), stopped (SIGTERM), frozen
//! (SIGSTOP), and while all nodes restart at once. A client-side oracle keeps every write's
//! outcome and checks it against the service: every write reported `Committed` is there, none
//! that was refused (503) is, none is applied twice (each id's counter is at most 1), and the
//! nodes agree. Other tests here: writes held by a primary that cannot commit them when it
//! stops (with its backups stopped), isolation, and a node with another service's certificate.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use consort_tests::cluster::{get_json, verified_ledgers, Network, ELECTION_TIMEOUT_MS};
use consort_tests::{eventually, repo_root, temp_workspace, Gov, Sandbox};
use reqwest::StatusCode;
use serde_json::Value;

/// One write a client sent: its id, and what became of it.
#[derive(Debug, Clone)]
struct Write {
    id: String,
    /// The node's client port it was sent to, and when.
    port: u16,
    sent: Instant,
    /// The transaction id of a 200 answer.
    txid: Option<String>,
    /// `Committed` or `Invalid`, once `/node/tx` said so.
    status: Option<String>,
    /// Answered 503: the node said the write did not and will not happen.
    refused: bool,
}

#[derive(Default)]
struct Oracle {
    writes: Mutex<Vec<Write>>,
    /// Why writes got no 200, by kind (printed at the end).
    failures: Mutex<std::collections::BTreeMap<String, usize>>,
    stop: AtomicBool,
}

/// A small deterministic generator (xorshift), so every run picks the same nodes.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn client(s: &Sandbox) -> reqwest::Client {
    let ca = std::fs::read(s.common().join("service_cert.pem")).expect("service cert");
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).expect("ca")])
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// Writes fresh ids through nodes the seed picks until told to stop; every answer goes to the
/// oracle. A 200 must say the counter is 1: the id was never written before.
async fn writer(k: usize, seed: u64, ports: Vec<u16>, http: reqwest::Client, oracle: Arc<Oracle>) {
    let mut rng = Rng(seed);
    let mut n = 0;
    while !oracle.stop.load(Ordering::Relaxed) {
        let port = ports[rng.below(ports.len())];
        let id = format!("w{k}-{n}");
        n += 1;
        let url = format!("https://127.0.0.1:{port}/app/count/{id}");
        let sent = Instant::now();
        let mut refused = false;
        let txid = match http.post(&url).send().await {
            Ok(r) if r.status() == StatusCode::OK => {
                let txid = r.headers()["x-ms-ccf-transaction-id"].to_str().expect("txid").to_owned();
                let body: Value = r.json().await.expect("json");
                assert_eq!(body["count"], 1, "write {id} ({txid}) was applied more than once");
                Some(txid)
            }
            other => {
                let kind = match other {
                    Ok(r) => {
                        refused = r.status() == StatusCode::SERVICE_UNAVAILABLE;
                        r.status().to_string()
                    }
                    Err(e) if e.is_connect() => "not connected".into(),
                    Err(e) if e.is_timeout() => "timed out".into(),
                    Err(_) => "connection broken".into(),
                };
                *oracle.failures.lock().expect("oracle").entry(kind).or_default() += 1;
                None
            }
        };
        oracle.writes.lock().expect("oracle").push(Write { id, port, sent, txid, status: None, refused });
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asks the nodes for the status of every answered write until it is final.
async fn statuses(ports: Vec<u16>, http: reqwest::Client, oracle: Arc<Oracle>) {
    let mut turn = 0;
    loop {
        let open: Vec<(usize, String)> = {
            let writes = oracle.writes.lock().expect("oracle");
            writes.iter().enumerate().filter(|(_, w)| w.status.is_none()).filter_map(|(i, w)| Some((i, w.txid.clone()?))).collect()
        };
        if open.is_empty() && oracle.stop.load(Ordering::Relaxed) {
            return;
        }
        for (i, txid) in open {
            turn += 1;
            let port = ports[turn % ports.len()];
            let url = format!("https://127.0.0.1:{port}/node/tx?transaction_id={txid}");
            // A frozen node holds the request: a short timeout moves on to the next node.
            let Ok(r) = http.get(&url).timeout(Duration::from_secs(1)).send().await else { continue };
            let Ok(v) = r.json::<Value>().await else { continue };
            if let Some(s @ ("Committed" | "Invalid")) = v["status"].as_str() {
                oracle.writes.lock().expect("oracle")[i].status = Some(s.to_owned());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every id's count, as the node `s` has it.
async fn counts(s: &Sandbox, http: &reqwest::Client) -> serde_json::Map<String, Value> {
    let r = http.get(s.url("/app/counts")).send().await.expect("read the counts");
    assert_eq!(r.status(), StatusCode::OK);
    match r.json::<Value>().await.expect("json") {
        Value::Object(m) => m,
        other => panic!("counts: {other}"),
    }
}

fn committed(oracle: &Oracle) -> Vec<Write> {
    oracle.writes.lock().expect("oracle").iter().filter(|w| w.status.as_deref() == Some("Committed")).cloned().collect()
}

/// Waits until node `i` has applied everything the primary `p` has committed so far.
async fn caught_up(net: &Network, i: usize, p: usize) {
    let target = get_json(net.node(p), "/node/commit").await["transaction_id"].as_str().expect("txid").to_owned();
    let s = net.node(i);
    s.wait_committed(&s.client(None), &target).await;
}

/// Checks every write in the oracle against node `p`, once nothing is in flight: answered
/// writes are `Committed` and counted once; the others are counted at most once.
async fn check_oracle(net: &Network, p: usize, oracle: &Oracle) {
    eventually("every answered write to have a final status", async || {
        oracle.writes.lock().expect("oracle").iter().all(|w| w.txid.is_none() || w.status.is_some())
    })
    .await;
    let writes = oracle.writes.lock().expect("oracle").clone();
    let counts = counts(net.node(p), &client(net.node(p))).await;
    for w in &writes {
        let n = counts.get(&w.id).and_then(Value::as_u64);
        match (&w.txid, w.status.as_deref()) {
            (Some(txid), Some("Committed")) => assert_eq!(n, Some(1), "committed write {} ({txid})", w.id),
            (Some(txid), other) => panic!("write {} was answered with {txid} but ended {other:?}", w.id),
            // A 503 says the write did not and will not happen: it must not be there.
            (None, _) if w.refused => assert_eq!(n, None, "write {} was refused (503) but is counted {n:?}", w.id),
            // No answer, or an unknown outcome (500/504 TransactionOutcomeUnknown): either way.
            (None, _) => assert!(n.is_none_or(|n| n == 1), "write {} without an answer is counted {n:?}", w.id),
        }
    }
    // Nothing was applied that no client sent.
    assert!(counts.len() <= writes.len(), "{} counters for {} writes", counts.len(), writes.len());
}

fn start_clients(net: &Network, seed: u64, oracle: &Arc<Oracle>) -> Vec<tokio::task::JoinHandle<()>> {
    let ports: Vec<u16> = (0..net.nodes.len()).map(|i| net.port(i)).collect();
    let http = client(net.node(0));
    let mut tasks: Vec<_> = (0..4).map(|k| tokio::spawn(writer(k, seed + k as u64, ports.clone(), http.clone(), oracle.clone()))).collect();
    tasks.push(tokio::spawn(statuses(ports, http, oracle.clone())));
    tasks
}

async fn stop_clients(oracle: &Oracle, tasks: Vec<tokio::task::JoinHandle<()>>) {
    oracle.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("a client task panicked");
    }
}

/// The tests of this file run one at a time: each runs three nodes on a 2-core machine, and
/// the elections they count should not be stretched by the other test's load.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Views one failover may take: the view after the fault, plus a few elections that split or
/// time out (a logical bound, which a busy machine does not stretch as it stretches time).
const ELECTION_VIEWS_MAX: u64 = 5;

/// What a round of the oracle test does to the primary.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// SIGKILL: its connections drop, nothing is answered.
    Kill,
    /// SIGTERM: it answers what it holds (refused or unknown outcome) and exits.
    Term,
    /// SIGSTOP until a survivor is primary and a backup's clients are served again; then SIGCONT.
    Freeze,
    /// Every node is killed and restarted at once.
    RestartAll,
}

/// The faults in the order the oracle test applies them.
const FAULTS: [Fault; 6] = [Fault::Kill, Fault::Term, Fault::Freeze, Fault::Kill, Fault::RestartAll, Fault::Freeze];

/// Polls the nodes `candidates` until one says it is primary; its index.
async fn new_primary_among(net: &Network, candidates: &[usize]) -> usize {
    let mut found = None;
    eventually("a new primary", async || {
        for &i in candidates {
            let s = net.node(i);
            if s.client(None).get(s.url("/node/primary")).send().await.is_ok_and(|r| r.status() == StatusCode::OK) {
                found = Some(i);
                return true;
            }
        }
        false
    })
    .await;
    found.expect("a new primary")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_write_is_lost_or_misreported_through_kills_stops_freezes_and_restarts() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let ws = temp_workspace("failover");
    let mut net = Network::open(&ws, 3, &repo_root().join("tests/apps/counters")).await;
    let oracle = Arc::new(Oracle::default());
    let tasks = start_clients(&net, 0x5eed, &oracle);
    let mut elections = Vec::new();
    for (round, fault) in FAULTS.into_iter().enumerate() {
        // Some writes commit in each round before the fault.
        let mark = committed(&oracle).len();
        eventually("writes to commit before the fault", async || committed(&oracle).len() >= mark + 10).await;
        let p = net.primary().await;
        let view_before = get_json(net.node(p), "/node/network").await["current_view"].as_u64().expect("view");
        let before = committed(&oracle);
        let struck = Instant::now();
        let survivors: Vec<usize> = match fault {
            Fault::Kill => {
                net.nodes[p].take().expect("primary").kill9();
                (0..3).filter(|i| *i != p).collect()
            }
            Fault::Term => {
                net.nodes[p].take().expect("primary").stop();
                (0..3).filter(|i| *i != p).collect()
            }
            Fault::Freeze => {
                net.node(p).signal("STOP");
                (0..3).filter(|i| *i != p).collect()
            }
            Fault::RestartAll => {
                for s in net.nodes.iter_mut() {
                    s.take().expect("up").kill9();
                }
                for i in 0..3 {
                    net.restart(i);
                }
                (0..3).collect()
            }
        };
        // A survivor becomes primary (how long it took is reported, not asserted: a test bounds
        // no wall-clock time, and a build beside it stretches every election).
        let q = new_primary_among(&net, &survivors).await;
        elections.push((fault, struck.elapsed()));
        if fault != Fault::RestartAll {
            assert_ne!(q, p, "round {round} ({fault:?}): the new primary is a survivor");
        }

        // Every write reported Committed before the fault is there, once, on the new primary.
        let now = counts(net.node(q), &client(net.node(q))).await;
        for w in &before {
            assert_eq!(now.get(&w.id).and_then(Value::as_u64), Some(1), "round {round} ({fault:?}): committed write {} after it", w.id);
        }
        // A committed transaction of the old view is not valid under the new view's number.
        let view_after = get_json(net.node(q), "/node/network").await["current_view"].as_u64().expect("view");
        assert!(view_after > view_before, "round {round} ({fault:?}): a new view");
        // Split votes repeated term after term (openraft draws each node's timeout once) would
        // show as many views spent on one failover. (Nodes restarted one after the other may
        // each time out alone before the others are up: no such bound there.)
        if fault != Fault::RestartAll {
            let views = view_after - view_before;
            assert!(views <= ELECTION_VIEWS_MAX, "round {round} ({fault:?}): {views} views to elect a primary");
        }
        if let Some(w) = before.last() {
            let seqno = w.txid.as_deref().and_then(|t| t.split('.').nth(1)).expect("seqno");
            let status = get_json(net.node(q), &format!("/node/tx?transaction_id={view_after}.{seqno}")).await;
            assert_eq!(status["status"], "Invalid", "round {round} ({fault:?}): {view_after}.{seqno}");
        }

        // Writes commit again; with the old primary frozen, writes sent through the remaining
        // backup too (its clients are served by forwarding to the new primary).
        let backup = survivors.iter().copied().find(|i| *i != q && fault == Fault::Freeze);
        eventually("writes to commit again after the election", async || {
            oracle
                .writes
                .lock()
                .expect("oracle")
                .iter()
                .any(|w| w.sent > struck && w.status.as_deref() == Some("Committed") && backup.is_none_or(|b| w.port == net.port(b)))
        })
        .await;
        match fault {
            Fault::Kill | Fault::Term => net.restart(p),
            Fault::Freeze => {
                net.node(p).signal("CONT");
                eventually("the old primary to follow the new one", async || {
                    get_json(net.node(p), "/node/network").await["primary_id"] == net.node_ids[q].as_str()
                })
                .await;
            }
            Fault::RestartAll => {}
        }
        for i in 0..3 {
            caught_up(&net, i, q).await;
        }
    }
    stop_clients(&oracle, tasks).await;
    let p = net.primary().await;
    check_oracle(&net, p, &oracle).await;
    let writes = oracle.writes.lock().expect("oracle").clone();
    let committed = writes.iter().filter(|w| w.status.is_some()).count();
    eprintln!(
        "failover: {} writes sent, {committed} committed, the others {:?}; new primary after {:?} (election timeout {ELECTION_TIMEOUT_MS} ms)",
        writes.len(),
        oracle.failures.lock().expect("oracle"),
        elections
    );

    // Every node converges on the same ledger, and each verifies.
    for i in 0..3 {
        caught_up(&net, i, p).await;
    }
    for s in net.nodes.iter_mut().flatten() {
        s.stop();
    }
    let ledgers = verified_ledgers(&ws, 3);
    let common = ledgers.iter().map(Vec::len).min().expect("ledgers");
    for (i, l) in ledgers.iter().enumerate().skip(1) {
        assert_eq!(l[..common], ledgers[0][..common], "node {i}'s ledger equals node 0's");
    }
    let _ = std::fs::remove_dir_all(&ws);
}

/// POST `/app/count/{id}` through `s`; the answer's status and transaction id.
async fn increment(s: &Sandbox, http: &reqwest::Client, id: &str) -> (StatusCode, Option<String>) {
    let r = http.post(s.url(&format!("/app/count/{id}"))).send().await.expect("post");
    let txid = r.headers().get("x-ms-ccf-transaction-id").map(|v| v.to_str().expect("txid").to_owned());
    (r.status(), txid)
}

/// The number of ledger entries in node `i`'s directory (the node must be stopped).
fn ledger_len(net: &Network, i: usize) -> usize {
    consort_ledger::files::read_entries(&net.ws.join(format!("n{i}/ledger"))).expect("ledger").len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolation_restarts_and_an_unendorsed_node() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let ws = temp_workspace("isolation");
    let mut net = Network::open(&ws, 3, &repo_root().join("tests/apps/counters")).await;
    let p = net.primary().await;
    let backups: Vec<usize> = (0..3).filter(|i| *i != p).collect();
    let http = client(net.node(p));

    // forwarding_required "never": a backup executes the write itself and cannot commit it.
    let (status, _) = {
        let s = net.node(backups[0]);
        let r = http.post(s.url("/app/local/never")).send().await.expect("post");
        (r.status(), ())
    };
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "a 'never' write on a backup");
    // redirection_strategy: to_primary from a backup, to_backup from the primary.
    let no_redirects = reqwest::Client::builder()
        .tls_certs_only([
            reqwest::Certificate::from_pem(&std::fs::read(net.node(p).common().join("service_cert.pem")).expect("ca")).expect("ca")
        ])
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let r = no_redirects.post(net.node(backups[0]).url("/app/redirected/r?x=1")).send().await.expect("post");
    assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(r.headers()["location"], format!("https://127.0.0.1:{}/app/redirected/r?x=1", net.port(p)));
    let r = no_redirects.get(net.node(p).url("/app/redirected/r")).send().await.expect("get");
    assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
    let to = r.headers()["location"].to_str().expect("location").to_owned();
    assert!(backups.iter().any(|b| to == format!("https://127.0.0.1:{}/app/redirected/r", net.port(*b))), "{to}");

    // The primary is cut off (SIGSTOP): the others elect a primary and go on committing. A
    // write a backup forwarded to it just then is answered as soon as the backup knows the
    // primary changed, as of unknown outcome (the frozen primary holds it), not at a timeout.
    net.node(p).signal("STOP");
    let in_flight = {
        let (http, url) = (http.clone(), net.node(backups[0]).url("/app/count/frozen-0"));
        tokio::spawn(async move { http.post(url).send().await })
    };
    let q = new_primary_among(&net, &backups).await;
    let r = in_flight.await.expect("join").expect("the forwarded write is answered");
    let (status, body) = (r.status(), r.json::<Value>().await.expect("json"));
    assert_eq!((status, &body["error"]["code"]), (StatusCode::GATEWAY_TIMEOUT, &Value::from("TransactionOutcomeUnknown")), "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("the primary changed")), "{body}");
    // The backup's clients are served again, through the new primary.
    let other = backups.iter().copied().find(|b| *b != q).expect("the remaining backup");
    let mut attempt = 0;
    eventually("a write through the remaining backup to commit", async || {
        attempt += 1;
        increment(net.node(other), &http, &format!("through-the-backup-{attempt}")).await.0 == StatusCode::OK
    })
    .await;
    let mut committed = Vec::new();
    for k in 0..10 {
        let (status, txid) = increment(net.node(q), &http, &format!("iso-{k}")).await;
        assert_eq!(status, StatusCode::OK);
        committed.push(txid.expect("txid"));
    }
    // A write sent to the stopped node waits; once it runs again it cannot commit on its own.
    // (On a connection of its own: the kernel completes it for the stopped node, whose socket
    // then holds the client's first TLS message, unread.)
    let stale = {
        let url = net.node(p).url("/app/count/stale");
        let http = client(net.node(p));
        tokio::spawn(async move {
            let r = http.post(&url).send().await;
            r.map(|r| (r.status(), r.headers().get("x-ms-ccf-transaction-id").map(|v| v.to_str().expect("txid").to_owned())))
        })
    };
    eventually("the stale write to wait at the stopped node", async || unread_bytes_at(net.node(p).port)).await;
    net.node(p).signal("CONT");
    let stale = stale.await.expect("task");
    // It converges: it follows the new primary and has every write made while it was away.
    eventually("the old primary to follow the new one", async || {
        get_json(net.node(p), "/node/network").await["primary_id"] == net.node_ids[q].as_str()
    })
    .await;
    caught_up(&net, p, q).await;
    let now = counts(net.node(p), &client(net.node(p))).await;
    for k in 0..10 {
        assert_eq!(now.get(&format!("iso-{k}")).and_then(Value::as_u64), Some(1), "iso-{k} on the old primary");
    }
    match stale {
        // Answered only if it committed (it reached the new primary, or was forwarded there).
        Ok((StatusCode::OK, Some(txid))) => {
            net.node(q).wait_committed(&http, &txid).await;
            assert_eq!(now.get("stale").and_then(Value::as_u64), Some(1));
        }
        other => assert!(now.get("stale").and_then(Value::as_u64).is_none_or(|n| n == 1), "{other:?}"),
    }

    // All three restart at once (killed, no chance to flush): every committed write is there.
    for s in net.nodes.iter_mut() {
        s.take().expect("up").kill9();
    }
    for i in 0..3 {
        net.restart(i);
    }
    let r = net.primary().await;
    for txid in &committed {
        net.node(r).wait_committed(&http, txid).await;
    }
    let now = counts(net.node(r), &http).await;
    for k in 0..10 {
        assert_eq!(now.get(&format!("iso-{k}")).and_then(Value::as_u64), Some(1), "iso-{k} after restarting all");
    }
    assert_eq!(increment(net.node(r), &http, "after-restart").await.0, StatusCode::OK);

    // A node whose certificate another service endorsed cannot talk to the others: started with
    // such a certificate (same key), it receives nothing while the others go on; given back its
    // own certificate, it catches up.
    let b = (0..3).find(|i| *i != r).expect("a backup");
    net.nodes[b].take().expect("up").stop();
    let before = ledger_len(&net, b);
    let cert_file = ws.join(format!("n{b}/node_cert.pem"));
    let own_cert = std::fs::read_to_string(&cert_file).expect("node cert");
    let key = consort_crypto::NodeKey::from_pem(&std::fs::read_to_string(ws.join(format!("n{b}/node_privk.pem"))).expect("key"))
        .expect("node key");
    let other_service = consort_crypto::NodeKey::generate();
    let other_cert = consort_crypto::self_signed_service_cert(&other_service, "Another Service").expect("service cert");
    let forged =
        consort_crypto::endorse_node_cert(&key.public_key_der(), "Consort Node", &["127.0.0.1".into()], &other_cert, &other_service)
            .expect("endorse");
    std::fs::write(&cert_file, forged).expect("write cert");
    net.restart(b);
    for k in 0..5 {
        assert_eq!(increment(net.node(r), &http, &format!("unendorsed-{k}")).await.0, StatusCode::OK);
    }
    // It tries, and the primary refuses its certificate.
    let refused = |log: String| log.lines().any(|l| l.contains("refused") && l.contains("certificate"));
    eventually("the primary to refuse the unendorsed node", async || refused(net.node(r).log())).await;
    let still = net.node(r).client(None).get(net.node(r).url("/node/primary")).send().await.expect("primary");
    assert_eq!(still.status(), StatusCode::OK, "the unendorsed node did not disturb the primary");
    net.nodes[b].take().expect("up").stop();
    assert_eq!(ledger_len(&net, b), before, "the unendorsed node received nothing");
    let refusals = net.node(r).log();
    assert!(refusals.contains("certificate"), "the primary's log names the refused certificate:\n{refusals}");
    std::fs::write(&cert_file, own_cert).expect("write cert");
    net.restart(b);
    caught_up(&net, b, r).await;
    let now = counts(net.node(b), &client(net.node(b))).await;
    assert_eq!(now.get("unendorsed-4").and_then(Value::as_u64), Some(1), "the node caught up with its own certificate");

    for s in net.nodes.iter_mut().flatten() {
        s.stop();
    }
    let _ = std::fs::remove_dir_all(&ws);
}

/// How many of `ids` appear in the writes of the ledger files in `dir` (read as they are, while
/// the node runs: a write's public key bytes appear verbatim in its entry).
fn written_in_ledger(dir: &std::path::Path, ids: &[String]) -> usize {
    let Ok(chunks) = consort_ledger::files::list_chunks(dir) else { return 0 };
    let mut found = std::collections::BTreeSet::new();
    for c in chunks {
        let Ok((records, _)) = consort_ledger::files::read_chunk(&dir.join(c.file_name())) else { continue };
        for r in records {
            for id in ids {
                if r.entry.public.windows(id.len()).any(|w| w == id.as_bytes()) {
                    found.insert(id.clone());
                }
            }
        }
    }
    found.len()
}

/// How a test stops the primary that holds writes.
#[derive(Clone, Copy, PartialEq)]
enum Stop {
    /// SIGTERM: the node answers the requests it holds before it exits.
    Term,
    /// SIGKILL: no answer at all (the connections drop).
    Kill,
}

/// The fault that once answered 503 for writes that then committed: writes reach a primary
/// whose backups are stopped (SIGSTOP), so they cannot commit, and the primary is stopped
/// (SIGTERM) while it holds them. Each is answered as of unknown outcome (500
/// `TransactionOutcomeUnknown`, with the transaction id the node's log holds it under), never
/// as refused; once the nodes run again each is there exactly when that id is `Committed`, and
/// none is there twice. One of the writes is a governance proposal, which answers the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_held_by_a_primary_that_stops_are_never_answered_as_refused() {
    held_writes_then(Stop::Term).await;
}

/// The same with kill -9 of the primary: no answer comes (the connections drop), and after the
/// restart none of the writes is there twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_held_by_a_primary_that_is_killed_are_applied_at_most_once() {
    held_writes_then(Stop::Kill).await;
}

/// What a held write was answered: status, body, transaction id.
type Answer = (StatusCode, Value, Option<String>);

/// Sends `request` and keeps its answer (an error when the connection drops).
fn send(request: reqwest::RequestBuilder) -> tokio::task::JoinHandle<Result<Answer, reqwest::Error>> {
    tokio::spawn(async move {
        let r = request.send().await?;
        let txid = r.headers().get("x-ms-ccf-transaction-id").map(|v| v.to_str().expect("txid").to_owned());
        let status = r.status();
        Ok((status, r.json::<Value>().await.unwrap_or_default(), txid))
    })
}

/// `Committed` or `Invalid`, once node `i` says which `txid` is.
async fn final_status(net: &Network, i: usize, txid: &str) -> String {
    let mut status = String::new();
    eventually(&format!("{txid} to be final"), async || {
        status = get_json(net.node(i), &format!("/node/tx?transaction_id={txid}")).await["status"].as_str().unwrap_or("").to_owned();
        status == "Committed" || status == "Invalid"
    })
    .await;
    status
}

/// The ids of the proposals on node `i` whose actions mention `marker`.
async fn proposals_naming(net: &Network, i: usize, marker: &str) -> Vec<String> {
    let gov = Gov::new(net.node(i));
    let mut found = Vec::new();
    for p in gov.get("/members/proposals").await["value"].as_array().expect("proposals") {
        let id = p["proposalId"].as_str().expect("proposalId");
        if gov.get(&format!("/members/proposals/{id}/actions")).await.to_string().contains(marker) {
            found.push(id.to_owned());
        }
    }
    found
}

async fn held_writes_then(stop: Stop) {
    let _serial = ONE_AT_A_TIME.lock().await;
    let ws = temp_workspace(if stop == Stop::Term { "held-writes-term" } else { "held-writes-kill" });
    let mut net = Network::open(&ws, 3, &repo_root().join("tests/apps/counters")).await;
    let p = net.primary().await;
    eventually("three voters", async || get_json(net.node(p), "/node/consensus").await["voters"].as_array().is_some_and(|v| v.len() == 3))
        .await;
    let backups: Vec<usize> = (0..3).filter(|i| *i != p).collect();
    let http = client(net.node(p));
    for &b in &backups {
        net.node(b).signal("STOP");
    }
    let ids: Vec<String> = (0..4).map(|k| format!("held-{k}")).collect();
    let mut writes: Vec<_> = ids.iter().map(|id| send(http.post(net.node(p).url(&format!("/app/count/{id}"))))).collect();
    // A governance write: a proposal that names a marker (it stays open: nobody votes).
    const MARKER: &str = "held-proposal";
    let member_id = net.member.id.clone();
    let proposal = serde_json::to_vec(&serde_json::json!({"actions": [
        {"name": "set_member_data", "args": {"member_id": member_id, "member_data": {"marker": MARKER}}}
    ]}))
    .expect("json");
    let gov = Gov::new(net.node(p));
    let signed = net.member.sign("proposal", None, &proposal);
    writes.push(send(http.post(gov.url("/members/proposals:create")).header("content-type", "application/cose").body(signed)));
    // All of them are in the primary's ledger, waiting for backups that do not answer.
    let ledger = ws.join(format!("n{p}/ledger"));
    let markers: Vec<String> = ids.iter().cloned().chain([MARKER.to_owned()]).collect();
    eventually("the primary to hold every write", async || written_in_ledger(&ledger, &markers) == markers.len()).await;
    let mut primary = net.nodes[p].take().expect("primary");
    match stop {
        Stop::Term => primary.stop(),
        Stop::Kill => primary.kill9(),
    }
    let mut answers = Vec::new();
    for (what, w) in markers.iter().zip(writes) {
        match (stop, w.await.expect("join")) {
            (Stop::Term, Ok((status, body, txid))) => {
                let code = &body["error"]["code"];
                assert_eq!(
                    (status, code),
                    (StatusCode::INTERNAL_SERVER_ERROR, &Value::from("TransactionOutcomeUnknown")),
                    "{what}: {body}"
                );
                answers.push((what.clone(), txid.expect("the answer names the transaction id the write has in the log")));
            }
            (Stop::Term, Err(e)) => panic!("{what}: a stopping node answers what it holds: {e}"),
            (Stop::Kill, answer) => assert!(answer.is_err(), "{what}: a killed node answers nothing: {answer:?}"),
        }
    }
    // The nodes run again; each held write is there exactly when its transaction id committed
    // (whatever became of it, never twice).
    for &b in &backups {
        net.node(b).signal("CONT");
    }
    net.restart(p);
    let q = net.primary().await;
    let mut attempt = 0;
    eventually("the network to commit again", async || {
        attempt += 1;
        increment(net.node(q), &client(net.node(q)), &format!("after-{attempt}")).await.0 == StatusCode::OK
    })
    .await;
    let counts = counts(net.node(q), &client(net.node(q))).await;
    let proposals = proposals_naming(&net, q, MARKER).await;
    assert!(proposals.len() <= 1, "the held proposal is there {} times", proposals.len());
    for id in &ids {
        let n = counts.get(id).and_then(Value::as_u64);
        assert!(n.is_none_or(|n| n == 1), "{id} counted {n:?}");
    }
    for (what, txid) in &answers {
        let there = if what == MARKER { !proposals.is_empty() } else { counts.contains_key(what) };
        let status = final_status(&net, q, txid).await;
        assert_eq!(there, status == "Committed", "{what} ({txid}) ended {status} and is there: {there}");
    }
    for s in net.nodes.iter_mut().flatten() {
        s.stop();
    }
    let _ = std::fs::remove_dir_all(&ws);
}

/// Whether a connection accepted by the kernel for a listener on 127.0.0.1:`port` holds bytes
/// its process has not read (`/proc/net/tcp`: an established socket with that local port and
/// a receive queue).
fn unread_bytes_at(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table.lines().skip(1).any(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let local_port = f.get(1).and_then(|a| a.rsplit_once(':')).and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
        let rx_queue = f.get(4).and_then(|q| q.split_once(':')).and_then(|(_, rx)| u64::from_str_radix(rx, 16).ok());
        local_port == Some(port) && f.get(3) == Some(&"01") && rx_queue.is_some_and(|rx| rx > 0)
    })
}
