//! One-voter consensus over real files: commits, conflicts, signatures, receipts, restart, and
//! reading its files back as a recovery does.

use std::path::Path;
use std::time::Duration;

use consort_consensus::{CommitError, Consensus, ConsensusConfig, TxStatus};
use consort_crypto::{cert_der_from_pem, endorse_node_cert, node_id_of_public_key, self_signed_service_cert, LedgerSecret, NodeKey};
use consort_kv::TxId;

struct Identity {
    service_pem: String,
    node_key: NodeKey,
    node_pem: String,
    secret: LedgerSecret,
}

fn identity() -> Identity {
    let service_key = NodeKey::generate();
    let service_pem = self_signed_service_cert(&service_key, "test service").expect("service cert");
    let node_key = NodeKey::generate();
    let node_pem =
        endorse_node_cert(&node_key.public_key_der(), "node", &["127.0.0.1".into()], &service_pem, &service_key).expect("node cert");
    Identity { service_pem, node_key, node_pem, secret: LedgerSecret::generate() }
}

fn config(dir: &Path, id: &Identity) -> ConsensusConfig {
    ConsensusConfig {
        ledger_dir: dir.join("ledger"),
        raft_dir: dir.join("raft"),
        ledger_index_dir: dir.join("ledger-index"),
        ledger_chunk_bytes: 4096,
        ledger_durability: consort_ledger::Durability::default(),
        node_id: node_id_of_public_key(&id.node_key.public_key_der()),
        node_address: "127.0.0.1:0".into(),
        node_key: id.node_key.clone(),
        node_cert_pem: id.node_pem.clone(),
        ledger_secret: id.secret.clone(),
        later_ledger_secrets: Vec::new(),
        service_cert_pem: id.service_pem.clone(),
        join: false,
        recover: false,
        // Few, so that receipts for most entries read their facts back from the ledger files.
        recent_entries: 4,
        signature_tx_count: 10,
        signature_delay_ms: 50,
        election_timeout_ms: 600,
        heartbeat_ms: 100,
        snapshots: None,
    }
}

async fn put(c: &Consensus, key: &str, value: &str) -> TxId {
    let mut tx = c.store().begin();
    tx.put("records", key.as_bytes().to_vec(), value.as_bytes().to_vec());
    tx.put("public:records", key.as_bytes().to_vec(), value.as_bytes().to_vec());
    c.commit(&tx, None).await.expect("commit")
}

