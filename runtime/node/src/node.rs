//! A running node: identity, consensus, the JS pool, and the deployed app.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use consort_consensus::{Consensus, ConsensusConfig};
use consort_js::{HistoricalState, JsPool, WorkerCommand};
use consort_kv::names::SERVICE_INFO;
use consort_kv::SINGLETON_KEY;
use tokio::net::TcpListener;

use crate::config::{Command, NodeConfig};
use crate::context::{Node, Parts};
use crate::genesis::write_genesis;
use crate::historical::{Handle as HistoricalHandle, Historical};
use crate::identity::NodeIdentity;
use crate::recovery_state::Recovery;

/// How long a stopping node waits for the requests in flight to be answered.
const STOP_ANSWER_WAIT: Duration = Duration::from_secs(5);

/// How long a node may take to elect itself and replay its ledger before it gives up.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Answers the scripts' `ccf.consensus` and `ccf.historical` questions from this node's
/// consensus state and ledger, and signs what governance's `ccf.network` hooks ask for with
/// the service identity (its certificate and key).
struct ConsensusHost(Arc<Consensus>, Arc<Historical>, (String, consort_crypto::NodeKey), Vec<(String, String)>);

impl consort_js::JsHost for ConsensusHost {
    fn last_committed(&self) -> (u64, u64) {
        let t = self.0.committed_txid();
        (t.view, t.seqno)
    }

