//! `consort dev` as an app author uses it: started on an app directory, it deploys the app;
//! a change to a source file is redeployed through governance; a change that would not deploy
//! is refused with the deploy's reason while the previous app keeps answering; the handlers'
//! `console` lines and exceptions come out on its terminal with the request they came from.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use consort_tests::{consort_bin, temp_workspace, Sandbox};

const ENDPOINTS: &str = r#"{"endpoints": {
  "/hello": {"get": {"js_module": "app.js", "js_function": "hello", "authn_policies": ["user_cert"], "forwarding_required": "sometimes", "mode": "readonly"}},
  "/boom": {"get": {"js_module": "app.js", "js_function": "boom", "authn_policies": ["user_cert"], "forwarding_required": "sometimes", "mode": "readonly"}}
}}"#;

fn app_source(version: &str) -> String {
    format!(
        "export function hello(request) {{ console.log('hello from {version}', request.query); return {{ body: '{version}' }}; }}\n\
         function check() {{\n  throw new Error('boom in {version}');\n}}\n\
         export function boom() {{ check(); }}\n"
    )
}

/// `consort dev` on its own thread's reading: each line of its output, in order.
struct Dev {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Dev {
    fn start(app: &Path, workspace: &Path, port: u16) -> Dev {
        let mut child = Command::new(consort_bin())
            .args(["dev"])
            .arg(app)
            .arg("--workspace")
            .arg(workspace)
            .args(["--rpc-port", &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("consort dev starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Dev { child, lines, seen: Vec::new() }
    }

    /// Waits for a line that `matches`; the line. Fails after a minute (a bound on a hang).
    fn wait_for(&mut self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if matches(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    panic!("consort dev never printed {what}; it printed:\n{}", self.seen.join("\n"))
                }
            }
        }
    }

    /// The pid of each node it started.
    fn node_pids(&self) -> Vec<u32> {
        self.seen.iter().filter_map(|l| l.strip_prefix("PID node")?.split_whitespace().nth(1)?.parse().ok()).collect()
    }

    fn stop(self) {
        drop(self);
    }
}

/// `consort dev` is stopped (SIGTERM, by its pid; it stops its node) however the test ends, a
/// failed assertion included.
impl Drop for Dev {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
            let _ = self.child.wait();
        }
    }
}

