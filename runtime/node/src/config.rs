//! The node's configuration file (JSON or TOML, SPEC §8). Every field has a default, so
//! `consort start` with no file runs a one-node sandbox.

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Where clients connect (HTTPS).
    pub rpc_address: String,
    /// Where other nodes connect (node-to-node).
    pub node_address: String,
    /// Names and addresses put in the node certificate, for clients to check.
    pub hostnames: Vec<String>,
    /// The node's own state: keys, Raft state, and (by default) the ledger.
    pub directory: PathBuf,
    pub ledger: LedgerConfig,
    pub ledger_signatures: SignatureConfig,
    pub consensus: ConsensusTimes,
    pub snapshots: SnapshotsConfig,
    pub limits: Limits,
    pub js: JsConfig,
    pub logging: LoggingConfig,
    pub memory: MemoryConfig,
    pub command: Command,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            rpc_address: "127.0.0.1:8000".into(),
            node_address: "127.0.0.1:8001".into(),
            hostnames: vec!["localhost".into(), "127.0.0.1".into()],
            directory: PathBuf::from("workspace/node0"),
            ledger: LedgerConfig::default(),
            ledger_signatures: SignatureConfig::default(),
            consensus: ConsensusTimes::default(),
            snapshots: SnapshotsConfig::default(),
            limits: Limits::default(),
            js: JsConfig::default(),
            logging: LoggingConfig::default(),
            memory: MemoryConfig::default(),
            command: Command::Start(StartConfig::default()),
        }
    }
}

/// What the node keeps in memory, beyond the service's state.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    /// Recent transactions whose receipt facts (two digests, 64 bytes) and Merkle tree nodes
    /// (about 64 bytes) stay in memory; a receipt for an older one reads them back from the
    /// ledger files and the node's `ledger-index` directory.
    pub recent_entries: usize,
    /// The most bytes of transactions the historical-query cache holds at once (CCF's
    /// `historical_cache_soft_limit`, 512 MB by default); past it, loads are refused with 503
    /// until states are dropped or expire.
    pub historical_cache_bytes: u64,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig { recent_entries: consort_consensus::RECENT_ENTRIES, historical_cache_bytes: 512 * 1024 * 1024 }
    }
}

/// How the node (and its JS workers) write their log on standard error.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Lines for people.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, target, fields), for log collectors.
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerConfig {
    /// Defaults to `<directory>/ledger`.
    pub directory: Option<PathBuf>,
    /// A chunk file closes at the first signature after it reaches this size.
    pub chunk_bytes: u64,
    /// When appends are synced to disk (`"signatures"` or `"transactions"`; docs/decisions.md).
    pub sync: consort_ledger::Durability,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig { directory: None, chunk_bytes: 5 * 1024 * 1024, sync: consort_ledger::Durability::default() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignatureConfig {
    pub tx_count: u64,
    pub delay_ms: u64,
}

impl Default for SignatureConfig {
    fn default() -> Self {
        // CCF's defaults: receipts are available within a second of a write.
        SignatureConfig { tx_count: 5000, delay_ms: 1000 }
    }
}

/// Snapshots of the state (CCF's `snapshots` section).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotsConfig {
    /// Defaults to `<directory>/snapshots`.
    pub directory: Option<PathBuf>,
    /// A snapshot at the first signature at least this many transactions after the last one;
    /// 0 writes none (a joining node still looks in `directory` for one to start from).
    pub tx_count: u64,
}

impl Default for SnapshotsConfig {
    fn default() -> Self {
        SnapshotsConfig { directory: None, tx_count: 10_000 }
    }
}

/// Raft's timing (CCF's `consensus` section, in milliseconds).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsensusTimes {
    /// A backup that hears nothing from the primary for this long starts an election (each
    /// waits a random time between 3/4 of it and all of it, so that one usually wins).
    pub election_timeout_ms: u64,
    /// The primary's heartbeat interval.
    pub message_timeout_ms: u64,
}

