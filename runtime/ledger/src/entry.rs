//! One ledger entry and its byte format (versions 1, 2 and 3).
//!
//! ```text
//! format:u8=1 kind:u8 view:u64 seqno:u64 commit_evidence_digest:[32] claims_digest:[32]
//! public_len:u32 public  private_len:u32 private
//! format:u8=2 ... claims_digest:[32] app_version:u64 bundle_digest:[32] public_len:u32 ...
//! format:u8=3 ... (as 2) ... private_len:u32 private  inputs_len:u32 inputs
//! ```
//! Integers are little-endian. `public` is the encoded public write set (or, for signature and
//! membership entries, their JSON record); `private` is `nonce ‖ AES-256-GCM(private write set)
//! ‖ tag` sealed under the ledger secret with `claims_digest ‖ public` as associated data.
//! Format 2 is a transaction run by the app: it names the app version that ran it (issue 23),
//! and its write-set digest binds that version (see [`LedgerEntry::write_set_digest`]).
//! Format 3 also carries the transaction's inputs (request and drawn values, for replay), sealed
//! under the ledger secret as the private part is (with [`LedgerEntry::inputs_aad`]).

use consort_kv::TxId;

use crate::Digest;

pub const FORMAT_VERSION: u8 = 1;
/// The format of an entry that names the app version which ran it.
pub const FORMAT_WITH_APP: u8 = 2;
/// The format of an entry that names the app version and carries the sealed inputs.
pub const FORMAT_WITH_INPUTS: u8 = 3;
pub const ZERO_DIGEST: Digest = [0; 32];
const HEADER_BYTES: usize = 1 + 1 + 8 + 8 + 32 + 32;
const APP_BYTES: usize = 8 + 32;

/// The app version that ran a transaction: its number and the BLAKE3 digest of its bundle
/// (`consort_gov::app_versions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AppRef {
    pub version: u64,
    pub bundle_digest: Digest,
}

