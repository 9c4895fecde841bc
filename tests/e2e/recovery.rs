//! Disaster recovery with real processes (SPEC §9): a service whose nodes are all killed comes
//! back from one node's ledger and snapshot, opened by proposal and by members' recovery
//! shares — one submitted as CCF's `submit_recovery_share.sh` does it (curl, `openssl pkeyutl`
//! with RSA-OAEP-SHA256, `ccf_cose_sign1`), one with `consort gov` — and then again from the
//! recovered service's own files with an Owner's share alone. And every way a recovery can be
//! given bad input.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use consort_tests::cluster::{get_json, join_command, node_config};
use consort_tests::{ccf_cose_sign1, consort, consort_bin, eventually, repo_root, set_js_app, temp_workspace, Gov, Member, Sandbox};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A member with an identity and, for a recovery role, an RSA encryption key (as CCF's
/// `keygenerator.sh --gen-enc-key` names them: `NAME_enc_privk.pem`, `NAME_enc_pubk.pem`).
fn member(ws: &Path, name: &str, role: Option<&str>) -> (Member, Value) {
    let m = Member::create(ws, name);
    let mut config = json!({"certificate": ws.join(format!("{name}_cert.pem"))});
    if let Some(role) = role {
        let (private, public) = consort_crypto::recovery::generate_encryption_key().expect("keygen");
        std::fs::write(ws.join(format!("{name}_enc_privk.pem")), private).expect("write");
        std::fs::write(ws.join(format!("{name}_enc_pubk.pem")), public).expect("write");
        config["encryption_public_key"] = json!(ws.join(format!("{name}_enc_pubk.pem")));
        config["recovery_role"] = json!(role);
    }
    (m, config)
}

fn recover_command(previous: &Path, previous_cert: &Path) -> Value {
    json!({"type": "recover", "previous_ledger": previous.join("ledger"), "previous_snapshots": previous.join("snapshots"),
           "previous_service_identity": previous_cert})
}

fn cert_of(s: &Sandbox) -> String {
    std::fs::read_to_string(s.common().join("service_cert.pem")).expect("service cert")
}

async fn status(s: &Sandbox) -> Value {
    get_json(s, "/node/network").await["service_status"].clone()
}

/// Writes through the logging sample as user0; the transaction id.
async fn log(s: &Sandbox, user: &reqwest::Client, kind: &str, id: u64, msg: &str) -> String {
    let r = user.post(s.url(&format!("/app/log/{kind}"))).json(&json!({"id": id, "msg": msg})).send().await.expect("post");
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap_or_default());
    r.headers()["x-ms-ccf-transaction-id"].to_str().expect("txid").to_owned()
}

/// Every expected message reads back from `s`.
async fn reads_back(s: &Sandbox, user: &reqwest::Client, expected: &BTreeMap<(String, u64), String>) {
    for ((kind, id), msg) in expected {
        let r = user.get(s.url(&format!("/app/log/{kind}?id={id}"))).send().await.expect("get");
        assert_eq!(r.status(), StatusCode::OK, "{kind} {id} on port {}", s.port);
        assert_eq!(r.json::<Value>().await.expect("json")["msg"], json!(msg), "{kind} {id} on port {}", s.port);
    }
}

/// `transition_service_to_open` of a recovered service.
fn open_action(s: &Sandbox, previous_cert: &str) -> Value {
    json!([{"name": "transition_service_to_open", "args": {"previous_service_identity": previous_cert, "next_service_identity": cert_of(s)}}])
}

