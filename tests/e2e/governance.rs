//! Governance against a real node with three members: activation by state-digest ack, a
//! proposal accepted by a majority of votes, a failing `apply`, withdrawal, app deployment by
//! `set_js_app`, and signed requests that are refused with nothing changed.

use consort_tests::{app_bundle, consort, now_seconds, repo_root, set_js_app, temp_workspace, Gov, Member, Sandbox, YES};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A recovery member's RSA encryption key (SubjectPublicKeyInfo PEM), as CCF's keygenerator.sh
/// writes `<name>_enc_pubk.pem`.
fn rsa_public_key_pem() -> String {
    use aws_lc_rs::encoding::AsDer;
    use base64::Engine;
    let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("RSA key");
    let der = aws_lc_rs::signature::KeyPair::public_key(&key).as_der().expect("SPKI");
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).expect("ascii")).collect();
    format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", lines.join("\n"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_govern_users_apps_and_refuse_bad_requests() {
    let ws = temp_workspace("governance");
    let members: Vec<Member> = (0..3).map(|i| Member::create(&ws, &format!("member{i}"))).collect();
    let user = Member::create(&ws, "user0");
    // Not a member: signs with its own key, claiming an unknown id or a member's.
    let (stranger_key, stranger_cert) = consort_crypto::identity_cert("stranger", consort_crypto::Curve::Secp384r1).expect("identity");
    let stranger = Member::from_pem(&stranger_key, &stranger_cert);
    let encryption_key = rsa_public_key_pem();
    std::fs::write(ws.join("member2_enc_pubk.pem"), &encryption_key).expect("encryption key");
    let port = Sandbox::free_port();
    let mut s = Sandbox::start_config(
        &ws,
        json!({
            "rpc_address": format!("127.0.0.1:{port}"),
            "node_address": format!("127.0.0.1:{}", Sandbox::free_port()),
            "directory": ws.join("node"),
            "js": {"workers": 2},
            "ledger_signatures": {"tx_count": 100, "delay_ms": 100},
            "command": {"type": "start",
                "members": [
                    {"certificate": ws.join("member0_cert.pem")},
                    {"certificate": ws.join("member1_cert.pem"), "data": {"team": "audit"}},
                    {"certificate": ws.join("member2_cert.pem"), "encryption_public_key": ws.join("member2_enc_pubk.pem"),
                     "recovery_role": "Owner"},
                ]},
        }),
    );
    let gov = Gov::new(&s);
    let user_client = s.client(Some(ws.join("user0").to_str().expect("path")));
    let (m0, m1, m2) = (&members[0], &members[1], &members[2]);

    // The API version is required.
    let r = gov.client.get(s.url("/gov/members/proposals")).send().await.expect("get");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = gov.client.get(s.url("/gov/members/proposals?api-version=2020-01-01")).send().await.expect("get");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // A member that has not acknowledged the state digest is Accepted, not Active: it may not propose.
    let (status, body) = gov.propose(m0, json!([{"name": "set_user", "args": {"cert": user.cert_pem}}])).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body["error"]["message"].as_str().expect("message").contains("not Active"), "{body}");
    for m in &members {
        gov.activate(m).await;
    }
    let listed = gov.get("/service/members").await;
    assert!(listed["value"].as_array().expect("members").iter().all(|m| m["status"] == "Active"), "{listed}");
    // Member data, encryption key and recovery role as the start configuration gave them.
    let m1_view = gov.get(&format!("/service/members/{}", members[1].id)).await;
    assert_eq!((&m1_view["memberData"], &m1_view["recoveryRole"]), (&json!({"team": "audit"}), &json!("NonParticipant")), "{m1_view}");
    let m2_view = gov.get(&format!("/service/members/{}", members[2].id)).await;
    assert_eq!((&m2_view["recoveryRole"], &m2_view["publicEncryptionKey"]), (&json!("Owner"), &json!(encryption_key)), "{m2_view}");

    // The service starts Opening: the app, once deployed, answers 503 until members open it.
    assert_eq!(gov.get("/service/info").await["status"], "Opening");
    gov.pass(&[m0, m1], json!([set_js_app(&repo_root().join("samples/logging"))])).await;
    let r = user_client.get(s.url("/app/log/private?id=1")).send().await.expect("call");
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.text().await.expect("text").contains("not open"));
    let ready = |path: &str| s.client(None).get(s.url(path)).send();
    assert_eq!(ready("/node/ready/app").await.expect("ready").status(), StatusCode::SERVICE_UNAVAILABLE, "the app is not open yet");
    assert_eq!(ready("/node/ready/gov").await.expect("ready").status(), StatusCode::NO_CONTENT, "governance is");
    let service_cert = std::fs::read_to_string(ws.join("node/service_cert.pem")).expect("service cert");
    let (status, body) =
        gov.propose(m0, json!([{"name": "transition_service_to_open", "args": {"next_service_identity": user.cert_pem}}])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["proposalId"].as_str().expect("id").to_owned();
    gov.vote(m0, &id, YES).await;
    let (_, failed) = gov.vote(m1, &id, YES).await;
    assert_eq!(failed["proposalState"], "Failed", "another certificate is not this service's identity: {failed}");
    assert!(failed["failure"]["reason"].as_str().expect("reason").contains("next_service_identity"), "{failed}");
    gov.pass(&[m1, m2], json!([{"name": "transition_service_to_open", "args": {"next_service_identity": service_cert}}])).await;
    assert_eq!(gov.get("/service/info").await["status"], "Open");

    // set_user: Open after one vote, Accepted after the second (3 active members); then the user
    // can call the app.
    let r = user_client.get(s.url("/app/log/private?id=1")).send().await.expect("call");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "not a user yet");
    let (status, p) = gov.propose(m0, json!([{"name": "set_user", "args": {"cert": user.cert_pem}}])).await;
    assert_eq!((status, &p["proposalState"], &p["ballotCount"]), (StatusCode::OK, &json!("Open"), &json!(0)), "{p}");
    let id = p["proposalId"].as_str().expect("id").to_owned();
    let (_, after_one) = gov.vote(m0, &id, YES).await;
    assert_eq!(after_one["proposalState"], "Open", "{after_one}");
    let (status, after_two) = gov.vote(m1, &id, YES).await;
    assert_eq!((status, &after_two["proposalState"]), (StatusCode::OK, &json!("Accepted")), "{after_two}");
    assert_eq!(after_two["finalVotes"], json!({m0.id.clone(): true, m1.id.clone(): true}));
    let r = user_client.post(s.url("/app/log/private")).json(&json!({"id": 1, "msg": "hello"})).send().await.expect("call");
    assert_eq!(r.status(), StatusCode::OK, "the new user may call the app");
    assert_eq!(gov.get(&format!("/members/proposals/{id}")).await["proposalState"], "Accepted");
    let actions = gov.client.get(gov.url(&format!("/members/proposals/{id}/actions"))).send().await.expect("get");
    assert!(actions.text().await.expect("text").contains("set_user"));

    // Invalid arguments are refused at creation with the constitution's description.
    let (status, body) = gov.propose(m0, json!([{"name": "set_user", "args": {"cert": 42}}])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]["message"].as_str().expect("message").contains("cert must be of type string"), "{body}");

    // A failing apply ends Failed with the reason, and none of its writes are kept.
    let (_, p) = gov
        .propose(
            m0,
            json!([{"name": "set_user_data", "args": {"user_id": user.id, "user_data": {"x": 1}}},
                            {"name": "set_member_data", "args": {"member_id": "ab".repeat(32), "member_data": {}}}]),
        )
        .await;
    let id = p["proposalId"].as_str().expect("id").to_owned();
    gov.vote(m0, &id, YES).await;
    let (status, failed) = gov.vote(m2, &id, YES).await;
    assert_eq!((status, &failed["proposalState"]), (StatusCode::OK, &json!("Failed")), "{failed}");
    assert!(failed["failure"]["reason"].as_str().expect("reason").contains("does not exist"), "{failed}");
    let who = user_client.get(s.url("/app/whoami")).send().await.expect("whoami");
    if who.status() == StatusCode::OK {
        let who: Value = who.json().await.expect("json");
        assert_eq!(who["data"], Value::Null, "the first action's write was not kept: {who}");
    }

    // Withdrawn by its proposer (only), then closed to votes.
    let (_, p) = gov.propose(m1, json!([{"name": "remove_user", "args": {"user_id": user.id}}])).await;
    let id = p["proposalId"].as_str().expect("id").to_owned();
    let (status, body, _) = gov.post(&format!("/members/proposals/{id}:withdraw"), m0.sign("withdrawal", Some(&id), b"")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only the proposer withdraws: {body}");
    let (status, body, _) = gov.post(&format!("/members/proposals/{id}:withdraw"), m1.sign("withdrawal", Some(&id), b"")).await;
    assert_eq!((status, &body["proposalState"]), (StatusCode::OK, &json!("Withdrawn")), "{body}");
    let (status, body) = gov.vote(m2, &id, YES).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "ProposalNotOpen");

    // Ballots that throw or loop are recorded as vote failures; the proposal stays Open.
    let (_, p) = gov.propose(m2, json!([{"name": "remove_user", "args": {"user_id": user.id}}])).await;
    let id = p["proposalId"].as_str().expect("id").to_owned();
    let (status, body) = gov.vote(m0, &id, "export function vote() { throw new Error('no way'); }").await;
    assert_eq!((status, &body["proposalState"]), (StatusCode::OK, &json!("Open")), "{body}");
    let (status, body) = gov.vote(m1, &id, "export function vote() { while (true) {} }").await;
    assert_eq!((status, &body["proposalState"]), (StatusCode::OK, &json!("Open")), "{body}");
    let (status, body) = gov.vote(m0, &id, YES).await;
    assert_eq!((status, &body["error"]["code"]), (StatusCode::BAD_REQUEST, &json!("VoteAlreadyExists")), "{body}");
    let ballot = gov.client.get(gov.url(&format!("/members/proposals/{id}/ballots/{}", m0.id))).send().await.expect("ballot");
    assert!(ballot.text().await.expect("text").contains("no way"));

    // Refused, with no transaction: each answer carries no transaction id and the proposals
    // are as they were.
    let proposals = || async {
        let mut list = gov.get("/members/proposals").await["value"].as_array().expect("list").clone();
        list.sort_by_key(|p| p["proposalId"].as_str().unwrap_or_default().to_owned());
        list
    };
    let proposal = serde_json::to_vec(&json!({"actions": [{"name": "remove_user", "args": {"user_id": user.id}}]})).expect("json");
    let replayed = m0.sign("proposal", None, &proposal);
    let (status, first, _) = gov.post("/members/proposals:create", replayed.clone()).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let before = proposals().await;
    let other_id = first["proposalId"].as_str().expect("id").to_owned();
    let mut tampered = m0.sign("proposal", None, &proposal);
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let too_big = vec![b'x'; 2 * 1024 * 1024];
    let ballot = serde_json::to_vec(&json!({"ballot": YES})).expect("json");
    let cases: Vec<(&str, String, Vec<u8>, StatusCode)> = vec![
        ("replayed", "/members/proposals:create".into(), replayed, StatusCode::BAD_REQUEST),
        ("bad signature", "/members/proposals:create".into(), tampered, StatusCode::UNAUTHORIZED),
        (
            "unknown member",
            "/members/proposals:create".into(),
            stranger.sign_as(&"cd".repeat(32), "proposal", None, None, &proposal),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "signed by another key",
            "/members/proposals:create".into(),
            stranger.sign_as(&m0.id, "proposal", None, None, &proposal),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "created too long ago",
            "/members/proposals:create".into(),
            m0.sign_as(&m0.id, "proposal", None, Some(now_seconds() - 3600), &proposal),
            StatusCode::BAD_REQUEST,
        ),
        ("wrong message type", "/members/proposals:create".into(), m0.sign("ballot", None, &proposal), StatusCode::UNAUTHORIZED),
        ("malformed COSE", "/members/proposals:create".into(), b"\xd2\x84not cose".to_vec(), StatusCode::UNAUTHORIZED),
        (
            "ballot signed for another proposal",
            format!("/members/proposals/{id}/ballots/{}:submit", m2.id),
            m2.sign("ballot", Some(&other_id), &ballot),
            StatusCode::BAD_REQUEST,
        ),
        ("larger than the body limit", "/members/proposals:create".into(), too_big, StatusCode::PAYLOAD_TOO_LARGE),
    ];
    for (what, path, body, want) in cases {
        let (status, answer, has_txid) = gov.post(&path, body).await;
        assert_eq!(status, want, "{what}: {answer}");
        assert!(!has_txid, "{what}: nothing was committed");
    }
    assert_eq!(proposals().await, before, "the refusals changed nothing");

    // A new app version by set_js_app: /app changes without a restart, the old endpoints are gone.
    let (_, p) =
        gov.propose(m0, json!([{"name": "set_js_app", "args": {"bundle": app_bundle(&repo_root().join("tests/apps/auth"))}}])).await;
    let id = p["proposalId"].as_str().expect("id").to_owned();
    gov.vote(m0, &id, YES).await;
    let (_, accepted) = gov.vote(m1, &id, YES).await;
    assert_eq!(accepted["proposalState"], "Accepted", "{accepted}");
    let r = user_client.get(s.url("/app/log/private?id=1")).send().await.expect("call");
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "the logging app is gone");
    let r = gov.client.get(s.url("/app/jwt")).send().await.expect("call");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "the auth app answers (no token)");
    // A bundle whose module does not compile is refused when proposed.
    let mut broken = app_bundle(&repo_root().join("tests/apps/auth"));
    broken["modules"][0]["module"] = json!("export function ( {");
    let (status, body) = gov.propose(m0, json!([{"name": "set_js_app", "args": {"bundle": broken}}])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().expect("message").contains("compile"), "{body}");

    // Every governance transaction is in the ledger, which verifies.
    s.stop();
    let (ok, out) = consort(&["ledger", "verify", ws.join("node/ledger").to_str().expect("path")]);
    assert!(ok, "{out}");
    let _ = std::fs::remove_dir_all(&ws);
}
