//! A transaction's writes and their deterministic byte encoding.
//!
//! Encoding (all integers little-endian u32):
//! `maps:u32 { name_len:u32 name  writes:u32 { key_len:u32 key  tag:u8 [value_len:u32 value] } }`
//! with maps and keys in ascending byte order and tag 1 = put, 0 = remove. The same write set
//! always encodes to the same bytes, so its digest can go into the Merkle tree.

use std::collections::BTreeMap;

use crate::Bytes;

/// Writes to one map: `Some(value)` puts, `None` removes.
pub type MapWrites = BTreeMap<Bytes, Option<Bytes>>;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteSet {
    pub maps: BTreeMap<String, MapWrites>,
}

/// A key two write sets write differently ([`WriteSet::differences`]): what each wrote, `None`
/// when it did not write the key, `Some(None)` when it removed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteDifference {
    pub map: String,
    pub key: Bytes,
    pub left: Option<Option<Bytes>>,
    pub right: Option<Option<Bytes>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("write set truncated at byte {0}")]
    Truncated(usize),
    #[error("invalid put/remove tag {tag} at byte {at}")]
    BadTag { tag: u8, at: usize },
    #[error("map name at byte {0} is not UTF-8")]
    BadName(usize),
    #[error("maps or keys out of order or repeated at byte {0}")]
    NotCanonical(usize),
    #[error("{0} trailing bytes after the write set")]
    Trailing(usize),
}

impl WriteSet {
    pub fn is_empty(&self) -> bool {
        self.maps.values().all(|m| m.is_empty())
    }

    pub fn put(&mut self, map: &str, key: Bytes, value: Bytes) {
        self.maps.entry(map.to_owned()).or_default().insert(key, Some(value));
    }

    pub fn remove(&mut self, map: &str, key: Bytes) {
        self.maps.entry(map.to_owned()).or_default().insert(key, None);
    }

    /// Splits into (public maps, private maps) by name (SPEC §3).
    pub fn split_public(self) -> (WriteSet, WriteSet) {
        let (public, private): (BTreeMap<_, _>, BTreeMap<_, _>) =
            self.maps.into_iter().filter(|(_, w)| !w.is_empty()).partition(|(n, _)| crate::names::is_public(n));
        (WriteSet { maps: public }, WriteSet { maps: private })
    }

    /// Merges two write sets with disjoint map names (the halves of [`split_public`]).
    pub fn merge(mut self, other: WriteSet) -> WriteSet {
        self.maps.extend(other.maps);
        self
    }

    /// Every key that this write set and `other` write differently, in map and key order:
    /// written by one only, or put with different values, or put by one and removed by the
    /// other. Empty maps count as absent.
    pub fn differences(&self, other: &WriteSet) -> Vec<WriteDifference> {
        let none = MapWrites::new();
        let names: std::collections::BTreeSet<&String> = self.maps.keys().chain(other.maps.keys()).collect();
        let mut out = Vec::new();
        for map in names {
            let (left, right) = (self.maps.get(map).unwrap_or(&none), other.maps.get(map).unwrap_or(&none));
            let keys: std::collections::BTreeSet<&Bytes> = left.keys().chain(right.keys()).collect();
            for key in keys {
                let (l, r) = (left.get(key), right.get(key));
                if l != r {
                    out.push(WriteDifference { map: map.clone(), key: key.clone(), left: l.cloned(), right: r.cloned() });
                }
            }
        }
        out
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let maps: Vec<_> = self.maps.iter().filter(|(_, w)| !w.is_empty()).collect();
        put_len(&mut out, maps.len());
        for (name, writes) in maps {
            put_bytes(&mut out, name.as_bytes());
            put_len(&mut out, writes.len());
            for (key, value) in writes {
                put_bytes(&mut out, key);
                match value {
                    Some(v) => {
                        out.push(1);
                        put_bytes(&mut out, v);
                    }
                    None => out.push(0),
                }
            }
        }
        out
    }

