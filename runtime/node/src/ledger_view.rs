//! `GET /node/ledger/entries`: the node's recent ledger entries, as the console's ledger
//! explorer shows them. What is answered here is what the ledger files hold in the clear, cut
//! to what the caller may read (docs/decisions.md, "Who may read the ledger explorer"):
//! - anyone: each entry's id, kind, status, the digest its receipt's leaf carries, its app
//!   version, whether it has private writes or recorded inputs (both stay sealed: never shown),
//!   signature and configuration records, and the writes to governance tables (which
//!   `/gov/service/*` already tells anyone);
//! - a member (its TLS client certificate): also the writes to every other public table.
//!
//! Pure: the handler in `node_api` reads the entries and the caller; this shapes the answer.

use consort_kv::names::MapKind;
use consort_kv::WriteSet;
use consort_ledger::{EntryKind, LedgerEntry};
use serde_json::{json, Map, Value};

/// At most this many entries in one answer.
pub const ENTRIES_MAX: u64 = 100;
/// How many entries an answer holds when the query does not say.
pub const ENTRIES_DEFAULT: u64 = 20;
/// At most this many writes shown per entry, over all its tables, in order (the rest of each
/// table's are counted in its `more`).
pub const WRITES_SHOWN_MAX: usize = 50;
/// At most this many tables listed per entry (the rest are counted in `moreTables`).
pub const TABLES_SHOWN_MAX: usize = 50;
/// A value longer than this is shown cut to it (as text), with its length.
pub const VALUE_SHOWN_BYTES: usize = 1024;
/// A key longer than this is shown cut to it, with its length.
pub const KEY_SHOWN_BYTES: usize = 256;
// So an answer holds at most ENTRIES_MAX × WRITES_SHOWN_MAX shown writes of at most
// KEY_SHOWN_BYTES + VALUE_SHOWN_BYTES each (~6.5 MB before JSON escaping), whatever the entries.

/// Who is reading, as far as what they may see goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    Anyone,
    Member,
}

impl Reader {
    fn sees(self, table: &str) -> bool {
        match MapKind::of(table) {
            MapKind::Governance => true,
            _ => self == Reader::Member,
        }
    }
}

/// The seqnos `from..=to` a query asks for, given that the node holds `first..=last`: the
/// newest [`ENTRIES_DEFAULT`] with neither, that many from `from` or up to `to` with one, and
/// at most [`ENTRIES_MAX`] with both. The range may reach past `last` (the answer stops there).
pub fn range(from: Option<&str>, to: Option<&str>, (first, last): (u64, u64)) -> Result<(u64, u64), String> {
    let parse = |name: &str, raw: Option<&str>| -> Result<Option<u64>, String> {
        raw.map(|r| r.parse::<u64>().map_err(|_| format!("{name} must be a seqno (a whole number), not {r:?}"))).transpose()
    };
    let back = |to: u64| to.saturating_sub(ENTRIES_DEFAULT - 1).max(first);
    match (parse("from", from)?, parse("to", to)?) {
        (None, None) => Ok((back(last), last)),
        (None, Some(to)) => Ok((back(to), to)),
        (Some(from), None) => Ok((from, from.saturating_add(ENTRIES_DEFAULT - 1))),
        (Some(from), Some(to)) if from > to => Err(format!("from ({from}) is after to ({to})")),
        (Some(from), Some(to)) if to - from >= ENTRIES_MAX => {
            Err(format!("{} entries asked for; at most {ENTRIES_MAX} at a time", (to - from).saturating_add(1)))
        }
        (Some(from), Some(to)) => Ok((from, to)),
    }
}

