//! Nodes joining a network as real processes: trusted at once while the service is opening,
//! by a `transition_node_to_trusted` vote once it is open. Writes go through every node
//! (backups forward them), reads are served by each; a fourth node is added and one of the
//! first three retired while a client keeps writing; every ledger verifies.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use consort_tests::cluster::{free_ports, get_json, join_command, node_config, verified_ledgers};
use consort_tests::{consort, eventually, repo_root, set_js_app, temp_workspace, Gov, Member, Sandbox};
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_join_by_governance_and_everything_replicates() {
    let ws = temp_workspace("replication");
    let member = Member::create(&ws, "member0");
    let user = Member::create(&ws, "user0");
    let s0 = Sandbox::start_config(
        &ws,
        node_config(&ws, "n0", json!({"type": "start", "members": [{"certificate": ws.join("member0_cert.pem")}]})),
    );

    // While the service is opening, joining nodes are trusted at once and become voters.
    let s1 = Sandbox::start_config(&ws, node_config(&ws, "n1", join_command(&s0)));
    let s2 = Sandbox::start_config(&ws, node_config(&ws, "n2", join_command(&s0)));
    let gov = Gov::new(&s0);
    gov.activate(&member).await;
    eventually("the member's activation on the joined node", async || {
        get_json(&s2, "/gov/service/members?api-version=2024-07-01").await["value"][0]["status"] == "Active"
    })
    .await;
    let nodes = get_json(&s1, "/node/network/nodes").await["nodes"].as_array().expect("nodes").clone();
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    assert!(nodes.iter().all(|n| n["status"] == "Trusted"), "{nodes:?}");

    // Open the service with an app and a user.
    let service_cert = std::fs::read_to_string(ws.join("n0/service_cert.pem")).expect("service cert");
    let actions = vec![set_js_app(&repo_root().join("samples/logging")), json!({"name": "set_user", "args": {"cert": user.cert_pem}})];
    gov.open_service(&member, &service_cert, actions).await;

    // Writes through every node (backups forward them to the primary, and answer with the
    // primary's transaction id), then every write read back on every node.
    let user_client = |s: &Sandbox| s.client(Some(ws.join("user0").to_str().expect("path")));
    let primary_id = get_json(&s0, "/node/network").await["primary_id"].clone();
    for (i, s) in [&s0, &s1, &s2].into_iter().enumerate() {
        eventually(&format!("node {i} to open"), async || get_json(s, "/node/network").await["service_status"] == "Open").await;
        assert_eq!(get_json(s, "/node/network").await["primary_id"], primary_id, "node {i} names the primary");
        for ready in ["/node/ready/app", "/node/ready/gov"] {
            let r = s.client(None).get(s.url(ready)).send().await.expect("ready");
            assert_eq!(r.status(), StatusCode::NO_CONTENT, "{ready} on node {i}: every node of an open network is ready");
        }
        let r = user_client(s)
            .post(s.url("/app/log/private"))
            .json(&json!({"id": 100 + i, "msg": format!("via {i}")}))
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), StatusCode::OK, "a write through node {i}");
        let txid = r.headers()["x-ms-ccf-transaction-id"].to_str().expect("txid").to_owned();
        s0.wait_committed(&user_client(&s0), &txid).await;
    }
    let nodes = get_json(&s2, "/node/network/nodes").await["nodes"].as_array().expect("nodes").clone();
    assert_eq!(
        nodes.iter().filter(|n| n["primary"] == true).map(|n| n["node_id"].clone()).collect::<Vec<_>>(),
        std::slice::from_ref(&primary_id)
    );
    assert_eq!(get_json(&s1, "/node/network/nodes/primary").await["node_id"], primary_id);
    for (i, s) in [&s0, &s1, &s2].into_iter().enumerate() {
        // A fresh connection: reads are served by this node itself.
        let client = user_client(s);
        for j in 0..3 {
            eventually(&format!("write {j} on node {i}"), async || {
                let r = client.get(s.url(&format!("/app/log/private?id={}", 100 + j))).send().await.expect("get");
                r.status() == StatusCode::OK && r.json::<Value>().await.expect("json")["msg"] == format!("via {j}")
            })
            .await;
        }
    }

    // From here a client writes steadily through the primary; every write must succeed while
    // a fourth node joins and one of the first three is retired.
    let stop = Arc::new(AtomicBool::new(false));
    let steady = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let writer = {
        let (client, url, stop, steady) = (user_client(&s0), s0.url("/app/log/public"), stop.clone(), steady.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let r = client.post(&url).json(&json!({"id": n, "msg": format!("steady {n}")})).send().await.expect("post");
                assert_eq!(r.status(), StatusCode::OK, "steady write {n}: {}", r.text().await.unwrap_or_default());
                n += 1;
                steady.store(n, Ordering::Relaxed);
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            n
        })
    };

    // Once the service is open, a joining node waits, Pending, for the members' vote, which
    // here goes through a backup (it forwards governance writes to the primary). Once trusted
    // it fetches node 0's newest snapshot (GET /node/snapshot redirects to it) and starts
    // from it instead of replaying the whole ledger.
    eventually("a snapshot on node 0", async || {
        let r = s0.client(None).get(s0.url("/node/snapshot")).send().await.expect("get");
        r.status() == StatusCode::OK && r.url().path().starts_with("/node/snapshot/snapshot_")
    })
    .await;
    let fourth = node_config(&ws, "n3", join_command(&s0));
    let ws2 = ws.clone();
    let joining = std::thread::spawn(move || Sandbox::start_config(&ws2, fourth));
    let mut pending = None;
    eventually("a Pending node", async || {
        let nodes = get_json(&s0, "/node/network/nodes").await;
        pending = nodes["nodes"].as_array().expect("nodes").iter().find(|n| n["status"] == "Pending").map(|n| n["node_id"].clone());
        pending.is_some()
    })
    .await;
    let gov1 = Gov::new(&s1);
    gov1.pass(&[&member], json!([{"name": "transition_node_to_trusted", "args": {"node_id": pending.expect("pending node")}}])).await;
    let s3 = joining.join().expect("the fourth node starts once trusted");
    let startup = get_json(&s3, "/node/state").await["startup_seqno"].as_u64().expect("startup_seqno");
    assert!(startup > 0, "the fourth node started from a snapshot");
    // Its ledger explorer starts after the snapshot: entries before it are not there to show.
    let held = get_json(&s3, "/node/ledger/entries").await;
    assert_eq!(held["first"], startup + 1, "{held}");
    let shown: Vec<u64> = held["entries"].as_array().expect("entries").iter().map(|e| e["seqno"].as_u64().expect("seqno")).collect();
    assert!(!shown.is_empty() && shown.iter().all(|s| *s > startup), "{shown:?}");
    let before = get_json(&s3, &format!("/node/ledger/entries?to={startup}")).await;
    assert_eq!(before["entries"], json!([]), "{before}");
    let r = user_client(&s3).get(s3.url("/app/log/private?id=100")).send().await.expect("get");
    assert_eq!(r.json::<Value>().await.expect("json")["msg"], "via 0", "private state written before the snapshot");
    eventually("four voters", async || get_json(&s0, "/node/consensus").await["voters"].as_array().expect("voters").len() == 4).await;

    // remove_node retires node 1: it leaves the Raft configuration, and the others go on.
    let node1 = get_json(&s1, "/node/state").await["node_id"].clone();
    gov.pass(&[&member], json!([{"name": "remove_node", "args": {"node_id": node1}}])).await;
    eventually("node 1 to leave the configuration", async || {
        let voters = get_json(&s0, "/node/consensus").await["voters"].clone();
        voters.as_array().expect("voters").len() == 3 && !voters.as_array().expect("voters").contains(&node1)
    })
    .await;
    // The writer goes on past the removal: a few more writes succeed on the smaller network.
    let at_removal = steady.load(Ordering::Relaxed);
    eventually("steady writes after the removal", async || steady.load(Ordering::Relaxed) >= at_removal + 10).await;
    stop.store(true, Ordering::Relaxed);
    let written = writer.await.expect("every steady write succeeded");
    assert!(written > 10, "{written} steady writes");
    let last = written - 1;
    for s in [&s2, &s3] {
        eventually("the last steady write on a remaining node", async || {
            let r = user_client(s).get(s.url(&format!("/app/log/public?id={last}"))).send().await.expect("get");
            r.status() == StatusCode::OK
        })
        .await;
    }
    let committed = get_json(&s0, "/node/commit").await["transaction_id"].as_str().expect("txid").to_owned();
    let upto: usize = committed.split('.').nth(1).and_then(|n| n.parse().ok()).expect("seqno");
    for s in [&s2, &s3] {
        s.wait_committed(&s.client(None), &committed).await;
    }

    // Every node's ledger verifies; the remaining nodes' ledgers are identical up to the last
    // commit, and the retired node's up to its removal.
    let (mut s0, mut s1, mut s2, mut s3) = (s0, s1, s2, s3);
    for s in [&mut s1, &mut s2, &mut s3, &mut s0] {
        s.stop();
    }
    let ledgers = verified_ledgers(&ws, 4);
    assert!(ledgers[2].len() >= upto, "node 2 has everything committed");
    assert_eq!(ledgers[2][..upto], ledgers[0][..upto], "node 2's ledger equals the primary's");
    // Node 3's ledger starts after its snapshot, and equals the primary's from there.
    let first = startup as usize + 1;
    assert_eq!(ledgers[3].first().map(|e| e.txid.seqno as usize), Some(first));
    assert!(first + ledgers[3].len() >= upto, "node 3 has everything committed");
    assert_eq!(ledgers[3][..upto - first], ledgers[0][first..upto], "node 3's ledger equals the primary's after its snapshot");
    // Each node snapshots its state every 50 transactions; every snapshot matches the ledger
    // (node 0's, which starts at genesis).
    for i in [0, 2, 3] {
        let dir = ws.join(format!("n{i}/snapshots"));
        let files: Vec<_> = std::fs::read_dir(&dir).expect("snapshot directory").map(|e| e.expect("entry").path()).collect();
        assert!(!files.is_empty(), "node {i} wrote snapshots");
        for f in files {
            let ledger = ws.join("n0/ledger");
            let (ok, out) = consort(&["snapshot", "verify", f.to_str().expect("path"), "--ledger", ledger.to_str().expect("path")]);
            assert!(ok && out.contains("snapshot OK"), "node {i}, {}: {out}", f.display());
        }
    }
    let retired = ledgers[1].len().min(upto);
    assert_eq!(ledgers[1][..retired], ledgers[0][..retired], "the retired node's ledger is a prefix of the primary's");
    let _ = std::fs::remove_dir_all(&ws);
}

