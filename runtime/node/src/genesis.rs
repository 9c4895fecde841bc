//! The service's first transaction: service identity, this node, initial members and users,
//! and the initial app, so that all of them are in the ledger from the start.

use consort_crypto::ParsedCert;
use consort_js::Bundle;
use consort_kv::{State, Tx, SINGLETON_KEY};

use crate::config::{IdentityConfig, StartConfig};
use crate::identity::NodeIdentity;
use crate::tables::*;
use consort_gov::put_json;

fn read_identity(c: &IdentityConfig, what: &str) -> Result<(String, String), String> {
    let pem = std::fs::read_to_string(&c.certificate).map_err(|e| format!("{what} certificate {}: {e}", c.certificate.display()))?;
    let cert = ParsedCert::from_pem(&pem).map_err(|e| format!("{what} certificate {}: {e}", c.certificate.display()))?;
    Ok((cert.id(), cert.pem()))
}

pub fn write_genesis(
    tx: &mut Tx,
    id: &NodeIdentity,
    start: &StartConfig,
    (rpc_address, node_address): (&str, &str),
    js_options: &consort_js::RuntimeOptions,
    app: Option<&Bundle>,
) -> Result<(), String> {
    put_json(tx, JS_RUNTIME_OPTIONS, &SINGLETON_KEY, &serde_json::to_value(js_options).expect("options serialise"));
    put_json(tx, CONSTITUTION, &SINGLETON_KEY, &serde_json::Value::String(constitution(start)?));
    put_json(tx, SERVICE_CONFIG, &SINGLETON_KEY, &serde_json::json!({"recent_cose_proposals_window_size": 100}));
    // Until governance opens the service by vote, a network started from configuration is open.
    put_json(tx, SERVICE_INFO, &SINGLETON_KEY, &serde_json::json!({"status": "Open", "cert": id.service_cert_pem}));
    put_json(
        tx,
        NODES_INFO,
        id.node_id.as_bytes(),
        &serde_json::json!({"status": "Trusted", "cert": id.node_cert_pem, "rpc_address": rpc_address, "node_address": node_address}),
    );
    for m in &start.members {
        let (member_id, pem) = read_identity(m, "member")?;
        tx.put(MEMBERS_CERTS, member_id.clone().into_bytes(), pem.into_bytes());
        let role = if m.encryption_public_key.is_some() { "Participant" } else { "NonParticipant" };
        put_json(
            tx,
            MEMBERS_INFO,
            member_id.as_bytes(),
            &serde_json::json!({"status": "Accepted", "member_data": m.data, "recovery_role": role}),
        );
        if let Some(path) = &m.encryption_public_key {
            let key = std::fs::read_to_string(path).map_err(|e| format!("member encryption key {}: {e}", path.display()))?;
            tx.put(MEMBERS_ENCRYPTION_KEYS, member_id.clone().into_bytes(), key.into_bytes());
        }
    }
    for u in &start.users {
        let (user_id, pem) = read_identity(u, "user")?;
        tx.put(USERS_CERTS, user_id.clone().into_bytes(), pem.into_bytes());
        put_json(tx, USERS_INFO, user_id.as_bytes(), &serde_json::json!({"user_data": u.data}));
    }
    for issuer in &start.jwt_issuers {
        write_jwt_issuer(tx, issuer)?;
    }
    if let Some(bundle) = app {
        write_app(tx, bundle);
    }
    Ok(())
}

/// The default constitution: the repository's `constitution/` files in their order.
pub const DEFAULT_CONSTITUTION: [(&str, &str); 4] = [
    ("actions.js", include_str!("../../../constitution/actions.js")),
    ("validate.js", include_str!("../../../constitution/validate.js")),
    ("resolve.js", include_str!("../../../constitution/resolve.js")),
    ("apply.js", include_str!("../../../constitution/apply.js")),
];

