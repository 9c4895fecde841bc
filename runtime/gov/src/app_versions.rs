//! App versions (SPEC §10): every app a proposal leaves deployed is a numbered version, with
//! the bundle itself, the BLAKE3 digest of that bundle and the proposal that made it. The node
//! records one after an accepted proposal's `apply` whenever it wrote the modules or endpoints
//! tables, whatever the action (CCF's `set_js_app`, `remove_js_app`, Consort's
//! `rollback_js_app`, or a member's own), so the history holds under any constitution.

use consort_kv::names::{APP_VERSIONS, ENDPOINTS, MODULES};
use consort_kv::Tx;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::{get_json, put_json};

/// One version of the app, as [`APP_VERSIONS`] holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppVersion {
    /// 1 for the first app deployed, then one more for each change.
    pub version: u64,
    /// Hex BLAKE3 of the bundle's canonical JSON ([`bundle_digest`]).
    pub bundle_digest: String,
    /// The proposal whose `apply` deployed it.
    pub proposal_id: String,
    /// The bundle as deployed, in the form `set_js_app` takes (`{metadata: {endpoints}, modules:
    /// [{name, module}]}`, module names without a leading `/`); no endpoints if the app was removed.
    pub bundle: Value,
}

/// The app that `tx` would leave deployed, as a bundle: endpoints from [`ENDPOINTS`] (keyed
/// `"<METHOD> <path>"`) and modules from [`MODULES`], with the leading `/` CCF stores taken off
/// module names, as a bundle names them.
pub fn deployed_bundle(tx: &mut Tx) -> Value {
    let mut endpoints: Map<String, Value> = Map::new();
    for (key, value) in tx.entries(ENDPOINTS) {
        let key = String::from_utf8_lossy(&key).into_owned();
        let Some((method, path)) = key.split_once(' ') else { continue };
        let mut def: Value = serde_json::from_slice(&value).unwrap_or(Value::Null);
        if let Some(module) = def.get("js_module").and_then(Value::as_str) {
            def["js_module"] = json!(module.trim_start_matches('/'));
        }
        let methods = endpoints.entry(path.to_owned()).or_insert_with(|| json!({}));
        methods[method.to_ascii_lowercase()] = def;
    }
    let modules: Vec<Value> = tx
        .entries(MODULES)
        .into_iter()
        .map(|(name, source)| {
            json!({"name": String::from_utf8_lossy(&name).trim_start_matches('/'), "module": String::from_utf8_lossy(&source)})
        })
        .collect();
    json!({"metadata": {"endpoints": endpoints}, "modules": modules})
}

/// Hex BLAKE3 of a bundle's canonical JSON: object keys sorted (serde_json's maps are ordered),
/// no whitespace; modules in the order the bundle lists them.
pub fn bundle_digest(bundle: &Value) -> String {
    hex::encode(blake3::hash(&serde_json::to_vec(bundle).expect("JSON values serialise")).as_bytes())
}

/// Every version, oldest first.
pub fn versions(tx: &mut Tx) -> Vec<AppVersion> {
    let mut all: Vec<AppVersion> = tx.entries(APP_VERSIONS).into_iter().filter_map(|(_, v)| serde_json::from_slice(&v).ok()).collect();
    all.sort_by_key(|v| v.version);
    all
}

/// Version `n`, if there is one.
pub fn version(tx: &mut Tx, n: u64) -> Option<AppVersion> {
    get_json(tx, APP_VERSIONS, n.to_string().as_bytes())
}

