//! The transactional key-value store: named maps of byte keys to byte values.
//!
//! No IO, no JS, no clocks. A [`Tx`] reads a consistent snapshot ([`State`]) and collects a read
//! set and a write set. Committing is two steps driven by the node:
//! 1. [`Store::reserve`] checks the read set against the newest state *and* against writes that
//!    are already on their way through consensus; on success the writes become "in flight";
//! 2. [`Store::apply`] applies a write set at its ledger position (`view.seqno`), which is the
//!    version of every key it writes, and retires its in-flight marks.
//!
//! A transaction that fails step 1 is re-executed by its caller on a fresh snapshot, so a
//! conflicting write is never lost and never applied twice.

mod mirror;
pub mod names;
mod store;
mod tx;
mod txid;
mod write_set;

pub use mirror::{EntryChange, MapDelta, MapHeader, MirrorError, StateDelta, TxEffects};
pub use names::{
    is_public, MapKind, FRAMEWORK_PREFIXES, LEDGER_CHUNK_REQUESTS, LEDGER_REKEY_REQUESTS, RECOVERY_SHARES_REFRESH_REQUESTS,
    SNAPSHOT_REQUESTS,
};
pub use store::{Conflict, Reservation, State, Store};
pub use tx::{Tx, TxError};
pub use txid::{TxId, TxIdParseError};
pub use write_set::{DecodeError, MapWrites, WriteDifference, WriteSet};

/// A key or a value: opaque bytes.
pub type Bytes = Vec<u8>;

/// The key of a singleton governance table: eight zero bytes (SPEC §3).
pub const SINGLETON_KEY: [u8; 8] = [0; 8];