/// The constitution the start configuration names (its files concatenated), or the default.
fn constitution(start: &StartConfig) -> Result<String, String> {
    if start.constitution.is_empty() {
        return Ok(DEFAULT_CONSTITUTION.iter().map(|(_, src)| *src).collect::<Vec<_>>().join("\n"));
    }
    let mut parts = Vec::new();
    for path in &start.constitution {
        parts.push(std::fs::read_to_string(path).map_err(|e| format!("constitution file {}: {e}", path.display()))?);
    }
    Ok(parts.join("\n"))
}

/// An issuer and its signing keys, as governance's `set_jwt_issuer` writes them.
pub fn write_jwt_issuer(tx: &mut Tx, issuer: &crate::config::JwtIssuerConfig) -> Result<(), String> {
    use consort_crypto::jwt::JwtKeyMetadata;
    put_json(tx, JWT_ISSUERS, issuer.issuer.as_bytes(), &serde_json::json!({"auto_refresh": false}));
    for jwk in &issuer.jwks.keys {
        let kid =
            jwk.get("kid").and_then(serde_json::Value::as_str).ok_or_else(|| format!("JWT issuer {}: a key has no kid", issuer.issuer))?;
        let public_key = consort_js::jwk_public_key_der(jwk).map_err(|e| format!("JWT issuer {}, kid {kid}: {e}", issuer.issuer))?;
        let constraint = jwk.get("issuer").and_then(serde_json::Value::as_str).map(str::to_owned);
        let mut keys: Vec<JwtKeyMetadata> =
            tx.get(JWT_PUBLIC_SIGNING_KEYS, kid.as_bytes()).and_then(|v| serde_json::from_slice(&v).ok()).unwrap_or_default();
        keys.retain(|k| k.issuer != issuer.issuer);
        keys.push(JwtKeyMetadata { public_key, issuer: issuer.issuer.clone(), constraint });
        put_json(tx, JWT_PUBLIC_SIGNING_KEYS, kid.as_bytes(), &serde_json::to_value(&keys).expect("metadata serialises"));
    }
    Ok(())
}

/// Replaces the app: every module and endpoint of `bundle`, nothing of the previous one. As
/// CCF's `set_js_app` writes them: modules as raw source under `/<name>`, endpoints' `js_module`
/// as `/<name>`.
pub fn write_app(tx: &mut Tx, bundle: &Bundle) {
    tx.clear(MODULES);
    tx.clear(ENDPOINTS);
    for (name, source) in &bundle.modules {
        tx.put(MODULES, format!("/{name}").into_bytes(), source.clone().into_bytes());
    }
    for (path, methods) in &bundle.metadata.endpoints {
        for (method, def) in methods {
            let mut def = def.clone();
            def.js_module = format!("/{}", def.js_module.trim_start_matches('/'));
            let value = serde_json::to_value(&def).expect("endpoint serialises");
            put_json(tx, ENDPOINTS, endpoint_key(method, path).as_bytes(), &value);
        }
    }
}

/// Reads the deployed app back from the store; `None` if no app is deployed.
pub fn read_app(state: &State) -> Result<Option<Bundle>, String> {
    let mut bundle = Bundle::default();
    for (key, value) in state.iter(ENDPOINTS) {
        let key = String::from_utf8_lossy(key);
        let (method, path) = key.split_once(' ').ok_or_else(|| format!("bad endpoint key {key:?}"))?;
        let mut def: consort_js::EndpointDef = serde_json::from_slice(value).map_err(|e| format!("endpoint {key}: {e}"))?;
        def.js_module = def.js_module.trim_start_matches('/').to_owned();
        bundle.metadata.endpoints.entry(path.to_owned()).or_default().insert(method.to_ascii_lowercase(), def);
    }
    for (key, value) in state.iter(MODULES) {
        let name = String::from_utf8_lossy(key);
        let source = String::from_utf8(value.to_vec()).map_err(|_| format!("module {name}: not UTF-8 text"))?;
        bundle.modules.insert(name.trim_start_matches('/').to_owned(), source);
    }
    Ok((!bundle.metadata.endpoints.is_empty()).then_some(bundle))
}
