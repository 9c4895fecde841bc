//! An etcd cluster on loopback, started by the bench to measure etcd's writes beside Consort's
//! with the same load client on the same cores. etcd is Debian's `etcd-server` package (3.4),
//! which `make bench` unpacks under `target/etcd` and names in `ETCD_BIN` (else `etcd` on the
//! `PATH`).
//!
//! Each member runs with etcd's defaults (its WAL is synced before a write is acknowledged) and
//! listens on plain HTTP; writes are `PUT`s through etcd's v3 JSON gateway (`/v3/kv/put`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;

use crate::MakeRequest;

/// The etcd members this bench started; each is stopped (by its PID) when this is dropped.
pub struct Etcd {
    children: Vec<Child>,
    /// Each member's client URL, `http://127.0.0.1:<port>`.
    pub client_urls: Vec<String>,
    dir: PathBuf,
}

impl Etcd {
    /// Starts `members` etcd members in directories under `dir` and waits until every one
    /// answers healthy. Panics (the bench cannot go on) if `etcd` is not installed.
    pub async fn start(dir: &Path, members: usize) -> Etcd {
        let base = consort_tests::cluster::free_ports(2 * members as u16);
        let peer = |i: usize| format!("http://127.0.0.1:{}", base + 2 * i as u16 + 1);
        let client_urls: Vec<String> = (0..members).map(|i| format!("http://127.0.0.1:{}", base + 2 * i as u16)).collect();
        let cluster = (0..members).map(|i| format!("m{i}={}", peer(i))).collect::<Vec<_>>().join(",");
        let mut children = Vec::new();
        for (i, client) in client_urls.iter().enumerate() {
            let data = dir.join(format!("m{i}"));
            let log = std::fs::File::create(dir.join(format!("m{i}.log"))).expect("etcd log file");
            let child = Command::new(std::env::var("ETCD_BIN").unwrap_or_else(|_| "etcd".into()))
                .args(["--name", &format!("m{i}")])
                .arg("--data-dir")
                .arg(&data)
                .args(["--listen-client-urls", client, "--advertise-client-urls", client])
                .args(["--listen-peer-urls", &peer(i), "--initial-advertise-peer-urls", &peer(i)])
                .args(["--initial-cluster", &cluster, "--initial-cluster-state", "new", "--initial-cluster-token", "consort-bench"])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("starting etcd (Debian's etcd-server package; make bench unpacks it): {e}"));
            children.push(child);
        }
        let etcd = Etcd { children, client_urls, dir: dir.to_owned() };
        let http = reqwest::Client::new();
        for url in &etcd.client_urls {
            let mut tries = 0;
            loop {
                let healthy = match http.get(format!("{url}/health")).send().await {
                    Ok(r) => r.json::<serde_json::Value>().await.is_ok_and(|v| v["health"] == "true"),
                    Err(_) => false,
                };
                if healthy {
                    break;
                }
                tries += 1;
                assert!(tries < 600, "etcd at {url} never became healthy; see {}", etcd.dir.display());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        etcd
    }

    /// The client URL of the member that leads the cluster now.
    pub async fn leader(&self) -> String {
        let http = reqwest::Client::new();
        for url in &self.client_urls {
            let status: serde_json::Value = http
                .post(format!("{url}/v3/maintenance/status"))
                .json(&serde_json::json!({}))
                .send()
                .await
                .expect("status")
                .json()
                .await
                .expect("status JSON");
            if status["leader"].is_string() && status["leader"] == status["header"]["member_id"] {
                return url.clone();
            }
        }
        panic!("no etcd member says it leads: {:?}", self.client_urls);
    }

    /// What a load client sends to etcd at `url`: `PUT`s of a fresh key each (`bench/<client>-<n>`)
    /// with the logging sample's message as the value, as the Consort rows write fresh ids.
    pub fn put_fresh_keys(url: &str) -> MakeRequest {
        let url = format!("{url}/v3/kv/put");
        std::sync::Arc::new(move |client: &reqwest::Client, c: usize, i: u64| {
            let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
            client.post(&url).json(&serde_json::json!({"key": b64(&format!("bench/{c}-{i}")), "value": b64("benchmark message")}))
        })
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
