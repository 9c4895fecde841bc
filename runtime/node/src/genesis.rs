//! The service's first transaction: service identity (status `Opening`), this node, the initial
//! members, the constitution and the JS limits. Everything else (users, the app, JWT issuers,
//! opening the service) is done by the members' proposals.

use consort_crypto::ParsedCert;
use consort_kv::{Tx, SINGLETON_KEY};

use crate::config::{IdentityConfig, StartConfig};
use crate::identity::NodeIdentity;
use consort_gov::put_json;
use consort_kv::names::*;

fn read_identity(c: &IdentityConfig, what: &str) -> Result<(String, String), String> {
    let pem = std::fs::read_to_string(&c.certificate).map_err(|e| format!("{what} certificate {}: {e}", c.certificate.display()))?;
    let cert = ParsedCert::from_pem(&pem).map_err(|e| format!("{what} certificate {}: {e}", c.certificate.display()))?;
    Ok((cert.id(), cert.pem()))
}

pub fn write_genesis(
    tx: &mut Tx,
    id: &NodeIdentity,
    start: &StartConfig,
    (rpc_address, node_address, hostnames): (&str, &str, &[String]),
    js_options: &consort_js::RuntimeOptions,
) -> Result<(), String> {
    put_json(tx, JS_RUNTIME_OPTIONS, &SINGLETON_KEY, &serde_json::to_value(js_options).expect("options serialise"));
    put_json(tx, CONSTITUTION, &SINGLETON_KEY, &serde_json::Value::String(constitution(start)?));
    // CCF's defaults: a year is the longest validity governance may give a certificate.
    put_json(
        tx,
        SERVICE_CONFIG,
        &SINGLETON_KEY,
        &serde_json::json!({"recent_cose_proposals_window_size": 100, "reconfiguration_type": "OneTransaction",
            "maximum_node_certificate_validity_days": 365, "maximum_service_certificate_validity_days": 365}),
    );
    // Members open the service with a `transition_service_to_open` proposal.
    put_json(tx, SERVICE_INFO, &SINGLETON_KEY, &serde_json::json!({"status": "Opening", "cert": id.service_cert_pem}));
    let csr = consort_crypto::node_csr(&id.node_key, "Consort Node", hostnames).map_err(|e| e.to_string())?;
    put_json(
        tx,
        NODES_INFO,
        id.node_id.as_bytes(),
        &serde_json::json!({"status": "Trusted", "cert": id.node_cert_pem, "rpc_address": rpc_address, "node_address": node_address,
            "public_key": consort_crypto::public_key_pem(&id.node_key.public_key_der()), "certificate_signing_request": csr}),
    );
    tx.put(NODES_ENDORSED_CERTIFICATES, id.node_id.clone().into_bytes(), id.node_cert_pem.clone().into_bytes());
    for m in &start.members {
        let (member_id, pem) = read_identity(m, "member")?;
        tx.put(MEMBERS_CERTS, member_id.clone().into_bytes(), pem.into_bytes());
        let role = m.recovery_role.unwrap_or(if m.encryption_public_key.is_some() {
            crate::config::RecoveryRole::Participant
        } else {
            crate::config::RecoveryRole::NonParticipant
        });
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