/// One entry as the explorer shows it to `reader`; `status` is the transaction's
/// (`Committed` once a signature covers it).
pub fn describe(le: &LedgerEntry, status: &str, reader: Reader) -> Value {
    let mut out = Map::new();
    out.insert("transactionId".into(), json!(le.txid.to_string()));
    out.insert("view".into(), json!(le.txid.view));
    out.insert("seqno".into(), json!(le.txid.seqno));
    out.insert("kind".into(), json!(kind_name(le.kind)));
    out.insert("status".into(), json!(status));
    out.insert("writeSetDigest".into(), json!(hex::encode(le.write_set_digest())));
    match le.kind {
        EntryKind::Tx => {
            if let Some(app) = &le.app {
                out.insert("appVersion".into(), json!(app.version));
            }
            out.insert("privateWrites".into(), json!(!le.private.is_empty()));
            out.insert("inputsRecorded".into(), json!(!le.inputs.is_empty()));
            match WriteSet::decode(&le.public) {
                Ok(writes) => {
                    let shown = tables(&writes, reader);
                    out.insert("tables".into(), Value::Array(shown.tables));
                    if shown.more_tables > 0 {
                        out.insert("moreTables".into(), json!(shown.more_tables));
                    }
                    if shown.withheld.0 > 0 {
                        out.insert("withheld".into(), json!({"tables": shown.withheld.0, "writes": shown.withheld.1}));
                    }
                }
                Err(e) => {
                    out.insert("unreadable".into(), json!(format!("its public writes cannot be decoded: {e}")));
                }
            }
        }
        EntryKind::Signature => {
            let record = serde_json::from_slice::<consort_ledger::SignatureRecord>(&le.public);
            out.insert(
                "signature".into(),
                match record {
                    Ok(r) => json!({"node": r.node, "root": r.root, "coversTo": r.seqno}),
                    Err(e) => json!({"unreadable": e.to_string()}),
                },
            );
        }
        EntryKind::Membership => {
            let config = serde_json::from_slice::<Value>(&le.public).unwrap_or_else(|e| json!({"unreadable": e.to_string()}));
            out.insert("configuration".into(), config);
        }
        EntryKind::Blank => {}
    }
    Value::Object(out)
}

fn kind_name(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::Tx => "transaction",
        EntryKind::Signature => "signature",
        EntryKind::Blank => "view_start",
        EntryKind::Membership => "configuration",
    }
}

/// What [`tables`] shows of an entry's public writes.
struct Shown {
    /// The first [`TABLES_SHOWN_MAX`] tables the reader sees, with their first writes.
    tables: Vec<Value>,
    /// Tables the reader sees past those.
    more_tables: usize,
    /// `(tables, writes)` the reader may not see.
    withheld: (usize, usize),
}

fn tables(writes: &WriteSet, reader: Reader) -> Shown {
    let mut shown = Shown { tables: Vec::new(), more_tables: 0, withheld: (0, 0) };
    let mut budget = WRITES_SHOWN_MAX;
    for (name, map) in &writes.maps {
        if !reader.sees(name) {
            shown.withheld.0 += 1;
            shown.withheld.1 += map.len();
        } else if shown.tables.len() == TABLES_SHOWN_MAX {
            shown.more_tables += 1;
        } else {
            let n = budget.min(map.len());
            budget -= n;
            let writes: Vec<Value> = map.iter().take(n).map(|(k, v)| write(k, v.as_deref())).collect();
            shown.tables.push(json!({"name": name, "writes": writes, "more": map.len() - n}));
        }
    }
    shown
}

fn write(key: &[u8], value: Option<&[u8]>) -> Value {
    let mut w = Map::new();
    let (shown_key, encoding) = consort_gov::dry_run::shown(&key[..key.len().min(KEY_SHOWN_BYTES)]);
    w.insert("key".into(), shown_key);
    if let Some(encoding) = encoding {
        w.insert("keyEncoding".into(), json!(encoding));
    }
    if key.len() > KEY_SHOWN_BYTES {
        w.insert("keyTruncated".into(), json!(true));
        w.insert("keyBytes".into(), json!(key.len()));
    }
    match value {
        None => {
            w.insert("removed".into(), json!(true));
        }
        Some(v) if v.len() > VALUE_SHOWN_BYTES => {
            w.insert("value".into(), json!(String::from_utf8_lossy(&v[..VALUE_SHOWN_BYTES])));
            w.insert("truncated".into(), json!(true));
            w.insert("bytes".into(), json!(v.len()));
        }
        Some(v) => {
            w.insert("value".into(), consort_gov::dry_run::value_of(v));
        }
    }
    Value::Object(w)
}

#[cfg(test)]
mod tests {
    use consort_kv::TxId;
    use consort_ledger::{AppRef, ZERO_DIGEST};

    use super::*;

