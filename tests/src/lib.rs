//! The end-to-end harness: starts real `consort` processes on loopback ports and talks to them
//! over HTTPS with client certificates, as users do. Every process it starts is stopped when
//! its [`Sandbox`] is dropped.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// A fresh directory under the system temp dir, removed first if it exists.
pub fn temp_workspace(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("consort-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create workspace");
    dir
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A one-node network started with `consort sandbox` (or `consort start --config`).
pub struct Sandbox {
    child: Option<Child>,
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
        let stderr_log = workspace.join(format!("node-{port}.log"));
        let mut cmd = Command::new(consort_bin());
        cmd.args(["sandbox", "--workspace"]).arg(workspace).args(["--rpc-port", &port.to_string(), "--signature-delay-ms", "100"]);
        if let Some(app) = app {
            cmd.arg("--app").arg(app);
        }
        let log = std::fs::File::create(&stderr_log).expect("log file");
        let mut child = cmd.stdout(Stdio::piped()).stderr(log).spawn().expect("spawn consort");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("READY ") {
                    let _ = tx.send(());
                }
            }
        });
        let mut sandbox =
            Sandbox { child: Some(child), workspace: workspace.to_owned(), port, stderr_log, certs: workspace.join("sandbox_common") };
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
        let file = workspace.join("config.json");
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
        let mut s = Sandbox { child: Some(child), workspace: workspace.to_owned(), port, stderr_log, certs: directory.clone() };
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
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            panic!("node did not stop within 20 s of SIGTERM");
        }
    }

    /// Kills the node with SIGKILL: no chance to flush or clean up.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
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
    key: aws_lc_rs::signature::EcdsaKeyPair,
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
        let der = rcgen::KeyPair::from_pem(key_pem).expect("key").serialize_der();
        let key =
            aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(&aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED_SIGNING, &der).expect("pkcs8");
        let id = consort_crypto::ParsedCert::from_pem(cert_pem).expect("cert").id();
        Member { id, cert_pem: cert_pem.to_owned(), key }
    }

    /// Signs `payload` as a `msg_type` request, created now (or at `created_at`), naming `kid`
    /// (normally this member's id).
    pub fn sign_as(&self, kid: &str, msg_type: &str, proposal_id: Option<&str>, created_at: Option<u64>, payload: &[u8]) -> Vec<u8> {
        use consort_crypto::cose::{sign1, Param, ES384};
        let created_at = created_at.unwrap_or_else(now_seconds);
        let mut params =
            vec![("ccf.gov.msg.type", Param::Text(msg_type.into())), ("ccf.gov.msg.created_at", Param::Int(created_at.into()))];
        if let Some(p) = proposal_id {
            params.push(("ccf.gov.msg.proposal_id", Param::Text(p.into())));
        }
        sign1(ES384, kid, &params, payload, |tbs| {
            self.key.sign(&aws_lc_rs::rand::SystemRandom::new(), tbs).expect("sign").as_ref().to_vec()
        })
        .expect("cose")
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
