//! Bundles: `{"metadata": <app.json>, "modules": [{"name", "module"}]}` (SPEC §4), and routing
//! of requests to their endpoint definitions.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Limits on what a bundle may hold; a deploy beyond them is refused with the limit named.
pub const BUNDLE_MODULES_MAX: usize = 1024;
pub const BUNDLE_ENDPOINTS_MAX: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    #[error("bundle is not valid JSON of the form {{\"metadata\": {{\"endpoints\": ...}}, \"modules\": [...]}}: {0}")]
    Json(String),
    #[error("bundle is invalid: {0}")]
    Invalid(String),
    #[error("module {module:?} does not compile: {message}")]
    Compile { module: String, message: String },
    #[error("endpoint {endpoint}: {message}")]
    Endpoint { endpoint: String, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Readwrite,
    Readonly,
    Historical,
}

/// One endpoint of app.json. Unknown fields are kept so that governance can show them back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointDef {
    pub js_module: String,
    pub js_function: String,
    #[serde(default)]
    pub authn_policies: Vec<serde_json::Value>,
    #[serde(default = "default_forwarding")]
    pub forwarding_required: String,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openapi: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interpreter_reuse: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirection_strategy: Option<String>,
}

fn default_forwarding() -> String {
    "sometimes".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct AppMetadata {
    /// path template → lowercase method → endpoint.
    pub endpoints: BTreeMap<String, BTreeMap<String, EndpointDef>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ModuleWire {
    name: String,
    module: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct BundleWire {
    metadata: AppMetadata,
    modules: Vec<ModuleWire>,
}

/// A parsed bundle: its endpoints and its modules by normalised name.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Bundle {
    pub metadata: AppMetadata,
    pub modules: BTreeMap<String, String>,
}

/// A request routed to an endpoint.
#[derive(Debug, Clone)]
pub struct EndpointMatch<'a> {
    pub route: &'a str,
    pub method: String,
    pub endpoint: &'a EndpointDef,
    pub params: BTreeMap<String, String>,
}

/// Module names are compared without a leading `/` or `./`.
pub fn normalise_module_name(name: &str) -> String {
    let mut n = name;
    loop {
        if let Some(r) = n.strip_prefix("./") {
            n = r;
        } else if let Some(r) = n.strip_prefix('/') {
            n = r;
        } else {
            break;
        }
    }
    n.to_owned()
}

impl Bundle {
    pub fn from_json(bytes: &[u8]) -> Result<Bundle, BundleError> {
        let wire: BundleWire = serde_json::from_slice(bytes).map_err(|e| BundleError::Json(e.to_string()))?;
        let mut modules = BTreeMap::new();
        if wire.modules.len() > BUNDLE_MODULES_MAX {
            return Err(BundleError::Invalid(format!("{} modules; at most {BUNDLE_MODULES_MAX}", wire.modules.len())));
        }
        for m in wire.modules {
            let name = normalise_module_name(&m.name);
            crate::engine::nesting::check_source(&format!("module {name:?}"), &m.module).map_err(BundleError::Invalid)?;
            if modules.insert(name.clone(), m.module).is_some() {
                return Err(BundleError::Invalid(format!("module {name:?} appears twice")));
            }
        }
        let bundle = Bundle { metadata: wire.metadata, modules };
        bundle.check_metadata()?;
        Ok(bundle)
    }

    pub fn to_json(&self) -> serde_json::Value {
        let modules: Vec<ModuleWire> = self.modules.iter().map(|(n, m)| ModuleWire { name: n.clone(), module: m.clone() }).collect();
        serde_json::to_value(BundleWire { metadata: self.metadata.clone(), modules }).expect("bundle serialises")
    }

    /// Checks what can be checked without running JS: methods, modes, modules named.
    fn check_metadata(&self) -> Result<(), BundleError> {
        let count: usize = self.metadata.endpoints.values().map(|m| m.len()).sum();
        if count > BUNDLE_ENDPOINTS_MAX {
            return Err(BundleError::Invalid(format!("{count} endpoints; at most {BUNDLE_ENDPOINTS_MAX}")));
        }
        for (path, methods) in &self.metadata.endpoints {
            if !path.starts_with('/') {
                return Err(BundleError::Endpoint { endpoint: path.clone(), message: "path must start with '/'".into() });
            }
            if path.matches('{').count() != path.matches('}').count() {
                return Err(BundleError::Endpoint {
                    endpoint: path.clone(),
                    message: "invalid templated path: unbalanced curly brackets".into(),
                });
            }
            for (method, def) in methods {
                let endpoint = format!("{} {path}", method.to_uppercase());
                let err = |message: String| BundleError::Endpoint { endpoint: endpoint.clone(), message };
                if !matches!(method.as_str(), "get" | "post" | "put" | "delete" | "patch" | "head" | "options") {
                    return Err(err(format!("unknown HTTP method {method:?}")));
                }
                if !self.modules.contains_key(&normalise_module_name(&def.js_module)) {
                    return Err(err(format!("js_module {:?} is not in the bundle", def.js_module)));
                }
                if !matches!(def.forwarding_required.as_str(), "sometimes" | "always" | "never") {
                    return Err(err(format!("forwarding_required must be sometimes, always or never, not {:?}", def.forwarding_required)));
                }
                if let Some(r) = &def.redirection_strategy {
                    if !matches!(r.as_str(), "none" | "to_primary" | "to_backup") {
                        return Err(err(format!("redirection_strategy must be none, to_primary or to_backup, not {r:?}")));
                    }
                }
                for policy in &def.authn_policies {
                    crate::engine::runtime::check_policy(policy).map_err(&err)?;
                }
            }
        }
        Ok(())
    }

    /// Finds the endpoint for `method` and `path` (the path without `/app`), as CCF does: an
    /// exact path first, then the templates; two templates that both match are an error that
    /// names them, never a silent pick.
    pub fn route(&self, method: &str, path: &str) -> Result<EndpointMatch<'_>, RouteError> {
        let method = method.to_ascii_lowercase();
        if let Some((route, endpoint)) = self.metadata.endpoints.get_key_value(path).and_then(|(k, m)| Some((k, m.get(&method)?))) {
            return Ok(EndpointMatch { route, method, endpoint, params: BTreeMap::new() });
        }
        let mut found: Vec<EndpointMatch<'_>> = Vec::new();
        for (template, methods) in &self.metadata.endpoints {
            let Some(endpoint) = methods.get(&method) else { continue };
            if let Some(params) = match_template(template, path) {
                found.push(EndpointMatch { route: template, method: method.clone(), endpoint, params });
            }
        }
        match found.len() {
            0 => Err(RouteError::NotFound),
            1 => Ok(found.remove(0)),
            _ => Err(RouteError::Ambiguous(found.iter().map(|m| m.route.to_owned()).collect())),
        }
    }

    /// The methods (upper case) some endpoint answers at `path`, exact or templated: what an
    /// `Allow` header lists.
    pub fn methods_at(&self, path: &str) -> BTreeSet<String> {
        self.metadata
            .endpoints
            .iter()
            .filter(|(template, _)| template.as_str() == path || match_template(template, path).is_some())
            .flat_map(|(_, methods)| methods.keys().map(|m| m.to_ascii_uppercase()))
            .collect()
    }
}

