use std::io::Cursor;

use consort_crypto::LedgerSecret;
use consort_kv::WriteSet;
use consort_ledger::{AppRef, LedgerEntry, ZERO_DIGEST};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProposalKind {
    Tx,
    Signature,
}

/// What the primary proposes to the log: a ledger entry without its position, which Raft
/// assigns. Private writes are already sealed, so they never travel or rest in the clear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub kind: ProposalKind,
    pub claims_digest: [u8; 32],
    #[serde(with = "serde_bytes")]
    pub public: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub private: Vec<u8>,
    /// For a transaction the app ran: which version of it.
    #[serde(default)]
    pub app: Option<AppRef>,
    /// For a transaction the app ran with its inputs recorded: the inputs, sealed.
    #[serde(default, with = "serde_bytes")]
    pub inputs: Vec<u8>,
}

impl std::fmt::Display for Proposal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}({}+{} bytes)", self.kind, self.public.len(), self.private.len())
    }
}

impl Proposal {
    /// Splits a write set into its public part (clear) and private part (sealed).
    pub fn transaction(writes: WriteSet, claims_digest: Option<[u8; 32]>, secret: &LedgerSecret) -> Proposal {
        let claims_digest = claims_digest.unwrap_or(ZERO_DIGEST);
        let (public, private) = writes.split_public();
        let public = public.encode();
        let private = if private.is_empty() {
            Vec::new()
        } else {
            secret.seal(&LedgerEntry::private_aad(&claims_digest, &public), &private.encode())
        };
        Proposal { kind: ProposalKind::Tx, claims_digest, public, private, app: None, inputs: Vec::new() }
    }

    /// Names the app version that ran the transaction and, when given, seals its recorded
    /// inputs under `secret` (bound to this entry's claims digest and public writes).
    pub fn ran_by(mut self, app: AppRef, inputs: Option<&[u8]>, secret: &LedgerSecret) -> Proposal {
        self.app = Some(app);
        self.inputs = inputs.map_or_else(Vec::new, |plain| secret.seal(&LedgerEntry::inputs_aad(&self.claims_digest, &self.public), plain));
        self
    }
}

openraft::declare_raft_types!(
    /// Consort's Raft types: proposals in, nothing but the log id out.
    pub TypeConfig:
        D = Proposal,
        R = (),
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<u64>;
pub type StorageError = openraft::StorageError<u64>;
