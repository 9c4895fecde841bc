//! Names of the framework's tables (SPEC §5) and how their values are shaped.

pub const MEMBERS_CERTS: &str = "public:ccf.gov.members.certs";
pub const MEMBERS_INFO: &str = "public:ccf.gov.members.info";
pub const MEMBERS_ENCRYPTION_KEYS: &str = "public:ccf.gov.members.encryption_public_keys";
pub const USERS_CERTS: &str = "public:ccf.gov.users.certs";
pub const USERS_INFO: &str = "public:ccf.gov.users.info";
pub const NODES_INFO: &str = "public:ccf.gov.nodes.info";
pub const SERVICE_INFO: &str = consort_ledger::verify::SERVICE_INFO_TABLE;
pub const MODULES: &str = "public:ccf.gov.modules";
pub const ENDPOINTS: &str = "public:ccf.gov.endpoints";
/// Singleton: the JS runtime limits (`consort_js::RuntimeOptions` as JSON).
pub const JS_RUNTIME_OPTIONS: &str = "public:ccf.gov.js_runtime_options";

/// JWT issuers by issuer (raw key): `{auto_refresh, ca_cert_bundle_name}` (CCF's `JwtIssuerMetadata`).
pub const JWT_ISSUERS: &str = "public:ccf.gov.jwt.issuers";
/// JWT signing keys by `kid` (raw key): a list of `consort_crypto::jwt::JwtKeyMetadata`.
pub const JWT_PUBLIC_SIGNING_KEYS: &str = "public:ccf.gov.jwt.public_signing_keys_metadata_v2";

/// The key of an endpoint in [`ENDPOINTS`]: `"<METHOD> <path>"`, e.g. `"POST /log/private"`.
pub fn endpoint_key(method: &str, path: &str) -> String {
    format!("{} {path}", method.to_ascii_uppercase())
}
