//! Consensus: openraft glue around the ledger and the KV store.
//!
//! - [`log_store`]: the Raft log *is* the ledger — entries go to the ledger's chunk files;
//!   Raft's vote and committed mark go to sled.
//! - [`state_machine`]: applies committed entries in order to the KV [`consort_kv::Store`] and
//!   the [`applied`] ledger (Merkle tree, views, signatures; bounded in memory), and checks
//!   every signature entry's root against its own tree.
//! - [`Consensus`]: the handle the node uses — submit transactions (in reservation order),
//!   ask for transaction status and receipts; it also runs the signature task.
//!
//! The Raft term is the view and the log index the seqno, so a transaction id is `term.index`.

// openraft's `StorageError` is large, and every storage trait method must return it.
#![allow(clippy::result_large_err)]

pub mod applied;
mod convert;
mod handle;
mod log_store;
mod network;
pub mod recovery;
pub mod replay;
mod secrets;
mod signer;
pub mod snapshot;
mod state_machine;
#[cfg(test)]
mod storage_suite;
mod types;

pub use applied::{AppliedError, AppliedLedger, Retention, RECENT_ENTRIES};
pub use handle::{
    CommitError, Consensus, ConsensusConfig, HistoricalEntry, HistoricalError, MembershipError, NotReady, RaftFigures, ReceiptError,
    StartError, TxStatus,
};
pub use network::{ForwardError, ForwardHandler};
pub use types::{Proposal, ProposalKind, TypeConfig};

/// Raft's node id for a Consort node id (hex SHA-256): its first 64 bits.
pub fn raft_node_id(node_id_hex: &str) -> u64 {
    let prefix = node_id_hex.get(..16).unwrap_or("0");
    u64::from_str_radix(prefix, 16).unwrap_or(0)
}
