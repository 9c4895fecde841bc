//! Who is calling: the endpoint's `authn_policies` checked against what the request presents
//! (SPEC §4) — the TLS client certificate, an `Authorization: Bearer` JWT, or a COSE_Sign1 body.
//! The first policy that succeeds shapes `request.caller`; when none does, the 401 names what
//! each policy missed.

use consort_crypto::cose::Sign1;
use consort_crypto::jwt::{verify_jwt, JwtKeyMetadata};
use consort_crypto::{cert_der_from_pem, cert_pem_from_der, id_of_cert_der};
use consort_kv::State;
use serde_json::{json, Value};

use crate::tables::{JWT_PUBLIC_SIGNING_KEYS, MEMBERS_CERTS, MEMBERS_INFO, USERS_CERTS, USERS_INFO};

/// What a request offers to prove who sent it.
#[derive(Clone, Copy, Default)]
pub struct Credentials<'a> {
    pub cert_der: Option<&'a [u8]>,
    /// The `authorization` header.
    pub authorization: Option<&'a str>,
    /// The `content-type` header.
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
}

/// `Ok(None)` for an empty policy list; `Err` names what was missing for every policy.
pub fn authenticate(state: &State, policies: &[Value], creds: Credentials<'_>) -> Result<Option<Value>, String> {
    if policies.is_empty() {
        return Ok(None);
    }
    let mut failures = Vec::new();
    for policy in policies {
        match identity(state, policy, creds) {
            Ok(caller) => return Ok(Some(caller)),
            Err(why) => failures.push(why),
        }
    }
    Err(failures.join("; "))
}

fn identity(state: &State, policy: &Value, creds: Credentials<'_>) -> Result<Value, String> {
    match policy {
        Value::String(name) => named(state, name, creds),
        Value::Object(o) => {
            let parts = o.get("all_of").and_then(Value::as_array).ok_or("unknown policy object")?;
            let mut caller = serde_json::Map::new();
            let mut names = Vec::new();
            for part in parts {
                let name = part.as_str().ok_or("all_of holds policy names")?;
                caller.insert(name.to_owned(), named(state, name, creds).map_err(|e| format!("all_of: {e}"))?);
                names.push(Value::String(name.to_owned()));
            }
            caller.insert("policy".into(), Value::Array(names));
            Ok(Value::Object(caller))
        }
        other => Err(format!("unknown policy {other}")),
    }
}

fn named(state: &State, name: &str, creds: Credentials<'_>) -> Result<Value, String> {
    let need_cert = || creds.cert_der.ok_or_else(|| format!("{name}: no client certificate was presented"));
    match name {
        "no_auth" => Ok(json!({"policy": "no_auth"})),
        "any_cert" => Ok(json!({"policy": "any_cert", "cert": cert_pem_from_der(need_cert()?)})),
        "user_cert" | "member_cert" => {
            let der = need_cert()?;
            let id = id_of_cert_der(der);
            let who = if name == "user_cert" { Who::User } else { Who::Member };
            if state.get(who.certs(), id.as_bytes()).is_none() {
                return Err(format!("{name}: the client certificate (id {id}) is not a registered {}", who.noun()));
            }
            Ok(json!({"policy": name, "id": id, "data": who.data(state, &id), "cert": cert_pem_from_der(der)}))
        }
        "jwt" => {
            let token = creds
                .authorization
                .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
                .map(str::trim)
                .ok_or("jwt: no \"Authorization: Bearer <token>\" header was presented")?;
            let keys = |kid: &str| -> Vec<JwtKeyMetadata> {
                state.get(JWT_PUBLIC_SIGNING_KEYS, kid.as_bytes()).and_then(|v| serde_json::from_slice(v).ok()).unwrap_or_default()
            };
            let jwt = verify_jwt(token, keys).map_err(|e| format!("jwt: {e}"))?;
            Ok(json!({"policy": "jwt", "jwt": {"keyIssuer": jwt.key_issuer, "header": jwt.header, "payload": jwt.payload}}))
        }
        "user_cose_sign1" => {
            let fail = |e: String| format!("user_cose_sign1: {e}");
            match media_type(creds.content_type) {
                Some("application/cose") => {}
                Some(other) => return Err(fail(format!("the content type is {other:?}, not application/cose"))),
                None => return Err(fail("the request has no content-type (application/cose expected)".into())),
            }
            let sign1 = Sign1::parse(creds.body).map_err(fail)?;
            let pem = state
                .get(USERS_CERTS, sign1.kid.as_bytes())
                .and_then(|v| String::from_utf8(v.to_vec()).ok())
                .ok_or_else(|| fail(format!("the signer (kid {}) is not a registered user", sign1.kid)))?;
            let der = cert_der_from_pem(&pem).map_err(|e| fail(format!("stored certificate: {e}")))?;
            sign1.verify_with_cert(&der).map_err(fail)?;
            use base64::Engine;
            // `content` becomes an ArrayBuffer in the worker (prelude.js).
            let content = base64::engine::general_purpose::STANDARD.encode(&sign1.payload);
            Ok(json!({"policy": "user_cose_sign1", "id": sign1.kid, "data": Who::User.data(state, &sign1.kid), "cert": pem,
                "cose": {"content": content}}))
        }
        other => Err(format!("{other}: not a policy this node can check")),
    }
}

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
