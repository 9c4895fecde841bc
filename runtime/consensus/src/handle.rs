//! The node's handle on consensus.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use consort_crypto::{LedgerSecret, NodeKey};
use consort_kv::{Store, Tx, TxId, WriteSet};
use consort_ledger::{CommitSecret, Durability, Receipt};
use openraft::error::ClientWriteError;
use openraft::{BasicNode, Raft, ServerState, SnapshotPolicy};

use crate::applied::{AppliedLedger, Covering, Retention};
use crate::convert::txid_of;
use crate::log_store::LogStore;
use crate::network::{ForwardError, ForwardHandler, ForwardSlot, Forwarder, PeerTls, Peers};
use crate::secrets::LedgerSecrets;
use crate::state_machine::{Shared, StateMachine};
use crate::types::{Proposal, TypeConfig};

#[derive(Debug, Clone)]
pub struct ConsensusConfig {
    pub ledger_dir: PathBuf,
    /// Where Raft's own state (vote, committed mark) lives, in sled.
    pub raft_dir: PathBuf,
    pub ledger_chunk_bytes: u64,
    /// When ledger appends are synced to disk (`ledger.sync`).
    pub ledger_durability: Durability,
    /// This node's id (hex SHA-256 of its public key) and node-to-node address.
    pub node_id: String,
    pub node_address: String,
    pub node_key: NodeKey,
    pub node_cert_pem: String,
    pub ledger_secret: LedgerSecret,
    /// Secrets of rekeys before this node joined (`(first seqno, secret)`), given at join.
    pub later_ledger_secrets: Vec<(u64, LedgerSecret)>,
    /// The service identity: peers must present node certificates it endorsed.
    pub service_cert_pem: String,
    /// Start as a new member of an existing network (wait to be added by its primary) instead
    /// of founding a one-voter network when the directory is fresh.
    pub join: bool,
    /// Start a recovered service: the ledger is empty and the snapshot directory holds the
    /// previous service's state at its last signature ([`crate::recovery`]); the new service's
    /// first view comes after that signature's.
    pub recover: bool,
    /// How many recent entries' receipt facts and Merkle tree nodes are kept in memory (older
    /// ones are read back from files): [`crate::applied::RECENT_ENTRIES`] unless configured.
    pub recent_entries: usize,
    /// Where the node writes what it derives from its ledger and does not keep in memory (the
    /// Merkle tree's older nodes, the signatures' seqnos); emptied and rebuilt at every start.
    pub ledger_index_dir: PathBuf,
    /// A signature transaction every `signature_tx_count` transactions or `signature_delay_ms`.
    pub signature_tx_count: u64,
    pub signature_delay_ms: u64,
    /// A backup that hears nothing from the primary for this long (at most; each waits a
    /// random time between 3/4 of it and all of it) starts an election.
    pub election_timeout_ms: u64,
    /// How often the primary sends heartbeats (and is expected to answer peers).
    pub heartbeat_ms: u64,
    /// Where snapshots are written (if `tx_count` > 0) and found: a joining node with an empty
    /// ledger starts from the newest one there. `None`: neither.
    pub snapshots: Option<crate::snapshot::SnapshotConfig>,
}

/// Why a transaction did not commit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommitError {
    /// Something it read changed or is about to; execute it again on a fresh snapshot.
    #[error("{0}")]
    Conflict(#[from] consort_kv::Conflict),
    /// Refused: this node is not the primary, or the primary that took the write lost it before
    /// it committed (a new primary removed it). It did not and will not happen.
    #[error("not the primary: {0}")]
    NotPrimary(String),
    /// Refused: consensus is not running, and the write was never handed to it.
    #[error("consensus unavailable: {0}")]
    Unavailable(String),
    /// Consensus stopped after it took the write: it may still commit (when this node restarts,
    /// or under another primary). `txid` is where this node's log holds it, when it does.
    #[error("the outcome of the write is unknown: {reason}")]
    OutcomeUnknown { reason: String, txid: Option<TxId> },
}

