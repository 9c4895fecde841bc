//! Members' tools against a real sandbox: the sandbox opens itself by proposal and vote,
//! `consort gov` adds members and users, and CCF's own `ccf_cose_sign1` (from `pip install
//! ccf==6.0.28`, set up by `make test`) piped into curl runs the three-member flow with no
//! Consort code in the signing path. Then governance changes the running service: runtime
//! options, the constitution (dropping open proposals).

use std::path::{Path, PathBuf};
use std::process::Command;

use consort_tests::{ccf_cose_sign1, consort, repo_root, temp_workspace, Gov, Member, Sandbox, YES};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// `consort gov` against the sandbox as the member at `member` (a path prefix); returns success,
/// the JSON documents printed on stdout, and stderr.
fn gov_cli(s: &Sandbox, member: &Path, args: &[&str]) -> (bool, Vec<Value>, String) {
    let cert = s.common().join("service_cert.pem");
    let out = Command::new(consort_tests::consort_bin())
        .args(["gov", "--url", &s.url(""), "--service-cert"])
        .arg(&cert)
        .arg("--member")
        .arg(member)
        .args(args)
        .output()
        .expect("run consort gov");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let docs = serde_json::Deserializer::from_str(&stdout).into_iter::<Value>().map(|d| d.expect("JSON on stdout")).collect();
    (out.status.success(), docs, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// CCF's documented way to send a governance request: `ccf_cose_sign1 ... | curl --data-binary @-`.
/// Returns the HTTP status and the JSON answer (null when empty).
fn ccf_post(s: &Sandbox, member: &Path, msg_type: &str, proposal_id: Option<&str>, content: &[u8], path: &str) -> (u16, Value) {
    let file = member.with_extension(format!("{msg_type}.content"));
    std::fs::write(&file, content).expect("content file");
    let script = r#"set -o pipefail
"$SIGN" --content "$CONTENT" --signing-cert "${MEMBER}_cert.pem" --signing-key "${MEMBER}_privk.pem" \
    --ccf-gov-msg-type "$TYPE" ${PROPOSAL:+--ccf-gov-msg-proposal_id "$PROPOSAL"} --ccf-gov-msg-created_at "$(date -Is)" \
  | curl -sS --cacert "$CA" -H 'Content-Type: application/cose' --data-binary @- -w '\n%{http_code}' "$URL""#;
    let out = Command::new("bash")
        .args(["-c", script])
        .env("SIGN", ccf_cose_sign1())
        .env("CONTENT", &file)
        .env("MEMBER", member)
        .env("TYPE", msg_type)
        .env("PROPOSAL", proposal_id.unwrap_or(""))
        .env("CA", s.common().join("service_cert.pem"))
        .env("URL", s.url(&format!("/gov{path}?api-version=2024-07-01")))
        .output()
        .expect("run ccf_cose_sign1 | curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "ccf_cose_sign1 | curl failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    let (body, status) = text.rsplit_once('\n').expect("status line");
    (status.trim().parse().expect("status"), serde_json::from_str(body).unwrap_or(Value::Null))
}

fn ballot(yes: bool) -> Vec<u8> {
    serde_json::to_vec(&json!({"ballot": format!("export function vote (proposal, proposerId) {{ return {yes}; }}")})).expect("json")
}

/// A user's call to the logging sample with curl and the user's client certificate.
fn curl_as_user(s: &Sandbox, user: &Path, path: &str) -> u16 {
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(s.common().join("service_cert.pem"))
        .arg("--cert")
        .arg(format!("{}_cert.pem", user.display()))
        .arg("--key")
        .arg(format!("{}_privk.pem", user.display()))
        .arg(s.url(path))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("status")
}

/// The id of the identity whose files start with `prefix`.
fn id_of(prefix: &Path) -> String {
    let pem = std::fs::read_to_string(format!("{}_cert.pem", prefix.display())).expect("cert");
    consort_crypto::ParsedCert::from_pem(&pem).expect("cert").id()
}

fn identity(dir: &Path, name: &str) -> PathBuf {
    Member::create(dir, name);
    dir.join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_consort_gov_and_ccf_tooling_govern_a_service() {
    let ws = temp_workspace("member-tools");
    let s = Sandbox::start(&ws, Some(&repo_root().join("samples/logging")));
    let gov = Gov::new(&s);
    let member0 = s.common().join("member0");

    // The sandbox opened itself as CCF's does: one proposal by member0, accepted by its vote.
    assert_eq!(gov.get("/service/info").await["status"], "Open");
    let proposals = gov.get("/members/proposals").await["value"].as_array().expect("list").clone();
    assert_eq!(proposals.len(), 1, "{proposals:?}");
    assert_eq!(proposals[0]["proposalState"], "Accepted");
    assert_eq!(curl_as_user(&s, &s.common().join("user0"), "/app/log/private/count"), 200);

    // consort gov: two more members (Accepted until they acknowledge), member1 acks with it.
    let (m1, m2) = (identity(&ws, "member1"), identity(&ws, "member2"));
    let (ok, docs, err) = gov_cli(
        &s,
        &member0,
        &[
            "propose",
            "--set-member",
            &format!("{}_cert.pem", m1.display()),
            "--set-member",
            &format!("{}_cert.pem", m2.display()),
            "--accept",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!((docs[0]["proposalState"].as_str(), docs[1]["proposalState"].as_str()), (Some("Open"), Some("Accepted")), "{docs:?}");
    let (ok, _, err) = gov_cli(&s, &m1, &["ack"]);
    assert!(ok, "{err}");

    // member2 acknowledges with CCF's tool: state_digest, then ack with the digest it was given.
    let id2 = id_of(&m2);
    let (status, digest) = ccf_post(&s, &m2, "state_digest", None, b"", &format!("/members/state-digests/{id2}:update"));
    assert_eq!(status, 200, "{digest}");
    let ack = serde_json::to_vec(&json!({"stateDigest": digest["stateDigest"]})).expect("json");
    let (status, body) = ccf_post(&s, &m2, "ack", None, &ack, &format!("/members/state-digests/{id2}:ack"));
    assert_eq!(status, 204, "{body}");
    let members = gov.get("/service/members").await;
    assert!(members["value"].as_array().expect("members").iter().all(|m| m["status"] == "Active"), "{members}");

    // consort gov with three active members: Open after one vote, Accepted after the second.
    let user1 = identity(&ws, "user1");
    let (ok, docs, err) = gov_cli(&s, &member0, &["propose", "--set-user", &format!("{}_cert.pem", user1.display())]);
    assert!(ok, "{err}");
    let id = docs[0]["proposalId"].as_str().expect("id").to_owned();
    let (ok, docs, _) = gov_cli(&s, &member0, &["vote", &id, "--accept"]);
    assert!(ok && docs[0]["proposalState"] == "Open", "{docs:?}");
    let (ok, docs, _) = gov_cli(&s, &member0, &["show", &id]);
    assert!(ok && docs[0]["proposal"]["proposalState"] == "Open", "{docs:?}");
    assert_eq!(docs[0]["actions"]["actions"][0]["name"], "set_user");
    assert_eq!(curl_as_user(&s, &user1, "/app/log/private/count"), 401, "not a user yet");
    let (ok, docs, _) = gov_cli(&s, &m1, &["vote", &id, "--accept"]);
    assert!(ok && docs[0]["proposalState"] == "Accepted", "{docs:?}");
    assert_eq!(curl_as_user(&s, &user1, "/app/log/private/count"), 200);

    // The same flow with ccf_cose_sign1 and curl only.
    let user2 = identity(&ws, "user2");
    let cert2 = std::fs::read_to_string(format!("{}_cert.pem", user2.display())).expect("cert");
    let proposal = serde_json::to_vec(&json!({"actions": [{"name": "set_user", "args": {"cert": cert2}}]})).expect("json");
    let (status, p) = ccf_post(&s, &m2, "proposal", None, &proposal, "/members/proposals:create");
    assert_eq!((status, &p["proposalState"]), (200, &json!("Open")), "{p}");
    let id = p["proposalId"].as_str().expect("id").to_owned();
    let (status, after_one) =
        ccf_post(&s, &m2, "ballot", Some(&id), &ballot(true), &format!("/members/proposals/{id}/ballots/{id2}:submit"));
    assert_eq!((status, &after_one["proposalState"]), (200, &json!("Open")), "{after_one}");
    assert_eq!(curl_as_user(&s, &user2, "/app/log/private/count"), 401);
    let id0 = id_of(&member0);
    let (status, after_two) =
        ccf_post(&s, &member0, "ballot", Some(&id), &ballot(true), &format!("/members/proposals/{id}/ballots/{id0}:submit"));
    assert_eq!((status, &after_two["proposalState"]), (200, &json!("Accepted")), "{after_two}");
    assert_eq!(curl_as_user(&s, &user2, "/app/log/private/count"), 200, "the user added with CCF's tooling calls the app");

    // A failing apply ends Failed with the reason.
    let failing =
        serde_json::to_vec(&json!({"actions": [{"name": "set_member_data", "args": {"member_id": "ab".repeat(32), "member_data": {}}}]}))
            .expect("json");
    let (_, p) = ccf_post(&s, &m2, "proposal", None, &failing, "/members/proposals:create");
    let id = p["proposalId"].as_str().expect("id").to_owned();
    ccf_post(&s, &m2, "ballot", Some(&id), &ballot(true), &format!("/members/proposals/{id}/ballots/{id2}:submit"));
    let (status, failed) =
        ccf_post(&s, &member0, "ballot", Some(&id), &ballot(true), &format!("/members/proposals/{id}/ballots/{id0}:submit"));
    assert_eq!((status, &failed["proposalState"]), (200, &json!("Failed")), "{failed}");
    assert!(failed["failure"]["reason"].as_str().expect("reason").contains("does not exist"), "{failed}");

    // Withdrawn (signed by CCF's tool), then closed to votes from either tool.
    let user2_id = consort_crypto::ParsedCert::from_pem(&cert2).expect("cert").id();
    let removal = serde_json::to_vec(&json!({"actions": [{"name": "remove_user", "args": {"user_id": user2_id}}]})).expect("json");
    let (_, p) = ccf_post(&s, &m2, "proposal", None, &removal, "/members/proposals:create");
    let id = p["proposalId"].as_str().expect("id").to_owned();
    let (status, w) = ccf_post(&s, &m2, "withdrawal", Some(&id), b"", &format!("/members/proposals/{id}:withdraw"));
    assert_eq!((status, &w["proposalState"]), (200, &json!("Withdrawn")), "{w}");
    let (status, refused) =
        ccf_post(&s, &member0, "ballot", Some(&id), &ballot(true), &format!("/members/proposals/{id}/ballots/{id0}:submit"));
    assert_eq!((status, &refused["error"]["code"]), (400, &json!("ProposalNotOpen")), "{refused}");
    let (ok, _, err) = gov_cli(&s, &m1, &["vote", &id, "--accept"]);
    assert!(!ok && err.contains("ProposalNotOpen"), "{err}");
    assert_eq!(curl_as_user(&s, &user2, "/app/log/private/count"), 200, "the withdrawn removal did nothing");

    // A request CCF's tool signed, sent twice: the replay is refused.
    let now = Command::new("date").arg("-Is").output().expect("date").stdout;
    let now = String::from_utf8_lossy(&now).trim().to_owned();
    // (CCF's tool signs deterministically: the same content in the same second is the same request.)
    let content = ws.join("replayed.json");
    std::fs::write(
        &content,
        json!({"actions": [{"name": "set_user_data", "args": {"user_id": user2_id, "user_data": {"n": 1}}}]}).to_string(),
    )
    .expect("content");
    let signed = Command::new(ccf_cose_sign1())
        .arg("--content")
        .arg(&content)
        .args(["--signing-cert", &format!("{}_cert.pem", m2.display()), "--signing-key", &format!("{}_privk.pem", m2.display())])
        .args(["--ccf-gov-msg-type", "proposal", "--ccf-gov-msg-created_at", &now])
        .output()
        .expect("ccf_cose_sign1");
    assert!(signed.status.success(), "{}", String::from_utf8_lossy(&signed.stderr));
    let mut answers = Vec::new();
    for _ in 0..2 {
        answers.push(gov.post("/members/proposals:create", signed.stdout.clone()).await);
    }
    assert_eq!(answers[0].0, StatusCode::OK, "{:?}", answers[0]);
    assert_eq!((answers[1].0, &answers[1].1["error"]["code"]), (StatusCode::BAD_REQUEST, &json!("ProposalReplay")), "{:?}", answers[1]);
    assert!(!answers[1].2, "nothing committed for the replay");
    let (ok, docs, _) = gov_cli(&s, &member0, &["list"]);
    let listed = docs[0]["value"].as_array().expect("list").clone();
    assert!(ok && listed.iter().any(|p| p["proposalId"] == answers[0].1["proposalId"] && p["proposalState"] == "Open"), "{listed:?}");

    // trigger_ledger_rekey from a proposal file: private writes after it are sealed under a new
    // secret, and a restarted node still reads both (it finds the new secret in the ledger).
    let rekey = ws.join("rekey.json");
    std::fs::write(&rekey, json!({"actions": [{"name": "trigger_ledger_rekey", "args": {}}]}).to_string()).expect("proposal file");
    let (ok, docs, err) = gov_cli(&s, &member0, &["propose", rekey.to_str().expect("path"), "--accept"]);
    assert!(ok, "{err}");
    let id = docs[0]["proposalId"].as_str().expect("id").to_owned();
    let (ok, docs, err) = gov_cli(&s, &m1, &["vote", &id, "--accept"]);
    assert!(ok && docs[0]["proposalState"] == "Accepted", "{err} {docs:?}");
    let network = |s: &Sandbox| {
        let client = s.client(None);
        let url = s.url("/node/network");
        async move { client.get(url).send().await.expect("network").json::<Value>().await.expect("json") }
    };
    let since = network(&s).await["latest_ledger_secret_seqno"].as_u64().expect("seqno");
    assert!(since > 0, "a new ledger secret is in use");
    let user0 = s.client(Some("user0"));
    for (id, msg) in [(1, "before the restart"), (2, "also sealed under the new secret")] {
        let r = user0.post(s.url("/app/log/private")).json(&json!({"id": id, "msg": msg})).send().await.expect("post");
        assert_eq!(r.status(), StatusCode::OK);
    }
    let port = s.port;
    let mut s = s;
    s.stop();
    let s = Sandbox::start_on(&ws, None, port);
    assert_eq!(network(&s).await["latest_ledger_secret_seqno"].as_u64(), Some(since));
    let user0 = s.client(Some("user0"));
    let r = user0.get(s.url("/app/log/private?id=2")).send().await.expect("get");
    assert_eq!(r.json::<Value>().await.expect("json")["msg"], "also sealed under the new secret");

    drop(s);
    let (ok, out) = consort(&["ledger", "verify", ws.join("node0/ledger").to_str().expect("path")]);
    assert!(ok, "{out}");
    let _ = std::fs::remove_dir_all(&ws);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn governance_changes_runtime_options_and_the_constitution() {
    let ws = temp_workspace("gov-changes");
    let s = Sandbox::start(&ws, Some(&repo_root().join("tests/apps/hostile")));
    let gov = Gov::new(&s);
    let common = s.common();
    let member0 = Member::from_pem(
        &std::fs::read_to_string(common.join("member0_privk.pem")).expect("key"),
        &std::fs::read_to_string(common.join("member0_cert.pem")).expect("cert"),
    );
    let client = s.client(None);

    // set_js_runtime_options: the next request runs under the new time limit.
    let options = json!({"max_heap_bytes": 64 * 1024 * 1024, "max_stack_bytes": 1024 * 1024, "max_execution_time_ms": 300,
                         "return_exception_details": true, "log_exception_details": false});
    gov.pass(&[&member0], json!([{"name": "set_js_runtime_options", "args": options}])).await;
    let r = client.post(s.url("/app/endless")).send().await.expect("endless");
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let text = r.text().await.expect("text");
    assert!(text.contains("max_execution_time_ms = 300"), "{text}");
    let (status, body) = gov.propose(&member0, json!([{"name": "set_js_runtime_options", "args": {"max_heap_bytes": 1}}])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // set_constitution: the new text is in force, and proposals still open are Dropped.
    let (_, open) = gov.propose(&member0, json!([{"name": "remove_js_app", "args": {}}])).await;
    let open_id = open["proposalId"].as_str().expect("id").to_owned();
    let current = client.get(gov.url("/service/constitution")).send().await.expect("get").text().await.expect("text");
    let next = format!("{current}\n// amended by vote\n");
    gov.pass(&[&member0], json!([{"name": "set_constitution", "args": {"constitution": next}}])).await;
    let now = client.get(gov.url("/service/constitution")).send().await.expect("get").text().await.expect("text");
    assert!(now.ends_with("// amended by vote\n"));
    assert_eq!(gov.get(&format!("/members/proposals/{open_id}")).await["proposalState"], "Dropped");
    let (status, body) = gov.vote(&member0, &open_id, YES).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a dropped proposal takes no votes: {body}");
    let r = client.post(s.url("/app/ok")).send().await.expect("ok");
    assert_eq!(r.status(), StatusCode::OK, "remove_js_app was dropped, the app still serves");

    let _ = std::fs::remove_dir_all(&ws);
}

/// The COSE_Sign1 requests `consort gov` signs (and the SDK's `memberSigner`, which
/// `tests/e2e/sdk.rs` checks against these) are the bytes CCF's `ccf_cose_sign1` writes for the
/// same member, message and time, up to the ECDSA signature (randomised): headers, their order
/// and encoding, payload. On both curves, with and without a proposal id.
#[test]
fn consort_gov_signs_the_bytes_ccf_cose_sign1_signs() {
    use consort_crypto::cose::{Sign1, ES384};
    use consort_crypto::{Curve, GovMessage, GovSigner};
    let ws = temp_workspace("ccf-cose-bytes");
    const CREATED_AT: u64 = 1_764_000_000;
    // 2025-11-24T16:00:00Z, as ccf_cose_sign1 takes it.
    let created_at = "2025-11-24T16:00:00+00:00";
    for (i, curve) in [Curve::Secp256r1, Curve::Secp384r1].into_iter().enumerate() {
        let (key, cert) = consort_crypto::identity_cert("member", curve).expect("identity");
        let prefix = ws.join(format!("member{i}"));
        std::fs::write(format!("{}_privk.pem", prefix.display()), &key).expect("key");
        std::fs::write(format!("{}_cert.pem", prefix.display()), &cert).expect("cert");
        for (msg_type, proposal_id) in [("proposal", None), ("ballot", Some("7f3e")), ("ack", None), ("withdrawal", Some("9a"))] {
            let payload = format!("{{\"from\": \"{msg_type}\"}}");
            let content = ws.join("content");
            std::fs::write(&content, &payload).expect("content");
            let mut command = Command::new(ccf_cose_sign1());
            command.arg("--content").arg(&content);
            command.arg("--signing-key").arg(format!("{}_privk.pem", prefix.display()));
            command.arg("--signing-cert").arg(format!("{}_cert.pem", prefix.display()));
            command.args(["--ccf-gov-msg-type", msg_type, "--ccf-gov-msg-created_at", created_at]);
            if let Some(id) = proposal_id {
                command.args(["--ccf-gov-msg-proposal_id", id]);
            }
            let out = command.output().expect("run ccf_cose_sign1");
            assert!(out.status.success(), "ccf_cose_sign1: {}", String::from_utf8_lossy(&out.stderr));
            let ccf = out.stdout;
            let ours = GovSigner::from_pem(&key, &cert)
                .expect("signer")
                .sign(&GovMessage { msg_type, proposal_id, created_at: CREATED_AT }, payload.as_bytes())
                .expect("sign");
            let signature = if Sign1::parse(&ours).expect("parse").alg == ES384 { 96 } else { 64 };
            assert_eq!(ccf.len(), ours.len(), "{curve:?} {msg_type}: {} vs {}", hex::encode(&ccf), hex::encode(&ours));
            assert_eq!(
                hex::encode(&ccf[..ccf.len() - signature]),
                hex::encode(&ours[..ours.len() - signature]),
                "{curve:?} {msg_type}: all but the signature"
            );
            // And CCF's signature holds for the node's verifier.
            Sign1::parse(&ccf).expect("parse").verify_with_cert(&consort_crypto::cert_der_from_pem(&cert).expect("der")).expect("verifies");
        }
    }
}