/// `consort sandbox --nodes 3`: three nodes on consecutive ports, opened by member0; a write
/// through one backup is read through the other; killing the sandbox stops all three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_sandbox() {
    let ws = temp_workspace("sandbox3");
    // Node i serves on port + 2i and peers on port + 2i + 1.
    let port = free_ports(6);
    let mut sandbox = Sandbox::start_with(&ws, Some(&repo_root().join("samples/logging")), port, &["--nodes", "3"]);
    let user = sandbox.client(Some("user0"));
    let at = |k: u16| format!("https://127.0.0.1:{}", port + 2 * k);
    assert_eq!(get_json(&sandbox, "/node/consensus").await["voters"].as_array().expect("voters").len(), 3);
    let r = user.post(format!("{}/app/log/private", at(2))).json(&json!({"id": 1, "msg": "through node 2"})).send().await.expect("post");
    assert_eq!(r.status(), StatusCode::OK);
    eventually("the write on node 1", async || {
        let r = user.get(format!("{}/app/log/private?id=1", at(1))).send().await.expect("get");
        r.status() == StatusCode::OK && r.json::<Value>().await.expect("json")["msg"] == "through node 2"
    })
    .await;
    // Even a sandbox killed outright takes its other nodes with it.
    sandbox.kill9();
    for k in 1..3 {
        eventually(&format!("node {k} to stop with the sandbox"), async || {
            std::net::TcpStream::connect(("127.0.0.1", port + 2 * k)).is_err()
        })
        .await;
    }
    let _ = std::fs::remove_dir_all(&ws);
}

