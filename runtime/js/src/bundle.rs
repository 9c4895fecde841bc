//! Bundles: `{"metadata": <app.json>, "modules": [{"name", "module"}]}` (SPEC §4), and routing
//! of requests to their endpoint definitions.

use std::collections::BTreeMap;

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
                    crate::runtime::check_policy(policy).map_err(&err)?;
                }
            }
        }
        Ok(())
    }

    /// Finds the endpoint for `method` and `path` (without `/app`): exact paths win over
    /// templates. `Err(true)` means the path exists but not for this method (405).
    pub fn route(&self, method: &str, path: &str) -> Result<EndpointMatch<'_>, bool> {
        let method = method.to_ascii_lowercase();
        let mut path_found = false;
        if let Some(methods) = self.metadata.endpoints.get(path) {
            if let Some(endpoint) = methods.get(&method) {
                return Ok(EndpointMatch { route: path_key(&self.metadata, path), method, endpoint, params: BTreeMap::new() });
            }
            path_found = true;
        }
        for (template, methods) in &self.metadata.endpoints {
            let Some(params) = match_template(template, path) else {
                continue;
            };
            match methods.get(&method) {
                Some(endpoint) => return Ok(EndpointMatch { route: template, method, endpoint, params }),
                None => path_found = true,
            }
        }
        Err(path_found)
    }
}

fn path_key<'a>(metadata: &'a AppMetadata, path: &str) -> &'a str {
    metadata.endpoints.get_key_value(path).map(|(k, _)| k.as_str()).unwrap_or_default()
}

fn match_template(template: &str, path: &str) -> Option<BTreeMap<String, String>> {
    if !template.contains('{') {
        return None;
    }
    let t: Vec<&str> = template.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    if t.len() != p.len() {
        return None;
    }
    let mut params = BTreeMap::new();
    for (ts, ps) in t.iter().zip(&p) {
        match ts.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
            Some(name) if !ps.is_empty() => {
                params.insert(name.to_owned(), percent_decode(ps, false));
            }
            Some(_) => return None,
            None if ts == ps => {}
            None => return None,
        }
    }
    Some(params)
}

/// Decodes `%XX` escapes (malformed escapes are kept as they are); in a query string
/// (`plus_is_space`) a `+` is a space too.
pub fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                if let Some(b) = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    out.push(b);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
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
    fn routes_exact_before_template_and_reports_405() {
        let b = bundle();
        assert_eq!(b.route("GET", "/log/private").expect("exact").endpoint.js_function, "get");
        assert_eq!(b.route("GET", "/log/count").expect("exact").endpoint.js_function, "count");
        let m = b.route("get", "/log/a%20b").expect("template");
        assert_eq!((m.route, m.params["id"].as_str()), ("/log/{id}", "a b"));
        assert!(matches!(b.route("PUT", "/log/private"), Err(true)));
        assert!(matches!(b.route("GET", "/nope"), Err(false)));
        assert!(matches!(b.route("GET", "/log/"), Err(false)));
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
