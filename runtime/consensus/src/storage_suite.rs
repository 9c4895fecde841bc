//! openraft's storage conformance suite (`openraft::testing::Suite`) on the real log store
//! (ledger chunk files and sled, in a temporary directory) and the real state machine, under
//! both durability policies.
//!
//! 29 of the suite's 35 cases run. The other six need Raft snapshots, which Consort's Raft never
//! builds or installs (`SnapshotPolicy::Never`: a node joins from a snapshot of Consort's own
//! format, signed and with the Merkle tree's frontier, at its start; see
//! `state_machine::NoSnapshots`): `snapshot_meta` and `transfer_snapshot` build and install one,
//! and four `get_initial_state_*` cases (`membership_from_log_and_sm`, `last_log_lt_sm`,
//! `log_ids`, `re_apply_committed`) start Raft on a log purged with no snapshot, or a state
//! machine ahead of its log, on which openraft builds a snapshot to replicate from. A Consort
//! node never holds such a state: its log is purged only up to the snapshot it started from,
//! which it keeps as Raft's current snapshot.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use consort_crypto::{LedgerSecret, NodeKey};
use consort_kv::{Store, TxId};
use consort_ledger::{CommitSecret, Durability};
use openraft::testing::{StoreBuilder, Suite};

use crate::applied::{AppliedLedger, Retention};
use crate::log_store::LogStore;
use crate::secrets::LedgerSecrets;
use crate::state_machine::{Shared, StateMachine};
use crate::types::{StorageError, TypeConfig};

/// Builds each case's log store and state machine in a directory of its own.
struct Builder {
    root: PathBuf,
    durability: Durability,
    built: AtomicU64,
}

/// Removes a case's directory once the case is over.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, Cleanup> for Builder {
    async fn build(&self) -> Result<(Cleanup, LogStore, StateMachine), StorageError> {
        let dir = self.root.join(self.built.fetch_add(1, Ordering::Relaxed).to_string());
        let secret = LedgerSecret::generate();
        let commit = CommitSecret::from_ledger_secret(secret.as_bytes());
        let log = LogStore::open(&dir.join("ledger"), &dir.join("raft"), 1 << 20, self.durability, commit.clone(), 0)
            .expect("a log store in a fresh directory");
        let (applied, _) = tokio::sync::watch::channel(TxId::default());
        let ledger = AppliedLedger::new(&Retention { recent_entries: 64, dir: None }).expect("an applied ledger");
        let shared = Arc::new(Shared { store: Arc::new(Store::default()), ledger: RwLock::new(ledger), applied });
        let secrets = Arc::new(LedgerSecrets::new(secret, Vec::new()));
        let node = ("suite-node".to_owned(), NodeKey::generate());
        let sm = StateMachine::new(shared, secrets, node, commit, None, None, log.chunk_request());
        Ok((Cleanup(dir), log, sm))
    }
}

type Cases = Suite<TypeConfig, LogStore, StateMachine, Builder, Cleanup>;

/// Runs the named suite cases, each on a fresh store in a runtime of its own (as the suite's
/// own runner does, so that nothing a case leaves running reaches the next).
macro_rules! run_cases {
    ($builder:expr, $($case:ident),+ $(,)?) => {{
        let builder = $builder;
        $(
            let runtime = tokio::runtime::Runtime::new().expect("a runtime");
            runtime.block_on(async {
                let (_cleanup, log, sm) = builder.build().await.expect("build");
                Cases::$case(log, sm).await
            }).unwrap_or_else(|e| panic!("{}: {e}", stringify!($case)));
        )+
    }};
}

fn suite(durability: Durability) {
    let root = std::env::temp_dir().join(format!("consort-raft-suite-{durability:?}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let builder = Builder { root: root.clone(), durability, built: AtomicU64::new(0) };
    run_cases!(
        &builder,
        last_membership_in_log_initial,
        last_membership_in_log,
        last_membership_in_log_multi_step,
        get_membership_initial,
        get_membership_from_log_and_empty_sm,
        get_membership_from_empty_log_and_sm,
        get_membership_from_log_le_sm_last_applied,
        get_membership_from_log_gt_sm_last_applied_1,
        get_membership_from_log_gt_sm_last_applied_2,
        get_initial_state_without_init,
        get_initial_state_with_state,
        get_initial_state_last_log_gt_sm,
        save_vote,
        get_log_entries,
        limited_get_log_entries,
        try_get_log_entry,
        initial_logs,
        get_log_state,
        get_log_id,
        last_id_in_log,
        last_applied_state,
        purge_logs_upto_0,
        purge_logs_upto_5,
        purge_logs_upto_20,
        delete_logs_since_11,
        delete_logs_since_0,
        append_to_log,
        apply_single,
        apply_multiple,
    );
    assert_eq!(builder.built.load(Ordering::Relaxed), 29, "every case ran on a store of its own");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn openraft_storage_suite_with_every_append_synced() {
    suite(Durability::EveryAppend);
}

#[test]
fn openraft_storage_suite_with_sync_points() {
    suite(Durability::SyncPoints);
}
