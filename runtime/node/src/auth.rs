//! Who is calling: the endpoint's `authn_policies` checked against what the request presents
//! (SPEC §4) — the TLS client certificate, an `Authorization: Bearer` JWT, or a COSE_Sign1 body.
//! The first policy that succeeds shapes `request.caller`; when none does, the 401 names what
//! each policy missed.

use consort_crypto::cose::Sign1;
use consort_crypto::jwt::{verify_jwt, JwtKeyMetadata};
use consort_crypto::{cert_der_from_pem, cert_pem_from_der, id_of_cert_der};
use consort_kv::State;
use serde_json::{json, Value};

use consort_kv::names::{JWT_PUBLIC_SIGNING_KEYS, MEMBERS_CERTS, MEMBERS_INFO, USERS_CERTS, USERS_INFO};

/// A TLS client certificate, with what authentication derives from it (its id, its PEM, its
/// validity period) worked out at its connection's first request that needs them and kept for
/// the connection's life, not again for every request.
pub struct PeerCert {
    der: Vec<u8>,
    derived: std::sync::OnceLock<Derived>,
}

struct Derived {
    id: String,
    pem: String,
    /// Not before and not after, in seconds since the epoch, or why they cannot be read.
    validity: Result<(i64, i64), String>,
}

impl PeerCert {
    pub fn new(der: Vec<u8>) -> PeerCert {
        PeerCert { der, derived: std::sync::OnceLock::new() }
    }

    pub fn der(&self) -> &[u8] {
        &self.der
    }

    fn derived(&self) -> &Derived {
        self.derived.get_or_init(|| Derived {
            id: id_of_cert_der(&self.der),
            pem: cert_pem_from_der(&self.der),
            validity: consort_crypto::validity_period(&self.der).map_err(|e| e.to_string()),
        })
    }
}

/// What a request offers to prove who sent it.
#[derive(Clone, Copy, Default)]
pub struct Credentials<'a> {
    pub cert: Option<&'a PeerCert>,
    /// The `authorization` header.
    pub authorization: Option<&'a str>,
    /// The `content-type` header.
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
}

/// Why one policy refused a request (CCF's `ODataAuthErrorDetails`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The policy's name (`user_cert`, `jwt`, `all_of`, ...).
    pub policy: String,
    pub message: String,
}

