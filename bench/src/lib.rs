//! The load client `make bench` and `make soak` share: keep-alive mutual TLS clients calling
//! the logging sample (or any other HTTP service: etcd, for comparison), counting what succeeds
//! and how long each request took.

pub mod etcd;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use consort_kv::TxId;
use consort_tests::Sandbox;

/// One measured row of a table.
pub struct Row {
    /// What was measured, as the table's first column shows it.
    pub label: String,
    pub clients: usize,
    pub requests: usize,
    pub failures: usize,
    pub seconds: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The `p` quantile of `sorted`, in milliseconds.
pub fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// Makes a load client's next request: given the HTTP client, the client's index and how many
/// requests it has sent.
pub type MakeRequest = Arc<dyn Fn(&reqwest::Client, usize, u64) -> reqwest::RequestBuilder + Send + Sync>;

/// Clients sending requests until [`Load::finish`].
pub struct Load {
    stop: Arc<AtomicBool>,
    /// Requests answered with success so far.
    pub succeeded: Arc<AtomicU64>,
    /// The lowest and highest transaction ids of the writes answered so far.
    pub txids: Arc<Mutex<Option<(TxId, TxId)>>>,
    latencies: Arc<Mutex<Vec<Duration>>>,
    failures: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    clients: usize,
    started: Instant,
}

impl Load {
    /// `clients` concurrent clients (as user0) sending `op` (`GET` or `POST`) to the logging
    /// sample's `/app/log/private` at `base`. POSTs write fresh ids, or with `keys` the ids
    /// `0..keys` over and over (so the service's state stays the same size).
    pub fn start(s: &Sandbox, base: &str, op: &'static str, clients: usize, keys: Option<u64>) -> Load {
        let url = format!("{base}/app/log/private");
        let request: MakeRequest = Arc::new(move |client: &reqwest::Client, c: usize, i: u64| {
            if op == "GET" {
                client.get(format!("{url}?id={}", i % 100))
            } else {
                let id = match keys {
                    Some(n) => serde_json::json!((c as u64 * 7919 + i) % n),
                    None => serde_json::json!(format!("{c}-{i}")),
                };
                client.post(&url).json(&serde_json::json!({"id": id, "msg": "benchmark message"}))
            }
        });
        Load::start_with(s.client(Some("user0")), clients, request)
    }

    /// `clients` concurrent clients sending, over `client`'s kept-alive connections, the
    /// requests `request` makes (given the client's index and its request count so far).
    pub fn start_with(client: reqwest::Client, clients: usize, request: MakeRequest) -> Load {
        let load = Load {
            stop: Arc::default(),
            succeeded: Arc::default(),
            txids: Arc::default(),
            latencies: Arc::default(),
            failures: Arc::default(),
            tasks: Vec::new(),
            clients,
            started: Instant::now(),
        };
        let mut tasks = Vec::new();
        for c in 0..clients {
            let (client, request, stop, succeeded, txids, latencies, failures) = (
                client.clone(),
                request.clone(),
                load.stop.clone(),
                load.succeeded.clone(),
                load.txids.clone(),
                load.latencies.clone(),
                load.failures.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    match request(&client, c, i).send().await {
                        Ok(r) if r.status().is_success() => {
                            let txid = r.headers().get("x-ms-ccf-transaction-id").and_then(|v| v.to_str().ok()?.parse::<TxId>().ok());
                            let _ = r.bytes().await;
                            mine.push(started.elapsed());
                            succeeded.fetch_add(1, Ordering::Relaxed);
                            if let Some(t) = txid {
                                let mut seen = txids.lock().expect("lock");
                                *seen = Some(seen.map_or((t, t), |(lo, hi)| (lo.min(t), hi.max(t))));
                            }
                        }
                        _ => {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    i += 1;
                }
                latencies.lock().expect("lock").extend(mine);
            }));
        }
        Load { tasks, ..load }
    }

    /// Stops the clients; the row they measured, labelled `label`.
    pub async fn finish(self, label: &str) -> Row {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        let seconds = self.started.elapsed().as_secs_f64();
        let mut l = std::mem::take(&mut *self.latencies.lock().expect("lock"));
        l.sort();
        Row {
            label: label.to_owned(),
            clients: self.clients,
            requests: l.len(),
            failures: self.failures.load(Ordering::Relaxed) as usize,
            seconds,
            p50_ms: percentile(&l, 0.5),
            p99_ms: percentile(&l, 0.99),
        }
    }
}
