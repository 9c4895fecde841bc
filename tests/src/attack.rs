//! Connection attacks a hostile client makes, shared by the tests that show the node survives
//! them and the benchmark that measures what a user sees meanwhile. Each runs on its own thread
//! and runtime, so that the user it is measured against never waits behind the attacker's tasks
//! in the caller's runtime (only for the CPU, as a user on another machine would not).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

/// A running attack: stops (and closes its connections) when [`Attack::stop`] is called.
pub struct Attack {
    stop: Arc<AtomicBool>,
    /// Connections opened (or tried) so far.
    pub opened: Arc<AtomicUsize>,
    /// Requests the node answered so far (for attacks that send requests).
    pub answered: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<()>,
}

impl Attack {
    /// Runs `attack(stop, opened, answered)` on a thread of its own with a one-thread runtime.
    fn start<F>(attack: impl FnOnce(Arc<AtomicBool>, Arc<AtomicUsize>, Arc<AtomicUsize>) -> F + Send + 'static) -> Attack
    where
        F: std::future::Future<Output = ()>,
    {
        let (stop, opened, answered) = (Arc::new(AtomicBool::new(false)), Arc::default(), Arc::default());
        let thread = {
            let (stop, opened, answered) = (stop.clone(), Arc::clone(&opened), Arc::clone(&answered));
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("the attack's runtime");
                runtime.block_on(attack(stop, opened, answered));
            })
        };
        Attack { stop, opened, answered, thread }
    }

    /// Stops the attack and waits until its connections are closed.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the attack panicked");
    }
}

/// Holds `connections` TCP connections to `127.0.0.1:port` that start a TLS handshake and never
/// finish it: each sends one byte, then another every `every`. A connection the node closes is
/// replaced by a new one.
pub fn trickle(port: u16, connections: usize, every: Duration) -> Attack {
    Attack::start(move |stop, opened, _| async move {
        let mut held: Vec<tokio::net::TcpStream> = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            while held.len() < connections && !stop.load(Ordering::Relaxed) {
                let Ok(Ok(mut c)) = tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(("127.0.0.1", port))).await
                else {
                    break;
                };
                // The first byte of a TLS record header (handshake).
                if c.write_all(&[0x16]).await.is_ok() {
                    held.push(c);
                    opened.fetch_add(1, Ordering::Relaxed);
                }
            }
            let mut open = Vec::with_capacity(held.len());
            for mut c in held.drain(..) {
                if c.write_all(&[0x03]).await.is_ok() {
                    open.push(c);
                }
            }
            held = open;
            // The attack's pace (a byte per connection every `every`), not a wait for an event.
            tokio::time::sleep(every).await;
        }
    })
}

/// `clients` clients that each, over and over, open a new TLS connection to `url` (trusting
/// `ca_pem`), send a GET and close it.
pub fn tls_churn(url: String, ca_pem: &[u8], clients: usize) -> Attack {
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem).expect("ca")])
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    Attack::start(move |stop, opened, answered| async move {
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let (stop, opened, answered, http, url) = (stop.clone(), opened.clone(), answered.clone(), http.clone(), url.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    opened.fetch_add(1, Ordering::Relaxed);
                    if let Ok(r) = http.get(&url).send().await {
                        if r.bytes().await.is_ok() {
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    })
}