/// Polls `holds` every 20 ms for up to 4 s; panics naming `what` if it never holds.
async fn wait_until(what: &str, mut holds: impl FnMut() -> bool) {
    for _ in 0..200 {
        if holds() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn wait_committed(c: &Consensus, txid: TxId) {
    wait_until(&format!("{txid} to commit"), || c.status(txid) == TxStatus::Committed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_signs_receipts_and_recovers() {
    let dir = std::env::temp_dir().join(format!("consort-consensus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let id = identity();
    let c = Consensus::start(config(&dir, &id)).await.expect("start");
    c.wait_ready(Duration::from_secs(10)).await.expect("ready");

    let mut last = TxId::default();
    let mut first = None;
    for i in 0..25 {
        last = put(&c, &format!("k{i}"), &format!("secret-value-{i}")).await;
        first = first.or(Some(last));
    }
    assert!(last.seqno > 25, "blank + membership entries come first: {last}");
    let first = first.expect("a first write");

    // A transaction that read a key overwritten after its snapshot is refused.
    let mut stale = c.store().begin();
    stale.get("records", b"k0");
    stale.put("records", b"k0".to_vec(), b"lost".to_vec());
    put(&c, "k0", "newer").await;
    assert!(matches!(c.commit(&stale, None).await, Err(CommitError::Conflict(_))));

    wait_committed(&c, last).await;
    let receipt = c.receipt(last).expect("receipt");
    let service_der = cert_der_from_pem(&id.service_pem).expect("der");
    assert_eq!(receipt.verify(&service_der).expect("verifies"), last);
    // The first write's facts left memory long ago (4 are kept): its receipt reads them back.
    let early = c.receipt(first).expect("a receipt for an entry whose facts are no longer in memory");
    assert_eq!(early.verify(&service_der).expect("verifies"), first);
    assert_eq!(c.status(first), TxStatus::Committed);
    let mut tampered = receipt.clone();
    tampered
        .leaf_components
        .write_set_digest
        .replace_range(0..1, if tampered.leaf_components.write_set_digest.starts_with('0') { "1" } else { "0" });
    assert!(tampered.verify(&service_der).is_err());
    assert_eq!(c.status(TxId::new(last.view + 1, last.seqno)), TxStatus::Invalid);
    assert_eq!(c.status(TxId::new(last.view, last.seqno + 1000)), TxStatus::Unknown);

    let report = consort_ledger::verify::verify_dir(&dir.join("ledger"), Some(&id.service_pem)).expect("ledger verifies");
    assert!(report.signatures >= 1 && report.entries >= last.seqno, "{report:?}");
    let ledger_bytes: Vec<u8> =
        std::fs::read_dir(dir.join("ledger")).expect("dir").flat_map(|f| std::fs::read(f.expect("entry").path()).expect("read")).collect();
    let contains = |needle: &[u8]| ledger_bytes.windows(needle.len()).any(|w| w == needle);
    assert!(contains(b"secret-value-3"), "public copy is in the clear");
    let private_only = b"private-only-text";
    let mut tx = c.store().begin();
    tx.put("records", b"p".to_vec(), private_only.to_vec());
    c.commit(&tx, None).await.expect("commit");

    c.shutdown().await;
    drop(c);

    let c = Consensus::start(config(&dir, &id)).await.expect("restart");
    c.wait_ready(Duration::from_secs(10)).await.expect("ready again");
    let mut tx = c.store().begin();
    assert_eq!(tx.get("records", b"k0"), Some(b"newer".to_vec()));
    assert_eq!(tx.get("records", b"p"), Some(private_only.to_vec()));
    assert_eq!(tx.size("records"), 26);
    let after = put(&c, "k-after", "v").await;
    assert!(after.seqno > last.seqno + 2 && after.view >= last.view, "{after} after {last}");
    c.shutdown().await;
    let ledger_bytes: Vec<u8> =
        std::fs::read_dir(dir.join("ledger")).expect("dir").flat_map(|f| std::fs::read(f.expect("entry").path()).expect("read")).collect();
    assert!(!ledger_bytes.windows(private_only.len()).any(|w| w == private_only), "private writes are sealed");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rekey_seals_later_writes_under_the_new_secret_and_survives_restart() {
    let dir = std::env::temp_dir().join(format!("consort-consensus-rekey-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let id = identity();
    let node_id = node_id_of_public_key(&id.node_key.public_key_der());
    // This test also runs the ledger that syncs every transaction (`ledger.sync = "transactions"`).
    let mut cfg = config(&dir, &id);
    cfg.ledger_durability = consort_ledger::Durability::EveryAppend;
    let c = Consensus::start(cfg.clone()).await.expect("start");
    c.wait_ready(Duration::from_secs(10)).await.expect("ready");
    assert_eq!(c.ledger_secrets(), (1, 0));

    let before = put(&c, "before", "sealed-under-the-first-secret").await;
    let next = LedgerSecret::generate();
    let mut rekey = c.store().begin();
    let wrapped = consort_crypto::wrap_secret_for(&id.node_key.public_key_der(), &next).expect("wrap");
    rekey.put(consort_kv::names::LEDGER_SECRETS, node_id.clone().into_bytes(), wrapped);
    let rekeyed = c.commit(&rekey, None).await.expect("rekey");
    assert_eq!(c.ledger_secrets(), (2, rekeyed.seqno + 1));
    let after = put(&c, "after", "sealed-under-the-next-secret").await;
    wait_committed(&c, after).await;
    let historical = c.historical(after).expect("read back");
    assert!(historical.writes.maps["records"].contains_key(b"after".as_slice()), "the new secret opens it");
    c.shutdown().await;
    drop(c);

    let entries = consort_ledger::files::read_entries(&dir.join("ledger")).expect("ledger");
    let private_of = |txid: TxId| {
        let e = entries.iter().find(|e| e.txid == txid).expect("entry");
        (consort_ledger::LedgerEntry::private_aad(&e.claims_digest, &e.public), e.private.clone())
    };
    let (aad, sealed) = private_of(before);
    assert!(id.secret.open(&aad, &sealed).is_ok());
    let (aad, sealed) = private_of(after);
    assert!(id.secret.open(&aad, &sealed).is_err(), "the first secret no longer opens new writes");
    assert!(next.open(&aad, &sealed).is_ok());

    // A restarted node finds the new secret in the ledger, wrapped for its own key.
    let c = Consensus::start(cfg).await.expect("restart");
    c.wait_ready(Duration::from_secs(10)).await.expect("ready again");
    assert_eq!(c.ledger_secrets(), (2, rekeyed.seqno + 1));
    let mut tx = c.store().begin();
    assert_eq!(tx.get("records", b"before"), Some(b"sealed-under-the-first-secret".to_vec()));
    assert_eq!(tx.get("records", b"after"), Some(b"sealed-under-the-next-secret".to_vec()));
    c.shutdown().await;
    consort_ledger::verify::verify_dir(&dir.join("ledger"), Some(&id.service_pem)).expect("ledger verifies");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_are_written_bounded_and_verify_against_the_ledger() {
    let dir = std::env::temp_dir().join(format!("consort-snapshots-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let id = identity();
    let snapshots = dir.join("snapshots");
    let mut cfg = config(&dir, &id);
    cfg.snapshots = Some(consort_consensus::snapshot::SnapshotConfig { directory: snapshots.clone(), tx_count: 10 });
    let c = Consensus::start(cfg).await.expect("start");
    c.wait_ready(Duration::from_secs(10)).await.expect("ready");
    let mut last = TxId::default();
    for i in 0..60 {
        let mut tx = c.store().begin();
        tx.put("records", format!("k{i}").into_bytes(), format!("private-snapshot-value-{i}").into_bytes());
        tx.put("public:records", format!("k{}", i % 7).into_bytes(), format!("v{i}").into_bytes());
        if i % 5 == 0 {
            tx.remove("public:records", format!("k{}", (i + 3) % 7).into_bytes());
        }
        last = c.commit(&tx, None).await.expect("commit");
        if i % 10 == 9 {
            // Let a signature land between batches, so snapshots fall at several seqnos.
            wait_committed(&c, last).await;
        }
    }
    wait_committed(&c, last).await;
    c.shutdown().await;
    drop(c);

    let files = consort_consensus::snapshot::list(&snapshots);
    assert!(!files.is_empty() && files.len() <= consort_consensus::snapshot::SNAPSHOTS_KEPT, "{files:?}");
    let ledger = dir.join("ledger");
    for (seqno, file) in &files {
        let report = consort_consensus::snapshot::verify(file, &ledger).expect("the snapshot matches the ledger");
        assert_eq!(report.seqno, *seqno);
        assert!(report.public_keys > 0, "{report:?}");
        let bytes = std::fs::read(file).expect("read");
        assert!(!bytes.windows(22).any(|w| w == b"private-snapshot-value"), "private values are sealed");
        assert!(bytes.windows(2).any(|w| w[0] == b'v' && w[1].is_ascii_digit()), "public values are in the clear");
    }
    // A changed public value no longer matches the ledger.
    let (_, newest) = files.last().expect("a snapshot");
    let mut bytes = std::fs::read(newest).expect("read");
    let map = bytes.windows(14).position(|w| w == b"public:records").expect("the public map");
    let at = map + bytes[map..].windows(2).position(|w| w[0] == b'v' && w[1].is_ascii_digit()).expect("a public value");
    bytes[at + 1] = if bytes[at + 1] == b'9' { b'8' } else { b'9' };
    let forged = dir.join("forged.committed");
    std::fs::write(&forged, bytes).expect("write");
    let err = consort_consensus::snapshot::verify(&forged, &ledger).expect_err("a forged snapshot");
    assert!(
        matches!(&err, consort_consensus::snapshot::SnapshotError::DiffersFromLedger(m) if m.contains("public map \"public:records\" differs")),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// What a power loss can do to a ledger synced at signatures only: the page cache held the
/// transactions after the last signature, and the disk kept some of them and not others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_loss_takes_only_transactions_no_signature_covers() {
    let dir = std::env::temp_dir().join(format!("consort-power-loss-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let id = identity();
    let mut cfg = config(&dir, &id);
    (cfg.signature_tx_count, cfg.signature_delay_ms) = (5, 600_000);
    let c = Consensus::start(cfg.clone()).await.expect("start");
    c.wait_ready(Duration::from_secs(10)).await.expect("ready");
    // Every fifth entry brings a signature: write until one covers the last write.
    let mut signed = None;
    'writes: for i in 0..10 {
        let txid = put(&c, &format!("signed{i}"), "kept").await;
        for _ in 0..20 {
            if c.status(txid) == TxStatus::Committed {
                signed = Some(i);
                break 'writes;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let signed = signed.expect("a signature within ten writes");
    let mut unsigned = Vec::new();
    for i in 0..3 {
        unsigned.push(put(&c, &format!("unsigned{i}"), "lost").await);
    }
    assert_eq!(c.status(unsigned[2]), TxStatus::Pending, "no signature covers them (and Raft's committed mark counts them)");
    c.shutdown().await;
    drop(c);

    // The first unsigned transaction never reached the disk; the two after it did.
    let open_chunk = consort_ledger::files::list_chunks(&dir.join("ledger")).expect("chunks").pop().expect("a chunk");
    assert!(open_chunk.last.is_none(), "the last chunk is open");
    let open_chunk = dir.join("ledger").join(open_chunk.file_name());
    let (records, damage) = consort_ledger::files::read_chunk(&open_chunk).expect("read");
    assert!(damage.is_none());
    let first = records.iter().find(|r| r.entry.txid == unsigned[0]).expect("the first unsigned transaction is in the open chunk");
    let mut bytes = std::fs::read(&open_chunk).expect("read");
    bytes[first.offset as usize..(first.offset + first.frame_bytes) as usize].fill(0);
    std::fs::write(&open_chunk, &bytes).expect("write");

    let c = Consensus::start(cfg).await.expect("a node starts after a power loss");
    c.wait_ready(Duration::from_secs(10)).await.expect("ready again");
    let mut tx = c.store().begin();
    assert_eq!(tx.get("records", format!("signed{signed}").as_bytes()), Some(b"kept".to_vec()), "what a signature covers survives");
    for i in 0..3 {
        assert_eq!(tx.get("records", format!("unsigned{i}").as_bytes()), None, "unsigned{i} went with the damage");
    }
    let after = put(&c, "after", "v").await;
    assert!(
        after.view > unsigned[0].view && after.seqno <= unsigned[2].seqno + 2,
        "{after} takes the lost seqnos in a new view (lost: {unsigned:?}, signed: {signed})"
    );
    assert_eq!(c.status(unsigned[0]), TxStatus::Invalid, "a new view started below it");
    c.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// What a recovery reads of a lost service (`consort_consensus::recovery`): the public state to
/// the last signature with or without a snapshot, the private maps once the secrets are known,
/// and refusals of another service's certificate or secrets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_previous_state_is_read_to_the_last_signature_with_or_without_a_snapshot() {
    let dir = std::env::temp_dir().join(format!("consort-recovery-read-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let id = identity();
    let (service_pem, secret) = (id.service_pem.clone(), id.secret.clone());
    let c = Consensus::start(ConsensusConfig {
        snapshots: Some(consort_consensus::snapshot::SnapshotConfig { directory: dir.join("snapshots"), tx_count: 20 }),
        ..config(&dir, &id)
    })
    .await
    .expect("start");
    c.wait_ready(Duration::from_secs(10)).await.expect("ready");
    let mut last = TxId::default();
    for i in 0..60 {
        let mut tx = c.store().begin();
        tx.put("records", format!("k{i}").into_bytes(), format!("private {i}").into_bytes());
        tx.put("public:records", format!("k{i}").into_bytes(), format!("public {i}").into_bytes());
        if i == 30 {
            tx.remove("records", b"k3".to_vec());
        }
        last = c.commit(&tx, None).await.expect("commit");
    }
    wait_committed(&c, last).await;
    wait_until("a snapshot", || !consort_consensus::snapshot::list(&dir.join("snapshots")).is_empty()).await;
    c.shutdown().await;
    drop(c);

    let progress = std::sync::atomic::AtomicU64::new(0);
    let from_snapshot =
        consort_consensus::recovery::read_previous(&dir.join("ledger"), Some(&dir.join("snapshots")), &service_pem, &progress)
            .expect("read");
    assert!(from_snapshot.files.snapshot.is_some(), "the newest snapshot is used");
    assert_eq!(progress.load(std::sync::atomic::Ordering::Relaxed), from_snapshot.files.last.seqno, "progress reaches the last signature");
    let from_genesis = consort_consensus::recovery::read_previous(&dir.join("ledger"), None, &service_pem, &progress).expect("read");
    assert!(from_genesis.files.snapshot.is_none());
    assert!(from_genesis.replayed > from_snapshot.replayed);
    for p in [&from_snapshot, &from_genesis] {
        assert!(p.files.last.seqno > last.seqno, "the last signature covers the last write");
        assert_eq!(p.signature.seqno + 1, p.files.last.seqno);
        assert_eq!(p.tree.len(), p.files.last.seqno + 1);
        assert_eq!(p.state.get("public:records", b"k59").map(|v| v.to_vec()), Some(b"public 59".to_vec()));
        assert!(p.state.get("records", b"k1").is_none(), "no private map before the secrets are given");
    }
    assert_eq!(from_snapshot.tree.root(), from_genesis.tree.root());
    for p in [&from_snapshot, &from_genesis] {
        let private = p.files.private_state(&[(0, secret.clone())]).expect("private maps");
        let records = &private["records"];
        assert_eq!(records.len(), 59, "k3 was deleted");
        assert_eq!(records.get(b"k42".as_slice()).map(Vec::as_slice), Some(b"private 42".as_slice()));
        assert!(!records.contains_key(b"k3".as_slice()));
        assert!(p.files.private_state(&[(0, LedgerSecret::generate())]).is_err(), "another service's secret");
    }
    let other_key = NodeKey::generate();
    let other = self_signed_service_cert(&other_key, "another service").expect("cert");
    let wrong = consort_consensus::recovery::read_previous(&dir.join("ledger"), None, &other, &progress)
        .err()
        .expect("another certificate is refused");
    assert!(matches!(&wrong, consort_consensus::recovery::RecoveryError::Ledger(m) if m.contains("does not verify")), "{wrong}");
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).expect("dir");
    assert!(matches!(
        consort_consensus::recovery::read_previous(&empty, None, &service_pem, &progress),
        Err(consort_consensus::recovery::RecoveryError::NoLedger(_))
    ));
    let _ = std::fs::remove_dir_all(&dir);
}
