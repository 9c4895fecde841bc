//! The ledger secrets a node holds: the service's first one, then one per rekey. A rekey
//! transaction carries the new secret wrapped for each trusted node in
//! [`consort_kv::names::LEDGER_SECRETS`]; when a node applies it, the secret is used for transactions after
//! it. Transactions are sealed before Raft orders them, so one sealed just before the switch
//! may land just after it: opening tries the secret for the entry's seqno, then older ones.

use std::sync::RwLock;

use consort_crypto::{LedgerSecret, NodeKey};
use consort_kv::WriteSet;

pub struct LedgerSecrets {
    /// `(first seqno it applies to, secret)`, ascending.
    list: RwLock<Vec<(u64, LedgerSecret)>>,
}

impl LedgerSecrets {
    /// The service's first secret and, for a node that joined after rekeys, the later ones it
    /// was given (`(first seqno, secret)`, ascending).
    pub fn new(first: LedgerSecret, later: Vec<(u64, LedgerSecret)>) -> LedgerSecrets {
        let mut list = vec![(0, first)];
        list.extend(later);
        list.sort_by_key(|(from, _)| *from);
        LedgerSecrets { list: RwLock::new(list) }
    }

    /// Every secret, `(first seqno, secret)` ascending (the first from 0).
    pub fn all(&self) -> Vec<(u64, LedgerSecret)> {
        self.read().clone()
    }

    /// Every secret after the first, for a joining node.
    pub fn later(&self) -> Vec<(u64, LedgerSecret)> {
        self.read().iter().skip(1).map(|(from, s)| (*from, s.clone())).collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<(u64, LedgerSecret)>> {
        self.list.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The secret new transactions are sealed with.
    pub fn current(&self) -> LedgerSecret {
        self.read().last().map(|(_, s)| s.clone()).expect("there is always a first secret")
    }

    /// The seqno from which the current secret applies (0: the service's first secret).
    pub fn current_since(&self) -> u64 {
        self.read().last().map_or(0, |(from, _)| *from)
    }

    /// How many secrets the service has had.
    pub fn count(&self) -> usize {
        self.read().len()
    }

    /// Opens the private part of the entry at `seqno`.
    pub fn open(&self, seqno: u64, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, consort_crypto::CryptoError> {
        let list = self.read();
        let newest_usable = list.partition_point(|(from, _)| *from <= seqno);
        let mut last_error = consort_crypto::CryptoError::Decrypt;
        for (_, secret) in list[..newest_usable].iter().rev() {
            match secret.open(aad, sealed) {
                Ok(plain) => return Ok(plain),
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    /// Called as the transaction at `seqno` is applied: if it rekeys the ledger, the secret
    /// wrapped for `node_id` applies from `seqno + 1`. Replaying the ledger installs the same
    /// secrets again, so a restarted node needs nothing but its own key.
    pub fn apply(&self, seqno: u64, writes: &WriteSet, node_id: &str, node_key: &NodeKey) -> Result<(), String> {
        let Some(Some(wrapped)) = writes.maps.get(consort_kv::names::LEDGER_SECRETS).and_then(|m| m.get(node_id.as_bytes())) else {
            return Ok(());
        };
        let secret = consort_crypto::unwrap_secret(node_key, wrapped).map_err(|e| format!("the ledger secret of rekey {seqno}: {e}"))?;
        let mut list = self.list.write().unwrap_or_else(|p| p.into_inner());
        if list.last().is_some_and(|(from, _)| *from > seqno) {
            return Ok(()); // already installed (a replay of an entry applied before)
        }
        list.push((seqno + 1, secret));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_open_with_their_secret_or_an_older_one() {
        let first = LedgerSecret::generate();
        let secrets = LedgerSecrets::new(first.clone(), Vec::new());
        let node = NodeKey::generate();
        let second = LedgerSecret::generate();
        let mut ws = WriteSet::default();
        ws.put(
            consort_kv::names::LEDGER_SECRETS,
            b"n1".to_vec(),
            consort_crypto::wrap_secret_for(&node.public_key_der(), &second).expect("wrap"),
        );
        secrets.apply(10, &ws, "other-node", &node).expect("not for us");
        assert_eq!(secrets.count(), 1);
        secrets.apply(10, &ws, "n1", &node).expect("rekey");
        assert_eq!((secrets.count(), secrets.current_since()), (2, 11));
        assert_eq!(secrets.current().as_bytes(), second.as_bytes());
        let old = first.seal(b"aad", b"old");
        let new = second.seal(b"aad", b"new");
        assert_eq!(secrets.open(5, b"aad", &old).expect("old before"), b"old");
        assert_eq!(secrets.open(12, b"aad", &old).expect("sealed before the switch, ordered after"), b"old");
        assert_eq!(secrets.open(12, b"aad", &new).expect("new after"), b"new");
        assert!(secrets.open(5, b"aad", &new).is_err(), "a newer secret never opens an older entry");
        secrets.apply(10, &ws, "n1", &node).expect("replayed");
        assert_eq!(secrets.count(), 2, "a replay installs nothing twice");
        let joiner = LedgerSecrets::new(first.clone(), secrets.later());
        assert_eq!(joiner.open(12, b"aad", &new).expect("a joiner given the later secrets"), b"new");
    }
}
