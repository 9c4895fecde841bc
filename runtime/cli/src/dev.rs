//! `consort dev <app dir>`: the app author's inner loop. A one-node sandbox in a temporary (or
//! named) workspace with the app deployed; the app rebuilt with its own `npm run build` when its
//! `package.json` has one, and redeployed through governance (member0 proposes, the proposal is
//! accepted) whenever a source file changes; the handlers' `console` lines and exceptions printed
//! here with the request they came from.

use std::collections::BTreeMap;
use std::io::{BufRead, Seek};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::gov_client::{self, GovClient};
use crate::sandbox::SandboxArgs;

#[derive(clap::Args)]
pub struct DevArgs {
    /// The app: a directory with app.json and src/, or a package whose `npm run build` writes
    /// one to dist/.
    pub app: PathBuf,
    /// Where the network keeps its files (default: a temporary directory, removed at exit).
    #[arg(long)]
    pub workspace: Option<PathBuf>,
    #[arg(long, default_value_t = 8000)]
    pub rpc_port: u16,
}

/// Source files watched at most (a directory past it is refused: point `consort dev` at the app).
const WATCHED_FILES_MAX: usize = 20_000;
/// Directories never watched: what builds and package managers write.
const UNWATCHED: [&str; 5] = ["node_modules", "dist", ".git", "target", "workspace"];

pub fn run(args: DevArgs) -> Result<(), String> {
    let app = args.app.canonicalize().map_err(|e| format!("{}: {e}", args.app.display()))?;
    let build = has_build_script(&app)?;
    if build {
        npm_build(&app)?;
    }
    let deploy = deployable(&app)?;
    let temporary = args.workspace.is_none();
    let workspace = args.workspace.unwrap_or_else(|| std::env::temp_dir().join(format!("consort-dev-{}", std::process::id())));
    let watch = Watch {
        app: app.clone(),
        build,
        deploy: deploy.clone(),
        seen: fingerprint(&app)?,
        pending: None,
        log: workspace.join("node0.log"),
        log_offset: 0,
    };
    println!("consort dev: watching {} (deploying {})", app.display(), deploy.display());
    let sandbox = SandboxArgs {
        workspace: workspace.clone(),
        rpc_port: args.rpc_port,
        app: Some(deploy),
        signature_delay_ms: 100,
        ledger_sync: consort_ledger::Durability::SyncPoints,
        nodes: 1,
        recover: false,
        js_isolation: "process".into(),
        json_logs: true,
    };
    let result = crate::sandbox::run_with(sandbox, Some(watch));
    if temporary {
        let _ = std::fs::remove_dir_all(&workspace);
    }
    result
}

/// Whether the app's `package.json` has a `build` script.
fn has_build_script(app: &Path) -> Result<bool, String> {
    let path = app.join("package.json");
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(false) };
    let package: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(package["scripts"]["build"].is_string())
}

/// Runs `npm run build` in the app, its output on this terminal.
fn npm_build(app: &Path) -> Result<(), String> {
    println!("consort dev: npm run build");
    let status = std::process::Command::new("npm")
        .args(["run", "build"])
        .current_dir(app)
        .status()
        .map_err(|e| format!("running npm run build in {}: {e}", app.display()))?;
    status.success().then_some(()).ok_or_else(|| format!("npm run build failed ({status})"))
}

/// What is deployed: `dist/` when the build wrote an app there, else the app directory.
fn deployable(app: &Path) -> Result<PathBuf, String> {
    for candidate in [app.join("dist"), app.to_owned()] {
        if candidate.join("app.json").exists() || candidate.join("bundle.json").exists() {
            return Ok(candidate);
        }
    }
    Err(format!("{} has no app.json (nor dist/app.json after its build)", app.display()))
}

/// Each watched file's modification time and length.
type Fingerprint = BTreeMap<PathBuf, (SystemTime, u64)>;

fn fingerprint(app: &Path) -> Result<Fingerprint, String> {
    let mut files = Fingerprint::new();
    let mut pending = vec![app.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            let name = entry.file_name();
            if meta.is_dir() {
                if !UNWATCHED.iter().any(|u| name == *u) && !name.to_string_lossy().starts_with('.') {
                    pending.push(path);
                }
            } else {
                files.insert(path, (meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), meta.len()));
                if files.len() > WATCHED_FILES_MAX {
                    return Err(format!("{} holds more than {WATCHED_FILES_MAX} files to watch", app.display()));
                }
            }
        }
    }
    Ok(files)
}

