//! Issue 17, item 8: the hooks and tables CCF's default constitution uses, each exercised by
//! the actions of Consort's default constitution through a member and user lifecycle on real
//! nodes: add a member (acks from `public:ccf.internal.signatures`), ack, add a user, deploy an
//! app, add a node with an endorsed certificate, re-issue certificates, rekey, snapshot, chunk,
//! the TEE rules (recorded only), a constitution check, and remove the user.

use consort_tests::cluster::{join_command, node_config};
use consort_tests::{eventually, repo_root, set_js_app, temp_workspace, Gov, Member, Sandbox};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// `secs` (Unix time) as an X.509 GeneralizedTime, `YYYYMMDDHHMMSSZ`.
fn x509_time(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}{month:02}{day:02}{:02}{:02}{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The validity period (Unix seconds) of the certificate `s` presents over TLS.
async fn presented_validity(s: &Sandbox) -> (i64, i64) {
    let ca = std::fs::read(s.common().join("service_cert.pem")).expect("service cert");
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).expect("ca")])
        .tls_info(true)
        .build()
        .expect("client");
    let r = client.get(s.url("/node/state")).send().await.expect("state");
    let der = r.extensions().get::<reqwest::tls::TlsInfo>().and_then(|i| i.peer_certificate()).expect("a peer certificate").to_vec();
    consort_crypto::validity_period(&der).expect("validity")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hooks_and_tables_of_ccf_constitutions_through_a_member_and_user_lifecycle() {
    let ws = temp_workspace("constitution");
    let m0 = Member::create(&ws, "member0");
    let mut first = node_config(&ws, "n0", json!({"type": "start", "members": [{"certificate": ws.join("member0_cert.pem")}]}));
    // Snapshots only when asked for, to see trigger_snapshot at work.
    first["snapshots"] = json!({"tx_count": 1_000_000});
    let n0 = Sandbox::start_config(&ws, first);
    let service_cert = std::fs::read_to_string(n0.common().join("service_cert.pem")).expect("service cert");
    let gov = Gov::new(&n0);
    gov.open_service(&m0, &service_cert, vec![set_js_app(&repo_root().join("tests/apps/compat"))]).await;

    // A new member's ack record holds the root of the latest signature (read by the constitution
    // from public:ccf.internal.signatures); the member acks it and is Active.
    let m1 = Member::create(&ws, "member1");
    gov.pass(&[&m0], json!([{"name": "set_member", "args": {"cert": m1.cert_pem}}])).await;
    let ack = gov.get(&format!("/members/state-digests/{}", m1.id)).await;
    assert!(ack["stateDigest"].as_str().is_some_and(|d| d.len() == 64), "{ack}");
    let digest = serde_json::to_vec(&json!({"stateDigest": ack["stateDigest"]})).expect("json");
    let (status, body, _) = gov.post(&format!("/members/state-digests/{}:ack", m1.id), m1.sign("ack", None, &digest)).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let members = [&m0, &m1];

    // A user calls the app; a node joins and is trusted with a validity period: it presents the
    // certificate governance endorsed from its signing request.
    let user = Member::create(&ws, "user0");
    gov.pass(&members, json!([{"name": "set_user", "args": {"cert": user.cert_pem}}])).await;
    let user_client = n0.client(Some(ws.join("user0").to_str().expect("path")));
    assert_eq!(user_client.get(n0.url("/app/user")).send().await.expect("app").status(), StatusCode::OK);
    // A Pending node serves nothing until trusted: it starts on a thread of its own.
    let (ws1, config1) = (ws.clone(), node_config(&ws, "n1", join_command(&n0)));
    let joining = std::thread::spawn(move || Sandbox::start_config(&ws1, config1));
    let mut n1_id = String::new();
    eventually("n1 to ask to join", async || {
        let nodes = gov.get("/service/nodes").await;
        let pending = nodes["value"].as_array().into_iter().flatten().find(|n| n["status"] == "Pending");
        n1_id = pending.and_then(|n| n["nodeId"].as_str()).unwrap_or_default().to_owned();
        !n1_id.is_empty()
    })
    .await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    let from = now - 86_400;
    gov.pass(&members, json!([{"name": "transition_node_to_trusted", "args": {"node_id": n1_id, "valid_from": x509_time(from), "validity_period_days": 10}}])).await;
    let n1 = joining.join().expect("n1 starts once trusted");
    eventually("n1 to serve", async || n1.client(None).get(n1.url("/node/state")).send().await.is_ok()).await;
    assert_eq!(presented_validity(&n1).await, (from as i64, (from + 10 * 86_400 - 1) as i64), "n1's endorsed certificate");
    let info = gov.get(&format!("/service/nodes/{n1_id}")).await;
    let shown = consort_crypto::cert_der_from_pem(info["certificate"].as_str().expect("certificate")).expect("der");
    assert_eq!(
        consort_crypto::validity_period(&shown).expect("validity").1,
        (from + 10 * 86_400 - 1) as i64,
        "the view shows the endorsed certificate: {info}"
    );

    // Re-issued certificates: n0 presents its new one from the next connection; the service
    // identity is re-issued with the same key (what was endorsed before still verifies).
    let n0_id =
        gov.get("/service/nodes").await["value"].as_array().expect("nodes").iter().find(|n| n["nodeId"] != json!(n1_id)).expect("n0")
            ["nodeId"]
            .as_str()
            .expect("id")
            .to_owned();
    gov.pass(&members, json!([{"name": "set_node_certificate_validity", "args": {"node_id": n0_id, "valid_from": x509_time(from), "validity_period_days": 30}}])).await;
    let mut presented = (0, 0);
    eventually("n0 to present its re-issued certificate", async || {
        presented = presented_validity(&n0).await;
        presented == (from as i64, (from + 30 * 86_400 - 1) as i64)
    })
    .await;
    // Above the service's maximum (a year): the proposal passes its checks but fails to apply.
    let (status, p) = gov.propose(&m0, json!([{"name": "set_node_certificate_validity", "args": {"node_id": n0_id, "valid_from": x509_time(from), "validity_period_days": 400}}])).await;
    assert_eq!(status, StatusCode::OK, "{p}");
    let id = p["proposalId"].as_str().expect("id").to_owned();
    gov.vote(&m0, &id, consort_tests::YES).await;
    let (_, last) = gov.vote(&m1, &id, consort_tests::YES).await;
    assert_eq!(last["proposalState"], "Failed", "{last}");
    assert!(last.to_string().contains("above the node certificate maximum of 365 days"), "{last}");
    gov.pass(
        &members,
        json!([{"name": "set_service_certificate_validity", "args": {"valid_from": x509_time(from), "validity_period_days": 100}}]),
    )
    .await;
    let renewed = gov.get("/service/info").await["certificate"].as_str().expect("certificate").to_owned();
    let der = consort_crypto::cert_der_from_pem(&renewed).expect("der");
    assert_eq!(consort_crypto::validity_period(&der).expect("validity"), (from as i64, (from + 100 * 86_400 - 1) as i64));
    let (old, new) =
        (consort_crypto::ParsedCert::from_pem(&service_cert).expect("old"), consort_crypto::ParsedCert::from_pem(&renewed).expect("new"));
    assert_eq!(old.public_key_der, new.public_key_der, "the same service key");
    gov.pass(&members, json!([{"name": "assert_service_identity", "args": {"service_identity": renewed}}])).await;
    let (status, body) = gov.propose(&m0, json!([{"name": "assert_service_identity", "args": {"service_identity": service_cert}}])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "the old certificate is no longer the identity: {body}");

    // Rekey, a snapshot and a ledger chunk on request.
    gov.pass(&members, json!([{"name": "trigger_ledger_rekey"}])).await;
    eventually("the new ledger secret", async || {
        n0.client(None).get(n0.url("/node/network")).send().await.expect("network").json::<Value>().await.expect("json")
            ["latest_ledger_secret_seqno"]
            .as_u64()
            .is_some_and(|s| s > 0)
    })
    .await;
    let snapshots = |dir: &str| consort_tests::cluster::snapshot_files(&ws.join(dir).join("snapshots")).len();
    let chunks = || consort_ledger::files::list_chunks(&ws.join("n0/ledger")).expect("chunks").iter().filter(|c| c.last.is_some()).count();
    let (snaps_before, chunks_before) = (snapshots("n0"), chunks());
    gov.pass(&members, json!([{"name": "trigger_snapshot"}, {"name": "trigger_ledger_chunk"}])).await;
    eventually("a snapshot on every node", async || snapshots("n0") > snaps_before && snapshots("n1") > 0).await;
    eventually("a closed ledger chunk", async || chunks() > chunks_before).await;

    // TEE rules are recorded and shown, and decide nothing; the TCB hex is read as CCF reads it.
    let policy = "allow all";
    let host_data = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, policy.as_bytes()));
    gov.pass(
        &members,
        json!([
            {"name": "add_node_code", "args": {"code_id": "ab".repeat(32)}},
            {"name": "add_snp_measurement", "args": {"measurement": "cd".repeat(48)}},
            {"name": "add_snp_host_data", "args": {"host_data": host_data, "security_policy": policy}},
            {"name": "add_snp_uvm_endorsement", "args": {"did": "did:x509:0:sha256:abc", "feed": "ContainerPlat-AMD-UVM", "svn": "101"}},
            {"name": "set_snp_minimum_tcb_version_hex", "args": {"cpuid": "00a10f11", "tcb_version": "d315000000000004"}},
            {"name": "set_snp_minimum_tcb_version", "args": {"cpuid": "00a00f11", "tcb_version": {"boot_loader": 1, "tee": 2, "snp": 3, "microcode": 4}}},
        ]),
    )
    .await;
    let join_policy = gov.get("/service/join-policy").await;
    assert_eq!(join_policy["sgx"]["measurements"], json!(["ab".repeat(32)]), "{join_policy}");
    assert_eq!(join_policy["snp"]["measurements"], json!(["cd".repeat(48)]));
    assert_eq!(join_policy["snp"]["hostData"][&host_data], json!(policy));
    assert_eq!(join_policy["snp"]["uvmEndorsements"]["did:x509:0:sha256:abc"]["ContainerPlat-AMD-UVM"]["svn"], "101");
    assert_eq!(
        join_policy["snp"]["tcbVersions"]["00a10f11"],
        json!({"hexstring": "d315000000000004", "microcode": 211, "snp": 21, "tee": 0, "boot_loader": 4}),
        "Genoa's TCB fields"
    );
    let (status, body) =
        gov.propose(&m0, json!([{"name": "add_snp_host_data", "args": {"host_data": "00".repeat(32), "security_policy": policy}}])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "host data must digest the policy: {body}");
    gov.pass(&members, json!([{"name": "remove_snp_measurement", "args": {"measurement": "cd".repeat(48)}}, {"name": "remove_node_code", "args": {"code_id": "ab".repeat(32)}}])).await;
    assert_eq!(gov.get("/service/join-policy").await["snp"]["measurements"], json!([]));

    // Service configuration, CA bundles, node data, the bytecode cache.
    gov.pass(
        &members,
        json!([
            {"name": "set_service_configuration", "args": {"recent_cose_proposals_window_size": 50}},
            {"name": "set_ca_cert_bundle", "args": {"name": "roots", "cert_bundle": service_cert}},
            {"name": "set_node_data", "args": {"node_id": n1_id, "node_data": {"rack": 7}}},
            {"name": "refresh_js_app_bytecode_cache"},
        ]),
    )
    .await;
    let (status, body) =
        gov.propose(&m0, json!([{"name": "set_service_configuration", "args": {"maximum_node_certificate_validity_days": 9}}])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    gov.pass(&members, json!([{"name": "remove_ca_cert_bundle", "args": {"name": "roots"}}])).await;

    // A constitution is checked as CCF checks it before it can be proposed.
    let broken = "export function validate(input) { return {valid: true}; }\nexport function apply(proposal, id) {}";
    let (status, body) = gov.propose(&m0, json!([{"name": "set_constitution", "args": {"constitution": broken}}])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.to_string().contains("does not export a function named resolve"), "{body}");

    // The user is removed: the app no longer knows them.
    let user_id = user.id.clone();
    gov.pass(&members, json!([{"name": "remove_user", "args": {"user_id": user_id}}])).await;
    let r = user_client.get(n0.url("/app/user")).send().await.expect("app");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "a removed user");
    drop(n1);
    drop(n0);
    let _ = std::fs::remove_dir_all(&ws);
}
