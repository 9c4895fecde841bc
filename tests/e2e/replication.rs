//! Nodes joining a network as real processes: trusted at once while the service is opening,
//! by a `transition_node_to_trusted` vote once it is open; everything replicates to them over
//! the node-to-node TLS transport, and every ledger verifies.

use std::path::Path;

use consort_tests::{consort, eventually, repo_root, set_js_app, temp_workspace, Gov, Member, Sandbox};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn node_config(ws: &Path, i: usize, command: Value) -> Value {
    json!({
        "rpc_address": format!("127.0.0.1:{}", Sandbox::free_port()),
        "node_address": format!("127.0.0.1:{}", Sandbox::free_port()),
        "directory": ws.join(format!("n{i}")),
        "js": {"workers": 1},
        "ledger_signatures": {"tx_count": 100, "delay_ms": 100},
        "command": command,
    })
}

fn join_command(ws: &Path, primary: &Sandbox) -> Value {
    json!({"type": "join", "target_rpc_address": format!("127.0.0.1:{}", primary.port),
           "service_certificate": ws.join("n0/service_cert.pem"), "timeout_ms": 60_000})
}

async fn get_json(s: &Sandbox, path: &str) -> Value {
    s.client(None).get(s.url(path)).send().await.expect("get").json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_join_by_governance_and_everything_replicates() {
    let ws = temp_workspace("replication");
    let member = Member::create(&ws, "member0");
    let user = Member::create(&ws, "user0");
    let s0 = Sandbox::start_config(
        &ws,
        node_config(&ws, 0, json!({"type": "start", "members": [{"certificate": ws.join("member0_cert.pem")}]})),
    );

    // While the service is opening, a joining node is trusted at once and becomes a voter.
    let s1 = Sandbox::start_config(&ws, node_config(&ws, 1, join_command(&ws, &s0)));
    let gov = Gov::new(&s0);
    gov.activate(&member).await;
    eventually("the member's activation on the joined node", async || {
        get_json(&s1, "/gov/service/members?api-version=2024-07-01").await["value"][0]["status"] == "Active"
    })
    .await;
    let nodes = get_json(&s1, "/node/network/nodes").await["nodes"].as_array().expect("nodes").clone();
    assert_eq!(nodes.len(), 2, "{nodes:?}");
    assert!(nodes.iter().all(|n| n["status"] == "Trusted"), "{nodes:?}");

    // Open the service with an app and a user.
    let service_cert = std::fs::read_to_string(ws.join("n0/service_cert.pem")).expect("service cert");
    let actions = vec![set_js_app(&repo_root().join("samples/logging")), json!({"name": "set_user", "args": {"cert": user.cert_pem}})];
    gov.open_service(&member, &service_cert, actions).await;

    // Once it is open, a joining node waits, Pending, for the members' vote.
    let third = node_config(&ws, 2, join_command(&ws, &s0));
    let ws2 = ws.clone();
    let joining = std::thread::spawn(move || Sandbox::start_config(&ws2, third));
    let mut pending = None;
    eventually("a Pending node", async || {
        let nodes = get_json(&s0, "/node/network/nodes").await;
        pending = nodes["nodes"].as_array().expect("nodes").iter().find(|n| n["status"] == "Pending").map(|n| n["node_id"].clone());
        pending.is_some()
    })
    .await;
    // The vote goes through a backup, which forwards governance writes to the primary.
    let gov1 = Gov::new(&s1);
    gov1.pass(&[&member], json!([{"name": "transition_node_to_trusted", "args": {"node_id": pending.expect("pending node")}}])).await;
    let s2 = joining.join().expect("the third node starts once trusted");

    // Writes through every node (backups forward them to the primary, and answer with the
    // primary's transaction id), then every write read back on every node.
    let user_client = |s: &Sandbox| s.client(Some(ws.join("user0").to_str().expect("path")));
    let primary_id = get_json(&s0, "/node/network").await["primary_id"].clone();
    for (i, s) in [&s0, &s1, &s2].into_iter().enumerate() {
        assert_eq!(get_json(s, "/node/network").await["primary_id"], primary_id, "node {i} names the primary");
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

    // A write through the primary is read back on every node.
    let r = user_client(&s0).post(s0.url("/app/log/private")).json(&json!({"id": 7, "msg": "replicated"})).send().await.expect("post");
    assert_eq!(r.status(), StatusCode::OK);
    let written = r.headers()["x-ms-ccf-transaction-id"].to_str().expect("txid").to_owned();
    for s in [&s1, &s2] {
        eventually("the write on a backup", async || {
            let r = user_client(s).get(s.url("/app/log/private?id=7")).send().await.expect("get");
            r.status() == StatusCode::OK && r.json::<Value>().await.expect("json")["msg"] == "replicated"
        })
        .await;
    }
    let written_seqno: usize = written.split('.').nth(1).and_then(|n| n.parse().ok()).expect("seqno");

    // remove_node retires node 1: it leaves the Raft configuration, and the others go on.
    let node1 = get_json(&s1, "/node/state").await["node_id"].clone();
    assert_eq!(get_json(&s0, "/node/consensus").await["voters"].as_array().expect("voters").len(), 3);
    gov.pass(&[&member], json!([{"name": "remove_node", "args": {"node_id": node1}}])).await;
    eventually("node 1 to leave the configuration", async || {
        let voters = get_json(&s0, "/node/consensus").await["voters"].clone();
        voters.as_array().expect("voters").len() == 2 && !voters.as_array().expect("voters").contains(&node1)
    })
    .await;
    let r = user_client(&s0).post(s0.url("/app/log/private")).json(&json!({"id": 8, "msg": "after"})).send().await.expect("post");
    assert_eq!(r.status(), StatusCode::OK);
    eventually("the write on the remaining backup", async || {
        user_client(&s2).get(s2.url("/app/log/private?id=8")).send().await.expect("get").status() == StatusCode::OK
    })
    .await;

    // Every node's ledger verifies, and the entries up to the write are identical.
    let (mut s0, mut s1, mut s2) = (s0, s1, s2);
    for s in [&mut s1, &mut s2, &mut s0] {
        s.stop();
    }
    let ledgers: Vec<Vec<consort_ledger::LedgerEntry>> = (0..3)
        .map(|i| {
            let dir = ws.join(format!("n{i}/ledger"));
            let (ok, out) = consort(&["ledger", "verify", dir.to_str().expect("path")]);
            assert!(ok, "node {i}: {out}");
            consort_ledger::LedgerFiles::open(&dir, 5 * 1024 * 1024).expect("ledger").1
        })
        .collect();
    for (i, l) in ledgers.iter().enumerate().skip(1) {
        assert!(l.len() >= written_seqno, "node {i} has the write");
        assert_eq!(l[..written_seqno], ledgers[0][..written_seqno], "node {i}'s ledger equals the primary's");
    }
    let _ = std::fs::remove_dir_all(&ws);
}
