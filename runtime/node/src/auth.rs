//! Who is calling: the endpoint's `authn_policies` checked against the TLS client certificate
//! (SPEC §4). The first policy that succeeds shapes `request.caller`.

use consort_crypto::{cert_pem_from_der, id_of_cert_der};
use consort_kv::State;
use serde_json::{json, Value};

use crate::tables::{MEMBERS_CERTS, MEMBERS_INFO, USERS_CERTS, USERS_INFO};

/// `Ok(None)` for an empty policy list; `Err` names what was missing for every policy.
pub fn authenticate(state: &State, policies: &[Value], cert_der: Option<&[u8]>) -> Result<Option<Value>, String> {
    if policies.is_empty() {
        return Ok(None);
    }
    let mut failures = Vec::new();
    for policy in policies {
        match identity(state, policy, cert_der) {
            Ok(caller) => return Ok(Some(caller)),
            Err(why) => failures.push(why),
        }
    }
    Err(failures.join("; "))
}

fn identity(state: &State, policy: &Value, cert_der: Option<&[u8]>) -> Result<Value, String> {
    match policy {
        Value::String(name) => named(state, name, cert_der),
        Value::Object(o) => {
            let parts = o.get("all_of").and_then(Value::as_array).ok_or("unknown policy object")?;
            let mut caller = serde_json::Map::new();
            let mut names = Vec::new();
            for part in parts {
                let name = part.as_str().ok_or("all_of holds policy names")?;
                caller.insert(name.to_owned(), named(state, name, cert_der).map_err(|e| format!("all_of: {e}"))?);
                names.push(Value::String(name.to_owned()));
            }
            caller.insert("policy".into(), Value::Array(names));
            Ok(Value::Object(caller))
        }
        other => Err(format!("unknown policy {other}")),
    }
}

fn named(state: &State, name: &str, cert_der: Option<&[u8]>) -> Result<Value, String> {
    let need_cert = || cert_der.ok_or_else(|| format!("{name}: no client certificate was presented"));
    match name {
        "no_auth" => Ok(json!({"policy": "no_auth"})),
        "any_cert" => Ok(json!({"policy": "any_cert", "cert": cert_pem_from_der(need_cert()?)})),
        "user_cert" | "member_cert" => {
            let der = need_cert()?;
            let id = id_of_cert_der(der);
            let (certs, info, field, who) = if name == "user_cert" {
                (USERS_CERTS, USERS_INFO, "user_data", "user")
            } else {
                (MEMBERS_CERTS, MEMBERS_INFO, "member_data", "member")
            };
            if state.get(certs, id.as_bytes()).is_none() {
                return Err(format!("{name}: the client certificate (id {id}) is not a registered {who}"));
            }
            let data = state
                .get(info, id.as_bytes())
                .and_then(|v| serde_json::from_slice::<Value>(v).ok())
                .and_then(|v| v.get(field).cloned())
                .unwrap_or(Value::Null);
            Ok(json!({"policy": name, "id": id, "data": data, "cert": cert_pem_from_der(der)}))
        }
        other => Err(format!("{other}: not a policy this node can check")),
    }
}
