//! Reading an app from disk: a bundle.json, or a directory with `app.json` and `src/` laid out
//! as `ccf-build-bundle` reads it (module names are paths relative to `src/`).

use std::path::{Path, PathBuf};

use consort_js::Bundle;

/// Bundles larger than this are refused when read (the same bound as a deploy request).
pub const BUNDLE_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// Why an app could not be read from disk.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// A file or directory could not be read.
    #[error("reading {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    /// Neither a bundle nor a directory with `app.json` (the path to the missing app.json).
    #[error("reading {}: {source} (an app directory needs app.json and src/)", path.display())]
    NotAnApp { path: PathBuf, source: std::io::Error },
    #[error("{}: {size} bytes is above the {BUNDLE_BYTES_MAX}-byte limit", path.display())]
    TooLarge { path: PathBuf, size: u64 },
    /// Read, but not an app: bad JSON, a bad bundle, or modules that do not compile.
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
}

fn read_err(path: &Path) -> impl FnOnce(std::io::Error) -> AppError + '_ {
    move |source| AppError::Read { path: path.to_owned(), source }
}

fn invalid(path: &Path, reason: impl std::fmt::Display) -> AppError {
    AppError::Invalid { path: path.to_owned(), reason: reason.to_string() }
}

pub fn load_app(path: &Path) -> Result<Bundle, AppError> {
    let bundle_json = if path.is_dir() { path.join("bundle.json") } else { path.to_owned() };
    let bundle = if bundle_json.is_file() {
        let size = std::fs::metadata(&bundle_json).map_err(read_err(&bundle_json))?.len();
        if size > BUNDLE_BYTES_MAX {
            return Err(AppError::TooLarge { path: bundle_json, size });
        }
        let bytes = std::fs::read(&bundle_json).map_err(read_err(&bundle_json))?;
        Bundle::from_json(&bytes).map_err(|e| invalid(&bundle_json, e))?
    } else {
        let app_json = path.join("app.json");
        let metadata = std::fs::read_to_string(&app_json).map_err(|source| AppError::NotAnApp { path: app_json.clone(), source })?;
        let metadata: serde_json::Value = serde_json::from_str(&metadata).map_err(|e| invalid(&app_json, e))?;
        let src = path.join("src");
        let mut modules = Vec::new();
        collect_modules(&src, &src, &mut modules)?;
        let json = serde_json::json!({"metadata": metadata, "modules": modules});
        Bundle::from_json(json.to_string().as_bytes()).map_err(|e| invalid(path, e))?
    };
    consort_js::validate_bundle(&bundle).map_err(|e| invalid(path, e))?;
    Ok(bundle)
}

fn collect_modules(root: &Path, dir: &Path, out: &mut Vec<serde_json::Value>) -> Result<(), AppError> {
    let mut items: Vec<_> = std::fs::read_dir(dir).map_err(read_err(dir))?.filter_map(Result::ok).collect();
    items.sort_by_key(|i| i.path());
    for item in items {
        let path = item.path();
        if path.is_dir() {
            collect_modules(root, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "js" || e == "mjs") {
            let name = path.strip_prefix(root).map_err(|e| invalid(&path, e))?.to_string_lossy().replace('\\', "/");
            let module = std::fs::read_to_string(&path).map_err(read_err(&path))?;
            out.push(serde_json::json!({"name": name, "module": module}));
        }
    }
    Ok(())
}
