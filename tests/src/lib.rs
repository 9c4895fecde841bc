//! The end-to-end harness: starts real `consort` processes on loopback ports and talks to them
//! over HTTPS with client certificates, as users do. Every process it starts is stopped when
//! its [`Sandbox`] is dropped.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod attack;
pub mod cluster;

/// The `consort` binary that `make test` builds before running the tests.
pub fn consort_bin() -> PathBuf {
    if let Ok(p) = std::env::var("CONSORT_BIN") {
        return PathBuf::from(p);
    }
    let target =
        std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = target.join("debug/consort");
    assert!(bin.exists(), "{} is missing: run `cargo build --bin consort` first (`make test` does)", bin.display());
    bin
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `ccf_cose_sign1` from the `ccf` Python package, in the virtualenv `make test` creates.
pub fn ccf_cose_sign1() -> PathBuf {
    let venv = std::env::var("CCF_VENV").map(PathBuf::from).unwrap_or_else(|_| repo_root().join("target/ccf-venv"));
    let bin = venv.join("bin/ccf_cose_sign1");
    assert!(bin.exists(), "{} is missing: run `make ccf-tools` (`make test` does)", bin.display());
    bin
}

/// A fresh directory under the system temp dir, removed first if it exists.
pub fn temp_workspace(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("consort-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create workspace");
    dir
}

fn free_port() -> u16 {
    free_port_run(1)
}

/// The first of `n` consecutive ports free on 127.0.0.1, taken below the kernel's ephemeral
/// range: a port from inside it can be handed to some test's outgoing connection between the
/// check here and the bind of the node it is meant for ("address already in use").
pub fn free_port_run(n: u16) -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_start.saturating_sub(n).max(10_001));
    loop {
        let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
        let p = low + (random % u64::from(high - low)) as u16;
        if (0..n).all(|k| TcpListener::bind(("127.0.0.1", p + k)).is_ok()) {
            return p;
        }
    }
}

/// A one-node network started with `consort sandbox` (or `consort start --config`).
pub struct Sandbox {
    child: Option<Child>,
    /// The node processes a `consort sandbox` started (it prints `PID node<i> <pid>`).
    node_pids: std::sync::Arc<std::sync::Mutex<Vec<u32>>>,
    pub workspace: PathBuf,
    pub port: u16,
    stderr_log: PathBuf,
    /// Where the service certificate and the identities are.
    certs: PathBuf,
}

impl Sandbox {
    /// Starts (or restarts, on an existing workspace) a sandbox and waits until it serves.
    pub fn start(workspace: &Path, app: Option<&Path>) -> Sandbox {
        Self::start_on(workspace, app, free_port())
    }

    pub fn start_on(workspace: &Path, app: Option<&Path>, port: u16) -> Sandbox {
        Self::start_with(workspace, app, port, &[])
    }

