//! How a proposal's dry-run shows the writes it would make: each written key of each table,
//! with the value before and after for public tables (text or JSON as the table holds it), and
//! only the key for private ones, whose values the ledger seals.

use base64::Engine;
use consort_kv::names::is_public;
use consort_kv::Tx;
use serde_json::{json, Map, Value};

/// The writes `tx` holds, table by table and key by key in order:
/// `{table, key, old, new}` (public; `new: null` for a removal, `old: null` for a new key) or
/// `{table, key, private: true, removed}`.
pub fn writes_of(tx: &Tx) -> Vec<Value> {
    let mut out = Vec::new();
    for (table, writes) in &tx.write_set().maps {
        for (key, value) in writes {
            let mut w = Map::new();
            w.insert("table".into(), json!(table));
            let (k, encoding) = shown(key);
            w.insert("key".into(), k);
            if let Some(encoding) = encoding {
                w.insert("keyEncoding".into(), json!(encoding));
            }
            if is_public(table) {
                let old = tx.snapshot().get(table, key).map(|v| value_of(v)).unwrap_or(Value::Null);
                w.insert("old".into(), old);
                w.insert("new".into(), value.as_deref().map_or(Value::Null, value_of));
            } else {
                w.insert("private".into(), json!(true));
                w.insert("removed".into(), json!(value.is_none()));
            }
            out.push(Value::Object(w));
        }
    }
    out
}

/// A key as text when it is UTF-8 without control characters, else base64 (and which).
pub fn shown(bytes: &[u8]) -> (Value, Option<&'static str>) {
    match std::str::from_utf8(bytes) {
        Ok(text) if !text.chars().any(char::is_control) => (json!(text), None),
        _ => (json!(base64::engine::general_purpose::STANDARD.encode(bytes)), Some("base64")),
    }
}

/// A value as the table holds it: JSON (governance tables), else text (certificates, module
/// sources), else `{"base64": ...}`.
pub fn value_of(bytes: &[u8]) -> Value {
    if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
        return v;
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => json!(text),
        Err(_) => json!({"base64": base64::engine::general_purpose::STANDARD.encode(bytes)}),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use consort_kv::{State, WriteSet};

    use super::*;

    #[test]
    fn writes_show_old_and_new_public_values_and_only_keys_of_private_ones() {
        let mut before = WriteSet::default();
        before.put("public:ccf.gov.users.info", b"u1".to_vec(), br#"{"n":1}"#.to_vec());
        before.put("public:ccf.gov.users.certs", b"u2".to_vec(), b"-----BEGIN CERTIFICATE-----".to_vec());
        let mut state = State::default();
        state.apply(consort_kv::TxId::new(1, 1), &before);
        let mut tx = Tx::new(Arc::new(state));
        tx.put("public:ccf.gov.users.info", b"u1".to_vec(), br#"{"n":2}"#.to_vec());
        tx.remove("public:ccf.gov.users.certs", b"u2".to_vec());
        tx.put("public:records", vec![0, 159], vec![0xff, 0]);
        tx.put("secrets", b"k".to_vec(), b"sealed".to_vec());
        assert_eq!(
            writes_of(&tx),
            vec![
                json!({"table": "public:ccf.gov.users.certs", "key": "u2", "old": "-----BEGIN CERTIFICATE-----", "new": null}),
                json!({"table": "public:ccf.gov.users.info", "key": "u1", "old": {"n": 1}, "new": {"n": 2}}),
                json!({"table": "public:records", "key": "AJ8=", "keyEncoding": "base64", "old": null, "new": {"base64": "/wA="}}),
                json!({"table": "secrets", "key": "k", "private": true, "removed": false}),
            ]
        );
    }
}
