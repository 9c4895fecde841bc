//! A request as the handlers see it ([`Call`]), where it came from ([`Origin`], [`Session`]),
//! which front end answers its path ([`Actor`]), and the answer to a method a path lacks.
//! Below the router and the handlers: both use it, and it uses neither.

use std::sync::atomic::AtomicBool;

use hyper::{Method, StatusCode};

use crate::reply::{self, Reply};

/// Parsed request line and body, as the handlers need them.
pub struct Call<'a> {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub headers: &'a hyper::HeaderMap,
    pub body: Vec<u8>,
    pub peer_cert: Option<&'a crate::auth::PeerCert>,
    pub origin: Origin<'a>,
}

impl Call<'_> {
    /// The first value of query parameter `name`, decoded as a form (`%XX` and `+`).
    pub fn query_param(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
    }
}

/// Which part of the node answers a path, as CCF picks its front end: `/app/…`, `/gov/…` and
/// `/node/…` go to their own with the rest of the path; any other path goes to the app whole
/// (`/foo` is the app's `/foo`, as is `/app/foo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    App,
    Gov,
    Node,
}

pub fn actor_of(path: &str) -> (Actor, &str) {
    let Some(slash) = path.strip_prefix('/').and_then(|rest| rest.find('/')).map(|i| i + 1) else {
        return (Actor::App, path);
    };
    match &path[1..slash] {
        "app" => (Actor::App, &path[slash..]),
        "gov" => (Actor::Gov, &path[slash..]),
        "node" => (Actor::Node, &path[slash..]),
        _ => (Actor::App, path),
    }
}

/// The answer to a method a path does not have, as CCF gives it: `OPTIONS` is a 204 and any
/// other method a 405, both with `Allow: OPTIONS, <the path's methods>`; a path with no
/// methods at all is a 404.
pub fn refuse_method(call: &Call<'_>, allowed: impl IntoIterator<Item = String>) -> Reply {
    const ORDER: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
    let mut allowed: Vec<String> = allowed.into_iter().collect();
    if allowed.is_empty() {
        return reply::error(StatusCode::NOT_FOUND, "ResourceNotFound", format!("Unknown path: {}", call.path));
    }
    allowed.sort_by_key(|m| ORDER.iter().position(|o| o == m).unwrap_or(ORDER.len()));
    allowed.dedup();
    allowed.retain(|m| m != "OPTIONS");
    allowed.insert(0, "OPTIONS".to_owned());
    let allow = allowed.join(", ");
    let mut r = if call.method == Method::OPTIONS {
        reply::empty(StatusCode::NO_CONTENT)
    } else {
        reply::error(StatusCode::METHOD_NOT_ALLOWED, "UnsupportedHttpVerb", format!("Allowed methods for '{}' are: {allow}.", call.path))
    };
    if let Ok(v) = hyper::header::HeaderValue::from_str(&allow) {
        r.headers_mut().insert(hyper::header::ALLOW, v);
    }
    r
}

/// One client connection to this node.
#[derive(Debug, Default)]
pub struct Session {
    /// Set once a request of this connection was forwarded.
    pub(crate) forwarded: AtomicBool,
}

/// Where a request came from.
#[derive(Debug, Clone, Copy)]
pub enum Origin<'a> {
    /// A client connected to this node.
    Client(&'a Session),
    /// A backup forwarded it: it is executed here whatever this node's role (never forwarded
    /// again; if this node lost its primacy meanwhile, its writes fail and the client retries).
    Forwarded,
}
