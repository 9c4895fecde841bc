//! Map names and who owns them (SPEC §3), and the name of every table the framework keeps
//! (SPEC §5): one place for all of them. Keys are raw bytes (ids as hex text, a singleton's
//! key is eight zero bytes); values are JSON, except where CCF keeps raw text (certificates,
//! module sources, proposals), noted below.

/// Prefixes reserved for the framework; an app may not create maps under them.
pub const FRAMEWORK_PREFIXES: [&str; 2] = ["ccf.", "public:ccf."];

/// Where the constitution's `ccf.node.triggerLedgerRekey()` records its request: the node
/// adds the new ledger secret to the same transaction before committing it.
pub const LEDGER_REKEY_REQUESTS: &str = "public:ccf.internal.ledger_rekey_requests";
/// Where `ccf.node.triggerRecoverySharesRefresh()` records its request: the node issues new
/// recovery shares in the same transaction.
pub const RECOVERY_SHARES_REFRESH_REQUESTS: &str = "public:ccf.internal.recovery_shares_refresh_requests";
/// Where `ccf.node.triggerSnapshot()` records its request: every node snapshots at the first
/// signature it applies after the request.
pub const SNAPSHOT_REQUESTS: &str = "public:ccf.internal.snapshot_requests";
/// Where `ccf.node.triggerLedgerChunk()` records its request: every node closes its open
/// ledger chunk at the next signature it appends after applying the request.
pub const LEDGER_CHUNK_REQUESTS: &str = "public:ccf.internal.ledger_chunk_requests";

/// What a map name means for access rules and for the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapKind {
    /// `public:ccf.internal.*` / `ccf.internal.*`: written by the framework only.
    Internal,
    /// `public:ccf.gov.*` / `ccf.gov.*`: written by governance only.
    Governance,
    /// Any other `ccf.` or `public:ccf.` name: refused to everyone.
    Reserved,
    /// An application map; `public` says whether the ledger holds it in the clear.
    App { public: bool },
}

impl MapKind {
    pub fn of(name: &str) -> MapKind {
        let bare = name.strip_prefix("public:").unwrap_or(name);
        if bare.starts_with("ccf.internal.") {
            MapKind::Internal
        } else if bare.starts_with("ccf.gov.") {
            MapKind::Governance
        } else if bare.starts_with("ccf.") {
            MapKind::Reserved
        } else {
            MapKind::App { public: is_public(name) }
        }
    }
}

/// Whether writes to this map go to the ledger in the clear.
pub fn is_public(name: &str) -> bool {
    name.starts_with("public:")
}

// ---- Governance tables (written by governance only) ----