/// A client as user0 of the network whose identities are in `certs`.
fn user0(certs: &Path) -> reqwest::Client {
    let pem = |name: &str| std::fs::read(certs.join(name)).expect("a certificate");
    let mut identity = pem("user0_cert.pem");
    identity.extend(pem("user0_privk.pem"));
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem("service_cert.pem")).expect("ca")])
        .identity(reqwest::Identity::from_pem(&identity).expect("identity"))
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consort_dev_redeploys_on_change_and_shows_the_apps_console() {
    let ws = temp_workspace("dev");
    let app = ws.join("app");
    std::fs::create_dir_all(app.join("src")).expect("app dir");
    std::fs::write(app.join("app.json"), ENDPOINTS).expect("app.json");
    std::fs::write(app.join("src/app.js"), app_source("v1")).expect("app.js");
    let port = Sandbox::free_port();
    let mut dev = Dev::start(&app, &ws.join("network"), port);
    dev.wait_for("READY", |l| l.starts_with("READY "));
    let user = user0(&ws.join("network/sandbox_common"));
    let call = |path: &str| {
        let (user, url) = (user.clone(), format!("https://127.0.0.1:{port}/app{path}"));
        async move {
            let r = user.get(url).send().await.expect("a reply");
            (r.status().as_u16(), r.text().await.expect("text"))
        }
    };

    assert_eq!(call("/hello?who=me").await, (200, "v1".to_owned()));
    dev.wait_for("the handler's console line with its request", |l| l == "[app] INFO GET /app/hello?who=me: hello from v1 who=me");

    // A change is redeployed through governance.
    std::fs::write(app.join("src/app.js"), app_source("v2")).expect("app.js");
    dev.wait_for("the redeploy", |l| l.starts_with("consort dev: deployed the app (proposal "));
    assert_eq!(call("/hello").await, (200, "v2".to_owned()));

    // An exception is shown with the request and where it was thrown.
    let (status, _) = call("/boom").await;
    assert_eq!(status, 500);
    let line = dev.wait_for("the exception", |l| l.starts_with("[app] WARN GET /boom") || l.starts_with("[app] WARN GET /app/boom"));
    // The trace starts where the error was made (check, line 3); its caller's frame is the
    // next line.
    assert!(line.contains("boom in v2") && line.ends_with("at check (app.js:3:9)"), "{line}");
    dev.wait_for("the caller's frame", |l| l.trim_start().starts_with("at boom (app.js:5:"));

    // A change that would not deploy is refused with the deploy's reason; v2 keeps answering.
    std::fs::write(app.join("src/app.js"), "export function other() {}\n").expect("app.js");
    let refused = dev.wait_for("the refusal", |l| l.starts_with("consort dev: not deployed"));
    assert!(
        refused.contains(r#"endpoint GET /boom: module "app.js" does not export a function "boom""#)
            || refused.contains(r#"does not export a function "hello""#),
        "{refused}"
    );
    assert_eq!(call("/hello").await, (200, "v2".to_owned()));

    let nodes = dev.node_pids();
    assert_eq!(nodes.len(), 1, "{:?}", dev.seen);
    dev.stop();
    let alive = |pid: &u32| {
        Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z")
    };
    consort_tests::eventually("the node to stop with consort dev", async || !nodes.iter().any(alive)).await;
}

/// A TypeScript package (the template): `consort dev` builds it with its own `npm run build`,
/// deploys `dist/`, rebuilds and redeploys on a change, and keeps the running app when the
/// build fails (a type error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consort_dev_builds_a_typescript_package_with_npm() {
    let template = consort_tests::repo_root().join("samples/ts-template");
    assert!(template.join("node_modules").exists(), "install the template first: make template (make test does)");
    let ws = temp_workspace("dev-ts");
    let app = ws.join("app");
    std::fs::create_dir_all(app.join("src")).expect("app dir");
    for file in ["package.json", "tsconfig.json", "app.json", "src/app.ts"] {
        std::fs::copy(template.join(file), app.join(file)).expect("copy the template");
    }
    std::os::unix::fs::symlink(template.join("node_modules"), app.join("node_modules")).expect("node_modules");
    let port = Sandbox::free_port();
    let mut dev = Dev::start(&app, &ws.join("network"), port);
    dev.wait_for("READY", |l| l.starts_with("READY "));
    assert!(app.join("dist/bundle.json").exists(), "npm run build wrote dist/");
    let user = user0(&ws.join("network/sandbox_common"));
    let missing = || {
        let (user, url) = (user.clone(), format!("https://127.0.0.1:{port}/app/notes/nope"));
        async move { user.get(url).send().await.expect("a reply").text().await.expect("text") }
    };
    assert!(missing().await.contains("no note nope"));

    let source = std::fs::read_to_string(app.join("src/app.ts")).expect("app.ts");
    let source = source.replace("`no note ${", "`there is no note ${");
    std::fs::write(app.join("src/app.ts"), &source).expect("app.ts");
    dev.wait_for("the redeploy", |l| l.starts_with("consort dev: deployed the app"));
    assert!(missing().await.contains("there is no note nope"));

    // An exception's position is shown in the TypeScript source, through the bundle's source map.
    let throwing = source.replace(
        "  const note = notes.get(request.params.id);",
        "  if (request.params.id === \"boom\") fail(\"boom\");\n  const note = notes.get(request.params.id);",
    ) + "\nfunction fail(id: string): never {\n  throw new Error(`cannot read ${id}`);\n}\n";
    let line_of = |text: &str| throwing.lines().position(|l| l.contains(text)).expect("the line") + 1;
    let (throw_line, call_line) = (line_of("throw new Error(`cannot read"), line_of("fail(\"boom\")"));
    std::fs::write(app.join("src/app.ts"), &throwing).expect("app.ts");
    dev.wait_for("the redeploy", |l| l.starts_with("consort dev: deployed the app"));
    let r = user.get(format!("https://127.0.0.1:{port}/app/notes/boom")).send().await.expect("a reply");
    assert_eq!(r.status().as_u16(), 500);
    let line = dev.wait_for("the exception", |l| l.starts_with("[app] WARN GET /app/notes/boom"));
    assert!(line.contains("cannot read boom") && line.contains(&format!("at fail (src/app.ts:{throw_line}:")), "line {throw_line}: {line}");
    dev.wait_for("the caller's frame", |l| l.trim_start().starts_with("at ") && l.contains(&format!("(src/app.ts:{call_line}:")));

    std::fs::write(app.join("src/app.ts"), format!("{source}\nconst wrong: number = \"a string\";\n")).expect("app.ts");
    let refused = dev.wait_for("the failed build", |l| l.starts_with("consort dev: not deployed"));
    assert!(refused.contains("npm run build failed"), "{refused}");
    assert!(missing().await.contains("there is no note nope"), "the app that ran before still runs");
    dev.stop();
}