/// `Ok(None)` for an empty policy list; `Err` says why each policy refused, in order.
pub fn authenticate(state: &State, policies: &[Value], creds: Credentials<'_>) -> Result<Option<Value>, Vec<Refusal>> {
    if policies.is_empty() {
        return Ok(None);
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let mut refusals = Vec::new();
    for policy in policies {
        match identity(state, policy, creds, now) {
            Ok(caller) => return Ok(Some(caller)),
            Err(message) => {
                let name = policy.as_str().unwrap_or("all_of").to_owned();
                refusals.push(Refusal { policy: name, message });
            }
        }
    }
    Err(refusals)
}

fn identity(state: &State, policy: &Value, creds: Credentials<'_>, now: i64) -> Result<Value, String> {
    match policy {
        Value::String(name) => named(state, name, creds, now),
        Value::Object(o) => {
            let parts = o.get("all_of").and_then(Value::as_array).ok_or("unknown policy object")?;
            let mut caller = serde_json::Map::new();
            let mut names = Vec::new();
            for part in parts {
                let name = part.as_str().ok_or("all_of holds policy names")?;
                caller.insert(name.to_owned(), named(state, name, creds, now).map_err(|e| format!("{name}: {e}"))?);
                names.push(Value::String(name.to_owned()));
            }
            caller.insert("policy".into(), Value::Array(names));
            Ok(Value::Object(caller))
        }
        other => Err(format!("unknown policy {other}")),
    }
}

/// CCF's check of a caller certificate's validity period, with CCF's words.
fn valid_at(validity: &Result<(i64, i64), String>, now: i64) -> Result<(), String> {
    let (not_before, not_after) = validity.clone()?;
    if now < not_before {
        return Err(format!("Current time {now} is before certificate's Not Before validity period {not_before}"));
    }
    if now > not_after {
        return Err(format!("Current time {now} is after certificate's Not After validity period {not_after}"));
    }
    Ok(())
}

fn named(state: &State, name: &str, creds: Credentials<'_>, now: i64) -> Result<Value, String> {
    match name {
        "no_auth" => Ok(json!({"policy": "no_auth"})),
        "any_cert" => {
            let cert = creds.cert.ok_or("No caller certificate")?;
            Ok(json!({"policy": "any_cert", "cert": cert.derived().pem}))
        }
        "user_cert" | "member_cert" => {
            let who = if name == "user_cert" { Who::User } else { Who::Member };
            let cert = creds.cert.ok_or_else(|| format!("No caller {} certificate", who.noun()))?.derived();
            valid_at(&cert.validity, now)?;
            if state.get(who.certs(), cert.id.as_bytes()).is_none() {
                return Err(format!("Could not find matching {} certificate", who.noun()));
            }
            Ok(json!({"policy": name, "id": cert.id, "data": who.data(state, &cert.id), "cert": cert.pem}))
        }
        "jwt" => {
            let keys = |kid: &str| -> Vec<JwtKeyMetadata> {
                state.get(JWT_PUBLIC_SIGNING_KEYS, kid.as_bytes()).and_then(|v| serde_json::from_slice(v).ok()).unwrap_or_default()
            };
            let jwt = verify_jwt(creds.authorization, keys, now).map_err(|e| e.to_string())?;
            Ok(json!({"policy": "jwt", "jwt": {"keyIssuer": jwt.key_issuer, "header": jwt.header, "payload": jwt.payload}}))
        }
        "user_cose_sign1" | "member_cose_sign1" => {
            let who = if name == "user_cose_sign1" { Who::User } else { Who::Member };
            match media_type(creds.content_type) {
                Some("application/cose") => {}
                Some(_) => return Err("Content type is not set to application/cose".into()),
                None => return Err("Missing content-type header".into()),
            }
            let sign1 = Sign1::parse(creds.body).map_err(|e| e.to_string())?;
            if who == Who::Member && (sign1.text("ccf.gov.msg.type").is_none() || sign1.int("ccf.gov.msg.created_at").is_none()) {
                return Err("Missing ccf.gov.msg.type or ccf.gov.msg.created_at in the protected header".into());
            }
            let pem = state
                .get(who.certs(), sign1.kid.as_bytes())
                .and_then(|v| String::from_utf8(v.to_vec()).ok())
                .ok_or_else(|| format!("Signer is not a known {}", who.noun()))?;
            let der = cert_der_from_pem(&pem).map_err(|e| format!("stored certificate: {e}"))?;
            sign1.verify_with_cert(&der).map_err(|e| format!("Failed to validate COSE Sign1: {e}"))?;
            use base64::Engine;
            // `content` becomes an ArrayBuffer in the worker (prelude.js).
            let content = base64::engine::general_purpose::STANDARD.encode(&sign1.payload);
            Ok(json!({"policy": name, "id": sign1.kid, "data": who.data(state, &sign1.kid), "cert": pem,
                "cose": {"content": content}}))
        }
        other => Err(format!("{other}: not a policy this node can check")),
    }
}

/// Policies whose caller carries the certificate the governance tables hold under its id.
fn cert_from_tables(caller: &Value) -> Option<(Who, bool)> {
    match caller.get("policy")?.as_str()? {
        "user_cert" => Some((Who::User, true)),
        "member_cert" => Some((Who::Member, true)),
        "user_cose_sign1" => Some((Who::User, false)),
        "member_cose_sign1" => Some((Who::Member, false)),
        _ => None,
    }
}

/// The caller as a transaction's recorded inputs keep it: without the certificate when it is
/// the one the users' or members' table holds under the caller's id ([`restored_caller`] puts
/// it back), so that a recorded entry does not carry a PEM each time.
pub fn recorded_caller(caller: &Value) -> std::borrow::Cow<'_, Value> {
    use std::borrow::Cow;
    match caller.as_object() {
        Some(o) if cert_from_tables(caller).is_some() && o.get("id").is_some_and(Value::is_string) => {
            Cow::Owned(Value::Object(o.iter().filter(|(k, _)| *k != "cert").map(|(k, v)| (k.clone(), v.clone())).collect()))
        }
        _ => Cow::Borrowed(caller),
    }
}