/// Why consensus could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The ledger, the snapshot it starts from, or Raft's own state could not be opened or
    /// do not fit together.
    #[error("{0}")]
    Storage(String),
    /// The snapshot this node starts from could not be read or opened.
    #[error(transparent)]
    Snapshot(#[from] crate::snapshot::SnapshotError),
    /// The applied ledger (Merkle tree, signature index) could not be set up.
    #[error(transparent)]
    Applied(#[from] crate::applied::AppliedError),
    /// The node's certificate and key, with the service certificate, make no TLS identity.
    #[error("node-to-node TLS: {0}")]
    Tls(String),
    /// The node-to-node address could not be bound (in use, or not this machine's).
    #[error("binding the node-to-node address {address}: {source}")]
    Bind { address: String, source: std::io::Error },
    /// openraft refused the configuration, or failed to start or initialise the network.
    #[error("Raft: {0}")]
    Raft(String),
}

/// The node found no primary, or did not apply its whole ledger, in the time it was given.
#[derive(Debug, thiserror::Error)]
#[error("node did not become ready: {0}")]
pub struct NotReady(String);

/// Why a change to the voters failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MembershipError {
    /// The node did not catch up as a learner in the time given (it was taken out again): it
    /// may be unreachable or slow; the change can be tried again.
    #[error("node {node_id} at {address} did not catch up: {reason}")]
    NotCaughtUp { node_id: String, address: String, reason: String },
    /// Raft refused the change (this node is not the primary, or another change is under way).
    #[error("{what} {node_id}: {reason}")]
    Refused { what: &'static str, node_id: String, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxStatus {
    Unknown,
    Pending,
    Committed,
    Invalid,
}

impl TxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TxStatus::Unknown => "Unknown",
            TxStatus::Pending => "Pending",
            TxStatus::Committed => "Committed",
            TxStatus::Invalid => "Invalid",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptError {
    #[error("transaction {0} is pending or unknown; a receipt exists once it is committed")]
    NotCommitted(TxId),
    #[error("transaction {0} is invalid: it was replaced by another view")]
    Invalid(TxId),
    #[error("transaction {0} precedes the snapshot this node started from (its ledger starts at seqno {1}); ask a node that holds it")]
    BeforeSnapshot(TxId, u64),
    #[error("reading transaction {0} from the ledger: {1}")]
    Read(TxId, String),
}

/// One committed transaction as historical queries see it (SPEC §4 `ccf.historicalState`).
#[derive(Debug, Clone)]
pub struct HistoricalEntry {
    pub txid: TxId,
    /// What the transaction wrote (private maps decrypted); empty for signatures and
    /// configuration entries.
    pub writes: WriteSet,
    pub receipt: Receipt,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HistoricalError {
    #[error("only committed transactions can be queried; transaction {0} is {1}")]
    NotCommitted(TxId, &'static str),
    #[error("historical state of {0} cannot be read: {1}")]
    Read(TxId, String),
}

/// What [`Consensus::figures`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftFigures {
    pub view: u64,
    /// `primary`, `backup`, `candidate`, `learner` or `stopped`.
    pub role: &'static str,
    pub last_appended: u64,
    pub last_applied: u64,
}

pub struct Consensus {
    raft: Raft<TypeConfig>,
    /// A reader of the same log Raft writes, for historical queries.
    log: LogStore,
    raft_id: u64,
    shared: Arc<Shared>,
    secrets: Arc<LedgerSecrets>,
    commit_secret: CommitSecret,
    /// Held from reservation until the proposal is queued in Raft, so that log order equals
    /// reservation order (the KV gate's serialisability argument depends on it).
    sequencer: tokio::sync::Mutex<()>,
    /// Stops the node-to-node listener.
    stop_peers: tokio::sync::watch::Sender<bool>,
    /// Sends requests to the primary; the slot holds what answers those sent to this node.
    forwarder: Forwarder,
    forward_slot: ForwardSlot,
    /// The signature task, which `shutdown` waits for: while it runs it may hold this handle,
    /// and with it the log's files and Raft state.
    signer: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    pub(crate) config: ConsensusConfig,
}

/// What identifies a write among the log's entries without keeping a copy of it: the sealed
/// private part's authentication tag (unique: every seal draws a fresh nonce), or a digest of
/// the public part when there is no private one.
#[derive(PartialEq, Eq)]
struct Fingerprint {
    claims_digest: [u8; 32],
    lengths: (usize, usize),
    tail: [u8; 32],
}

impl Fingerprint {
    fn of(p: &Proposal) -> Fingerprint {
        Self::of_parts(&p.claims_digest, &p.public, &p.private)
    }

    fn of_parts(claims_digest: &[u8; 32], public: &[u8], private: &[u8]) -> Fingerprint {
        let mut tail = [0u8; 32];
        if private.len() >= 16 {
            tail[..16].copy_from_slice(&private[private.len() - 16..]);
        } else {
            tail = *blake3::hash(public).as_bytes();
        }
        Fingerprint { claims_digest: *claims_digest, lengths: (public.len(), private.len()), tail }
    }
}

/// Opens the Raft log on the ledger and finds the snapshot the node starts from, if any: a
/// joining node with an empty ledger starts from the newest snapshot in its snapshot directory
/// (fetched there by the join, or put there by its operator); a node whose ledger starts after
/// seqno 0 (it joined from a snapshot) restarts from the newest one its ledger continues.
fn open_log(
    config: &ConsensusConfig,
    commit: &CommitSecret,
    secrets: &LedgerSecrets,
) -> Result<(LogStore, Option<crate::snapshot::Loaded>), StartError> {
    let snapshot_dir = config.snapshots.as_ref().map(|c| c.directory.clone());
    let available = snapshot_dir.as_deref().map(crate::snapshot::list).unwrap_or_default();
    let node = (config.node_id.as_str(), &config.node_key);
    let ledger_empty = consort_ledger::files::holds_no_chunk(&config.ledger_dir);
    let mut start = match available.last() {
        Some((_, path)) if ledger_empty && (config.join || config.recover) => Some(crate::snapshot::open(path, secrets, node)?),
        _ => None,
    };
    let first_if_empty = start.as_ref().map_or(0, |s| s.txid.seqno + 1);
    let log = LogStore::open(
        &config.ledger_dir,
        &config.raft_dir,
        config.ledger_chunk_bytes,
        config.ledger_durability,
        commit.clone(),
        first_if_empty,
    )
    .map_err(StartError::Storage)?;
    let (first, next) = log.range();
    if first > 0 && start.is_none() {
        // The snapshot the ledger starts after: the node replays its whole ledger, as a node
        // that started at genesis does, and keeps every receipt it could give before. A newer
        // one its ledger continues only if that file is gone.
        let exact = available.iter().find(|(s, _)| *s + 1 == first);
        let Some((_, path)) = exact.or_else(|| available.iter().rev().find(|(s, _)| *s + 1 >= first && *s < next)) else {
            return Err(StartError::Storage(format!(
                "the ledger in {} starts at seqno {first} (this node joined from a snapshot), and {} holds no snapshot from seqno {} to {}: \
                 put the snapshot it started from there",
                config.ledger_dir.display(),
                snapshot_dir.map_or("no snapshot directory".into(), |d| d.display().to_string()),
                first - 1,
                next - 1
            )));
        };
        start = Some(crate::snapshot::open(path, secrets, node)?);
    }
    if let Some(s) = &start {
        log.set_purged(crate::convert::log_id_of(s.txid));
        if config.recover && ledger_empty {
            // Raft's terms are our views: the recovered service's first view is a new one.
            log.seed_vote(s.txid.view, crate::raft_node_id(&config.node_id)).map_err(StartError::Storage)?;
        }
    }
    Ok((log, start))
}

/// openraft 0.9 draws a node's election timeout once per process, so two nodes that drew close
/// values can split the vote again and again (a failover test saw ten split terms in a row
/// under load). While this voter has known no primary for half an election timeout, it starts
/// an election itself after a fresh random delay, which breaks such ties.
async fn break_split_votes(raft: Raft<TypeConfig>, raft_id: u64, election_timeout: Duration) {
    use std::hash::{BuildHasher, Hasher};
    let mut leaderless_since: Option<tokio::time::Instant> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (leaderless, voter, running) = {
            let m = raft.metrics();
            let m = m.borrow();
            (m.current_leader.is_none(), m.membership_config.membership().voter_ids().any(|v| v == raft_id), m.running_state.is_ok())
        };
        if !running {
            return;
        }
        if !leaderless || !voter {
            leaderless_since = None;
            continue;
        }
        let since = *leaderless_since.get_or_insert_with(tokio::time::Instant::now);
        if since.elapsed() < election_timeout / 2 {
            continue;
        }
        let jitter =
            std::collections::hash_map::RandomState::new().build_hasher().finish() % (election_timeout.as_millis() as u64 / 4).max(1);
        tokio::time::sleep(Duration::from_millis(jitter)).await;
        if raft.metrics().borrow().current_leader.is_none() {
            tracing::info!("no primary for {:?}: starting an election", since.elapsed());
            let _ = raft.trigger().elect().await;
        }
        leaderless_since = Some(tokio::time::Instant::now());
    }
}

impl Consensus {
    /// Opens the ledger and Raft state in the configured directories and starts Raft. A fresh
    /// directory becomes a one-voter network; an existing one replays its committed ledger.
    pub async fn start(config: ConsensusConfig) -> Result<Arc<Consensus>, StartError> {
        let commit_secret = CommitSecret::from_ledger_secret(config.ledger_secret.as_bytes());
        let secrets = Arc::new(LedgerSecrets::new(config.ledger_secret.clone(), config.later_ledger_secrets.clone()));
        let (log, start) = open_log(&config, &commit_secret, &secrets)?;
        let (applied, _) = tokio::sync::watch::channel(TxId::default());
        let retention = Retention { recent_entries: config.recent_entries, dir: Some(config.ledger_index_dir.clone()) };
        let (store, ledger) = match &start {
            Some(s) => (Store::new(s.state.clone()), AppliedLedger::from_snapshot(s, &retention)?),
            None => (Store::default(), AppliedLedger::new(&retention)?),
        };
        let shared = Arc::new(Shared { store: Arc::new(store), ledger: RwLock::new(ledger), applied });
        let keep = log.range().0.checked_sub(1);
        let snapshots = config
            .snapshots
            .clone()
            .filter(|c| c.tx_count > 0)
            .map(|c| crate::snapshot::Writer::start(c, keep))
            .transpose()
            .map_err(StartError::Storage)?;
        let sm = StateMachine::new(
            shared.clone(),
            secrets.clone(),
            (config.node_id.clone(), config.node_key.clone()),
            commit_secret.clone(),
            snapshots,
            start.as_ref(),
            log.chunk_request(),
        );
        if let Some(s) = &start {
            tracing::info!("starting from the snapshot at {} ({})", s.txid, s.path.display());
        }
        let raft_config = openraft::Config {
            cluster_name: "consort".into(),
            // openraft waits out the primary's lease (its `election_timeout_max`) and then its own
            // random timeout before it campaigns: with these, a backup campaigns between 3/4 of
            // `election_timeout_ms` and all of it after the primary's last heartbeat.
            heartbeat_interval: config.heartbeat_ms,
            election_timeout_min: config.election_timeout_ms / 4,
            election_timeout_max: config.election_timeout_ms / 2,
            snapshot_policy: SnapshotPolicy::Never,
            ..Default::default()
        }
        .validate()
        .map_err(|e| StartError::Raft(format!("configuration: {e}")))?;
        let raft_id = crate::raft_node_id(&config.node_id);
        let reader = log.clone();
        let tls = PeerTls::new(&config.service_cert_pem, &config.node_cert_pem, &config.node_key.to_pem()).map_err(StartError::Tls)?;
        let peers_listener = tokio::net::TcpListener::bind(&config.node_address)
            .await
            .map_err(|source| StartError::Bind { address: config.node_address.clone(), source })?;
        let raft = Raft::new(raft_id, Arc::new(raft_config), Peers { tls: tls.clone() }, log, sm)
            .await
            .map_err(|e| StartError::Raft(format!("starting: {e}")))?;
        let (stop_peers, stopped) = tokio::sync::watch::channel(false);
        let forward_slot = ForwardSlot::default();
        let forwarder = Forwarder::new(&tls);
        tokio::spawn(crate::network::serve(raft.clone(), peers_listener, tls, forward_slot.clone(), stopped));
        if !config.join && !raft.is_initialized().await.map_err(|e| StartError::Raft(e.to_string()))? {
            let members = BTreeMap::from([(raft_id, BasicNode::new(&config.node_address))]);
            raft.initialize(members).await.map_err(|e| StartError::Raft(format!("initialising the network: {e}")))?;
        }
        // The only voter need not wait an election timeout to lead again after a restart.
        let voters: Vec<u64> = raft.metrics().borrow().membership_config.membership().voter_ids().collect();
        if voters == [raft_id] {
            let _ = raft.trigger().elect().await;
        }
        let consensus = Arc::new(Consensus {
            raft,
            log: reader,
            raft_id,
            shared,
            secrets,
            commit_secret,
            sequencer: tokio::sync::Mutex::new(()),
            stop_peers,
            forwarder,
            forward_slot,
            signer: std::sync::Mutex::new(None),
            config,
        });
        let signer = tokio::spawn(crate::signer::run(Arc::downgrade(&consensus), consensus.stop_peers.subscribe()));
        *consensus.signer.lock().unwrap_or_else(|p| p.into_inner()) = Some(signer);
        tokio::spawn(break_split_votes(consensus.raft.clone(), raft_id, Duration::from_millis(consensus.config.election_timeout_ms)));
        Ok(consensus)
    }

    /// Waits until the network has a primary and this node has applied everything in its
    /// ledger. A node founding a network becomes that primary; a node joining one waits for the
    /// primary's first message.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), NotReady> {
        let founding = !self.config.join && self.voters() == [self.raft_id];
        self.raft
            .wait(Some(timeout))
            .metrics(
                |m| {
                    let primary = if founding { m.state == ServerState::Leader } else { m.current_leader.is_some() };
                    primary && m.last_applied.map(|l| l.index) >= m.last_log_index
                },
                "a primary, and the whole ledger applied",
            )
            .await
            .map(|_| ())
            .map_err(|e| NotReady(e.to_string()))
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.shared.store
    }

    pub fn ledger(&self) -> std::sync::RwLockReadGuard<'_, AppliedLedger> {
        self.shared.ledger()
    }

    pub fn is_primary(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.raft_id)
    }

    pub fn current_view(&self) -> u64 {
        self.raft.metrics().borrow().current_term
    }

    /// Raft's figures for monitoring: view, role, the last seqno in the log and the last applied.
    pub fn figures(&self) -> RaftFigures {
        let m = self.raft.metrics().borrow().clone();
        let role = match m.state {
            openraft::ServerState::Leader => "primary",
            openraft::ServerState::Candidate => "candidate",
            openraft::ServerState::Learner => "learner",
            openraft::ServerState::Follower => "backup",
            openraft::ServerState::Shutdown => "stopped",
        };
        RaftFigures {
            view: m.current_term,
            role,
            last_appended: m.last_log_index.unwrap_or(0),
            last_applied: m.last_applied.map_or(0, |l| l.index),
        }
    }

    pub fn node_id(&self) -> &str {
        &self.config.node_id
    }

    /// The newest committed transaction in the sense of SPEC §2: the last seqno covered by a
    /// committed signature (`0.0` before the first signature).
    pub fn committed_txid(&self) -> TxId {
        let ledger = self.shared.ledger();
        match ledger.last_signed() {
            Some(s) => TxId::new(ledger.view_of(s).unwrap_or(0), s),
            None => TxId::default(),
        }
    }

    /// The newest applied transaction id (applied entries are committed).
    pub fn last_committed(&self) -> TxId {
        self.shared.ledger().last_applied
    }

    /// Commits a transaction's writes: reserve (may conflict), seal, order, replicate, apply.
    pub async fn commit(&self, tx: &Tx, claims_digest: Option<[u8; 32]>) -> Result<TxId, CommitError> {
        self.commit_app(tx, claims_digest, None).await
    }

    /// [`Handle::commit`] for a transaction the app ran: its ledger entry names `app`, the
    /// version that ran it, and carries `inputs` (what the handler was given and drew, encoded by
    /// the caller), sealed under the current ledger secret.
    pub async fn commit_app(
        &self,
        tx: &Tx,
        claims_digest: Option<[u8; 32]>,
        app: Option<(consort_ledger::AppRef, Option<&[u8]>)>,
    ) -> Result<TxId, CommitError> {
        let secret = self.secrets.current();
        let mut proposal = Proposal::transaction(tx.write_set().clone(), claims_digest, &secret);
        if let Some((app, inputs)) = app {
            proposal = proposal.ran_by(app, inputs, &secret);
        }
        let guard = self.sequencer.lock().await;
        let reservation = self.shared.store.reserve(tx)?;
        // Entries this node appends after this point are where the write may land.
        let appended_before = self.log.range().1;
        let fingerprint = Fingerprint::of(&proposal);
        let queued = self.raft.client_write_ff(proposal).await;
        drop(guard);
        let outcome = match queued {
            Ok(rx) => match rx.await {
                Ok(Ok(response)) => Ok(txid_of(&response.log_id)),
                // openraft answers so when the write reached a node that is not the leader, and
                // when a new leader removed the entry from this node's log: either way it is gone.
                Ok(Err(ClientWriteError::ForwardToLeader(f))) => Err(CommitError::NotPrimary(format!("the primary is {:?}", f.leader_id))),
                Ok(Err(e)) => Err(CommitError::Unavailable(e.to_string())),
                // Raft stopped while it held the write: it may have been appended and may commit.
                Err(_) => Err(CommitError::OutcomeUnknown {
                    reason: "consensus stopped after it took the write".into(),
                    txid: self.appended_at(&fingerprint, appended_before),
                }),
            },
            // Raft had stopped: the write never reached it.
            Err(fatal) => Err(CommitError::Unavailable(fatal.to_string())),
        };
        match outcome {
            // Applying the entry retired the reservation's in-flight marks.
            Ok(txid) => {
                drop(reservation);
                Ok(txid)
            }
            Err(e) => {
                self.shared.store.release(reservation);
                Err(e)
            }
        }
    }

    /// Where this node's log holds the write `fingerprint` identifies, looking from seqno `from` on.
    fn appended_at(&self, fingerprint: &Fingerprint, from: u64) -> Option<TxId> {
        let (_, end) = self.log.range();
        (from..end).find_map(|seqno| {
            let e = self.log.read_entry(seqno).ok()?;
            let same =
                e.kind == consort_ledger::EntryKind::Tx && Fingerprint::of_parts(&e.claims_digest, &e.public, &e.private) == *fingerprint;
            same.then_some(e.txid)
        })
    }

    /// Proposes a signature entry (used by the signer task).
    pub(crate) async fn submit(&self, proposal: Proposal) -> Result<TxId, CommitError> {
        let rx = {
            let _guard = self.sequencer.lock().await;
            self.raft.client_write_ff(proposal).await.map_err(|e| CommitError::Unavailable(e.to_string()))?
        };
        match rx.await {
            Ok(Ok(response)) => Ok(txid_of(&response.log_id)),
            Ok(Err(e)) => Err(CommitError::Unavailable(e.to_string())),
            Err(_) => Err(CommitError::Unavailable("consensus stopped".into())),
        }
    }

    /// Changes each time entries are applied (to the id of the last one).
    pub fn applied_watch(&self) -> tokio::sync::watch::Receiver<TxId> {
        self.shared.applied.subscribe()
    }

    pub fn status(&self, txid: TxId) -> TxStatus {
        let ledger = self.shared.ledger();
        match ledger.view_of(txid.seqno) {
            Some(view) if view != txid.view => TxStatus::Invalid,
            Some(_) if ledger.is_signed(txid.seqno) => TxStatus::Committed,
            Some(_) => TxStatus::Pending,
            None => {
                let m = self.raft.metrics().borrow().clone();
                if txid.view == m.current_term && Some(txid.seqno) <= m.last_log_index {
                    TxStatus::Pending
                } else {
                    TxStatus::Unknown
                }
            }
        }
    }

    pub fn receipt(&self, txid: TxId) -> Result<Receipt, ReceiptError> {
        match self.status(txid) {
            TxStatus::Committed => {}
            TxStatus::Invalid => return Err(ReceiptError::Invalid(txid)),
            _ => return Err(ReceiptError::NotCommitted(txid)),
        }
        let (covering, proof, recent) = {
            let ledger = self.shared.ledger();
            let read = |e: &dyn std::fmt::Display| ReceiptError::Read(txid, e.to_string());
            let covering = ledger.covering_signature(txid.seqno).map_err(|e| read(&e))?.ok_or(ReceiptError::NotCommitted(txid))?;
            if txid.seqno < ledger.base {
                return Err(ReceiptError::BeforeSnapshot(txid, ledger.base));
            }
            let proof = match ledger.tree.proof(txid.seqno, covering.covered() + 1) {
                Ok(proof) => proof,
                Err(consort_ledger::TreeError::OutOfRange { .. }) => return Err(ReceiptError::NotCommitted(txid)),
                Err(e) => return Err(read(&e)),
            };
            (covering, proof, ledger.meta(txid.seqno).copied())
        };
        // What is no longer in memory comes from the ledger entries (read with the applied
        // ledger's lock released: applying takes the log's lock, then that one).
        let sig = match covering {
            Covering::Record(record) => record,
            Covering::Entry { seqno, .. } => {
                let le = self.log.read_entry(seqno).map_err(|e| ReceiptError::Read(txid, e))?;
                serde_json::from_slice(&le.public)
                    .map_err(|e| ReceiptError::Read(txid, format!("the signature record at {}: {e}", le.txid)))?
            }
        };
        let meta = match recent {
            Some(meta) => meta,
            None => {
                let le = self.log.read_entry(txid.seqno).map_err(|e| ReceiptError::Read(txid, e))?;
                crate::applied::EntryMeta::of(&le)
            }
        };
        let app = meta.app.as_ref().map(|app| (app, &meta.entry_digest));
        Ok(Receipt::new(&sig, &proof, &meta.write_set_digest(), self.commit_secret.evidence(txid), &meta.claims_digest, app))
    }

    /// The first and last applied seqnos whose entries this node's ledger files hold (the first
    /// is 0, or one after the snapshot the node started from).
    pub fn applied_seqnos(&self) -> (u64, u64) {
        let ledger = self.shared.ledger();
        (ledger.base, ledger.last_applied.seqno)
    }

    /// Each applied entry `from..=to` as this node's ledger files hold them (private writes and
    /// inputs still sealed), given to `view` one at a time (so that only one is in memory), and
    /// the seqnos this node can give: `(first, last applied)`. `to` past the last applied entry
    /// is cut to it; nothing before `first` (a node that started from a snapshot) can be read.
    /// Blocking: call it off the async threads.
    pub fn applied_entries<T>(
        &self,
        from: u64,
        to: u64,
        mut view: impl FnMut(consort_ledger::LedgerEntry) -> T,
    ) -> Result<(Vec<T>, (u64, u64)), String> {
        let (first, last) = self.applied_seqnos();
        let (from, to) = (from.max(first), to.min(last));
        let viewed = (from..=to).map(|seqno| self.log.read_entry(seqno).map(&mut view)).collect::<Result<_, _>>()?;
        Ok((viewed, (first, last)))
    }

    /// The writes and receipt of committed transaction `txid`, read back from the ledger.
    /// Blocking (a chunk file may be read): call it off the async threads.
    pub fn historical(&self, txid: TxId) -> Result<HistoricalEntry, HistoricalError> {
        let status = self.status(txid);
        if status != TxStatus::Committed {
            return Err(HistoricalError::NotCommitted(txid, status.as_str()));
        }
        let receipt = self.receipt(txid).map_err(|e| HistoricalError::Read(txid, e.to_string()))?;
        let le = self.log.read_entry(txid.seqno).map_err(|e| HistoricalError::Read(txid, e))?;
        let writes = match le.kind {
            consort_ledger::EntryKind::Tx => {
                crate::state_machine::decode_writes(&le, &self.secrets).map_err(|e| HistoricalError::Read(txid, e))?
            }
            _ => WriteSet::default(),
        };
        Ok(HistoricalEntry { txid, writes, receipt })
    }

    /// How many ledger secrets the service has had, and the seqno from which the current one
    /// applies.
    pub fn ledger_secrets(&self) -> (usize, u64) {
        (self.secrets.count(), self.secrets.current_since())
    }

    /// Every ledger secret the service has had, `(first seqno, secret)` ascending: what
    /// recovery shares protect.
    pub fn all_ledger_secrets(&self) -> Vec<(u64, LedgerSecret)> {
        self.secrets.all()
    }

    /// The secrets after the first, as a joining node needs them.
    pub fn later_ledger_secrets(&self) -> Vec<(u64, LedgerSecret)> {
        self.secrets.later()
    }

    /// Adds a node as a voter: it first catches up as a learner (within `catch_up`), then joins
    /// the configuration. A node that cannot be reached or does not catch up is removed again
    /// and never becomes a voter.
    pub async fn add_voter(&self, node_id: &str, node_address: &str, catch_up: Duration) -> Result<(), MembershipError> {
        let id = crate::raft_node_id(node_id);
        let refused = |what: &'static str| {
            move |e: openraft::error::RaftError<u64, _>| MembershipError::Refused {
                what,
                node_id: node_id.to_owned(),
                reason: e.to_string(),
            }
        };
        self.raft.add_learner(id, BasicNode::new(node_address), false).await.map_err(refused("adding as a learner"))?;
        let target = self.raft.metrics().borrow().last_log_index;
        let caught_up = self
            .raft
            .wait(Some(catch_up))
            .metrics(
                |m| m.replication.as_ref().and_then(|r| r.get(&id).cloned().flatten()).map(|l| l.index) >= target,
                "the new node to catch up",
            )
            .await;
        if let Err(e) = caught_up {
            let _ = self.raft.change_membership(openraft::ChangeMembers::RemoveNodes([id].into()), false).await;
            return Err(MembershipError::NotCaughtUp {
                node_id: node_id.to_owned(),
                address: node_address.to_owned(),
                reason: e.to_string(),
            });
        }
        self.raft
            .change_membership(openraft::ChangeMembers::AddVoterIds([id].into()), false)
            .await
            .map_err(refused("making a voter of"))?;
        Ok(())
    }

    /// Takes a node out of the configuration.
    pub async fn remove_voter(&self, node_id: &str) -> Result<(), MembershipError> {
        let id = crate::raft_node_id(node_id);
        let refused = |what: &'static str| {
            move |e: openraft::error::RaftError<u64, _>| MembershipError::Refused {
                what,
                node_id: node_id.to_owned(),
                reason: e.to_string(),
            }
        };
        self.raft
            .change_membership(openraft::ChangeMembers::RemoveVoters([id].into()), false)
            .await
            .map_err(refused("removing from the voters"))?;
        // It is a learner now; stop replicating to it at all.
        self.raft.change_membership(openraft::ChangeMembers::RemoveNodes([id].into()), false).await.map_err(refused("removing"))?;
        Ok(())
    }

    /// The Raft ids of the current voters.
    pub fn voters(&self) -> Vec<u64> {
        self.raft.metrics().borrow().membership_config.membership().voter_ids().collect()
    }

    /// The primary's Raft id and node-to-node address, if a primary is known.
    pub fn primary_address(&self) -> Option<(u64, String)> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let id = m.current_leader?;
        Some((id, m.membership_config.membership().get_node(&id)?.addr.clone()))
    }

    /// Sends a request to the primary over the node-to-node channel and returns its answer
    /// (both opaque here). Nothing is retried once sent.
    pub async fn forward(&self, request: Vec<u8>, timeout: Duration) -> Result<Vec<u8>, ForwardError> {
        let (id, address) = self.primary_address().ok_or(ForwardError::NoPrimary)?;
        if id == self.raft_id {
            return Err(ForwardError::IsPrimary);
        }
        // A primary that stops being the primary (frozen, or deposed by an election) will not
        // answer usefully: the request's wait ends as soon as this node knows another (or none),
        // instead of at the timeout. It was sent, so its outcome is unknown.
        let mut metrics = self.raft.metrics();
        let deposed = async move {
            loop {
                if metrics.borrow_and_update().current_leader != Some(id) {
                    return;
                }
                if metrics.changed().await.is_err() {
                    return std::future::pending().await;
                }
            }
        };
        tokio::select! {
            answer = self.forwarder.call(&address, request, timeout) => answer,
            () = deposed => Err(ForwardError::NoAnswer(address, "the primary changed while the request was with it".into())),
        }
    }

    /// Installs what answers requests backups forward to this node (once; later calls are
    /// ignored). Until then such requests are refused without being executed.
    pub fn set_forward_handler(&self, handler: ForwardHandler) {
        let _ = self.forward_slot.set(handler);
    }

    /// The primary's Raft id, if one is known.
    pub fn primary(&self) -> Option<u64> {
        self.raft.metrics().borrow().current_leader
    }

    /// Stops Raft and its peers, then leaves the ledger's open chunk holding only its records.
    pub async fn shutdown(&self) {
        let _ = self.stop_peers.send(true);
        let _ = self.raft.shutdown().await;
        // Once it has ended, nothing but the node's own handles keep this node's state open.
        let signer = self.signer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(signer) = signer {
            let _ = signer.await;
        }
        if let Err(e) = self.log.close() {
            tracing::warn!("closing the ledger: {e}");
        }
    }
}