    fn entry(kind: EntryKind, public: Vec<u8>) -> LedgerEntry {
        LedgerEntry {
            txid: TxId::new(2, 7),
            kind,
            commit_evidence_digest: ZERO_DIGEST,
            claims_digest: ZERO_DIGEST,
            public,
            private: Vec::new(),
            app: None,
            inputs: Vec::new(),
        }
    }

    fn writes() -> WriteSet {
        let mut w = WriteSet::default();
        w.put("public:ccf.gov.users.info", b"u1".to_vec(), br#"{"role":"x"}"#.to_vec());
        w.remove("public:ccf.gov.users.certs", b"u0".to_vec());
        w.put("public:records", vec![0, 1], vec![0xff; 3]);
        w.put("public:records", b"k".to_vec(), b"plain text".to_vec());
        w.put("public:ccf.internal.snapshot_requests", b"x".to_vec(), b"1".to_vec());
        w
    }

    #[test]
    fn the_range_defaults_to_the_newest_entries_and_is_bounded() {
        let held = (5, 100);
        assert_eq!(range(None, None, held), Ok((81, 100)));
        assert_eq!(range(None, None, (0, 3)), Ok((0, 3)), "fewer than the default");
        assert_eq!(range(None, Some("10"), held), Ok((5, 10)), "not before the first held");
        assert_eq!(range(Some("50"), None, held), Ok((50, 69)));
        assert_eq!(range(Some("90"), None, held), Ok((90, 109)), "past the last: the answer stops there");
        assert_eq!(range(Some("1"), Some("100"), held), Ok((1, 100)), "exactly the maximum");
        assert!(range(Some("1"), Some("101"), held).expect_err("refused").contains("101 entries asked for; at most 100"));
        assert!(range(Some("9"), Some("8"), held).expect_err("refused").contains("after"));
        assert!(range(Some("-1"), None, held).expect_err("refused").contains("from must be a seqno"));
        assert!(range(None, Some("x"), held).expect_err("refused").contains("to must be a seqno"));
        assert_eq!(range(Some("0"), Some(&u64::MAX.to_string()), held).map_err(|e| e.contains("at most")), Err(true));
        assert_eq!(range(Some(&u64::MAX.to_string()), None, held), Ok((u64::MAX, u64::MAX)), "no overflow");
    }

    #[test]
    fn anyone_sees_governance_writes_and_members_see_every_public_table() {
        let le = entry(EntryKind::Tx, writes().encode());
        let anyone = describe(&le, "Committed", Reader::Anyone);
        assert_eq!(anyone["transactionId"], "2.7");
        assert_eq!(anyone["kind"], "transaction");
        assert_eq!(anyone["status"], "Committed");
        assert_eq!(anyone["writeSetDigest"], hex::encode(le.write_set_digest()));
        let names: Vec<&str> = anyone["tables"].as_array().expect("there").iter().map(|t| t["name"].as_str().expect("there")).collect();
        assert_eq!(names, ["public:ccf.gov.users.certs", "public:ccf.gov.users.info"]);
        assert_eq!(anyone["withheld"], json!({"tables": 2, "writes": 3}));
        assert_eq!(anyone["tables"][0]["writes"], json!([{"key": "u0", "removed": true}]));
        assert_eq!(anyone["tables"][1]["writes"], json!([{"key": "u1", "value": {"role": "x"}}]));

        let member = describe(&le, "Committed", Reader::Member);
        assert!(member.get("withheld").is_none());
        let records = member["tables"].as_array().expect("there").iter().find(|t| t["name"] == "public:records").expect("there");
        assert_eq!(
            records["writes"],
            json!([{"key": "AAE=", "keyEncoding": "base64", "value": {"base64": "////"}}, {"key": "k", "value": "plain text"}])
        );
        assert_eq!(member["tables"].as_array().expect("there").len(), 4);
    }

    #[test]
    fn sealed_parts_are_flagged_never_shown() {
        let mut le = entry(EntryKind::Tx, WriteSet::default().encode());
        le.private = b"sealed private writes".to_vec();
        le.inputs = b"sealed inputs".to_vec();
        le.app = Some(AppRef { version: 3, bundle_digest: [7; 32] });
        let d = describe(&le, "Pending", Reader::Member);
        assert_eq!(d["privateWrites"], true);
        assert_eq!(d["inputsRecorded"], true);
        assert_eq!(d["appVersion"], 3);
        assert_eq!(d["writeSetDigest"], hex::encode(le.write_set_digest()), "bound to the app version, as the receipt's leaf is");
        let text = d.to_string();
        assert!(!text.contains("sealed"), "{text}");
    }

    #[test]
    fn long_tables_keys_and_values_are_cut_and_counted() {
        let mut w = WriteSet::default();
        w.put("public:ccf.gov.modules", b"big".to_vec(), vec![b'a'; VALUE_SHOWN_BYTES + 1]);
        w.put("public:ccf.gov.modules", vec![b'k'; KEY_SHOWN_BYTES + 1], b"1".to_vec());
        for i in 0..WRITES_SHOWN_MAX {
            w.put("public:ccf.gov.nodes.info", format!("n{i:02}").into_bytes(), b"{}".to_vec());
        }
        w.put("public:ccf.gov.users.info", b"u".to_vec(), b"{}".to_vec());
        let d = describe(&entry(EntryKind::Tx, w.encode()), "Committed", Reader::Anyone);
        let modules = &d["tables"][0];
        assert_eq!(modules["writes"][0]["truncated"], true);
        assert_eq!(modules["writes"][0]["bytes"], VALUE_SHOWN_BYTES + 1);
        assert_eq!(modules["writes"][0]["value"].as_str().expect("there").len(), VALUE_SHOWN_BYTES);
        assert_eq!(modules["writes"][1]["key"].as_str().expect("there").len(), KEY_SHOWN_BYTES);
        assert_eq!((&modules["writes"][1]["keyTruncated"], &modules["writes"][1]["keyBytes"]), (&json!(true), &json!(KEY_SHOWN_BYTES + 1)));
        // The budget of writes is per entry: the modules' two, then 48 of the nodes' 50.
        let nodes = &d["tables"][1];
        assert_eq!(nodes["writes"].as_array().expect("there").len(), WRITES_SHOWN_MAX - 2);
        assert_eq!(nodes["more"], 2);
        let users = &d["tables"][2];
        assert_eq!((users["writes"].as_array().expect("there").len(), &users["more"]), (0, &json!(1)), "listed, its write counted");

        let mut many = WriteSet::default();
        for i in 0..(TABLES_SHOWN_MAX + 3) {
            many.put(&format!("public:ccf.gov.t{i:03}"), b"k".to_vec(), b"v".to_vec());
        }
        let d = describe(&entry(EntryKind::Tx, many.encode()), "Committed", Reader::Anyone);
        assert_eq!(d["tables"].as_array().expect("there").len(), TABLES_SHOWN_MAX);
        assert_eq!(d["moreTables"], 3);
    }

    #[test]
    fn signatures_configurations_and_damage_are_described() {
        let record = consort_ledger::SignatureRecord {
            sig: "c2ln".into(),
            node: "abcd".into(),
            view: 2,
            seqno: 6,
            root: "00".repeat(32),
            cert: "PEM".into(),
        };
        let sig = describe(&entry(EntryKind::Signature, serde_json::to_vec(&record).expect("there")), "Committed", Reader::Anyone);
        assert_eq!(sig["kind"], "signature");
        assert_eq!(sig["signature"], json!({"node": "abcd", "root": "00".repeat(32), "coversTo": 6}));
        assert!(sig.get("tables").is_none());

        let config = describe(&entry(EntryKind::Membership, br#"{"configs":[[1]]}"#.to_vec()), "Committed", Reader::Anyone);
        assert_eq!(config["kind"], "configuration");
        assert_eq!(config["configuration"], json!({"configs": [[1]]}));

        assert_eq!(describe(&entry(EntryKind::Blank, Vec::new()), "Committed", Reader::Anyone)["kind"], "view_start");

        let damaged = describe(&entry(EntryKind::Tx, vec![9, 9]), "Committed", Reader::Anyone);
        assert!(damaged["unreadable"].as_str().expect("there").contains("cannot be decoded"), "{damaged}");
        let bad_sig = describe(&entry(EntryKind::Signature, b"{".to_vec()), "Committed", Reader::Anyone);
        assert!(bad_sig["signature"]["unreadable"].is_string());
    }
}
