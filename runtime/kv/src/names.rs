//! Map names and who owns them (SPEC §3).

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