/// `/node/metrics` on every node of a three-node network, parsed as Prometheus would: one
/// primary, the process and ledger figures, and counters that move with the traffic sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_reports_metrics_that_move_with_traffic() {
    use consort_tests::cluster::Network;
    let ws = temp_workspace("metrics");
    let net = Network::open(&ws, 3, &repo_root().join("tests/apps/counters")).await;
    let p = net.primary().await;
    let before = scrape_all(&net).await;
    let roles: Vec<f64> = before.iter().map(|m| value(m, "consort_raft_role", &[("role", "primary")]).expect("role")).collect();
    assert_eq!(roles.iter().sum::<f64>(), 1.0, "exactly one node says it is primary: {roles:?}");
    assert_eq!(roles[p], 1.0, "and it is the primary");
    for (i, m) in before.iter().enumerate() {
        for name in
            ["process_resident_memory_bytes", "process_open_fds", "consort_ledger_bytes", "consort_ledger_chunks", "consort_raft_view"]
        {
            assert!(value(m, name, &[]).is_some_and(|v| v > 0.0), "node {i}: {name}");
        }
    }

    // Twenty writes through each node (backups forward them to the primary).
    const WRITES: f64 = 20.0;
    let http = net.node(p).client(None);
    let mut last = String::new();
    for i in 0..3 {
        for k in 0..WRITES as usize {
            let r = http.post(net.node(i).url(&format!("/app/count/m{i}-{k}"))).send().await.expect("write");
            assert_eq!(r.status(), StatusCode::OK);
            last = r.headers()["x-ms-ccf-transaction-id"].to_str().expect("txid").to_owned();
        }
    }
    let seqno: f64 = last.split('.').nth(1).and_then(|s| s.parse().ok()).expect("seqno");
    for i in 0..3 {
        net.node(i).wait_committed(&http, &last).await;
    }
    let mut after = Vec::new();
    for i in 0..3 {
        let s = net.node(i);
        // A signature covers the last write on every node once it has applied it.
        let mut m = scrape(s).await;
        eventually("the last write to be signed", async || {
            m = scrape(s).await;
            value(&m, "consort_committed_seqno", &[]).is_some_and(|v| v >= seqno)
        })
        .await;
        after.push(m);
    }
    for i in 0..3 {
        let ok = |m: &prometheus_parse::Scrape| value(m, "consort_requests_total", &[("class", "app"), ("status", "200")]).unwrap_or(0.0);
        assert!(ok(&after[i]) - ok(&before[i]) >= WRITES, "node {i}: app requests answered 200");
        let timed = |m: &prometheus_parse::Scrape| histogram_count(m, "consort_request_duration_seconds", "app");
        assert!(timed(&after[i]) - timed(&before[i]) >= WRITES, "node {i}: app request latencies");
    }
    // The primary ran every write's handler.
    let ran = |m: &prometheus_parse::Scrape| value(m, "consort_js_executions_total", &[]).unwrap_or(0.0);
    assert!(ran(&after[p]) - ran(&before[p]) >= 3.0 * WRITES, "the primary's JS executions");
    let _ = std::fs::remove_dir_all(&ws);
}