/// The dev loop's state between ticks of the sandbox.
pub struct Watch {
    app: PathBuf,
    build: bool,
    deploy: PathBuf,
    seen: Fingerprint,
    /// A change seen on the last tick: acted on once the files hold still for a tick (an editor
    /// writes a file in several steps).
    pending: Option<Fingerprint>,
    log: PathBuf,
    log_offset: u64,
}

impl Watch {
    /// Called by the sandbox every tick once the service is open.
    pub async fn tick(&mut self, member: &GovClient) {
        self.print_app_lines();
        let Ok(now) = fingerprint(&self.app) else { return };
        if now == self.seen {
            self.pending = None;
            return;
        }
        if self.pending.as_ref() != Some(&now) {
            self.pending = Some(now);
            return;
        }
        self.seen = now;
        self.pending = None;
        match self.redeploy(member).await {
            Ok(proposal) => println!("consort dev: deployed the app (proposal {proposal} accepted)"),
            Err(e) => println!("consort dev: not deployed, the app that ran before still runs: {e}"),
        }
    }

    async fn redeploy(&self, member: &GovClient) -> Result<String, String> {
        println!("consort dev: a change: redeploying");
        if self.build {
            let app = self.app.clone();
            tokio::task::spawn_blocking(move || npm_build(&app)).await.map_err(|e| e.to_string())??;
        }
        let action = gov_client::actions::set_js_app(&self.deploy)?;
        let voted = member.propose_and_accept(vec![action]).await?;
        match voted.body["proposalState"].as_str() {
            Some("Accepted") => Ok(voted.body["proposalId"].as_str().unwrap_or_default().to_owned()),
            _ => Err(format!("the proposal was not accepted: {}", voted.body_text())),
        }
    }

    /// Prints what the node logged since the last tick about the app: `console` lines (with the
    /// request that ran) and script failures.
    fn print_app_lines(&mut self) {
        let Ok(mut file) = std::fs::File::open(&self.log) else { return };
        if file.seek(std::io::SeekFrom::Start(self.log_offset)).is_err() {
            return;
        }
        let mut reader = std::io::BufReader::new(file);
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
            if !line.ends_with('\n') {
                break; // a line still being written: read it whole next time
            }
            self.log_offset += line.len() as u64;
            if let Some(shown) = app_line(&line) {
                println!("{}", original_positions(&shown, &self.deploy, &self.app));
            }
            line.clear();
        }
    }
}

/// The line `consort dev` shows for a node log line (JSON), if it is about the app: a script's
/// `console` output as `[app] LEVEL METHOD /path: message`, a script failure as the node logged it.
pub fn app_line(json: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(json.trim()).ok()?;
    let level = v["level"].as_str().unwrap_or("INFO");
    let message = v["fields"]["message"].as_str()?;
    match v["target"].as_str()? {
        "consort::app" => {
            let request = v["fields"]["request"].as_str().unwrap_or("");
            Some(format!("[app] {level} {request}: {message}"))
        }
        "consort_node::app" => Some(format!("[app] {level} {message}")),
        _ => None,
    }
}

