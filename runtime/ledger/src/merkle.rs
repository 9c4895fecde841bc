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

/// The tree over the leaves appended so far. A tree may also start from the *frontier* of an
/// earlier tree (the roots of the complete subtrees that make up its first `n` leaves, as a
/// snapshot carries them): it then has the same roots for every prefix of at least `n` leaves,
/// and proofs for the leaves from `n` on, without the first `n` leaves themselves.
#[derive(Debug, Clone, Default)]
pub struct MerkleTree {
    /// `levels[h]` holds the complete subtrees of height `h` from number `starts[h]` on.
    levels: Vec<Vec<Digest>>,
    starts: Vec<u64>,
    /// The number of leaves of the frontier the tree started from (0: it has every leaf).
    known_from: u64,
}

impl MerkleTree {
    /// A tree that continues the one whose first `n` leaves have the given frontier (as
    /// [`MerkleTree::frontier`] returns it). `Err` if the frontier does not fit `n`.
    pub fn from_frontier(n: u64, frontier: &[Digest]) -> Result<MerkleTree, String> {
        if frontier.len() != n.count_ones() as usize {
            return Err(format!("a tree of {n} leaves has {} frontier hashes, not {}", n.count_ones(), frontier.len()));
        }
        let height = (u64::BITS - n.leading_zeros()) as usize;
        let mut peaks = frontier.iter();
        let mut tree = MerkleTree { levels: vec![Vec::new(); height], starts: vec![0; height], known_from: n };
        for h in (0..height).rev() {
            if n >> h & 1 == 1 {
                tree.starts[h] = (n >> h) - 1;
                tree.levels[h].push(*peaks.next().expect("counted above"));
            } else {
                tree.starts[h] = n >> h;
            }
        }
        Ok(tree)
    }

    /// The roots of the complete subtrees that make up the whole tree, largest first: with the
    /// tree's length, all a successor tree needs ([`MerkleTree::from_frontier`]).
    pub fn frontier(&self) -> Vec<Digest> {
        let n = self.len();
        (0..self.levels.len()).rev().filter(|h| n >> h & 1 == 1).map(|h| self.node(h, (n >> h) - 1)).collect()
    }

    pub fn len(&self) -> u64 {
        self.count(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first leaf this tree can prove (0 unless it started from a frontier).
    pub fn known_from(&self) -> u64 {
        self.known_from
    }

    /// How many complete subtrees of height `h` there are.
    fn count(&self, h: usize) -> u64 {
        self.levels.get(h).map_or(0, |l| self.starts[h] + l.len() as u64)
    }

    fn node(&self, h: usize, i: u64) -> Digest {
        self.levels[h][(i - self.starts[h]) as usize]
    }

    pub fn append(&mut self, leaf: Digest) {
        if self.levels.is_empty() {
            self.levels.push(Vec::new());
            self.starts.push(0);
        }
        self.levels[0].push(leaf);
        let mut h = 0;
        while self.count(h).is_multiple_of(2) {
            let n = self.count(h);
            let parent = hash_children(&self.node(h, n - 2), &self.node(h, n - 1));
            if self.levels.len() == h + 1 {
                self.levels.push(Vec::new());
                self.starts.push(0);
            }
            self.levels[h + 1].push(parent);
            h += 1;
        }
    }

    /// Drops leaves `n..` (consensus truncated an uncommitted suffix). Never below the frontier
    /// the tree started from (those leaves were committed).
    pub fn truncate(&mut self, n: u64) {
        let n = n.max(self.known_from);
        for (h, level) in self.levels.iter_mut().enumerate() {
            level.truncate(((n >> h) - self.starts[h]) as usize);
        }
        while self.levels.len() > 1 && self.levels.last().is_some_and(|l| l.is_empty()) && self.starts.last() == Some(&0) {
            self.levels.pop();
            self.starts.pop();
        }
    }

    /// Root of the first `n` leaves; `None` if `n` is 0, beyond the tree, or before the
    /// frontier the tree started from.
    pub fn root_at(&self, n: u64) -> Option<Digest> {
        (n >= 1 && n >= self.known_from && n <= self.len()).then(|| self.range_root(0, n))
    }

    /// Inclusion proof of leaf `index` in the tree of the first `n` leaves, leaf to root.
    pub fn proof(&self, index: u64, n: u64) -> Option<Vec<ProofStep>> {
        if index >= n || n > self.len() || index < self.known_from {
            return None;
        }
        let mut out = Vec::new();
        self.path(index, 0, n, &mut out);
        Some(out)
    }

    pub fn leaf(&self, index: u64) -> Option<Digest> {
        (index >= self.starts.first().copied().unwrap_or(0) && index < self.len()).then(|| self.node(0, index))
    }

    fn range_root(&self, start: u64, n: u64) -> Digest {
        if n.is_power_of_two() {
            let h = n.trailing_zeros() as usize;
            return self.node(h, start >> h);
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

    #[test]
    fn a_tree_continued_from_a_frontier_has_the_same_roots_and_proofs() {
        let leaves: Vec<Digest> = (0..70).map(leaf).collect();
        let mut full = MerkleTree::default();
        for l in &leaves {
            full.append(*l);
        }
        for n in 1..=64u64 {
            let mut prefix = MerkleTree::default();
            for l in &leaves[..n as usize] {
                prefix.append(*l);
            }
            let frontier = prefix.frontier();
            assert_eq!(frontier.len(), n.count_ones() as usize);
            let mut cont = MerkleTree::from_frontier(n, &frontier).expect("frontier fits");
            assert_eq!(cont.len(), n);
            assert_eq!(cont.frontier(), frontier, "n={n}");
            for l in &leaves[n as usize..] {
                cont.append(*l);
            }
            for m in n..=70 {
                assert_eq!(cont.root_at(m), full.root_at(m), "n={n} m={m}");
                for i in n..m {
                    assert_eq!(cont.proof(i, m), full.proof(i, m), "n={n} i={i} m={m}");
                }
            }
            assert!(n == 1 || cont.root_at(n - 1).is_none(), "no root before the frontier");
            assert!(n == 0 || cont.proof(n - 1, 70).is_none(), "no proof of a leaf before the frontier");
            cont.truncate(n + 3);
            for l in &leaves[(n + 3) as usize..] {
                cont.append(*l);
            }
            assert_eq!(cont.root_at(70), full.root_at(70), "after truncate, n={n}");
        }
        assert!(MerkleTree::from_frontier(5, &[leaf(0)]).is_err(), "5 leaves have two frontier hashes");
    }
}
