//! The BLAKE3 Merkle tree over ledger leaves, with roots and inclusion proofs for any prefix.
//!
//! The tree over leaves `D[0..n)` is defined as in RFC 6962: one leaf is its own root; otherwise
//! with `k` the largest power of two below `n`, `root = BLAKE3(root(D[0..k)) ‖ root(D[k..n)))`.
//! Every complete, aligned subtree's hash is kept (`levels[h][i]` covers leaves
//! `[i·2^h, (i+1)·2^h)`), so the root of any prefix, and a proof within it, cost O(log² n).

use crate::Digest;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofStep {
    /// The sibling is on the left: `parent = BLAKE3(sibling ‖ current)`.
    Left(Digest),
    /// The sibling is on the right: `parent = BLAKE3(current ‖ sibling)`.
    Right(Digest),
}

pub fn hash_children(left: &Digest, right: &Digest) -> Digest {
    let mut h = blake3::Hasher::new();
    h.update(left);
    h.update(right);
    *h.finalize().as_bytes()
}

/// Recomputes a root from a leaf and its proof.
pub fn root_from_proof(leaf: &Digest, proof: &[ProofStep]) -> Digest {
    proof.iter().fold(*leaf, |cur, step| match step {
        ProofStep::Left(s) => hash_children(s, &cur),
        ProofStep::Right(s) => hash_children(&cur, s),
    })
}

#[derive(Debug, Clone, Default)]
pub struct MerkleTree {
    levels: Vec<Vec<Digest>>,
}

impl MerkleTree {
    pub fn len(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn append(&mut self, leaf: Digest) {
        if self.levels.is_empty() {
            self.levels.push(Vec::new());
        }
        self.levels[0].push(leaf);
        let mut h = 0;
        while self.levels[h].len().is_multiple_of(2) {
            let n = self.levels[h].len();
            let parent = hash_children(&self.levels[h][n - 2], &self.levels[h][n - 1]);
            if self.levels.len() == h + 1 {
                self.levels.push(Vec::new());
            }
            self.levels[h + 1].push(parent);
            h += 1;
        }
    }

    /// Drops leaves `n..` (consensus truncated an uncommitted suffix).
    pub fn truncate(&mut self, n: u64) {
        for (h, level) in self.levels.iter_mut().enumerate() {
            level.truncate((n >> h) as usize);
        }
        while self.levels.last().is_some_and(|l| l.is_empty()) && self.levels.len() > 1 {
            self.levels.pop();
        }
    }

    /// Root of the first `n` leaves; `None` if `n` is 0 or beyond the tree.
    pub fn root_at(&self, n: u64) -> Option<Digest> {
        (n >= 1 && n <= self.len()).then(|| self.range_root(0, n))
    }

    /// Inclusion proof of leaf `index` in the tree of the first `n` leaves, leaf to root.
    pub fn proof(&self, index: u64, n: u64) -> Option<Vec<ProofStep>> {
        if index >= n || n > self.len() {
            return None;
        }
        let mut out = Vec::new();
        self.path(index, 0, n, &mut out);
        Some(out)
    }

    pub fn leaf(&self, index: u64) -> Option<Digest> {
        self.levels.first()?.get(index as usize).copied()
    }

    fn range_root(&self, start: u64, n: u64) -> Digest {
        if n.is_power_of_two() {
            let h = n.trailing_zeros() as usize;
            return self.levels[h][(start >> h) as usize];
        }
        let k = split(n);
        hash_children(&self.range_root(start, k), &self.range_root(start + k, n - k))
    }

    fn path(&self, index: u64, start: u64, n: u64, out: &mut Vec<ProofStep>) {
        if n == 1 {
            return;
        }
        let k = split(n);
        if index < k {
            self.path(index, start, k, out);
            out.push(ProofStep::Right(self.range_root(start + k, n - k)));
        } else {
            self.path(index - k, start + k, n - k, out);
            out.push(ProofStep::Left(self.range_root(start, k)));
        }
    }
}

/// The largest power of two strictly below `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(i: u64) -> Digest {
        *blake3::hash(&i.to_le_bytes()).as_bytes()
    }

    /// Straight from the definition, with no stored levels.
    fn reference_root(leaves: &[Digest]) -> Digest {
        if leaves.len() == 1 {
            return leaves[0];
        }
        let k = split(leaves.len() as u64) as usize;
        hash_children(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
    }

    #[test]
    fn roots_and_proofs_for_every_prefix() {
        let mut tree = MerkleTree::default();
        let leaves: Vec<Digest> = (0..70).map(leaf).collect();
        for l in &leaves {
            tree.append(*l);
        }
        for n in 1..=70u64 {
            let root = tree.root_at(n).expect("root");
            assert_eq!(root, reference_root(&leaves[..n as usize]), "n={n}");
            for i in 0..n {
                let proof = tree.proof(i, n).expect("proof");
                assert_eq!(root_from_proof(&leaves[i as usize], &proof), root, "i={i} n={n}");
                let mut bad = leaves[i as usize];
                bad[0] ^= 1;
                assert_ne!(root_from_proof(&bad, &proof), root);
            }
        }
        assert!(tree.root_at(0).is_none() && tree.root_at(71).is_none() && tree.proof(5, 5).is_none());
    }

    #[test]
    fn truncate_then_regrow_matches_fresh_tree() {
        let mut tree = MerkleTree::default();
        for i in 0..37 {
            tree.append(leaf(i));
        }
        tree.truncate(21);
        assert_eq!(tree.len(), 21);
        for i in 100..110 {
            tree.append(leaf(i));
        }
        let mut fresh = MerkleTree::default();
        for i in (0..21).chain(100..110) {
            fresh.append(leaf(i));
        }
        assert_eq!(tree.root_at(31), fresh.root_at(31));
    }
}
