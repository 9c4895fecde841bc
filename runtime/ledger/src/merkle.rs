//! The BLAKE3 Merkle tree over ledger leaves, with roots and inclusion proofs for any prefix.
//!
//! The tree over leaves `D[0..n)` is defined as in RFC 6962: one leaf is its own root; otherwise
//! with `k` the largest power of two below `n`, `root = BLAKE3(root(D[0..k)) ‖ root(D[k..n)))`.
//! Every complete, aligned subtree's hash is kept (`levels[h][i]` covers leaves
//! `[i·2^h, (i+1)·2^h)`), so the root of any prefix, and a proof within it, cost O(log² n)
//! node reads. A node's tree keeps only the nodes over its newest leaves in memory and the
//! older ones in files ([`Keep`]), so its memory does not grow with the ledger.

use std::path::{Path, PathBuf};

use crate::spill::{SpillError, SpillVec};
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

/// Where a tree keeps its nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Keep {
    /// Every node, in memory.
    #[default]
    All,
    /// In memory, the nodes over the newest `leaves` leaves (and the frontier); older nodes go
    /// to one file per level in `dir` (`level-<h>`, recreated empty when the tree is made: the
    /// tree is derived from the ledger again at every start), or are forgotten without one.
    Recent { leaves: usize, dir: Option<PathBuf> },
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TreeError {
    #[error("no root or proof for leaf {index} of the first {size} leaves: the tree holds leaves {known_from}..{len}")]
    OutOfRange { index: u64, size: u64, known_from: u64, len: u64 },
    #[error("a tree of {n} leaves has {expected} frontier hashes, not {got}")]
    BadFrontier { n: u64, expected: u32, got: usize },
    #[error("Merkle tree nodes: {0}")]
    Nodes(#[from] SpillError),
}

/// The tree over the leaves appended so far. A tree may also start from the *frontier* of an
/// earlier tree (the roots of the complete subtrees that make up its first `n` leaves, as a
/// snapshot carries them): it then has the same roots for every prefix of at least `n` leaves,
/// and proofs for the leaves from `n` on, without the first `n` leaves themselves.
#[derive(Debug)]
pub struct MerkleTree {
    /// `levels[h]` holds the complete subtrees of height `h` (from the first one the tree knows).
    levels: Vec<SpillVec<32>>,
    /// The number of leaves of the frontier the tree started from (0: it has every leaf).
    known_from: u64,
    keep: Keep,
}

impl Default for MerkleTree {
    fn default() -> Self {
        MerkleTree { levels: Vec::new(), known_from: 0, keep: Keep::All }
    }
}

impl MerkleTree {
    /// An empty tree that keeps its nodes as `keep` says.
    pub fn new(keep: Keep) -> Result<MerkleTree, TreeError> {
        MerkleTree::from_frontier(0, &[], keep)
    }

    /// A tree that continues the one whose first `n` leaves have the given frontier (as
    /// [`MerkleTree::frontier`] returns it), keeping its nodes as `keep` says.
    pub fn from_frontier(n: u64, frontier: &[Digest], keep: Keep) -> Result<MerkleTree, TreeError> {
        if frontier.len() != n.count_ones() as usize {
            return Err(TreeError::BadFrontier { n, expected: n.count_ones(), got: frontier.len() });
        }
        if let Keep::Recent { dir: Some(dir), .. } = &keep {
            clear_level_files(dir)?;
        }
        let height = (u64::BITS - n.leading_zeros()) as usize;
        let mut tree = MerkleTree { levels: Vec::with_capacity(height), known_from: n, keep };
        let mut peaks = frontier.iter().rev();
        for h in 0..height {
            if n >> h & 1 == 1 {
                tree.add_level((n >> h) - 1)?;
                tree.levels[h].push(*peaks.next().expect("counted above"))?;
            } else {
                tree.add_level(n >> h)?;
            }
        }
        Ok(tree)
    }

    fn add_level(&mut self, first: u64) -> Result<(), TreeError> {
        let h = self.levels.len();
        let level = match &self.keep {
            Keep::All => SpillVec::new(first, usize::MAX, None)?,
            Keep::Recent { leaves, dir } => {
                // Enough nodes of each level for every proof and root over the newest leaves.
                let path = dir.as_ref().map(|d| d.join(format!("level-{h}")));
                SpillVec::new(first, (leaves >> h.min(63)) + 2, path.as_deref())?
            }
        };
        self.levels.push(level);
        Ok(())
    }

    /// The roots of the complete subtrees that make up the whole tree, largest first: with the
    /// tree's length, all a successor tree needs ([`MerkleTree::from_frontier`]).
    pub fn frontier(&self) -> Vec<Digest> {
        let n = self.len();
        (0..self.levels.len())
            .rev()
            .filter(|h| n >> h & 1 == 1)
            .map(|h| *self.levels[h].last().expect("a level whose bit is set in the length ends with that subtree"))
            .collect()
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
        self.levels.get(h).map_or(0, |l| l.len())
    }

    fn node(&self, h: usize, i: u64) -> Result<Digest, TreeError> {
        Ok(self.levels[h].get(i)?)
    }

    pub fn append(&mut self, leaf: Digest) -> Result<(), TreeError> {
        if self.levels.is_empty() {
            self.add_level(0)?;
        }
        self.levels[0].push(leaf)?;
        let mut h = 0;
        while self.count(h).is_multiple_of(2) {
            let n = self.count(h);
            let parent = hash_children(&self.node(h, n - 2)?, &self.node(h, n - 1)?);
            if self.levels.len() == h + 1 {
                self.add_level(0)?;
            }
            self.levels[h + 1].push(parent)?;
            h += 1;
        }
        Ok(())
    }

    /// The root of the whole tree, from its frontier (never reads a file); `None` if empty.
    pub fn root(&self) -> Option<Digest> {
        let mut peaks = self.frontier().into_iter().rev();
        let smallest = peaks.next()?;
        Some(peaks.fold(smallest, |acc, peak| hash_children(&peak, &acc)))
    }

    /// Root of the first `n` leaves; an error if `n` is 0, beyond the tree, or before the
    /// frontier the tree started from.
    pub fn root_at(&self, n: u64) -> Result<Digest, TreeError> {
        if n == 0 || n < self.known_from || n > self.len() {
            return Err(self.out_of_range(n.saturating_sub(1), n));
        }
        match self.root() {
            Some(root) if n == self.len() => Ok(root),
            _ => self.range_root(0, n),
        }
    }

    /// Inclusion proof of leaf `index` in the tree of the first `n` leaves, leaf to root.
    pub fn proof(&self, index: u64, n: u64) -> Result<Vec<ProofStep>, TreeError> {
        if index >= n || n > self.len() || index < self.known_from {
            return Err(self.out_of_range(index, n));
        }
        let mut out = Vec::new();
        self.path(index, 0, n, &mut out)?;
        Ok(out)
    }

    fn out_of_range(&self, index: u64, size: u64) -> TreeError {
        TreeError::OutOfRange { index, size, known_from: self.known_from, len: self.len() }
    }

    fn range_root(&self, start: u64, n: u64) -> Result<Digest, TreeError> {
        if n.is_power_of_two() {
            let h = n.trailing_zeros() as usize;
            return self.node(h, start >> h);
        }
        let k = split(n);
        Ok(hash_children(&self.range_root(start, k)?, &self.range_root(start + k, n - k)?))
    }

    fn path(&self, index: u64, start: u64, n: u64, out: &mut Vec<ProofStep>) -> Result<(), TreeError> {
        if n == 1 {
            return Ok(());
        }
        let k = split(n);
        if index < k {
            self.path(index, start, k, out)?;
            out.push(ProofStep::Right(self.range_root(start + k, n - k)?));
        } else {
            self.path(index - k, start + k, n - k, out)?;
            out.push(ProofStep::Left(self.range_root(start, k)?));
        }
        Ok(())
    }
}

/// Removes the level files an earlier tree left in `dir` (creating `dir` if needed).
fn clear_level_files(dir: &Path) -> Result<(), SpillError> {
    let io = |source| SpillError::Io { path: dir.to_owned(), source };
    std::fs::create_dir_all(dir).map_err(io)?;
    for item in std::fs::read_dir(dir).map_err(io)? {
        let path = item.map_err(io)?.path();
        if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("level-")) {
            std::fs::remove_file(&path).map_err(|source| SpillError::Io { path: path.clone(), source })?;
        }
    }
    Ok(())
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

    fn tree_of(leaves: &[Digest], keep: Keep) -> MerkleTree {
        let mut tree = MerkleTree::new(keep).expect("new tree");
        for l in leaves {
            tree.append(*l).expect("append");
        }
        tree
    }

    fn tempdir(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("consort-merkle-{name}-{}", std::process::id()))
    }

    #[test]
    fn roots_and_proofs_for_every_prefix() {
        let leaves: Vec<Digest> = (0..70).map(leaf).collect();
        let tree = tree_of(&leaves, Keep::All);
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
        assert_eq!(tree.root(), Some(reference_root(&leaves)));
        assert!(MerkleTree::default().root().is_none());
        for (index, size) in [(0, 0), (70, 71), (5, 5)] {
            assert!(matches!(tree.proof(index, size), Err(TreeError::OutOfRange { .. })), "proof {index} of {size}");
        }
        assert!(tree.root_at(0).is_err() && tree.root_at(71).is_err());
    }

    #[test]
    fn a_tree_that_spills_to_files_answers_every_root_and_proof_as_one_in_memory() {
        let dir = tempdir("files");
        let leaves: Vec<Digest> = (0..300).map(leaf).collect();
        let all = tree_of(&leaves, Keep::All);
        let spilled = tree_of(&leaves, Keep::Recent { leaves: 8, dir: Some(dir.clone()) });
        let in_memory: usize = spilled.levels.iter().map(|l| l.in_memory()).sum();
        assert!(in_memory <= 2 * 8 + 4 * spilled.levels.len(), "{in_memory} nodes in memory");
        assert_eq!(spilled.frontier(), all.frontier());
        for n in (1..=300u64).step_by(7).chain([300]) {
            assert_eq!(spilled.root_at(n).expect("root"), all.root_at(n).expect("root"), "n={n}");
            for i in (0..n).step_by(5) {
                assert_eq!(spilled.proof(i, n).expect("proof"), all.proof(i, n).expect("proof"), "i={i} n={n}");
            }
        }
        // A new tree in the same directory starts from nothing: the files are only a cache.
        drop(spilled);
        let again = tree_of(&leaves[..3], Keep::Recent { leaves: 8, dir: Some(dir.clone()) });
        assert_eq!(again.root(), all.root_at(3).ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_tree_without_files_proves_its_newest_leaves_and_says_when_it_forgot() {
        let leaves: Vec<Digest> = (0..500).map(leaf).collect();
        let all = tree_of(&leaves, Keep::All);
        let recent = tree_of(&leaves, Keep::Recent { leaves: 16, dir: None });
        for n in 485..=500u64 {
            assert_eq!(recent.root_at(n).expect("recent root"), all.root_at(n).expect("root"), "n={n}");
            for i in 485..n {
                assert_eq!(recent.proof(i, n).expect("recent proof"), all.proof(i, n).expect("proof"), "i={i} n={n}");
            }
        }
        assert!(matches!(recent.proof(3, 500), Err(TreeError::Nodes(SpillError::Forgotten(_)))));
        assert!(matches!(recent.root_at(100), Err(TreeError::Nodes(SpillError::Forgotten(_)))));
    }

    #[test]
    fn a_tree_continued_from_a_frontier_has_the_same_roots_and_proofs() {
        let leaves: Vec<Digest> = (0..70).map(leaf).collect();
        let full = tree_of(&leaves, Keep::All);
        for n in 0..=64u64 {
            let frontier = tree_of(&leaves[..n as usize], Keep::All).frontier();
            assert_eq!(frontier.len(), n.count_ones() as usize);
            for keep in [Keep::All, Keep::Recent { leaves: 4, dir: None }] {
                let mut cont = MerkleTree::from_frontier(n, &frontier, keep).expect("frontier fits");
                assert_eq!(cont.len(), n);
                assert_eq!(cont.frontier(), frontier, "n={n}");
                assert_eq!(cont.root(), full.root_at(n).ok(), "n={n}");
                for l in &leaves[n as usize..] {
                    cont.append(*l).expect("append");
                }
                assert_eq!(cont.root_at(70).expect("root"), full.root_at(70).expect("root"), "n={n}");
                for m in n.max(66)..=70 {
                    assert_eq!(cont.root_at(m).expect("root"), full.root_at(m).expect("root"), "n={n} m={m}");
                    for i in n.max(66)..m {
                        assert_eq!(cont.proof(i, m).expect("proof"), full.proof(i, m).expect("proof"), "n={n} i={i} m={m}");
                    }
                }
                assert!(n <= 1 || cont.root_at(n - 1).is_err(), "no root before the frontier");
                assert!(n == 0 || cont.proof(n - 1, 70).is_err(), "no proof of a leaf before the frontier");
            }
            let cont = MerkleTree::from_frontier(n, &frontier, Keep::All).expect("frontier fits");
            let mut cont = cont;
            for l in &leaves[n as usize..] {
                cont.append(*l).expect("append");
            }
            for m in n.max(1)..=70 {
                for i in n..m {
                    assert_eq!(cont.proof(i, m).expect("proof"), full.proof(i, m).expect("proof"), "n={n} i={i} m={m}");
                }
            }
        }
        assert!(matches!(MerkleTree::from_frontier(5, &[leaf(0)], Keep::All), Err(TreeError::BadFrontier { .. })));
    }
}