async fn scrape(s: &Sandbox) -> prometheus_parse::Scrape {
    let r = s.client(None).get(s.url("/node/metrics")).send().await.expect("scrape");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"].to_str().is_ok_and(|t| t.starts_with("text/plain")));
    let text = r.text().await.expect("text");
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("the Prometheus text format")
}

async fn scrape_all(net: &consort_tests::cluster::Network) -> Vec<prometheus_parse::Scrape> {
    let mut all = Vec::new();
    for i in 0..net.nodes.len() {
        all.push(scrape(net.node(i)).await);
    }
    all
}

/// The value of the sample `name` with `labels` (a counter, gauge or untyped sample).
fn value(m: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    m.samples.iter().filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))).find_map(|s| match s.value {
        prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => Some(v),
        _ => None,
    })
}

/// How many observations the histogram `name` holds for `class` (its `+Inf` bucket).
fn histogram_count(m: &prometheus_parse::Scrape, name: &str, class: &str) -> f64 {
    m.samples
        .iter()
        .filter(|s| s.metric == name && s.labels.get("class") == Some(class))
        .find_map(|s| match &s.value {
            prometheus_parse::Value::Histogram(buckets) => buckets.iter().find(|b| b.less_than.is_infinite()).map(|b| b.count),
            _ => None,
        })
        .unwrap_or(0.0)
}