    fn status(&self, view: u64, seqno: u64) -> &'static str {
        self.0.status(consort_kv::TxId::new(view, seqno)).as_str()
    }

    fn view_of(&self, seqno: u64) -> Option<u64> {
        self.0.ledger().view_of(seqno)
    }

    fn state_range(&self, handle: u64, from: u64, to: u64, expiry_seconds: u64) -> Result<Option<Vec<HistoricalState>>, String> {
        let states = self.1.range(HistoricalHandle::App(handle), from, to, Duration::from_secs(expiry_seconds))?;
        Ok(states.map(|v| v.iter().map(|s| HistoricalState::clone(s)).collect()))
    }

    fn drop_states(&self, handle: u64) -> bool {
        self.1.drop_handle(HistoricalHandle::App(handle))
    }

    fn latest_ledger_secret_seqno(&self) -> u64 {
        self.0.ledger_secrets().1
    }

    fn endorse_csr(&self, csr: &str, valid_from: &str, days: u64) -> Result<String, String> {
        consort_crypto::endorse_csr(csr, valid_from, days, &self.2 .0, &self.2 .1).map_err(|e| e.to_string())
    }

    fn renew_service_cert(&self, valid_from: &str, days: u64) -> Result<String, String> {
        consort_crypto::renew_service_cert(&self.2 .0, &self.2 .1, valid_from, days).map_err(|e| e.to_string())
    }

    fn snp_extra_roots(&self) -> Vec<(String, String)> {
        self.3.clone()
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration does not hold together.
    #[error("configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    /// The client address could not be bound (in use, or not this machine's).
    #[error("binding {address}: {source}")]
    Bind { address: String, source: std::io::Error },
    /// The node's directory, identity or recovery files could not be read or made, or joining
    /// or preparing a recovery failed.
    #[error("{0}")]
    Identity(String),
    #[error(transparent)]
    Consensus(#[from] consort_consensus::StartError),
    #[error(transparent)]
    NotReady(#[from] consort_consensus::NotReady),
    /// The service could not be founded, joined or opened for recovery once consensus ran.
    #[error("{0}")]
    Service(String),
}

/// Why a node could not serve.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// `serve` was called twice: the listener is already taken.
    #[error("serve called twice")]
    AlreadyServing,
    /// The node's certificate and key make no TLS configuration.
    #[error("the node's TLS configuration: {0}")]
    Tls(String),
}

impl Node {
    /// Starts (or resumes, if its directory holds a node) and becomes ready to serve.
    pub async fn start(config: NodeConfig) -> Result<Arc<Node>, StartError> {
        config.check()?;
        let bind = |source| StartError::Bind { address: config.rpc_address.clone(), source };
        let listener = TcpListener::bind(&config.rpc_address).await.map_err(bind)?;
        let local_addr = listener.local_addr().map_err(bind)?;
        let (identity, recovery) = Node::identity(&config, &listener, local_addr).await.map_err(StartError::Identity)?;
        let joining = matches!(config.command, Command::Join(_));
        let consensus = Consensus::start(ConsensusConfig {
            ledger_dir: config.ledger_dir(),
            raft_dir: config.directory.join("raft"),
            ledger_index_dir: config.directory.join("ledger-index"),
            ledger_chunk_bytes: config.ledger.chunk_bytes,
            ledger_durability: config.ledger.sync,
            node_id: identity.node_id.clone(),
            node_address: config.node_address.clone(),
            node_key: identity.node_key.clone(),
            node_cert_pem: identity.node_cert_pem.clone(),
            ledger_secret: identity.ledger_secret.clone(),
            later_ledger_secrets: identity.later_ledger_secrets.clone(),
            service_cert_pem: identity.service_cert_pem.clone(),
            join: joining,
            recover: recovery.files.is_some(),
            recent_entries: config.memory.recent_entries,
            signature_tx_count: config.ledger_signatures.tx_count,
            signature_delay_ms: config.ledger_signatures.delay_ms,
            election_timeout_ms: config.consensus.election_timeout_ms,
            heartbeat_ms: config.consensus.message_timeout_ms,
            snapshots: Some(config.snapshots()),
        })
        .await?;
        consensus.wait_ready(READY_TIMEOUT).await?;
        Node::found_or_resume(&config, &consensus, &identity, &recovery, local_addr).await.map_err(StartError::Service)?;
        Node::serving(config, identity, recovery, consensus, listener, local_addr).map_err(StartError::Service)
    }

    /// This node's identity: its directory's, or a new one (founding a service, joining one, or
    /// preparing a recovery); and the recovery it is in, if any.
    async fn identity(config: &NodeConfig, listener: &TcpListener, local_addr: SocketAddr) -> Result<(NodeIdentity, Recovery), String> {
        let identity = if NodeIdentity::exists(&config.directory) {
            if matches!(config.command, Command::Recover(_)) && Recovery::load(&config.directory)?.files.is_none() {
                return Err(format!(
                    "{} holds a node of a running or lost service, not one a recovery started: a recovery starts in a fresh directory",
                    config.directory.display()
                ));
            }
            NodeIdentity::load(&config.directory)?
        } else {
            match &config.command {
                Command::Start(_) => NodeIdentity::create(&config.directory, &config.hostnames)?,
                Command::Join(join) => crate::join::join(config, join, &local_addr.to_string()).await?,
                Command::Recover(recover) => crate::recovery::prepare(config, recover, listener).await?,
            }
        };
        Ok((identity, Recovery::load(&config.directory)?))
    }

    /// Once consensus runs: waits for the service a joining node joined, opens a recovery, or
    /// founds the service with its genesis transaction (a node that resumes has it already).
    async fn found_or_resume(
        config: &NodeConfig,
        consensus: &Arc<Consensus>,
        identity: &NodeIdentity,
        recovery: &Recovery,
        local_addr: SocketAddr,
    ) -> Result<(), String> {
        if matches!(config.command, Command::Join(_)) {
            // A joined node serves once it has the service's genesis from the primary.
            let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
            while consensus.store().snapshot().get(SERVICE_INFO, &SINGLETON_KEY).is_none() {
                if tokio::time::Instant::now() > deadline {
                    return Err("the joined node did not receive the service's ledger in time".into());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            tracing::info!("joined the service; applied up to {}", consensus.last_committed());
        } else if recovery.files.is_some() {
            crate::recovery::open_recovery(consensus, identity, (&local_addr.to_string(), &config.node_address)).await?;
        } else if consensus.store().snapshot().get(SERVICE_INFO, &SINGLETON_KEY).is_none() {
            let Command::Start(start) = &config.command else { unreachable!("joining is handled above") };
            let mut tx = consensus.store().begin();
            write_genesis(
                &mut tx,
                identity,
                start,
                (&local_addr.to_string(), &config.node_address, &config.hostnames),
                &config.js.runtime_options,
            )?;
            let txid = consensus.commit(&tx, None).await.map_err(|e| format!("genesis transaction: {e}"))?;
            tracing::info!("started a new service; genesis transaction {txid}");
        } else {
            tracing::info!("resumed the service at {}", consensus.last_committed());
        }
        Ok(())
    }

    /// The node, serving: its JS executors, metrics and background tasks started.
    fn serving(
        config: NodeConfig,
        identity: NodeIdentity,
        recovery: Recovery,
        consensus: Arc<Consensus>,
        listener: TcpListener,
        local_addr: SocketAddr,
    ) -> Result<Arc<Node>, String> {
        let workers =
            if config.js.workers == 0 { 2 * std::thread::available_parallelism().map_or(2, |n| n.get()) } else { config.js.workers };
        // JS runs in worker processes started from this same binary (`consort js-worker`), so a
        // script that crashes Boa takes down only its worker; or, by choice, on threads here.
        let program = std::env::current_exe().map_err(|e| format!("locating the consort binary for JS workers: {e}"))?;
        let historical = Arc::new(Historical::new(
            consensus.clone(),
            tokio::runtime::Handle::current(),
            usize::try_from(config.memory.historical_cache_bytes).unwrap_or(usize::MAX),
        ));
        let service = (identity.service_cert_pem.clone(), identity.service_key.clone());
        let snp_roots = config.js.snp_trusted_roots.iter().map(|r| (r.product.clone(), r.fingerprint.to_ascii_lowercase())).collect();
        let host = Arc::new(ConsensusHost(consensus.clone(), historical.clone(), service, snp_roots));
        let mut args = vec!["js-worker".to_owned()];
        if config.logging.format == crate::config::LogFormat::Json {
            args.extend(["--log-format".to_owned(), "json".to_owned()]);
        }
        let pool = match config.js.isolation {
            crate::config::Isolation::Process => JsPool::new(WorkerCommand { program, args }, workers, config.js.queue_depth, host),
            crate::config::Isolation::Threads => JsPool::threads(workers, config.js.queue_depth, host),
        };
        let served_cert = Arc::new(crate::tls::ServedCert::new(&identity)?);
        let metrics = crate::metrics::Metrics::new().map_err(|e| format!("metrics: {e}"))?;
        let parts = Parts { config, identity, consensus, pool, historical, recovery, served_cert, metrics, listener, local_addr };
        let node = Arc::new(Node::new(parts));
        node.consensus.set_forward_handler(crate::forward::handler(Arc::downgrade(&node), crate::routes::dispatch_boxed));
        tokio::spawn(crate::join::reconcile(Arc::downgrade(&node)));
        tokio::spawn(follow_endorsed_certificate(Arc::downgrade(&node)));
        if node.recovery.files.is_some() {
            tokio::spawn(crate::recovery::finisher(Arc::downgrade(&node)));
        }
        Ok(node)
    }

    /// Serves clients until `shutdown` resolves, then stops consensus cleanly.
    pub async fn serve(self: &Arc<Self>, shutdown: impl std::future::Future<Output = ()>) -> Result<(), ServeError> {
        let listener = self.take_listener().ok_or(ServeError::AlreadyServing)?;
        let drain = crate::server::serve(self.clone(), listener, shutdown).await.map_err(ServeError::Tls)?;
        self.consensus.shutdown().await;
        // Requests waiting on consensus now have their answer (a write it held is of unknown
        // outcome): they reach their clients before the process ends.
        drain.finish(STOP_ANSWER_WAIT).await;
        Ok(())
    }
}

/// Presents the certificate governance endorsed for this node
/// (`public:ccf.gov.nodes.endorsed_certificates`, written when a node is trusted with a
/// validity period and by `set_node_certificate_validity`) from the next handshake after the
/// node applies it. Runs until the node stops.
async fn follow_endorsed_certificate(node: std::sync::Weak<Node>) {
    let Some(mut applied) = node.upgrade().map(|n| n.consensus.applied_watch()) else { return };
    let mut seen = u64::MAX;
    while applied.changed().await.is_ok() {
        let Some(node) = node.upgrade() else { return };
        let state = node.consensus.store().snapshot();
        let version = state.map_version(consort_kv::names::NODES_ENDORSED_CERTIFICATES);
        if version == seen {
            continue;
        }
        seen = version;
        let Some(pem) = state.get(consort_kv::names::NODES_ENDORSED_CERTIFICATES, node.node_id().as_bytes()) else { continue };
        let pem = String::from_utf8_lossy(pem).into_owned();
        if pem != node.served_cert.pem() {
            match node.served_cert.replace(&pem) {
                Ok(()) => tracing::info!("presenting the node certificate governance endorsed"),
                Err(e) => tracing::warn!("the endorsed node certificate is not usable: {e}"),
            }
        }
    }
}