    /// A sandbox with more `consort sandbox` arguments (`--nodes 3`, …).
    pub fn start_with(workspace: &Path, app: Option<&Path>, port: u16, extra: &[&str]) -> Sandbox {
        let stderr_log = workspace.join(format!("node-{port}.log"));
        let mut cmd = Command::new(consort_bin());
        cmd.args(["sandbox", "--workspace"]).arg(workspace).args(["--rpc-port", &port.to_string(), "--signature-delay-ms", "100"]);
        cmd.args(extra);
        if let Some(app) = app {
            cmd.arg("--app").arg(app);
        }
        let log = std::fs::File::create(&stderr_log).expect("log file");
        let mut child = cmd.stdout(Stdio::piped()).stderr(log).spawn().expect("spawn consort");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let node_pids = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let pids = node_pids.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(pid) =
                    line.strip_prefix("PID node").and_then(|rest| rest.split_whitespace().nth(1)).and_then(|p| p.parse().ok())
                {
                    pids.lock().unwrap_or_else(|p| p.into_inner()).push(pid);
                }
                if line.starts_with("READY ") {
                    let _ = tx.send(());
                }
            }
        });
        let mut sandbox = Sandbox {
            child: Some(child),
            node_pids,
            workspace: workspace.to_owned(),
            port,
            stderr_log,
            certs: workspace.join("sandbox_common"),
        };
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            let log = std::fs::read_to_string(&sandbox.stderr_log).unwrap_or_default();
            sandbox.kill9();
            panic!("sandbox did not become ready within 60 s; its log:\n{log}");
        }
        sandbox
    }

    /// Starts `consort start --config` with `config` (JSON), whose `directory` must be inside
    /// `workspace`; identities named in it are expected in `workspace`.
    pub fn start_config(workspace: &Path, config: serde_json::Value) -> Sandbox {
        let port: u16 = config["rpc_address"]
            .as_str()
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .expect("rpc_address with a port");
        let directory = PathBuf::from(config["directory"].as_str().expect("directory"));
        let file = workspace.join(format!("config-{port}.json"));
        std::fs::write(&file, config.to_string()).expect("write config");
        let stderr_log = workspace.join(format!("node-{port}.log"));
        let log = std::fs::File::create(&stderr_log).expect("log file");
        let child = Command::new(consort_bin())
            .args(["start", "--config"])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn consort");
        let mut s = Sandbox {
            child: Some(child),
            node_pids: Default::default(),
            workspace: workspace.to_owned(),
            port,
            stderr_log,
            certs: directory.clone(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !(directory.join("service_cert.pem").exists() && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()) {
            if Instant::now() > deadline {
                let log = s.log();
                s.kill9();
                panic!("node did not start within 60 s; its log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    pub fn free_port() -> u16 {
        free_port()
    }

    /// Where the service certificate is (and, for a sandbox, member0 and user0).
    pub fn common(&self) -> PathBuf {
        self.certs.clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    /// A client trusting only the service certificate, presenting `identity`'s certificate
    /// (a name in sandbox_common, or a path prefix) if given.
    pub fn client(&self, identity: Option<&str>) -> reqwest::Client {
        let ca = std::fs::read(self.common().join("service_cert.pem")).expect("service cert");
        let mut b =
            reqwest::Client::builder().tls_certs_only([reqwest::Certificate::from_pem(&ca).expect("ca")]).timeout(Duration::from_secs(30));
        if let Some(name) = identity {
            let prefix = if name.contains('/') { PathBuf::from(name) } else { self.common().join(name) };
            let mut pem = std::fs::read(format!("{}_cert.pem", prefix.display())).expect("cert");
            pem.extend(std::fs::read(format!("{}_privk.pem", prefix.display())).expect("key"));
            b = b.identity(reqwest::Identity::from_pem(&pem).expect("identity"));
        }
        b.build().expect("client")
    }

    /// Stops the node with SIGTERM and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    // A sandbox stops its nodes and waits for them before it exits.
                    self.node_pids.lock().unwrap_or_else(|p| p.into_inner()).clear();
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            self.kill_nodes();
            panic!("node did not stop within 20 s of SIGTERM");
        }
    }

    /// Kills the node with SIGKILL: no chance to flush or clean up. For a `consort sandbox`,
    /// its node processes too, each by its pid.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.kill_nodes();
    }

    /// SIGKILLs the sandbox's node processes (those still running) and waits until they are gone.
    fn kill_nodes(&self) {
        let pids: Vec<u32> = std::mem::take(&mut *self.node_pids.lock().unwrap_or_else(|p| p.into_inner()));
        for pid in &pids {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).stderr(Stdio::null()).status();
        }
        let alive = |pid: &u32| Path::new(&format!("/proc/{pid}")).exists() && !zombie(*pid);
        let deadline = Instant::now() + Duration::from_secs(10);
        while pids.iter().any(alive) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The pid of each node process of a `consort sandbox`, node 0 first.
    pub fn node_pids(&self) -> Vec<u32> {
        self.node_pids.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Sends `signal` (`STOP`, `CONT`, …) to the node's process.
    pub fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("the node runs");
        let ok = Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().expect("kill").success();
        assert!(ok, "kill -{signal} {}", child.id());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// Waits until `/node/tx` says `txid` is `Committed`, asking as `client`.
    pub async fn wait_committed(&self, client: &reqwest::Client, txid: &str) {
        let url = self.url(&format!("/node/tx?transaction_id={txid}"));
        eventually(&format!("{txid} to commit"), async || {
            let Ok(r) = client.get(&url).send().await else { return false };
            r.json::<serde_json::Value>().await.is_ok_and(|status| status["status"] == "Committed")
        })
        .await;
    }
}

/// Whether process `pid` has exited and waits for its parent to collect it.
fn zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')))
}

/// Polls `check` every 50 ms until it holds; panics naming `what` after a minute (a bound on a
/// hang, not on how fast anything should be: a build beside the tests slows everything).
pub async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs the `consort` binary with `args`; returns (success, stdout + stderr).
pub fn consort(args: &[&str]) -> (bool, String) {
    let out = Command::new(consort_bin()).args(args).output().expect("run consort");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// A consortium member for governance tests: a P-384 identity that signs `/gov` requests as
/// CCF's `ccf_cose_sign1` does (ES384, `kid` = member id, `ccf.gov.msg.*` headers).
pub struct Member {
    pub id: String,
    pub cert_pem: String,
    signer: consort_crypto::GovSigner,
}

impl Member {
    /// Creates `<name>_cert.pem` and `<name>_privk.pem` in `dir`.
    pub fn create(dir: &Path, name: &str) -> Member {
        let (key_pem, cert_pem) = consort_crypto::identity_cert(name, consort_crypto::Curve::Secp384r1).expect("identity");
        std::fs::write(dir.join(format!("{name}_privk.pem")), &key_pem).expect("key");
        std::fs::write(dir.join(format!("{name}_cert.pem")), &cert_pem).expect("cert");
        Member::from_pem(&key_pem, &cert_pem)
    }

    pub fn from_pem(key_pem: &str, cert_pem: &str) -> Member {
        let signer = consort_crypto::GovSigner::from_pem(key_pem, cert_pem).expect("a matching key and certificate");
        Member { id: signer.id().to_owned(), cert_pem: cert_pem.to_owned(), signer }
    }

    /// Signs `payload` as a `msg_type` request, created now (or at `created_at`), naming `kid`
    /// (normally this member's id).
    pub fn sign_as(&self, kid: &str, msg_type: &str, proposal_id: Option<&str>, created_at: Option<u64>, payload: &[u8]) -> Vec<u8> {
        let msg = consort_crypto::GovMessage { msg_type, proposal_id, created_at: created_at.unwrap_or_else(now_seconds) };
        self.signer.sign_as(kid, &msg, payload).expect("sign")
    }

    pub fn sign(&self, msg_type: &str, proposal_id: Option<&str>, payload: &[u8]) -> Vec<u8> {
        self.sign_as(&self.id, msg_type, proposal_id, None, payload)
    }
}

pub fn now_seconds() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// POSTs a signed governance request; returns the status, the JSON body (or null) and whether
/// the answer carried a transaction id.
pub async fn gov_post(client: &reqwest::Client, url: &str, body: Vec<u8>) -> (reqwest::StatusCode, serde_json::Value, bool) {
    let r = client.post(url).header("content-type", "application/cose").body(body).send().await.expect("gov request");
    let status = r.status();
    let has_txid = r.headers().contains_key("x-ms-ccf-transaction-id");
    let text = r.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null), has_txid)
}

/// The ballot that votes for a proposal.
pub const YES: &str = "export function vote(proposal, proposerId) { return true; }";

/// The `/gov` API of one node, driven by test members.
pub struct Gov {
    base: String,
    pub client: reqwest::Client,
}

impl Gov {
    pub fn new(s: &Sandbox) -> Gov {
        Gov { base: s.url(""), client: s.client(None) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/gov{path}?api-version=2024-07-01", self.base)
    }

    pub async fn post(&self, path: &str, body: Vec<u8>) -> (reqwest::StatusCode, serde_json::Value, bool) {
        gov_post(&self.client, &self.url(path), body).await
    }

    pub async fn get(&self, path: &str) -> serde_json::Value {
        self.client.get(self.url(path)).send().await.expect("get").json().await.expect("json")
    }

    /// update, then ack: the member becomes Active.
    pub async fn activate(&self, m: &Member) {
        let path = format!("/members/state-digests/{}:update", m.id);
        let mut digest = serde_json::Value::Null;
        for _ in 0..300 {
            let (status, body, _) = self.post(&path, m.sign("state_digest", None, b"")).await;
            if status == reqwest::StatusCode::OK {
                digest = body["stateDigest"].clone();
                break;
            }
            // No signature yet right after genesis: CCF answers the same; retry shortly.
            assert_eq!(status, reqwest::StatusCode::INTERNAL_SERVER_ERROR, "{body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(digest.is_string(), "a state digest to acknowledge");
        let ack = serde_json::to_vec(&serde_json::json!({"stateDigest": digest})).expect("json");
        let (status, body, _) = self.post(&format!("/members/state-digests/{}:ack", m.id), m.sign("ack", None, &ack)).await;
        assert_eq!(status, reqwest::StatusCode::NO_CONTENT, "{body}");
    }

    pub async fn propose(&self, m: &Member, actions: serde_json::Value) -> (reqwest::StatusCode, serde_json::Value) {
        let body = serde_json::to_vec(&serde_json::json!({"actions": actions})).expect("json");
        let (status, body, _) = self.post("/members/proposals:create", m.sign("proposal", None, &body)).await;
        (status, body)
    }

    pub async fn vote(&self, m: &Member, id: &str, ballot: &str) -> (reqwest::StatusCode, serde_json::Value) {
        let body = serde_json::to_vec(&serde_json::json!({"ballot": ballot})).expect("json");
        let (status, body, _) =
            self.post(&format!("/members/proposals/{id}/ballots/{}:submit", m.id), m.sign("ballot", Some(id), &body)).await;
        (status, body)
    }

    /// Proposes `actions` as the first voter; every voter votes for it; it must end Accepted.
    pub async fn pass(&self, voters: &[&Member], actions: serde_json::Value) -> serde_json::Value {
        let (status, p) = self.propose(voters[0], actions).await;
        assert_eq!(status, reqwest::StatusCode::OK, "{p}");
        let id = p["proposalId"].as_str().expect("proposalId").to_owned();
        let mut last = p;
        for m in voters {
            let (status, body) = self.vote(m, &id, YES).await;
            assert_eq!(status, reqwest::StatusCode::OK, "{body}");
            last = body;
        }
        assert_eq!(last["proposalState"], "Accepted", "{last}");
        last
    }

    /// What the sandbox does for a network started from a configuration: `member` (the only
    /// member) becomes Active and passes `actions` followed by opening the service.
    pub async fn open_service(&self, member: &Member, service_cert_pem: &str, mut actions: Vec<serde_json::Value>) {
        self.activate(member).await;
        actions.push(serde_json::json!({"name": "transition_service_to_open", "args": {"next_service_identity": service_cert_pem}}));
        self.pass(&[member], serde_json::Value::Array(actions)).await;
    }
}

/// An app directory (app.json and src/*.js) as the bundle a `set_js_app` proposal carries.
pub fn app_bundle(dir: &Path) -> serde_json::Value {
    let metadata: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("app.json")).expect("app.json")).expect("app.json is JSON");
    let modules: Vec<serde_json::Value> = std::fs::read_dir(dir.join("src"))
        .expect("src")
        .map(|e| e.expect("entry").path())
        .map(|p| {
            serde_json::json!({"name": p.file_name().expect("name").to_string_lossy(), "module": std::fs::read_to_string(&p).expect("module")})
        })
        .collect();
    serde_json::json!({"metadata": metadata, "modules": modules})
}

/// The `set_js_app` action for the app in `dir`.
pub fn set_js_app(dir: &Path) -> serde_json::Value {
    serde_json::json!({"name": "set_js_app", "args": {"bundle": app_bundle(dir)}})
}

/// One node on free ports with `settings` (top-level configuration fields), opened by its one
/// member with `actions`; the node and its client port.
pub async fn open_node(ws: &Path, settings: serde_json::Value, actions: Vec<serde_json::Value>) -> (Sandbox, u16) {
    let port = Sandbox::free_port();
    let member = Member::create(ws, "member0");
    let mut config = serde_json::json!({
        "rpc_address": format!("127.0.0.1:{port}"),
        "node_address": format!("127.0.0.1:{}", Sandbox::free_port()),
        "directory": ws.join("node"),
        "command": {"type": "start", "members": [{"certificate": ws.join("member0_cert.pem")}]},
    });
    if let (Some(c), Some(extra)) = (config.as_object_mut(), settings.as_object()) {
        c.extend(extra.clone());
    }
    let s = Sandbox::start_config(ws, config);
    let service_cert = std::fs::read_to_string(ws.join("node/service_cert.pem")).expect("service cert");
    Gov::new(&s).open_service(&member, &service_cert, actions).await;
    (s, port)
}