/// A recorded caller with its certificate back, from `state`'s tables, as authentication gave it
/// (a client certificate's PEM as derived from its DER, a COSE signer's as stored).
pub fn restored_caller(state: &State, caller: &Value) -> Value {
    let mut out = caller.clone();
    let (Some((who, derived)), Some(id)) = (cert_from_tables(caller), caller.get("id").and_then(Value::as_str)) else { return out };
    if caller.get("cert").is_some() {
        return out;
    }
    let Some(stored) = state.get(who.certs(), id.as_bytes()).and_then(|v| String::from_utf8(v.to_vec()).ok()) else { return out };
    let pem = if derived { cert_der_from_pem(&stored).map(|der| cert_pem_from_der(&der)).unwrap_or(stored) } else { stored };
    out["cert"] = json!(pem);
    out
}

#[derive(PartialEq, Eq)]
enum Who {
    User,
    Member,
}

impl Who {
    fn certs(&self) -> &'static str {
        match self {
            Who::User => USERS_CERTS,
            Who::Member => MEMBERS_CERTS,
        }
    }

    fn noun(&self) -> &'static str {
        match self {
            Who::User => "user",
            Who::Member => "member",
        }
    }

    /// `user_data` / `member_data` from the info table, `null` when absent.
    fn data(&self, state: &State, id: &str) -> Value {
        let (table, field) = match self {
            Who::User => (USERS_INFO, "user_data"),
            Who::Member => (MEMBERS_INFO, "member_data"),
        };
        state
            .get(table, id.as_bytes())
            .and_then(|v| serde_json::from_slice::<Value>(v).ok())
            .and_then(|v| v.get(field).cloned())
            .unwrap_or(Value::Null)
    }
}

/// A content type without its parameters (`application/cose; charset=x` → `application/cose`).
pub(crate) fn media_type(content_type: Option<&str>) -> Option<&str> {
    content_type.map(|c| c.split(';').next().unwrap_or("").trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_caller_leaves_out_the_certificate_the_tables_hold_and_gets_it_back() {
        let (_, pem) = consort_crypto::identity_cert("user1", consort_crypto::Curve::Secp384r1).expect("identity");
        // Stored as a member would send it (CRLF line ends), not as authentication derives it.
        let stored = pem.replace('\n', "\r\n");
        let der = cert_der_from_pem(&pem).expect("der");
        let id = id_of_cert_der(&der);
        let mut state = State::default();
        let mut writes = consort_kv::WriteSet::default();
        writes.put(USERS_CERTS, id.as_bytes().to_vec(), stored.clone().into_bytes());
        state.apply(consort_kv::TxId::new(1, 1), &writes);

        let tls = json!({"policy": "user_cert", "id": id, "data": {"team": "a"}, "cert": cert_pem_from_der(&der)});
        let recorded = recorded_caller(&tls).into_owned();
        assert_eq!(recorded, json!({"policy": "user_cert", "id": id, "data": {"team": "a"}}));
        assert_eq!(restored_caller(&state, &recorded), tls, "the PEM authentication derived from the DER");

        let cose = json!({"policy": "user_cose_sign1", "id": id, "data": null, "cert": stored, "cose": {"content": ""}});
        assert_eq!(restored_caller(&state, &recorded_caller(&cose)), cose, "the PEM as stored");

        // Callers whose certificate is not in the tables keep it; nothing is made up.
        let any = json!({"policy": "any_cert", "cert": pem});
        assert_eq!(*recorded_caller(&any), any);
        let unknown = json!({"policy": "member_cert", "id": "00", "data": null});
        assert_eq!(restored_caller(&state, &unknown), unknown);
        let jwt = json!({"policy": "jwt", "jwt": {}});
        assert_eq!(restored_caller(&state, &recorded_caller(&jwt)), jwt);
    }
}