/// The steps of CCF's `submit_recovery_share.sh`, in our words: fetch the encrypted share with
/// curl, decrypt it with `openssl pkeyutl` (RSA-OAEP, SHA-256), wrap it as `{"share": base64}`,
/// sign it with `ccf_cose_sign1` and POST it with curl. The HTTP status and the JSON answer.
fn submit_share_as_ccf_does(s: &Sandbox, ws: &Path, name: &str, member_id: &str) -> (u16, Value) {
    let script = r#"set -euo pipefail
curl -sS --fail --cacert "$CA" "$URL/gov/recovery/encrypted-shares/$MID?api-version=2024-07-01" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["encryptedShare"])' \
  | openssl base64 -d -A \
  | openssl pkeyutl -inkey "$MEMBER"_enc_privk.pem -decrypt -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 \
  | openssl base64 -A \
  | python3 -c 'import json, sys; print(json.dumps({"share": sys.stdin.read().strip()}))' \
  | "$SIGN" --ccf-gov-msg-type recovery_share --ccf-gov-msg-created_at "$(date -uIs)" --signing-key "$MEMBER"_privk.pem \
      --signing-cert "$MEMBER"_cert.pem --content - \
  | curl -sS --cacert "$CA" -H 'Content-Type: application/cose' --data-binary @- -w '\n%{http_code}' \
      "$URL/gov/recovery/members/$MID:recover?api-version=2024-07-01""#;
    let out = Command::new("bash")
        .args(["-c", script])
        .env("SIGN", ccf_cose_sign1())
        .env("CA", s.common().join("service_cert.pem"))
        .env("URL", s.url(""))
        .env("MID", member_id)
        .env("MEMBER", ws.join(name))
        .output()
        .expect("run the share pipeline");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "the share pipeline failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    let (body, code) = text.rsplit_once('\n').expect("status line");
    (code.trim().parse().expect("status"), serde_json::from_str(body).unwrap_or(Value::Null))
}