impl AppRef {
    /// The write-set digest of an entry whose other contents digest to `entry_digest`:
    /// `BLAKE3(entry_digest ‖ version:u64 LE ‖ bundle_digest)`. A receipt carries the three
    /// inputs, so a verifier recomputes it and learns which code ran.
    pub fn bind(&self, entry_digest: &Digest) -> Digest {
        let mut h = blake3::Hasher::new();
        h.update(entry_digest);
        h.update(&self.version.to_le_bytes());
        h.update(&self.bundle_digest);
        *h.finalize().as_bytes()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum EntryKind {
    /// A transaction's writes.
    Tx = 1,
    /// A signature over the Merkle root ([`crate::SignatureRecord`] as JSON in `public`).
    Signature = 2,
    /// Written by consensus when a view starts; no writes.
    Blank = 3,
    /// A change of the consensus configuration (JSON in `public`).
    Membership = 4,
}

impl EntryKind {
    /// Entries that end a run of transactions and are synced with everything before them
    /// ([`crate::files::Durability::SyncPoints`]): signatures, view starts, membership changes.
    pub fn is_sync_point(self) -> bool {
        self != EntryKind::Tx
    }

    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => EntryKind::Tx,
            2 => EntryKind::Signature,
            3 => EntryKind::Blank,
            4 => EntryKind::Membership,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    #[error("entry truncated: {0}")]
    Truncated(&'static str),
    #[error("unknown ledger format version {0}")]
    Version(u8),
    #[error("unknown entry kind {0}")]
    Kind(u8),
    #[error("{0} trailing bytes after the entry")]
    Trailing(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub txid: TxId,
    pub kind: EntryKind,
    pub commit_evidence_digest: Digest,
    pub claims_digest: Digest,
    pub public: Vec<u8>,
    pub private: Vec<u8>,
    /// For a transaction the app ran: which version of it (formats 2 and 3).
    pub app: Option<AppRef>,
    /// For a transaction the app ran with its inputs recorded: `nonce ‖ AES-256-GCM(inputs) ‖
    /// tag` (format 3); empty otherwise. Only an entry with an app version carries inputs.
    pub inputs: Vec<u8>,
}

impl LedgerEntry {
    fn format(&self) -> u8 {
        match (&self.app, self.inputs.is_empty()) {
            (None, _) => FORMAT_VERSION,
            (Some(_), true) => FORMAT_WITH_APP,
            (Some(_), false) => FORMAT_WITH_INPUTS,
        }
    }

    /// The parts after the fixed fields, in their order on disk.
    fn parts(&self) -> Vec<&Vec<u8>> {
        if self.format() == FORMAT_WITH_INPUTS {
            vec![&self.public, &self.private, &self.inputs]
        } else {
            vec![&self.public, &self.private]
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        debug_assert!(self.inputs.is_empty() || self.app.is_some(), "inputs without an app version are not encoded");
        let mut out = Vec::with_capacity(HEADER_BYTES + APP_BYTES + 12 + self.public.len() + self.private.len() + self.inputs.len());
        out.push(self.format());
        out.push(self.kind as u8);
        out.extend_from_slice(&self.txid.view.to_le_bytes());
        out.extend_from_slice(&self.txid.seqno.to_le_bytes());
        out.extend_from_slice(&self.commit_evidence_digest);
        out.extend_from_slice(&self.claims_digest);
        if let Some(app) = &self.app {
            out.extend_from_slice(&app.version.to_le_bytes());
            out.extend_from_slice(&app.bundle_digest);
        }
        for part in self.parts() {
            let len = u32::try_from(part.len()).expect("entry part above 4 GiB");
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(part);
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, EntryError> {
        if bytes.len() < HEADER_BYTES {
            return Err(EntryError::Truncated("header"));
        }
        let (with_app, with_inputs) = match bytes[0] {
            FORMAT_VERSION => (false, false),
            FORMAT_WITH_APP => (true, false),
            FORMAT_WITH_INPUTS => (true, true),
            other => return Err(EntryError::Version(other)),
        };
        let kind = EntryKind::from_u8(bytes[1]).ok_or(EntryError::Kind(bytes[1]))?;
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let digest_at = |at: usize| -> Digest { bytes[at..at + 32].try_into().expect("32 bytes") };
        let txid = TxId::new(u64_at(2), u64_at(10));
        let app = if with_app {
            if bytes.len() < HEADER_BYTES + APP_BYTES {
                return Err(EntryError::Truncated("app version"));
            }
            Some(AppRef { version: u64_at(HEADER_BYTES), bundle_digest: digest_at(HEADER_BYTES + 8) })
        } else {
            None
        };
        let mut rest = &bytes[HEADER_BYTES + if with_app { APP_BYTES } else { 0 }..];
        let mut part = |what: &'static str| -> Result<Vec<u8>, EntryError> {
            if rest.len() < 4 {
                return Err(EntryError::Truncated(what));
            }
            let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
            if rest.len() - 4 < len {
                return Err(EntryError::Truncated(what));
            }
            let out = rest[4..4 + len].to_vec();
            rest = &rest[4 + len..];
            Ok(out)
        };
        let public = part("public part")?;
        let private = part("private part")?;
        let inputs = if with_inputs { part("inputs")? } else { Vec::new() };
        if !rest.is_empty() {
            return Err(EntryError::Trailing(rest.len()));
        }
        Ok(LedgerEntry { txid, kind, commit_evidence_digest: digest_at(18), claims_digest: digest_at(50), public, private, app, inputs })
    }

    /// The associated data that private writes are sealed with.
    pub fn private_aad(claims_digest: &Digest, public: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(32 + public.len());
        aad.extend_from_slice(claims_digest);
        aad.extend_from_slice(public);
        aad
    }

    /// The associated data that an entry's inputs are sealed with: they belong to this
    /// transaction's writes, and cannot pass for its private part.
    pub fn inputs_aad(claims_digest: &Digest, public: &[u8]) -> Vec<u8> {
        let mut aad = b"consort inputs\0".to_vec();
        aad.extend_from_slice(&Self::private_aad(claims_digest, public));
        aad
    }

    /// Digest of everything the entry records except the two digests that the leaf holds
    /// separately and the app version: format, kind, `view.seqno`, public, (sealed) private and
    /// (sealed) inputs parts. For an entry without an app version this is its write-set digest.
    pub fn entry_digest(&self) -> Digest {
        let mut h = blake3::Hasher::new();
        h.update(&[self.format(), self.kind as u8]);
        h.update(&self.txid.view.to_le_bytes());
        h.update(&self.txid.seqno.to_le_bytes());
        for part in self.parts() {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part);
        }
        *h.finalize().as_bytes()
    }

    /// The leaf's first component: [`LedgerEntry::entry_digest`], bound to the app version by
    /// [`AppRef::bind`] when the entry has one.
    pub fn write_set_digest(&self) -> Digest {
        let entry = self.entry_digest();
        self.app.map_or(entry, |app| app.bind(&entry))
    }

    /// `BLAKE3(write_set_digest ‖ BLAKE3(commit_evidence) ‖ claims_digest)` (SPEC §7).
    pub fn leaf(&self) -> Digest {
        leaf_of(&self.write_set_digest(), &self.commit_evidence_digest, &self.claims_digest)
    }
}

pub fn leaf_of(write_set_digest: &Digest, commit_evidence_digest: &Digest, claims_digest: &Digest) -> Digest {
    let mut h = blake3::Hasher::new();
    h.update(write_set_digest);
    h.update(commit_evidence_digest);
    h.update(claims_digest);
    *h.finalize().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(view in any::<u64>(), seqno in any::<u64>(), kind in 1u8..=4,
                      public in proptest::collection::vec(any::<u8>(), 0..64),
                      private in proptest::collection::vec(any::<u8>(), 0..64), app in any::<bool>(),
                      inputs in proptest::collection::vec(any::<u8>(), 0..64)) {
            let e = LedgerEntry {
                txid: TxId::new(view, seqno),
                kind: EntryKind::from_u8(kind).expect("kind"),
                commit_evidence_digest: [7; 32],
                claims_digest: [9; 32],
                public, private,
                app: app.then_some(AppRef { version: view ^ 5, bundle_digest: [3; 32] }),
                inputs: if app { inputs } else { Vec::new() },
            };
            let bytes = e.encode();
            prop_assert_eq!(LedgerEntry::decode(&bytes).expect("decodes"), e.clone());
            for cut in 1..bytes.len().min(16) {
                prop_assert!(LedgerEntry::decode(&bytes[..bytes.len() - cut]).is_err());
            }
        }
    }

    #[test]
    fn every_field_changes_the_leaf() {
        let e = LedgerEntry {
            txid: TxId::new(2, 17),
            kind: EntryKind::Tx,
            commit_evidence_digest: [1; 32],
            claims_digest: ZERO_DIGEST,
            public: b"pub".to_vec(),
            private: b"priv".to_vec(),
            app: Some(AppRef { version: 3, bundle_digest: [4; 32] }),
            inputs: b"in".to_vec(),
        };
        let leaf = e.leaf();
        let mut variants = vec![e.clone(); 11];
        variants[0].txid.seqno = 18;
        variants[1].kind = EntryKind::Signature;
        variants[2].commit_evidence_digest[0] = 2;
        variants[3].claims_digest[31] = 1;
        variants[4].public.push(0);
        variants[5].private[0] ^= 1;
        variants[6].app = None;
        variants[7].app = Some(AppRef { version: 4, bundle_digest: [4; 32] });
        variants[8].app = Some(AppRef { version: 3, bundle_digest: [5; 32] });
        variants[9].inputs[1] ^= 1;
        variants[10].inputs.clear();
        for v in variants {
            assert_ne!(v.leaf(), leaf, "{v:?}");
        }
    }

    #[test]
    fn an_entry_without_an_app_version_keeps_format_1_and_its_digest() {
        let e = LedgerEntry {
            txid: TxId::new(1, 2),
            kind: EntryKind::Tx,
            commit_evidence_digest: [1; 32],
            claims_digest: ZERO_DIGEST,
            public: b"pub".to_vec(),
            private: Vec::new(),
            app: None,
            inputs: Vec::new(),
        };
        assert_eq!(e.encode()[0], 1);
        assert_eq!(e.write_set_digest(), e.entry_digest());
        let with = LedgerEntry { app: Some(AppRef { version: 1, bundle_digest: [2; 32] }), ..e.clone() };
        let bytes = with.encode();
        assert_eq!((bytes[0], bytes.len()), (2, e.encode().len() + 40));
        assert_eq!(with.write_set_digest(), AppRef { version: 1, bundle_digest: [2; 32] }.bind(&with.entry_digest()));
        assert_eq!(LedgerEntry::decode(&bytes[..HEADER_BYTES + 20]), Err(EntryError::Truncated("app version")));
        let mut v4 = bytes.clone();
        v4[0] = 4;
        assert_eq!(LedgerEntry::decode(&v4), Err(EntryError::Version(4)));
        // Inputs make format 3: the same bytes as format 2 but the first, then one more part.
        let recorded = LedgerEntry { inputs: b"sealed".to_vec(), ..with.clone() };
        let v3 = recorded.encode();
        assert_eq!((v3[0], v3.len()), (3, bytes.len() + 4 + 6));
        assert_eq!(v3[1..bytes.len()], bytes[1..]);
        assert_eq!(LedgerEntry::decode(&v3[..v3.len() - 8]), Err(EntryError::Truncated("inputs")));
        assert_ne!(recorded.entry_digest(), with.entry_digest());
    }
}
