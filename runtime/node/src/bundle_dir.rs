//! Reading an app from disk: a bundle.json, or a directory with `app.json` and `src/` laid out
//! as `ccf-build-bundle` reads it (module names are paths relative to `src/`).

use std::path::Path;

use consort_js::Bundle;

/// Bundles larger than this are refused when read (the same bound as a deploy request).
pub const BUNDLE_BYTES_MAX: u64 = 64 * 1024 * 1024;

pub fn load_app(path: &Path) -> Result<Bundle, String> {
    let bundle_json = if path.is_dir() { path.join("bundle.json") } else { path.to_owned() };
    let bundle = if bundle_json.is_file() {
        let size = std::fs::metadata(&bundle_json).map_err(|e| e.to_string())?.len();
        if size > BUNDLE_BYTES_MAX {
            return Err(format!("{}: {size} bytes is above the {BUNDLE_BYTES_MAX}-byte limit", bundle_json.display()));
        }
        let bytes = std::fs::read(&bundle_json).map_err(|e| format!("reading {}: {e}", bundle_json.display()))?;
        Bundle::from_json(&bytes).map_err(|e| format!("{}: {e}", bundle_json.display()))?
    } else {
        let app_json = path.join("app.json");
        let metadata = std::fs::read_to_string(&app_json)
            .map_err(|e| format!("reading {}: {e} (an app directory needs app.json and src/)", app_json.display()))?;
        let metadata: serde_json::Value = serde_json::from_str(&metadata).map_err(|e| format!("{}: {e}", app_json.display()))?;
        let src = path.join("src");
        let mut modules = Vec::new();
        collect_modules(&src, &src, &mut modules)?;
        let json = serde_json::json!({"metadata": metadata, "modules": modules});
        Bundle::from_json(json.to_string().as_bytes()).map_err(|e| format!("{}: {e}", path.display()))?
    };
    consort_js::validate_bundle(&bundle).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(bundle)
}

fn collect_modules(root: &Path, dir: &Path, out: &mut Vec<serde_json::Value>) -> Result<(), String> {
    let mut items: Vec<_> = std::fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))?.filter_map(Result::ok).collect();
    items.sort_by_key(|i| i.path());
    for item in items {
        let path = item.path();
        if path.is_dir() {
            collect_modules(root, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "js" || e == "mjs") {
            let name = path.strip_prefix(root).map_err(|e| e.to_string())?.to_string_lossy().replace('\\', "/");
            let module = std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
            out.push(serde_json::json!({"name": name, "module": module}));
        }
    }
    Ok(())
}
