//! Networks of several real nodes: configurations on free loopback ports, joining, and a
//! three-node network opened with an app, as the replication and failover tests need them.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::{eventually, set_js_app, Gov, Member, Sandbox};

/// Raft's election timeout in the test networks (the default is 2 s).
pub const ELECTION_TIMEOUT_MS: u64 = 1000;

/// The configuration of node `name` (its directory `ws/<name>`), on free ports.
pub fn node_config(ws: &Path, name: &str, command: Value) -> Value {
    json!({
        "rpc_address": format!("127.0.0.1:{}", Sandbox::free_port()),
        "node_address": format!("127.0.0.1:{}", Sandbox::free_port()),
        "directory": ws.join(name),
        "js": {"workers": 2},
        "ledger_signatures": {"tx_count": 100, "delay_ms": 100},
        "snapshots": {"tx_count": 50},
        "consensus": {"election_timeout_ms": ELECTION_TIMEOUT_MS, "message_timeout_ms": 100},
        "command": command,
    })
}

/// `command: join` through `target`.
pub fn join_command(target: &Sandbox) -> Value {
    json!({"type": "join", "target_rpc_address": format!("127.0.0.1:{}", target.port),
           "service_certificate": target.common().join("service_cert.pem"), "timeout_ms": 60_000})
}

/// The first of `n` consecutive free ports (`consort sandbox --nodes` takes two per node).
pub fn free_ports(n: u16) -> u16 {
    crate::free_port_run(n)
}

/// The ledger entries of nodes `n0`..`n{count-1}` in `ws` (stopped), each checked first with
/// `consort ledger verify` — with `--snapshot` for a node that joined from a snapshot (its
/// ledger starts after it; the snapshot is in its own snapshot directory).
pub fn verified_ledgers(ws: &Path, count: usize) -> Vec<Vec<consort_ledger::LedgerEntry>> {
    (0..count)
        .map(|i| {
            let dir = ws.join(format!("n{i}/ledger"));
            let first = consort_ledger::files::list_chunks(&dir).expect("ledger").first().map_or(0, |c| c.first);
            let snapshot = ws.join(format!("n{i}/snapshots/snapshot_{}.committed", first.saturating_sub(1)));
            let mut args = vec!["ledger", "verify", dir.to_str().expect("path")];
            if first > 0 {
                args.extend(["--snapshot", snapshot.to_str().expect("path")]);
            }
            let (ok, out) = crate::consort(&args);
            assert!(ok, "node {i}: {out}");
            consort_ledger::files::read_entries(&dir).expect("ledger")
        })
        .collect()
}

/// The snapshot files (`snapshot_<seqno>.committed`) in `dir`.
pub fn snapshot_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("snapshot_") && n.ends_with(".committed")))
        .collect()
}

/// GET `path` as an anonymous client; the JSON answer.
pub async fn get_json(s: &Sandbox, path: &str) -> Value {
    s.client(None).get(s.url(path)).send().await.expect("get").json().await.expect("json")
}

/// A network of nodes `n0`, `n1`, … in one workspace, each restartable on its directory.
pub struct Network {
    pub ws: PathBuf,
    pub member: Member,
    pub configs: Vec<Value>,
    /// `None` while a node is down.
    pub nodes: Vec<Option<Sandbox>>,
    pub node_ids: Vec<String>,
}

impl Network {
    /// `n` nodes: `n0` starts the service with one member, the others join while it is
    /// opening (trusted at once); then the member opens it with the app in `app`.
    pub async fn open(ws: &Path, n: usize, app: &Path) -> Network {
        let member = Member::create(ws, "member0");
        let first = node_config(ws, "n0", json!({"type": "start", "members": [{"certificate": ws.join("member0_cert.pem")}]}));
        let s0 = Sandbox::start_config(ws, first.clone());
        let mut configs = vec![first];
        let mut nodes = vec![Some(s0)];
        for i in 1..n {
            let config = node_config(ws, &format!("n{i}"), join_command(nodes[0].as_ref().expect("n0")));
            nodes.push(Some(Sandbox::start_config(ws, config.clone())));
            configs.push(config);
        }
        let s0 = nodes[0].as_ref().expect("n0");
        let service_cert = std::fs::read_to_string(s0.common().join("service_cert.pem")).expect("service cert");
        Gov::new(s0).open_service(&member, &service_cert, vec![set_js_app(app)]).await;
        let mut node_ids = Vec::new();
        for s in nodes.iter().flatten() {
            eventually("the node to serve", async || s.client(None).get(s.url("/node/state")).send().await.is_ok()).await;
            node_ids.push(get_json(s, "/node/state").await["node_id"].as_str().expect("node_id").to_owned());
        }
        for s in nodes.iter().flatten() {
            eventually("the service open on every node", async || get_json(s, "/node/network").await["service_status"] == "Open").await;
        }
        Network { ws: ws.to_owned(), member, configs, nodes, node_ids }
    }

    pub fn node(&self, i: usize) -> &Sandbox {
        self.nodes[i].as_ref().expect("the node is up")
    }

    pub fn port(&self, i: usize) -> u16 {
        self.configs[i]["rpc_address"].as_str().and_then(|a| a.rsplit(':').next()).and_then(|p| p.parse().ok()).expect("port")
    }

    /// Starts node `i` again on its directory (it resumes; it need not be serving yet).
    pub fn restart(&mut self, i: usize) {
        assert!(self.nodes[i].is_none(), "node {i} is still up");
        self.nodes[i] = Some(Sandbox::start_config(&self.ws, self.configs[i].clone()));
    }

    /// The index of the node every live node names as primary, once they agree.
    pub async fn primary(&self) -> usize {
        let mut found = None;
        eventually("the live nodes to agree on a primary", async || {
            let mut named = Vec::new();
            for s in self.nodes.iter().flatten() {
                match s.client(None).get(s.url("/node/network")).send().await {
                    Ok(r) => named.push(r.json::<Value>().await.map(|v| v["primary_id"].clone()).unwrap_or(Value::Null)),
                    Err(_) => return false,
                }
            }
            let first = named[0].as_str().and_then(|id| self.node_ids.iter().position(|n| n == id));
            found = first.filter(|i| self.nodes[*i].is_some() && named.iter().all(|n| *n == named[0]));
            found.is_some()
        })
        .await;
        found.expect("a primary")
    }
}