/// `text` with each `(<module>:<line>:<column>)` of the deployed app's modules mapped to the
/// source it was built from, through the module's source map (inline, as esbuild's
/// `--sourcemap=inline` writes it, or `<module>.map` beside it); positions without a map stay.
pub fn original_positions(text: &str, deploy: &Path, app: &Path) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('(') {
        let Some(close) = rest[open..].find(')').map(|c| open + c) else { break };
        out.push_str(&rest[..=open]);
        let inside = &rest[open + 1..close];
        out.push_str(&map_position(inside, deploy, app).unwrap_or_else(|| inside.to_owned()));
        out.push(')');
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// `src/app.ts:12:9` for `app.js:5:31`, if the module has a source map that covers it.
fn map_position(position: &str, deploy: &Path, app: &Path) -> Option<String> {
    let mut parts = position.rsplitn(3, ':');
    let (column, line, module) = (parts.next()?.parse::<u32>().ok()?, parts.next()?.parse::<u32>().ok()?, parts.next()?);
    let file = deploy.join("src").join(module.trim_start_matches('/'));
    let source = std::fs::read_to_string(&file).ok()?;
    let map = source_map_of(&source, &file)?;
    let token = map.lookup_token(line.checked_sub(1)?, column.checked_sub(1)?)?;
    // The source's path as the map names it, relative to the module; shown from the app's root.
    let mut original = PathBuf::new();
    for part in file.parent()?.join(token.get_source()?).components() {
        match part {
            std::path::Component::ParentDir => {
                original.pop();
            }
            std::path::Component::CurDir => {}
            other => original.push(other),
        }
    }
    let shown = original.strip_prefix(app).unwrap_or(&original);
    Some(format!("{}:{}:{}", shown.display(), token.get_src_line() + 1, token.get_src_col() + 1))
}

fn source_map_of(source: &str, file: &Path) -> Option<sourcemap::SourceMap> {
    use base64::Engine;
    let url = source.rsplit_once("//# sourceMappingURL=")?.1.trim();
    let bytes = match url.strip_prefix("data:application/json;base64,") {
        Some(inline) => base64::engine::general_purpose::STANDARD.decode(inline).ok()?,
        None => std::fs::read(file.parent()?.join(url)).ok()?,
    };
    sourcemap::SourceMap::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lines_shown_are_the_apps() {
        let console =
            r#"{"timestamp":"t","level":"INFO","fields":{"message":"hello 42","request":"POST /app/log?x=1"},"target":"consort::app"}"#;
        assert_eq!(app_line(console).as_deref(), Some("[app] INFO POST /app/log?x=1: hello 42"));
        let failure = r#"{"timestamp":"t","level":"WARN","fields":{"message":"GET /app/x: Error: boom: at f (app.js:3:9)"},"target":"consort_node::app"}"#;
        assert_eq!(app_line(failure).as_deref(), Some("[app] WARN GET /app/x: Error: boom: at f (app.js:3:9)"));
        assert_eq!(app_line(r#"{"level":"INFO","fields":{"message":"elected"},"target":"openraft::core"}"#), None);
        assert_eq!(app_line("not json"), None);
    }

    #[test]
    fn positions_are_mapped_through_the_modules_source_map() {
        use base64::Engine;
        let dir = std::env::temp_dir().join(format!("consort-dev-map-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("dist/src")).expect("dir");
        // Line 2 column 3 of app.js comes from line 10 column 5 of ../../src/app.ts.
        let map = r#"{"version":3,"sources":["../../src/app.ts"],"names":[],"mappings":";EASI"}"#;
        let inline = base64::engine::general_purpose::STANDARD.encode(map);
        std::fs::write(dir.join("dist/src/app.js"), format!("x\n  y\n//# sourceMappingURL=data:application/json;base64,{inline}\n"))
            .expect("write");
        let shown = original_positions("Error: e: at f (app.js:2:3)\n at g (other.js:1:1) (no position)", &dir.join("dist"), &dir);
        assert_eq!(shown, "Error: e: at f (src/app.ts:10:5)\n at g (other.js:1:1) (no position)");
        std::fs::remove_dir_all(&dir).expect("clean");
    }

    #[test]
    fn a_change_is_seen_and_built_output_is_not() {
        let dir = std::env::temp_dir().join(format!("consort-dev-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("src")).expect("dir");
        std::fs::create_dir_all(dir.join("node_modules/x")).expect("dir");
        std::fs::write(dir.join("src/app.js"), "a").expect("write");
        let before = fingerprint(&dir).expect("fingerprint");
        std::fs::write(dir.join("node_modules/x/y.js"), "ignored").expect("write");
        assert_eq!(fingerprint(&dir).expect("fingerprint"), before, "node_modules is not watched");
        std::fs::write(dir.join("src/app.js"), "ab").expect("write");
        assert_ne!(fingerprint(&dir).expect("fingerprint"), before, "a source change is seen");
        assert_eq!(deployable(&dir).err().map(|e| e.contains("no app.json")), Some(true));
        std::fs::write(dir.join("app.json"), "{}").expect("write");
        assert_eq!(deployable(&dir).ok(), Some(dir.clone()));
        std::fs::remove_dir_all(&dir).expect("clean");
    }
}