/// Why a request found no endpoint of the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// No endpoint has this method at this path.
    NotFound,
    /// More than one template matches (the templates, in order).
    Ambiguous(Vec<String>),
}

impl std::fmt::Display for RouteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouteError::NotFound => f.write_str("no endpoint matches"),
            RouteError::Ambiguous(templates) => write!(f, "the path matches more than one endpoint template: {}", templates.join(", ")),
        }
    }
}

/// Matches `path` against a CCF path template: each `{name}` takes one or more characters up to
/// the next `/` or, when a literal character follows the parameter, up to that character
/// (`/{id}:cancel`). Values are given as they appear in the path, not percent-decoded, as in
/// CCF. `None` for a path without parameters or one that does not match.
fn match_template(template: &str, path: &str) -> Option<BTreeMap<String, String>> {
    if !template.contains('{') {
        return None;
    }
    let (mut t, mut p) = (template, path);
    let mut params = BTreeMap::new();
    while let Some(open) = t.find('{') {
        p = p.strip_prefix(&t[..open])?;
        let close = open + t[open..].find('}')?;
        let name = &t[open + 1..close];
        t = &t[close + 1..];
        let terminator = t.chars().next().filter(|c| *c != '/');
        let len = p.find(|c: char| c == '/' || Some(c) == terminator).unwrap_or(p.len());
        if len == 0 {
            return None;
        }
        params.insert(name.to_owned(), p[..len].to_owned());
        p = &p[len..];
    }
    (t == p).then_some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle() -> Bundle {
        let json = serde_json::json!({
            "metadata": {"endpoints": {
                "/log/private": {"get": {"js_module": "app.js", "js_function": "get", "authn_policies": ["user_cert"], "mode": "readonly"},
                                  "post": {"js_module": "/app.js", "js_function": "post", "authn_policies": ["user_cert"]}},
                "/log/{id}": {"get": {"js_module": "app.js", "js_function": "byId", "authn_policies": []}},
                "/log/count": {"get": {"js_module": "app.js", "js_function": "count", "authn_policies": []}}
            }},
            "modules": [{"name": "app.js", "module": "export function get() {}"}]
        });
        Bundle::from_json(json.to_string().as_bytes()).expect("valid")
    }

    #[test]
    fn a_module_that_nests_too_deeply_for_the_parser_is_refused() {
        let with = |module: String| serde_json::json!({"metadata": {"endpoints": {}}, "modules": [{"name": "m.js", "module": module}]});
        let deep = with(format!("export const x = {}0{};", "[".repeat(5000), "]".repeat(5000)));
        match Bundle::from_json(deep.to_string().as_bytes()) {
            Err(BundleError::Invalid(m)) => assert!(m.contains("\"m.js\" nests too deeply"), "{m}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        let fine = with(format!("export const x = {}0{};", "[".repeat(50), "]".repeat(50)));
        assert!(Bundle::from_json(fine.to_string().as_bytes()).is_ok());
    }

    #[test]
    fn routes_exact_before_template_and_lists_methods() {
        let b = bundle();
        assert_eq!(b.route("GET", "/log/private").expect("exact").endpoint.js_function, "get");
        assert_eq!(b.route("GET", "/log/count").expect("exact").endpoint.js_function, "count");
        let m = b.route("get", "/log/a%20b").expect("template");
        assert_eq!((m.route, m.params["id"].as_str()), ("/log/{id}", "a%20b"));
        assert_eq!(b.route("PUT", "/log/private").expect_err("no PUT"), RouteError::NotFound);
        assert_eq!(b.route("GET", "/nope").expect_err("no path"), RouteError::NotFound);
        assert_eq!(b.route("GET", "/log/").expect_err("empty parameter"), RouteError::NotFound);
        let methods = |p| b.methods_at(p).into_iter().collect::<Vec<_>>();
        assert_eq!(methods("/log/private"), ["GET", "POST"]);
        assert_eq!(methods("/log/7"), ["GET"]);
        assert!(methods("/nope").is_empty());
    }

    #[test]
    fn templates_match_as_ccf_matches_them() {
        type Params = Option<&'static [(&'static str, &'static str)]>;
        let cases: [(&str, &str, Params); 10] = [
            ("/a/{x}", "/a/1", Some(&[("x", "1")])),
            ("/a/{x}", "/a/1/2", None),
            ("/a/{x}", "/a/", None),
            ("/a/{x}/b/{y}", "/a/1/b/two", Some(&[("x", "1"), ("y", "two")])),
            ("/a/{x}:cancel", "/a/7:cancel", Some(&[("x", "7")])),
            ("/a/{x}:cancel", "/a/7:other", None),
            ("/a/{x}.json", "/a/doc.json", Some(&[("x", "doc")])),
            ("/a/{x}", "/a/%2F", Some(&[("x", "%2F")])),
            ("/a/b", "/a/b", None),
            ("/a/{x", "/a/1", None),
        ];
        for (template, path, want) in cases {
            let got = match_template(template, path);
            let want = want.map(|w| w.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>());
            assert_eq!(got, want, "{template} against {path}");
        }
    }

    #[test]
    fn two_templates_matching_one_path_are_reported_not_picked() {
        let json = serde_json::json!({
            "metadata": {"endpoints": {
                "/x/{a}": {"get": {"js_module": "m.js", "js_function": "a"}},
                "/{b}/y": {"get": {"js_module": "m.js", "js_function": "b"}},
                "/x/y": {"post": {"js_module": "m.js", "js_function": "c"}}
            }},
            "modules": [{"name": "m.js", "module": ""}]
        });
        let b = Bundle::from_json(json.to_string().as_bytes()).expect("valid");
        assert_eq!(b.route("GET", "/x/y").expect_err("ambiguous"), RouteError::Ambiguous(vec!["/x/{a}".into(), "/{b}/y".into()]));
        assert_eq!(b.route("POST", "/x/y").expect("exact").endpoint.js_function, "c");
        assert_eq!(b.route("GET", "/x/z").expect("one template").endpoint.js_function, "a");
    }

    #[test]
    fn refuses_bad_bundles_with_reasons() {
        let cases = [
            (r#"{"metadata": {"endpoints": {}}}"#, "missing field `modules`"),
            (
                r#"{"metadata": {"endpoints": {"/a": {"get": {"js_module": "x.js", "js_function": "f"}}}}, "modules": []}"#,
                "not in the bundle",
            ),
            (
                r#"{"metadata": {"endpoints": {"/a": {"fetch": {"js_module": "x.js", "js_function": "f"}}}}, "modules": [{"name": "x.js", "module": ""}]}"#,
                "unknown HTTP method",
            ),
            (
                r#"{"metadata": {"endpoints": {"/a": {"get": {"js_module": "x.js", "js_function": "f", "authn_policies": ["magic"]}}}}, "modules": [{"name": "x.js", "module": ""}]}"#,
                "magic",
            ),
            ("not json", "not valid JSON"),
        ];
        for (json, why) in cases {
            let err = Bundle::from_json(json.as_bytes()).expect_err(json).to_string();
            assert!(err.contains(why), "{err} should mention {why}");
        }
    }
}