    /// Decodes bytes made by [`encode`]; anything else is refused, including non-canonical order.
    pub fn decode(bytes: &[u8]) -> Result<WriteSet, DecodeError> {
        let mut r = Reader { bytes, at: 0 };
        let mut maps = BTreeMap::new();
        let map_count = r.len()?;
        let mut last_name: Option<String> = None;
        for _ in 0..map_count {
            let at = r.at;
            let name = String::from_utf8(r.bytes()?.to_vec()).map_err(|_| DecodeError::BadName(at))?;
            if last_name.as_ref().is_some_and(|l| *l >= name) {
                return Err(DecodeError::NotCanonical(at));
            }
            let mut writes = MapWrites::new();
            let write_count = r.len()?;
            let mut last_key: Option<Vec<u8>> = None;
            for _ in 0..write_count {
                let at = r.at;
                let key = r.bytes()?.to_vec();
                if last_key.as_ref().is_some_and(|l| *l >= key) {
                    return Err(DecodeError::NotCanonical(at));
                }
                let at = r.at;
                let value = match r.byte()? {
                    1 => Some(r.bytes()?.to_vec()),
                    0 => None,
                    tag => return Err(DecodeError::BadTag { tag, at }),
                };
                last_key = Some(key.clone());
                writes.insert(key, value);
            }
            last_name = Some(name.clone());
            maps.insert(name, writes);
        }
        if r.at != bytes.len() {
            return Err(DecodeError::Trailing(bytes.len() - r.at));
        }
        Ok(WriteSet { maps })
    }
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    // Sizes are bounded far below 4 GiB by the request and ledger limits.
    let n = u32::try_from(n).expect("write set component above 4 GiB");
    out.extend_from_slice(&n.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_len(out, b.len());
    out.extend_from_slice(b);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.bytes.len()).ok_or(DecodeError::Truncated(self.at))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn len(&mut self) -> Result<usize, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.len()?;
        self.take(n)
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn differences_name_every_key_written_otherwise() {
        let mut a = WriteSet::default();
        a.put("m", b"same".to_vec(), b"1".to_vec());
        a.put("m", b"changed".to_vec(), b"old".to_vec());
        a.put("m", b"only-a".to_vec(), b"x".to_vec());
        a.remove("m", b"removed-by-a".to_vec());
        a.maps.entry("empty".to_owned()).or_default();
        let mut b = WriteSet::default();
        b.put("m", b"same".to_vec(), b"1".to_vec());
        b.put("m", b"changed".to_vec(), b"new".to_vec());
        b.put("m", b"removed-by-a".to_vec(), b"kept".to_vec());
        b.put("n", b"only-b".to_vec(), b"y".to_vec());
        assert!(a.differences(&a.clone()).is_empty());
        let d = a.differences(&b);
        type Seen<'a> = (&'a str, &'a [u8], Option<Option<&'a [u8]>>, Option<Option<&'a [u8]>>);
        let seen: Vec<Seen<'_>> = d
            .iter()
            .map(|w| (w.map.as_str(), w.key.as_slice(), w.left.as_ref().map(|v| v.as_deref()), w.right.as_ref().map(|v| v.as_deref())))
            .collect();
        assert_eq!(
            seen,
            vec![
                ("m", &b"changed"[..], Some(Some(&b"old"[..])), Some(Some(&b"new"[..]))),
                ("m", &b"only-a"[..], Some(Some(&b"x"[..])), None),
                ("m", &b"removed-by-a"[..], Some(None), Some(Some(&b"kept"[..]))),
                ("n", &b"only-b"[..], None, Some(Some(&b"y"[..]))),
            ]
        );
        assert_eq!(b.differences(&a).len(), 4, "the same keys the other way round");
    }

    use super::*;
    use proptest::prelude::*;

    fn arb_write_set() -> impl Strategy<Value = WriteSet> {
        let writes = proptest::collection::btree_map(
            proptest::collection::vec(any::<u8>(), 0..8),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16)),
            1..6,
        );
        proptest::collection::btree_map("(public:)?[a-z]{1,6}", writes, 0..4).prop_map(|maps| WriteSet { maps })
    }

    proptest! {
        #[test]
        fn encoding_round_trips(ws in arb_write_set()) {
            let bytes = ws.encode();
            prop_assert_eq!(WriteSet::decode(&bytes).expect("decodes"), ws.clone());
            // Deterministic: the same set encodes to the same bytes.
            prop_assert_eq!(bytes, ws.encode());
        }

        #[test]
        fn truncation_is_refused(ws in arb_write_set(), cut in 1usize..64) {
            let bytes = ws.encode();
            if cut <= bytes.len() {
                prop_assert!(WriteSet::decode(&bytes[..bytes.len() - cut]).is_err());
            }
        }

        #[test]
        fn split_then_merge_is_identity(ws in arb_write_set()) {
            let (public, private) = ws.clone().split_public();
            prop_assert!(public.maps.keys().all(|n| n.starts_with("public:")));
            prop_assert!(private.maps.keys().all(|n| !n.starts_with("public:")));
            prop_assert_eq!(public.merge(private), ws);
        }
    }

    #[test]
    fn refuses_garbage() {
        assert!(WriteSet::decode(&[1, 0, 0, 0]).is_err());
        let mut ws = WriteSet::default();
        ws.put("m", b"k".to_vec(), b"v".to_vec());
        let mut bytes = ws.encode();
        bytes.push(0);
        assert_eq!(WriteSet::decode(&bytes), Err(DecodeError::Trailing(1)));
        let mut bad_tag = ws.encode();
        let tag_at = 4 + 4 + 1 + 4 + 4 + 1;
        bad_tag[tag_at] = 7;
        assert!(matches!(WriteSet::decode(&bad_tag), Err(DecodeError::BadTag { tag: 7, .. })));
    }
}
