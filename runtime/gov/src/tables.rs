//! The framework's governance tables (SPEC §5). Keys are raw bytes (ids as hex text, a
//! singleton's key is eight zero bytes); values are JSON, except where CCF keeps raw text
//! (certificates, module sources, proposals), noted below.

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