/// `consort gov submit-recovery-share` as the member `name` in `ws`: success and output.
fn submit_share_with_consort(s: &Sandbox, ws: &Path, name: &str, enc_key: Option<&Path>) -> (bool, String) {
    let mut cmd = Command::new(consort_bin());
    cmd.args(["gov", "--url", &s.url(""), "--service-cert"]).arg(s.common().join("service_cert.pem")).arg("--member").arg(ws.join(name));
    cmd.arg("submit-recovery-share");
    if let Some(k) = enc_key {
        cmd.arg("--enc-key").arg(k);
    }
    let out = cmd.output().expect("consort gov");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

async fn wait_open(nodes: &[&Sandbox]) {
    for s in nodes {
        eventually("the recovered service to open", async || status(s).await == "Open").await;
    }
}

/// `consort ledger verify` of a stopped node's ledger, from the snapshot it starts after.
fn verify_ledger(dir: &Path, service_cert: &Path) {
    let ledger = dir.join("ledger");
    let first = consort_ledger::files::list_chunks(&ledger).expect("chunks").first().map_or(0, |c| c.first);
    let snapshot = dir.join(format!("snapshots/snapshot_{}.committed", first.saturating_sub(1)));
    let mut args = vec!["ledger", "verify", ledger.to_str().expect("path"), "--service-cert", service_cert.to_str().expect("path")];
    if first > 0 {
        args.extend(["--snapshot", snapshot.to_str().expect("path")]);
    }
    let (ok, out) = consort(&args);
    assert!(ok, "{}: {out}", dir.display());
}

fn receipt_verifies(service_cert: &Path, endorsements: Option<&Path>, receipt: &Path) -> (bool, String) {
    let mut args = vec!["receipt", "verify", "--service-cert", service_cert.to_str().expect("path")];
    if let Some(e) = endorsements {
        args.extend(["--endorsements", e.to_str().expect("path")]);
    }
    args.push(receipt.to_str().expect("path"));
    consort(&args)
}

/// `/node/service/previous_identity`'s endorsements, saved for `consort receipt verify`.
async fn save_endorsements(s: &Sandbox, to: &Path) -> usize {
    let body = get_json(s, "/node/service/previous_identity").await;
    let pem = body["endorsements"].as_str().expect("endorsements");
    std::fs::write(to, pem).expect("write");
    pem.matches("BEGIN CERTIFICATE").count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_service_is_recovered_from_one_nodes_files_and_recovered_again() {
    let ws = temp_workspace("recovery");
    let app = repo_root().join("samples/logging");
    let (m0, c0) = member(&ws, "m0", Some("Participant"));
    let (m1, c1) = member(&ws, "m1", Some("Participant"));
    let (m2, c2) = member(&ws, "m2", Some("Owner"));
    let user = Member::create(&ws, "user0");
    let start = json!({"type": "start", "members": [c0, c1, c2]});
    let n0 = Sandbox::start_config(&ws, node_config(&ws, "n0", start));
    let mut nodes = vec![n0];
    for name in ["n1", "n2"] {
        let config = node_config(&ws, name, join_command(&nodes[0]));
        nodes.push(Sandbox::start_config(&ws, config));
    }
    let gov = Gov::new(&nodes[0]);
    for m in [&m0, &m1, &m2] {
        gov.activate(m).await;
    }
    let first_cert = cert_of(&nodes[0]);
    gov.pass(
        &[&m0, &m1],
        json!([
            {"name": "set_recovery_threshold", "args": {"recovery_threshold": 2}},
            set_js_app(&app),
            {"name": "set_user", "args": {"cert": user.cert_pem}},
            {"name": "transition_service_to_open", "args": {"next_service_identity": first_cert}},
        ]),
    )
    .await;
    let n0 = &nodes[0];
    let u = n0.client(Some(ws.join("user0").to_str().expect("path")));
    let mut expected = BTreeMap::new();
    let mut last = String::new();
    let mut receipt_txid = String::new();
    let share_before_rekey = gov.get(&format!("/recovery/encrypted-shares/{}", m0.id)).await["encryptedShare"].clone();
    for i in 0..40u64 {
        if i == 20 {
            gov.pass(&[&m0, &m1], json!([{"name": "trigger_ledger_rekey"}])).await;
        }
        for kind in ["private", "public"] {
            let msg = format!("{kind} message {i}");
            last = log(n0, &u, kind, i, &msg).await;
            expected.insert((kind.to_owned(), i), msg);
        }
        if i == 3 {
            receipt_txid = last.clone();
        }
    }
    let share_after_rekey = gov.get(&format!("/recovery/encrypted-shares/{}", m0.id)).await["encryptedShare"].clone();
    assert!(share_before_rekey.is_string() && share_before_rekey != share_after_rekey, "a rekey issues new shares");
    n0.wait_committed(&u, &last).await;
    let receipt_file = ws.join("receipt.json");
    let receipt = u.get(n0.url(&format!("/app/receipt?transaction_id={receipt_txid}"))).send().await.expect("receipt");
    std::fs::write(&receipt_file, receipt.text().await.expect("text")).expect("write receipt");
    let snapshots = ws.join("n0/snapshots");
    eventually("a snapshot on n0", async || !consort_tests::cluster::snapshot_files(&snapshots).is_empty()).await;
    // The disaster: every node is killed.
    for n in &mut nodes {
        n.kill9();
    }
    let n0_ledger_before: Vec<(String, Vec<u8>)> = dir_files(&ws.join("n0/ledger"));

    // A recovery node on n0's ledger and snapshots; a second node joins it.
    let r0_config = node_config(&ws, "r0", recover_command(&ws.join("n0"), &ws.join("n0/service_cert.pem")));
    let r0 = Sandbox::start_config(&ws, r0_config.clone());
    assert_eq!(status(&r0).await, "Recovering");
    assert_eq!(get_json(&r0, "/node/state").await["state"], "PartOfPublicNetwork");
    let r1 = Sandbox::start_config(&ws, node_config(&ws, "r1", join_command(&r0)));
    let r_gov = Gov::new(&r0);
    let ru = r0.client(Some(ws.join("user0").to_str().expect("path")));
    let closed = ru.get(r0.url("/app/log/public?id=1")).send().await.expect("get");
    assert_eq!(closed.status(), StatusCode::SERVICE_UNAVAILABLE, "the app waits until the service opens");
    r_gov.pass(&[&m0, &m1], open_action(&r0, &first_cert)).await;
    assert_eq!(status(&r0).await, "WaitingForRecoveryShares");

    let (code, body) = submit_share_as_ccf_does(&r0, &ws, "m0", &m0.id);
    assert_eq!((code, body["submittedCount"].clone(), body["recoveryThreshold"].clone()), (200, json!(1), json!(2)), "{body}");
    let (code, body) = submit_share_as_ccf_does(&r0, &ws, "m0", &m0.id);
    assert_eq!((code, body["submittedCount"].clone()), (200, json!(1)), "the same share twice counts once: {body}");
    assert_eq!(status(&r0).await, "WaitingForRecoveryShares");
    let (ok, out) = submit_share_with_consort(&r0, &ws, "m1", None);
    assert!(ok && out.contains("2/2 recovery shares successfully submitted"), "{out}");
    wait_open(&[&r0, &r1]).await;
    assert_eq!(get_json(&r1, "/node/network").await["recovery_count"], 1);
    let r1u = r1.client(Some(ws.join("user0").to_str().expect("path")));
    reads_back(&r0, &ru, &expected).await;
    reads_back(&r1, &r1u, &expected).await;
    // Enough writes for the recovered service to snapshot its state (private maps included).
    for i in 100..130u64 {
        for kind in ["private", "public"] {
            let msg = format!("{kind} after recovery {i}");
            last = log(&r0, &ru, kind, i, &msg).await;
            expected.insert((kind.to_owned(), i), msg);
        }
    }
    r0.wait_committed(&ru, &last).await;
    eventually("the new writes on the joined node", async || {
        r1u.get(r1.url("/app/log/private?id=129")).send().await.is_ok_and(|r| r.status() == StatusCode::OK)
    })
    .await;
    // A receipt from before the disaster verifies through the endorsement of the previous identity.
    let endorsements = ws.join("endorsements-1.pem");
    assert_eq!(save_endorsements(&r0, &endorsements).await, 1);
    let r0_cert = r0.common().join("service_cert.pem");
    assert!(!receipt_verifies(&r0_cert, None, &receipt_file).0, "the previous service signed it, not the new one");
    let (ok, out) = receipt_verifies(&r0_cert, Some(&endorsements), &receipt_file);
    assert!(ok, "{out}");
    assert_eq!(dir_files(&ws.join("n0/ledger")), n0_ledger_before, "the previous ledger is never modified");
    // The recovery node restarts on its directory as any node does.
    let mut r0 = r0;
    r0.stop();
    let r0 = Sandbox::start_config(&ws, r0_config);
    let ru = r0.client(Some(ws.join("user0").to_str().expect("path")));
    eventually("the restarted recovery node to serve the app", async || {
        ru.get(r0.url("/app/log/private?id=129")).send().await.is_ok_and(|r| r.status() == StatusCode::OK)
    })
    .await;
    reads_back(&r0, &ru, &expected).await;
    eventually("a snapshot of the recovered service", async || consort_tests::cluster::snapshot_files(&ws.join("r0/snapshots")).len() > 1)
        .await;

    // The recovered service is lost too, and recovered from its own files with the Owner's share.
    let (mut r0, mut r1) = (r0, r1);
    r0.kill9();
    r1.kill9();
    verify_ledger(&ws.join("r0"), &r0_cert);
    verify_ledger(&ws.join("r1"), &r0_cert);
    let second_cert = std::fs::read_to_string(&r0_cert).expect("cert");
    let q0 = Sandbox::start_config(&ws, node_config(&ws, "q0", recover_command(&ws.join("r0"), &r0_cert)));
    let q_gov = Gov::new(&q0);
    q_gov.pass(&[&m0, &m1], open_action(&q0, &second_cert)).await;
    let (ok, out) = submit_share_with_consort(&q0, &ws, "m2", None);
    assert!(ok && out.contains("Full recovery key successfully submitted"), "{out}");
    wait_open(&[&q0]).await;
    assert_eq!(get_json(&q0, "/node/network").await["recovery_count"], 2);
    let qu = q0.client(Some(ws.join("user0").to_str().expect("path")));
    reads_back(&q0, &qu, &expected).await;
    let endorsements = ws.join("endorsements-2.pem");
    assert_eq!(save_endorsements(&q0, &endorsements).await, 2, "each recovery endorses the identity before it");
    let (ok, out) = receipt_verifies(&q0.common().join("service_cert.pem"), Some(&endorsements), &receipt_file);
    assert!(ok, "{out}");
    let new = log(&q0, &qu, "public", 200, "twice recovered").await;
    q0.wait_committed(&qu, &new).await;
}

/// Passes `actions` as `voters` vote, and waits until a signature covers the proposal's
/// transaction (only that much of a lost service is recovered).
async fn pass_signed(s: &Sandbox, gov: &Gov, voters: &[&Member], actions: Value) {
    let (code, p) = gov.propose(voters[0], actions).await;
    assert_eq!(code, StatusCode::OK, "{p}");
    let id = p["proposalId"].as_str().expect("id");
    let mut txid = String::new();
    for m in voters {
        let ballot = serde_json::to_vec(&json!({"ballot": consort_tests::YES})).expect("json");
        let r = gov
            .client
            .post(gov.url(&format!("/members/proposals/{id}/ballots/{}:submit", m.id)))
            .header("content-type", "application/cose")
            .body(m.sign("ballot", Some(id), &ballot))
            .send()
            .await
            .expect("ballot");
        txid = r.headers()["x-ms-ccf-transaction-id"].to_str().expect("txid").to_owned();
        assert_eq!(r.status(), StatusCode::OK);
    }
    s.wait_committed(&gov.client, &txid).await;
}

/// A proposal that `voters` accept but whose actions refuse to apply, saying `reason`.
async fn fails_to_apply(gov: &Gov, voters: &[&Member], actions: Value, reason: &str) {
    let (code, p) = gov.propose(voters[0], actions).await;
    assert_eq!(code, StatusCode::OK, "{p}");
    let id = p["proposalId"].as_str().expect("id");
    let mut voted = Value::Null;
    for m in voters {
        voted = gov.vote(m, id, consort_tests::YES).await.1;
    }
    assert_eq!(voted["proposalState"], "Failed", "{voted}");
    assert!(voted["failure"]["reason"].as_str().unwrap_or_default().contains(reason), "{voted}");
}

/// Name and bytes of every file in `dir`, sorted.
fn dir_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .map(|p| (p.file_name().expect("name").to_string_lossy().into_owned(), std::fs::read(&p).expect("read")))
        .collect();
    out.sort();
    out
}

/// Runs `consort start --config` with `config`, expecting it to fail; its output.
fn start_fails(ws: &Path, config: Value) -> String {
    let file = ws.join("failing.json");
    std::fs::write(&file, config.to_string()).expect("config");
    let (ok, out) = consort(&["start", "--config", file.to_str().expect("path")]);
    assert!(!ok, "the node started: {out}");
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("dir") {
        let p = e.expect("entry").path();
        std::fs::copy(&p, to.join(p.file_name().expect("name"))).expect("copy");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recovery_refuses_bad_files_bad_shares_and_members_without_a_role() {
    let ws = temp_workspace("recovery-bad");
    let (m0, c0) = member(&ws, "m0", Some("Participant"));
    let (m1, c1) = member(&ws, "m1", Some("Participant"));
    let (m2, c2) = member(&ws, "m2", None);
    let n0 = Sandbox::start_config(&ws, node_config(&ws, "n0", json!({"type": "start", "members": [c0, c1, c2]})));
    let gov = Gov::new(&n0);
    for m in [&m0, &m1, &m2] {
        gov.activate(m).await;
    }
    let cert = cert_of(&n0);
    // Two recovery members: a threshold of three is refused.
    fails_to_apply(
        &gov,
        &[&m0, &m1],
        json!([{"name": "set_recovery_threshold", "args": {"recovery_threshold": 3}}]),
        "above the number of",
    )
    .await;
    let before = gov.get(&format!("/recovery/encrypted-shares/{}", m0.id)).await["encryptedShare"].clone();
    pass_signed(
        &n0,
        &gov,
        &[&m0, &m1],
        json!([{"name": "set_recovery_threshold", "args": {"recovery_threshold": 2}}, {"name": "trigger_recovery_shares_refresh"},
               {"name": "transition_service_to_open", "args": {"next_service_identity": cert}}]),
    )
    .await;
    let after = gov.get(&format!("/recovery/encrypted-shares/{}", m0.id)).await["encryptedShare"].clone();
    assert!(before.is_string() && before != after, "a new threshold issues new shares");
    let missing = gov.client.get(gov.url(&format!("/recovery/encrypted-shares/{}", m2.id))).send().await.expect("get");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND, "a member without a recovery role has no share");
    let mut n0 = n0;
    n0.kill9();
    let previous_cert = ws.join("n0/service_cert.pem");

    // Bad files: each stops the recovery node with the reason, and leaves nothing behind.
    let other = Member::create(&ws, "not-the-service");
    std::fs::write(ws.join("other_cert.pem"), &other.cert_pem).expect("write");
    let out = start_fails(&ws, node_config(&ws, "bad1", recover_command(&ws.join("n0"), &ws.join("other_cert.pem"))));
    assert!(out.contains("does not verify") && out.contains("previous service certificate"), "{out}");
    assert!(!ws.join("bad1/node_privk.pem").exists(), "a failed recovery leaves no node behind");
    let damaged = ws.join("damaged");
    copy_dir(&ws.join("n0/ledger"), &damaged.join("ledger"));
    let chunk = consort_ledger::files::list_chunks(&damaged.join("ledger")).expect("chunks")[0].file_name();
    let mut bytes = std::fs::read(damaged.join("ledger").join(&chunk)).expect("chunk");
    // In the middle of its records (an open chunk also holds zeros reserved after them).
    let (records, _) = consort_ledger::files::read_chunk(&damaged.join("ledger").join(&chunk)).expect("chunk");
    let middle = records.last().map(|r| (r.offset + r.frame_bytes) / 2).expect("records") as usize;
    bytes[middle] ^= 0x55;
    std::fs::write(damaged.join("ledger").join(&chunk), bytes).expect("write");
    let out = start_fails(&ws, node_config(&ws, "bad2", recover_command(&damaged, &previous_cert)));
    assert!(out.contains(&chunk) && out.contains("at seqno"), "names the file and the seqno: {out}");
    let out = start_fails(&ws, node_config(&ws, "n0", recover_command(&damaged, &previous_cert)));
    assert!(out.contains("fresh directory"), "a recovery on a directory that holds a node: {out}");

    let r0 = Sandbox::start_config(&ws, node_config(&ws, "r0", recover_command(&ws.join("n0"), &previous_cert)));
    let g = Gov::new(&r0);
    let share = |m: &Member, payload: Value| m.sign("recovery_share", None, &serde_json::to_vec(&payload).expect("json"));
    let junk = json!({"share": "AQ=="});
    let (code, body, _) = g.post(&format!("/recovery/members/{}:recover", m0.id), share(&m0, junk.clone())).await;
    assert_eq!((code, body["error"]["code"].clone()), (StatusCode::FORBIDDEN, json!("ServiceNotWaitingForRecoveryShares")), "{body}");
    // Opening names the previous identity; another certificate is refused.
    fails_to_apply(&g, &[&m0, &m1], open_action(&r0, &other.cert_pem), "previous_service_identity").await;
    g.pass(&[&m0, &m1], open_action(&r0, &std::fs::read_to_string(&previous_cert).expect("cert"))).await;

    let (code, body, _) = g.post(&format!("/recovery/members/{}:recover", m2.id), share(&m2, junk.clone())).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "a member without a recovery role: {body}");
    let (code, body, _) = g.post(&format!("/recovery/members/{}:recover", m0.id), share(&m0, junk)).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "not a share: {body}");
    let (code, body, _) = g.post(&format!("/recovery/members/{}:recover", m1.id), share(&m0, json!({"share": "AA=="}))).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "signed by another member than the path names: {body}");
    // A share that does not decrypt (the wrong key) never leaves the member's machine.
    let (ok, out) = submit_share_with_consort(&r0, &ws, "m0", Some(&ws.join("m1_enc_privk.pem")));
    assert!(!ok && out.contains("decrypting the recovery share"), "{out}");
    // A well-formed share that is wrong: the pair does not combine, both are discarded.
    use base64::Engine;
    let forged = [&[1u8][..], &[7u8; 33][..]].concat();
    let forged = json!({"share": base64::engine::general_purpose::STANDARD.encode(forged)});
    let (code, body, _) = g.post(&format!("/recovery/members/{}:recover", m0.id), share(&m0, forged)).await;
    assert_eq!((code, body["submittedCount"].clone()), (StatusCode::OK, json!(1)), "{body}");
    let (ok, out) = submit_share_with_consort(&r0, &ws, "m1", None);
    assert!(!ok && out.contains("RecoverySharesInvalid") && out.contains("still waiting"), "{out}");
    assert_eq!(status(&r0).await, "WaitingForRecoveryShares");
    // The right shares then open it.
    let (ok, out) = submit_share_with_consort(&r0, &ws, "m1", None);
    assert!(ok && out.contains("1/2"), "the discarded shares no longer count: {out}");
    let (ok, out) = submit_share_with_consort(&r0, &ws, "m0", None);
    assert!(ok && out.contains("2/2"), "{out}");
    wait_open(&[&r0]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sandbox_recovers_itself_when_its_nodes_are_gone() {
    let ws = temp_workspace("recovery-sandbox");
    let app = repo_root().join("samples/logging");
    let port = consort_tests::cluster::free_ports(4);
    let mut s = Sandbox::start_with(&ws, Some(&app), port, &["--nodes", "2"]);
    assert!(ws.join("sandbox_common/member0_enc_privk.pem").exists(), "member0 has CCF's encryption key files");
    let user = s.client(Some("user0"));
    let txid = log(&s, &user, "private", 1, "before the disaster").await;
    s.wait_committed(&user, &txid).await;
    let previous_cert = cert_of(&s);
    s.kill9();
    // Node 1 stops once it sees its parent gone; its ports are then free for the new node 1.
    eventually("the lost node 1 to stop", async || std::net::TcpStream::connect(("127.0.0.1", port + 2)).is_err()).await;
    let r = Sandbox::start_with(&ws, Some(&app), port, &["--nodes", "2", "--recover"]);
    assert_ne!(cert_of(&r), previous_cert, "the recovered service has a new identity");
    assert!(ws.join("lost1/node0/ledger").is_dir() && ws.join("lost1/node1").is_dir(), "the lost nodes are kept aside");
    let user = r.client(Some("user0"));
    reads_back(&r, &user, &BTreeMap::from([(("private".to_owned(), 1), "before the disaster".to_owned())])).await;
    assert_eq!(get_json(&r, "/node/network").await["recovery_count"], 1);
    let backup = format!("https://127.0.0.1:{}/app/log/private?id=1", port + 2);
    eventually("the joined node to serve the restored state", async || {
        user.get(&backup).send().await.is_ok_and(|r| r.status() == StatusCode::OK)
    })
    .await;
}

/// A process stopped by PID however the test ends.
struct KilledOnDrop(std::process::Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// While it reads the previous ledger, the recovery node answers `/node/state` with CCF's
/// `ReadingPublicLedger` and everything else with 503. The previous ledger here is a named
/// pipe, so the read waits until the test writes to it: the state is observed for certain.
#[tokio::test(flavor = "multi_thread")]
async fn a_recovery_node_says_it_is_reading_the_previous_ledger() {
    let ws = temp_workspace("recovery-reading");
    let (_, _) = member(&ws, "m0", Some("Participant"));
    let previous = ws.join("previous");
    std::fs::create_dir_all(previous.join("ledger")).expect("dir");
    let chunk = previous.join("ledger/ledger_0");
    assert!(Command::new("mkfifo").arg(&chunk).status().expect("mkfifo").success());
    let other = Member::create(&ws, "some-service");
    std::fs::write(ws.join("previous_cert.pem"), &other.cert_pem).expect("write");
    let config = node_config(&ws, "r0", recover_command(&previous, &ws.join("previous_cert.pem")));
    let port = config["rpc_address"].as_str().and_then(|a| a.rsplit(':').next()).expect("port").to_owned();
    let file = ws.join("r0.json");
    std::fs::write(&file, config.to_string()).expect("config");
    let mut node = KilledOnDrop(
        Command::new(consort_bin())
            .args(["start", "--config"])
            .arg(&file)
            .stderr(std::fs::File::create(ws.join("r0.log")).expect("log"))
            .spawn()
            .expect("start"),
    );
    // The new service certificate is not written before the previous ledger is read: -k.
    let get = |path: &str| {
        let out =
            Command::new("curl").args(["-sk", "-w", "\n%{http_code}", &format!("https://127.0.0.1:{port}{path}")]).output().expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    eventually("the node to answer while it reads", async || get("/node/state").ends_with("200")).await;
    assert!(get("/node/state").contains(r#""state":"ReadingPublicLedger""#), "{}", get("/node/state"));
    assert!(get("/node/network").ends_with("503"), "{}", get("/node/network"));
    // An empty previous ledger: the recovery stops, saying why, and leaves no node behind.
    drop(std::fs::OpenOptions::new().write(true).open(&chunk).expect("open the pipe"));
    let status = node.0.wait().expect("wait");
    assert!(!status.success());
    let log = std::fs::read_to_string(ws.join("r0.log")).unwrap_or_default();
    assert!(log.contains("holds no signature"), "{log}");
    assert!(!ws.join("r0/node_privk.pem").exists());
}
