//! Three voters over the mutual-TLS transport in one process: replication of sealed writes,
//! identical ledgers, a node the service did not endorse kept out, and a new primary after the
//! first one stops.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use consort_consensus::{Consensus, ConsensusConfig, TxStatus};
use consort_crypto::{endorse_node_cert, node_id_of_public_key, self_signed_service_cert, LedgerSecret, NodeKey};
use consort_kv::TxId;

struct Service {
    key: NodeKey,
    pem: String,
    secret: LedgerSecret,
}

fn service(name: &str) -> Service {
    let key = NodeKey::generate();
    let pem = self_signed_service_cert(&key, name).expect("service cert");
    Service { key, pem, secret: LedgerSecret::generate() }
}

fn free_address() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").to_string()
}

fn node_config(dir: &Path, endorsed_by: &Service, trusts: &Service, join: bool) -> ConsensusConfig {
    let node_key = NodeKey::generate();
    let node_cert_pem = endorse_node_cert(&node_key.public_key_der(), "node", &["127.0.0.1".into()], &endorsed_by.pem, &endorsed_by.key)
        .expect("node cert");
    ConsensusConfig {
        ledger_dir: dir.join("ledger"),
        raft_dir: dir.join("raft"),
        ledger_chunk_bytes: 4096,
        node_id: node_id_of_public_key(&node_key.public_key_der()),
        node_address: free_address(),
        node_key,
        node_cert_pem,
        ledger_secret: trusts.secret.clone(),
        later_ledger_secrets: Vec::new(),
        service_cert_pem: trusts.pem.clone(),
        join,
        signature_tx_count: 10,
        signature_delay_ms: 50,
        election_timeout_ms: 1000,
        heartbeat_ms: 100,
        snapshots: None,
    }
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn put(c: &Consensus, key: &str, value: &str) -> TxId {
    let mut tx = c.store().begin();
    tx.put("records", key.as_bytes().to_vec(), value.as_bytes().to_vec());
    tx.put("public:records", key.as_bytes().to_vec(), value.as_bytes().to_vec());
    c.commit(&tx, None).await.expect("commit")
}

fn ledger_entries(dir: &Path) -> Vec<consort_ledger::LedgerEntry> {
    consort_ledger::LedgerFiles::open(&dir.join("ledger"), 4096).expect("ledger").1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_voters_replicate_keep_strangers_out_and_elect_a_new_primary() {
    let root = std::env::temp_dir().join(format!("consort-cluster-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let svc = service("service");
    let dirs: Vec<PathBuf> = (0..3).map(|i| root.join(format!("n{i}"))).collect();
    let mut nodes: Vec<Arc<Consensus>> = Vec::new();
    let mut configs = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let config = node_config(dir, &svc, &svc, i > 0);
        configs.push(config.clone());
        nodes.push(Consensus::start(config).await.expect("start"));
    }
    nodes[0].wait_ready(Duration::from_secs(10)).await.expect("first node leads");
    for c in &configs[1..] {
        nodes[0].add_voter(&c.node_id, &c.node_address, Duration::from_secs(10)).await.expect("add voter");
    }
    assert_eq!(nodes[0].voters().len(), 3);

    let mut last = TxId::default();
    for i in 0..30 {
        last = put(&nodes[0], &format!("k{i}"), &format!("value-{i}")).await;
    }
    wait_until("every node applies the writes and a signature covers them", || {
        nodes.iter().all(|n| n.last_committed().seqno > last.seqno && n.status(last) == TxStatus::Committed)
    })
    .await;
    for n in &nodes {
        let mut tx = n.store().begin();
        assert_eq!(tx.get("records", b"k29"), Some(b"value-29".to_vec()), "private writes decrypt on every node");
        assert_eq!(tx.size("records"), 30);
    }

    // A node endorsed by another service cannot join: the TLS handshake fails both ways.
    let stranger_svc = service("another service");
    let stranger_config = node_config(&root.join("stranger"), &stranger_svc, &svc, true);
    let stranger = Consensus::start(stranger_config.clone()).await.expect("stranger starts");
    let refused = nodes[0].add_voter(&stranger_config.node_id, &stranger_config.node_address, Duration::from_secs(2)).await;
    assert!(refused.expect_err("the stranger never catches up").contains("did not catch up"));
    assert_eq!(stranger.last_committed(), TxId::default(), "the stranger received nothing");
    assert_eq!(nodes[0].voters().len(), 3, "and is not a voter");
    stranger.shutdown().await;

    // The primary stops: another node takes over and commits.
    let first_primary = nodes[0].primary();
    nodes[0].shutdown().await;
    let survivors = &nodes[1..];
    wait_until("a new primary", || survivors.iter().any(|n| n.is_primary())).await;
    let primary = survivors.iter().find(|n| n.is_primary()).expect("primary");
    assert_ne!(primary.primary(), first_primary);
    let after = put(primary, "after", "the failover").await;
    assert!(after.view > last.view, "{after} is in a later view than {last}");
    wait_until("the survivors commit", || survivors.iter().all(|n| n.status(after) == TxStatus::Committed)).await;
    for n in survivors {
        n.shutdown().await;
    }
    drop(nodes);

    // Committed entries are byte-identical on every node, and each ledger verifies.
    let committed = last.seqno as usize;
    let ledgers: Vec<_> = dirs.iter().map(|d| ledger_entries(d)).collect();
    for l in &ledgers[1..] {
        assert_eq!(l[..committed], ledgers[0][..committed], "identical committed entries");
    }
    assert_eq!(ledgers[1], ledgers[2], "the survivors agree on everything after the failover too");
    for d in &dirs {
        consort_ledger::verify::verify_dir(&d.join("ledger"), Some(&svc.pem)).expect("ledger verifies");
    }
    let _ = std::fs::remove_dir_all(&root);
}
