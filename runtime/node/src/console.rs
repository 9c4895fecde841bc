//! `/console`: the web console for members and auditors, a single page served from files
//! embedded in the binary at build time (`build.rs`, from `console/dist/`). The page reads and
//! writes through the same endpoints, with the same access, as any client; it fetches nothing
//! from anywhere else (its Content-Security-Policy says so to the browser too).

use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use hyper::{Method, StatusCode};

use crate::call::Call;
use crate::reply::{self, Reply};

include!(concat!(env!("OUT_DIR"), "/console_assets.rs"));

/// Where the console is.
pub const PREFIX: &str = "/console";

/// Only this node's own origin, for everything the page loads or asks.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; \
                      base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Whether `path` is the console's.
pub fn is_console(path: &str) -> bool {
    path == PREFIX || path.strip_prefix(PREFIX).is_some_and(|rest| rest.starts_with('/'))
}

/// Answers a request for the console's page or one of its files.
pub fn serve(call: &Call<'_>) -> Reply {
    if call.method != Method::GET && call.method != Method::HEAD {
        return crate::call::refuse_method(call, ["GET".to_owned(), "HEAD".to_owned()]);
    }
    let name = match call.path.strip_prefix(PREFIX).unwrap_or("") {
        "" | "/" => "index.html",
        rest => &rest[1..],
    };
    if ASSETS.is_empty() {
        return reply::error(
            StatusCode::NOT_FOUND,
            "ConsoleNotBuilt",
            "this consort binary was built without its web console: build it with `make` (make console, then cargo build)",
        );
    }
    let Some((_, kind, bytes)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        return reply::error(StatusCode::NOT_FOUND, "ResourceNotFound", format!("the console has no file {name:?}"));
    };
    let body: &'static [u8] = if call.method == Method::HEAD { b"" } else { bytes };
    let mut r = hyper::Response::new(http_body_util::Full::new(hyper::body::Bytes::from_static(body)));
    let headers = r.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_console_prefix_and_what_is_under_it_are_the_consoles() {
        for path in ["/console", "/console/", "/console/console.js"] {
            assert!(is_console(path), "{path}");
        }
        for path in ["/consoles", "/console.js", "/app/console", "/", "/gov/console"] {
            assert!(!is_console(path), "{path}");
        }
    }

    #[test]
    fn the_policy_keeps_the_page_to_its_node() {
        assert!(POLICY.starts_with("default-src 'none';"));
        for directive in ["script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"] {
            assert!(POLICY.contains(directive), "{directive}");
        }
        assert!(HeaderValue::from_str(POLICY).is_ok());
    }
}