/// Records the app `tx` leaves deployed as the next version, if `tx` wrote the app's tables;
/// returns its number. Called after an accepted proposal's `apply`, on the same transaction.
pub fn record_if_changed(tx: &mut Tx, proposal_id: &str) -> Option<u64> {
    let touched = [MODULES, ENDPOINTS].iter().any(|m| tx.write_set().maps.get(*m).is_some_and(|w| !w.is_empty()));
    if !touched {
        return None;
    }
    let bundle = deployed_bundle(tx);
    let next = versions(tx).last().map_or(1, |v| v.version + 1);
    let record = AppVersion { version: next, bundle_digest: bundle_digest(&bundle), proposal_id: proposal_id.to_owned(), bundle };
    put_json(tx, APP_VERSIONS, next.to_string().as_bytes(), &record);
    Some(next)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use consort_kv::State;

    use super::*;

    fn set_app(tx: &mut Tx, modules: &[(&str, &str)], endpoints: &[(&str, &str, &str)]) {
        tx.clear(MODULES);
        tx.clear(ENDPOINTS);
        for (name, source) in modules {
            tx.put(MODULES, format!("/{name}").into_bytes(), source.as_bytes().to_vec());
        }
        for (method, path, function) in endpoints {
            let def = json!({"js_module": "/app.js", "js_function": function, "authn_policies": ["user_cert"], "mode": "readonly"});
            tx.put(ENDPOINTS, format!("{method} {path}").into_bytes(), serde_json::to_vec(&def).expect("json"));
        }
    }

    #[test]
    fn each_change_to_the_app_is_the_next_version_with_its_bundle() {
        let mut tx = Tx::new(Arc::new(State::default()));
        assert_eq!(record_if_changed(&mut tx, "p0"), None, "nothing written to the app's tables");
        assert!(versions(&mut tx).is_empty());

        set_app(&mut tx, &[("app.js", "export function a() {}")], &[("GET", "/a", "a")]);
        assert_eq!(record_if_changed(&mut tx, "p1"), Some(1));
        let v1 = version(&mut tx, 1).expect("v1");
        assert_eq!((v1.version, v1.proposal_id.as_str()), (1, "p1"));
        assert_eq!(
            v1.bundle,
            json!({"metadata": {"endpoints": {"/a": {"get": {"js_module": "app.js", "js_function": "a", "authn_policies": ["user_cert"], "mode": "readonly"}}}},
                   "modules": [{"name": "app.js", "module": "export function a() {}"}]})
        );
        assert_eq!(v1.bundle_digest, bundle_digest(&v1.bundle));
        assert_eq!(v1.bundle_digest.len(), 64);

        set_app(&mut tx, &[("app.js", "export function b() {}")], &[("GET", "/a", "b")]);
        assert_eq!(record_if_changed(&mut tx, "p2"), Some(2));
        let v2 = version(&mut tx, 2).expect("v2");
        assert_ne!(v2.bundle_digest, v1.bundle_digest);

        // The same app deployed again is a new version with the same digest.
        set_app(&mut tx, &[("app.js", "export function a() {}")], &[("GET", "/a", "a")]);
        assert_eq!(record_if_changed(&mut tx, "p3"), Some(3));
        assert_eq!(version(&mut tx, 3).expect("v3").bundle_digest, v1.bundle_digest);

        // Removing the app is a version too, with no endpoints.
        set_app(&mut tx, &[], &[]);
        assert_eq!(record_if_changed(&mut tx, "p4"), Some(4));
        assert_eq!(version(&mut tx, 4).expect("v4").bundle["metadata"]["endpoints"], json!({}));
        assert_eq!(versions(&mut tx).iter().map(|v| v.version).collect::<Vec<_>>(), [1, 2, 3, 4]);
        assert_eq!(version(&mut tx, 5), None);
    }

    #[test]
    fn versions_sort_by_number_not_by_key_text() {
        let mut tx = Tx::new(Arc::new(State::default()));
        for n in 1..=11 {
            set_app(&mut tx, &[("app.js", &format!("// {n}"))], &[("GET", "/a", "a")]);
            assert_eq!(record_if_changed(&mut tx, &format!("p{n}")), Some(n));
        }
        assert_eq!(versions(&mut tx).last().map(|v| v.version), Some(11), "\"9\" sorts after \"11\" as text");
    }

    #[test]
    fn the_digest_is_of_canonical_json() {
        let a = json!({"modules": [{"name": "x", "module": "1"}], "metadata": {"endpoints": {}}});
        let b: Value = serde_json::from_str(r#"{"metadata":{"endpoints":{}},"modules":[{"module":"1","name":"x"}]}"#).expect("json");
        assert_eq!(bundle_digest(&a), bundle_digest(&b));
        assert_eq!(
            bundle_digest(&a),
            hex::encode(blake3::hash(br#"{"metadata":{"endpoints":{}},"modules":[{"module":"1","name":"x"}]}"#).as_bytes())
        );
    }
}