impl Default for ConsensusTimes {
    fn default() -> Self {
        ConsensusTimes { election_timeout_ms: 2000, message_timeout_ms: 100 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Larger request bodies are refused with 413 before they are read whole.
    pub request_body_bytes_max: usize,
    /// More headers than this and the request is refused with 431.
    pub request_headers_max: usize,
    /// Connections beyond this are closed as soon as they are accepted (CCF's
    /// `max_open_sessions_hard`).
    pub connections_max: usize,
    /// Connections beyond this are answered with one 503 and closed (CCF's
    /// `max_open_sessions_soft`).
    pub connections_soft_max: usize,
    /// At most this many connections may be in their TLS handshake at once: a new one evicts the
    /// oldest that has not sent its whole ClientHello (or one stalled for a second after it), so
    /// that connections that trickle bytes cannot hold the node's slots while well-behaved
    /// clients wait; with none to evict, the new one is closed (see `admission::Handshakes`).
    pub handshakes_max: usize,
    /// At most this many connections from one peer address (0: no cap, the default, because
    /// behind a load balancer or a NAT every client has the same address); more are closed as
    /// soon as they are accepted.
    pub connections_per_address_max: usize,
    /// A client that does not finish sending its headers in this time is disconnected.
    pub header_read_timeout_ms: u64,
    /// A TLS handshake that takes longer is abandoned.
    pub tls_handshake_timeout_ms: u64,
    /// How long a backup waits for the primary's answer to a request it forwarded (it stops
    /// waiting sooner if the primary changes); then the answer is that the outcome is unknown.
    pub forwarding_timeout_ms: u64,
    /// A signed governance request whose `ccf.gov.msg.created_at` is further than this from the
    /// node's clock (seconds, either way) is refused, as well as one the replay window has seen.
    pub governance_clock_skew_s: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_body_bytes_max: 1024 * 1024,
            request_headers_max: 100,
            connections_max: 1024,
            connections_soft_max: 1000,
            handshakes_max: 128,
            connections_per_address_max: 0,
            header_read_timeout_ms: 10_000,
            tls_handshake_timeout_ms: 10_000,
            governance_clock_skew_s: 24 * 3600,
            forwarding_timeout_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JsConfig {
    /// Where scripts run: `process` (the default: worker processes, so that a script that
    /// crashes the engine takes down only its worker) or `threads` (threads of the node: no
    /// crossing per request and per `ccf.kv` call, for apps the operator trusts not to reach
    /// the engine paths that can still abort a process; docs/decisions.md).
    pub isolation: Isolation,
    /// JS worker threads; 0 means one per core.
    pub workers: usize,
    /// Requests that may wait for a worker before new ones get 503.
    pub queue_depth: usize,
    /// A transaction that keeps conflicting is re-executed at most this many times.
    pub conflict_retries_max: u32,
    /// The service's initial JS limits, written at genesis to `public:ccf.gov.js_runtime_options`
    /// (governance changes them there afterwards).
    pub runtime_options: consort_js::RuntimeOptions,
    /// Root certificates `snp_attestation.verifySnpAttestation` trusts beyond AMD's own (a new
    /// product's, or a test chain's): each `{product: "Milan"|"Genoa"|"Turin", fingerprint:
    /// <SHA-256 of the certificate's DER, hex>}`.
    pub snp_trusted_roots: Vec<SnpRoot>,
}

/// `js.isolation`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    #[default]
    Process,
    Threads,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnpRoot {
    pub product: String,
    pub fingerprint: String,
}

impl Default for JsConfig {
    fn default() -> Self {
        JsConfig {
            isolation: Isolation::Process,
            workers: 0,
            queue_depth: 1024,
            conflict_retries_max: 30,
            runtime_options: consort_js::RuntimeOptions::default(),
            snp_trusted_roots: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Command {
    /// Start a new network, or resume this node's network from its directory.
    Start(StartConfig),
    /// Join an existing network through one of its nodes (or resume, if the directory holds a
    /// node that joined before).
    Join(JoinConfig),
    /// Start a new service from the ledger of a lost one (SPEC §9; resume, if the directory
    /// holds the recovery node already). The previous files are only read.
    Recover(RecoverConfig),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoverConfig {
    /// The previous service's ledger directory (one node's ledger; the longest one holds the
    /// most committed transactions).
    pub previous_ledger: PathBuf,
    /// The previous service's snapshot directory, if any: the recovery starts from the newest
    /// snapshot the ledger continues, and replays only the ledger after it.
    #[serde(default)]
    pub previous_snapshots: Option<PathBuf>,
    /// The previous service certificate (PEM): the previous ledger must verify against it.
    pub previous_service_identity: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinConfig {
    /// A node of the network (its client address): the join request goes there.
    pub target_rpc_address: String,
    /// The service certificate: the only identity the joining node trusts.
    pub service_certificate: PathBuf,
    /// How long to wait to be trusted (a network that is open needs a
    /// `transition_node_to_trusted` proposal accepted meanwhile).
    #[serde(default = "default_join_timeout_ms")]
    pub timeout_ms: u64,
    /// Once trusted, fetch the target's newest snapshot and start from it (CCF's
    /// `fetch_recent_snapshot`) instead of replaying the whole ledger. A snapshot already in
    /// the snapshot directory is used either way.
    #[serde(default = "default_true")]
    pub fetch_recent_snapshot: bool,
}

fn default_true() -> bool {
    true
}

fn default_join_timeout_ms() -> u64 {
    300_000
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StartConfig {
    /// The initial members: `Accepted` at genesis, `Active` once each acknowledges the state
    /// digest. Users, the app and JWT issuers come afterwards, by their proposals.
    pub members: Vec<IdentityConfig>,
    /// The constitution's files, concatenated in this order; empty means the default
    /// constitution built into the binary (the repository's `constitution/`).
    pub constitution: Vec<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// PEM certificate file.
    pub certificate: PathBuf,
    /// `member_data`.
    #[serde(default)]
    pub data: Option<serde_json::Value>,
    /// PEM RSA public key for recovery shares (the member is then a recovery Participant).
    #[serde(default)]
    pub encryption_public_key: Option<PathBuf>,
    /// `NonParticipant`, `Participant` or `Owner` (CCF's recovery roles); the last two need an
    /// encryption key. Default: `Participant` with a key, `NonParticipant` without.
    #[serde(default)]
    pub recovery_role: Option<RecoveryRole>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum RecoveryRole {
    NonParticipant,
    Participant,
    Owner,
}

/// Why a node's configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("reading {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    /// Not TOML or JSON of the configuration's shape (an unknown field, a wrong type).
    #[error("{}: {reason}", path.display())]
    Parse { path: PathBuf, reason: String },
    /// Well-formed, but values that do not hold together.
    #[error("{0}")]
    Invalid(String),
}

impl NodeConfig {
    /// Reads a `.toml` file as TOML and anything else as JSON.
    pub fn from_file(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let is_toml = path.extension().is_some_and(|e| e == "toml");
        let parse = |reason: String| ConfigError::Parse { path: path.to_owned(), reason };
        let config: NodeConfig = if is_toml {
            toml::from_str(&text).map_err(|e| parse(e.to_string()))?
        } else {
            serde_json::from_str(&text).map_err(|e| parse(e.to_string()))?
        };
        config.check()?;
        Ok(config)
    }

    /// Checks what the types cannot: limits above zero, timeouts that fit together, a recovery
    /// that does not write over the ledger it reads, members' recovery keys, trusted roots.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.limits.request_body_bytes_max == 0 || self.limits.connections_max == 0 || self.limits.request_headers_max == 0 {
            return Err(ConfigError::Invalid("limits must be above zero".to_owned()));
        }
        if self.ledger_signatures.tx_count == 0 || self.ledger_signatures.delay_ms == 0 {
            return Err(ConfigError::Invalid("ledger_signatures.tx_count and delay_ms must be above zero".to_owned()));
        }
        let (election, message) = (self.consensus.election_timeout_ms, self.consensus.message_timeout_ms);
        if message == 0 || election < 4 * message {
            return Err(ConfigError::Invalid(format!(
                "consensus.election_timeout_ms ({election}) must be at least 4 times consensus.message_timeout_ms ({message}), which must be above zero"
            )));
        }
        let members = match &self.command {
            Command::Start(start) => start.members.as_slice(),
            Command::Join(_) => &[],
            Command::Recover(r) => {
                if same_dir(&r.previous_ledger, &self.ledger_dir()) {
                    return Err(ConfigError::Invalid(format!(
                        "command.previous_ledger {} is this node's own ledger directory: a recovery writes a new ledger elsewhere and only reads the previous one",
                        r.previous_ledger.display()
                    )));
                }
                &[]
            }
        };
        for m in members {
            if m.recovery_role.is_some_and(|r| r != RecoveryRole::NonParticipant) && m.encryption_public_key.is_none() {
                return Err(ConfigError::Invalid(format!(
                    "member {}: a recovery role other than NonParticipant needs encryption_public_key",
                    m.certificate.display()
                )));
            }
        }
        let l = &self.limits;
        if l.connections_soft_max > l.connections_max || l.handshakes_max == 0 || l.handshakes_max > l.connections_max {
            return Err(ConfigError::Invalid(format!(
                "limits: connections_soft_max ({}) must be at most connections_max ({}), and handshakes_max ({}) between 1 and connections_max",
                l.connections_soft_max, l.connections_max, l.handshakes_max
            )));
        }
        if l.connections_per_address_max > l.connections_max {
            return Err(ConfigError::Invalid(format!(
                "limits: connections_per_address_max ({}) must be at most connections_max ({}) (0: no cap)",
                l.connections_per_address_max, l.connections_max
            )));
        }
        for root in &self.js.snp_trusted_roots {
            if !matches!(root.product.as_str(), "Milan" | "Genoa" | "Turin")
                || root.fingerprint.len() != 64
                || hex::decode(&root.fingerprint).is_err()
            {
                return Err(ConfigError::Invalid(format!(
                    "js.snp_trusted_roots: {{product: {:?}, fingerprint: {:?}}} needs a product Milan, Genoa or Turin and a SHA-256 in hex",
                    root.product, root.fingerprint
                )));
            }
        }
        Ok(())
    }

    /// Where snapshots go (written only if `tx_count` > 0; a joining node looks there too).
    pub fn snapshots(&self) -> consort_consensus::snapshot::SnapshotConfig {
        consort_consensus::snapshot::SnapshotConfig {
            directory: self.snapshots.directory.clone().unwrap_or_else(|| self.directory.join("snapshots")),
            tx_count: self.snapshots.tx_count,
        }
    }

    pub fn ledger_dir(&self) -> PathBuf {
        self.ledger.directory.clone().unwrap_or_else(|| self.directory.join("ledger"))
    }
}

/// Whether two paths name the same directory (as far as the file system can tell).
fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_toml_with_defaults_and_unknown_fields_refused() {
        let dir = std::env::temp_dir().join(format!("consort-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let json = dir.join("c.json");
        std::fs::write(&json, r#"{"rpc_address": "127.0.0.1:9000", "command": {"type": "start", "members": [{"certificate": "m.pem"}]}}"#)
            .expect("write");
        let c = NodeConfig::from_file(&json).expect("json");
        assert_eq!(c.rpc_address, "127.0.0.1:9000");
        assert_eq!(c.ledger_signatures.tx_count, 5000);
        assert_eq!(c.ledger.sync, consort_ledger::Durability::SyncPoints);
        let Command::Start(s) = &c.command else { panic!("a start command") };
        assert_eq!(s.members.len(), 1);
        let toml = dir.join("c.toml");
        std::fs::write(&toml, "directory = \"n\"\n[ledger]\nsync = \"transactions\"\n[ledger_signatures]\ntx_count = 10\ndelay_ms = 50\n")
            .expect("write");
        let c = NodeConfig::from_file(&toml).expect("toml");
        assert_eq!((c.ledger_signatures.tx_count, c.ledger_dir()), (10, PathBuf::from("n/ledger")));
        assert_eq!(c.ledger.sync, consort_ledger::Durability::EveryAppend);
        std::fs::write(&toml, "[ledger]\nsync = \"never\"\n").expect("write");
        assert!(matches!(NodeConfig::from_file(&toml), Err(ConfigError::Parse { reason, .. }) if reason.contains("never")));
        std::fs::write(&json, r#"{"command": {"type": "start", "members": [{"certificate": "m.pem", "recovery_role": "Owner"}]}}"#)
            .expect("write");
        assert!(matches!(NodeConfig::from_file(&json), Err(ConfigError::Invalid(m)) if m.contains("needs encryption_public_key")));
        std::fs::write(
            &json,
            r#"{"directory": "n", "command": {"type": "recover", "previous_ledger": "n/ledger", "previous_service_identity": "s.pem"}}"#,
        )
        .expect("write");
        assert!(matches!(NodeConfig::from_file(&json), Err(ConfigError::Invalid(m)) if m.contains("own ledger directory")));
        std::fs::write(
            &json,
            r#"{"directory": "n", "command": {"type": "recover", "previous_ledger": "old/ledger", "previous_service_identity": "s.pem"}}"#,
        )
        .expect("write");
        assert!(matches!(NodeConfig::from_file(&json).expect("recover").command, Command::Recover(_)));
        for (limits, refused) in [
            (r#"{"connections_max": 10, "connections_soft_max": 11}"#, "connections_soft_max (11)"),
            (r#"{"connections_max": 10, "handshakes_max": 0}"#, "handshakes_max (0)"),
            (
                r#"{"connections_max": 10, "connections_soft_max": 10, "handshakes_max": 5, "connections_per_address_max": 11}"#,
                "per_address_max (11)",
            ),
        ] {
            std::fs::write(&json, format!(r#"{{"command": {{"type": "start", "members": []}}, "limits": {limits}}}"#)).expect("write");
            assert!(matches!(NodeConfig::from_file(&json), Err(ConfigError::Invalid(m)) if m.contains(refused)), "{limits}");
        }
        std::fs::write(&json, r#"{"command": {"type": "start", "members": []}, "limits": {"connections_per_address_max": 16}}"#)
            .expect("write");
        assert_eq!(NodeConfig::from_file(&json).expect("a cap per address").limits.connections_per_address_max, 16);
        std::fs::write(&json, r#"{"rpc_adress": "x"}"#).expect("write");
        assert!(matches!(NodeConfig::from_file(&json), Err(ConfigError::Parse { reason, .. }) if reason.contains("rpc_adress")));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