/// Member id → PEM certificate (raw text).
pub const MEMBERS_CERTS: &str = "public:ccf.gov.members.certs";
/// Member id → `{status: "Accepted"|"Active", member_data, recovery_role}`.
pub const MEMBERS_INFO: &str = "public:ccf.gov.members.info";
/// Member id → PEM RSA public key (raw text), for recovery shares.
pub const MEMBERS_ENCRYPTION_KEYS: &str = "public:ccf.gov.members.encryption_public_keys";
/// Member id → `{state_digest, cose_sign1_req?}`: the digest a member acknowledges to become active.
pub const MEMBERS_ACKS: &str = "public:ccf.gov.members.acks";
/// User id → PEM certificate (raw text).
pub const USERS_CERTS: &str = "public:ccf.gov.users.certs";
/// User id → `{user_data}`.
pub const USERS_INFO: &str = "public:ccf.gov.users.info";
pub const NODES_INFO: &str = "public:ccf.gov.nodes.info";
/// TEE rules recorded by governance (CCF's tables; Consort runs no TEE, so they decide nothing):
/// code id / measurement → `"AllowedToJoin"`, host data → its security policy, DID → feed →
/// `{svn}`, CPUID → minimum TCB version.
pub const NODES_CODE_IDS: &str = "public:ccf.gov.nodes.code_ids";
pub const NODES_VIRTUAL_MEASUREMENTS: &str = "public:ccf.gov.nodes.virtual.measurements";
pub const NODES_VIRTUAL_HOST_DATA: &str = "public:ccf.gov.nodes.virtual.host_data";
pub const NODES_SNP_MEASUREMENTS: &str = "public:ccf.gov.nodes.snp.measurements";
pub const NODES_SNP_HOST_DATA: &str = "public:ccf.gov.nodes.snp.host_data";
pub const NODES_SNP_UVM_ENDORSEMENTS: &str = "public:ccf.gov.nodes.snp.uvm_endorsements";
pub const NODES_SNP_TCB_VERSIONS: &str = "public:ccf.gov.nodes.snp.tcb_versions";
/// Node id → the node's certificate (PEM text) endorsed by the service identity, as CCF keeps it.
pub const NODES_ENDORSED_CERTIFICATES: &str = "public:ccf.gov.nodes.endorsed_certificates";
/// Singleton: `{status, cert, ...}`.
pub const SERVICE_INFO: &str = "public:ccf.gov.service.info";
/// Singleton: service configuration (`recent_cose_proposals_window_size`, `recovery_threshold`, ...).
pub const SERVICE_CONFIG: &str = "public:ccf.gov.service.config";
/// Singleton: the constitution's source, as a JSON string.
pub const CONSTITUTION: &str = "public:ccf.gov.constitution";
/// Module name (with a leading `/`, as CCF writes it) → source (raw text).
pub const MODULES: &str = "public:ccf.gov.modules";
/// `"<METHOD> <path>"` → endpoint definition.
pub const ENDPOINTS: &str = "public:ccf.gov.endpoints";
/// Singleton: the JS runtime limits.
pub const JS_RUNTIME_OPTIONS: &str = "public:ccf.gov.js_runtime_options";
/// JWT issuer → `{auto_refresh, ca_cert_bundle_name}`.
pub const JWT_ISSUERS: &str = "public:ccf.gov.jwt.issuers";
/// Key id → list of `{public_key, issuer, constraint?}` (CCF 6's v2 metadata).
pub const JWT_PUBLIC_SIGNING_KEYS: &str = "public:ccf.gov.jwt.public_signing_keys_metadata_v2";
/// Bundle name → PEM certificates (a JSON string), for JWT issuers' key endpoints (CCF's table).
pub const CA_CERT_BUNDLES: &str = "public:ccf.gov.tls.ca_cert_bundles";
/// Proposal id → the proposal as submitted (raw JSON text).
pub const PROPOSALS: &str = "public:ccf.gov.proposals";
/// Proposal id → [`crate::ProposalInfo`].
pub const PROPOSALS_INFO: &str = "public:ccf.gov.proposals_info";
/// `"<created_at, 10 digits>:<request digest hex>"` → proposal id: the replay window.
pub const COSE_RECENT_PROPOSALS: &str = "public:ccf.gov.cose_recent_proposals";
/// Member id → the member's last signed governance request (COSE_Sign1 bytes as a JSON array).
pub const COSE_HISTORY: &str = "public:ccf.gov.cose_history";

// ---- The framework's own tables (written by the node only) ----

/// Singleton: the latest signature's record (CCF's default constitution reads its `root` when
/// it adds a member).
pub const SIGNATURES: &str = "public:ccf.internal.signatures";
/// Node id → the new ledger secret wrapped for that node (`consort_crypto::wrap_secret_for`).
pub const LEDGER_SECRETS: &str = "public:ccf.internal.ledger_secrets";
/// Member id → the member's recovery share, encrypted to its RSA key (raw bytes).
pub const RECOVERY_SHARES: &str = "public:ccf.internal.recovery_shares";
/// Singleton: the ledger secrets sealed under the recovery key (`consort_gov::recovery`).
pub const RECOVERY_SECRETS: &str = "public:ccf.internal.recovery_ledger_secrets";
/// Member id → the share it submitted while the service waits for shares. Private: the
/// ledger holds it sealed under the new service's ledger secret.
pub const SUBMITTED_SHARES: &str = "ccf.internal.submitted_recovery_shares";
/// Previous endorsements of previous service identities, newest first (JSON list of PEMs).
pub const PREVIOUS_IDENTITY_ENDORSEMENTS: &str = "public:ccf.internal.previous_service_identity_endorsements";
/// App version number (decimal text) → `consort_gov::AppVersion` (JSON): every app a proposal
/// left deployed, with its bundle (SPEC §10). Written once per key, so a key's version is the
/// seqno at which that app took effect.
pub const APP_VERSIONS: &str = "public:ccf.internal.app_versions";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_names() {
        assert_eq!(MapKind::of("public:ccf.gov.users.certs"), MapKind::Governance);
        assert_eq!(MapKind::of("ccf.gov.x"), MapKind::Governance);
        assert_eq!(MapKind::of("public:ccf.internal.signatures"), MapKind::Internal);
        assert_eq!(MapKind::of("public:ccf.other"), MapKind::Reserved);
        assert_eq!(MapKind::of("ccf.app"), MapKind::Reserved);
        assert_eq!(MapKind::of("records"), MapKind::App { public: false });
        assert_eq!(MapKind::of("public:records"), MapKind::App { public: true });
        assert_eq!(MapKind::of("Public:records"), MapKind::App { public: false });
    }
}
