//! The ledger: entries, the BLAKE3 Merkle tree over them, signature transactions, receipts,
//! chunk files on disk and offline verification (SPEC §7).
//!
//! Everything but [`files`] and [`verify::verify_dir`] is pure: bytes in, bytes out.

pub mod entry;
pub mod evidence;
pub mod files;
pub mod merkle;
pub mod receipt;
pub mod signature;
pub mod spill;
pub mod verify;

pub use entry::{AppRef, EntryError, EntryKind, LedgerEntry, ZERO_DIGEST};
pub use evidence::CommitSecret;
pub use files::{Durability, LedgerFiles, LedgerFilesError};
pub use merkle::{Keep, MerkleTree, ProofStep, TreeError};
pub use receipt::{Receipt, ReceiptError};
pub use signature::SignatureRecord;

/// A 32-byte BLAKE3 digest.
pub type Digest = [u8; 32];
