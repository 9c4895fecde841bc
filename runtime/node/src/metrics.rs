//! `GET /node/metrics`: what an operator scrapes, in the Prometheus text format (the
//! `prometheus` crate formats it). Requests are counted as they are answered; the node's other
//! figures (consensus, ledger, snapshots, the JS pool, the process) are read when scraped.

use std::time::Duration;

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::call::Actor;

/// The role label values of `consort_raft_role`.
const ROLES: [&str; 5] = ["primary", "backup", "candidate", "learner", "stopped"];

/// Where the JS pool's figures have one of its totals.
type PoolTotal = fn(&consort_js::PoolMetrics) -> u64;

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    committed_seqno: IntGauge,
    commit_lag: IntGauge,
    view: IntGauge,
    role: IntGaugeVec,
    ledger_bytes: IntGauge,
    ledger_chunks: IntGauge,
    snapshot_seqno: IntGauge,
    js_workers: IntGauge,
    js_queue_depth: IntGauge,
    historical_cache_bytes: IntGauge,
    /// The JS pool's totals, each with where the pool's figures have it: counters moved to
    /// those figures at each scrape.
    js_totals: Vec<(IntCounter, PoolTotal)>,
}

/// What the node's parts report when scraped.
pub struct Figures {
    pub raft: consort_consensus::RaftFigures,
    /// The last seqno covered by a committed signature.
    pub committed_seqno: u64,
    pub ledger_bytes: u64,
    pub ledger_chunks: u64,
    /// The newest committed snapshot's seqno (0: none).
    pub snapshot_seqno: u64,
    pub js: consort_js::PoolMetrics,
    /// Bytes of the states the historical-query cache holds.
    pub historical_cache_bytes: u64,
}

fn class(actor: Actor) -> &'static str {
    match actor {
        Actor::App => "app",
        Actor::Gov => "gov",
        Actor::Node => "node",
    }
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        // Every name but the process collector's (`process_…`, as Prometheus expects) is ours.
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "consort_requests_total",
                "Requests answered, by the part of the node that answered (app, gov, node) and HTTP status",
            ),
            &["class", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new("consort_request_duration_seconds", "Time from a request's headers to its answer, by class")
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["class"],
        )?;
        let gauge = |name: &str, help: &str| IntGauge::new(format!("consort_{name}"), help);
        let m = Metrics {
            committed_seqno: gauge("committed_seqno", "The last seqno covered by a committed signature")?,
            commit_lag: gauge("commit_lag", "Entries in this node's log not yet applied (committed)")?,
            view: gauge("raft_view", "The current view (Raft term)")?,
            role: IntGaugeVec::new(Opts::new("consort_raft_role", "1 for this node's Raft role, 0 for the others"), &["role"])?,
            ledger_bytes: gauge("ledger_bytes", "Bytes in this node's ledger chunk files")?,
            ledger_chunks: gauge("ledger_chunks", "Ledger chunk files in this node's ledger directory")?,
            snapshot_seqno: gauge("snapshot_seqno", "Seqno of the newest committed snapshot this node holds (0: none)")?,
            js_workers: gauge("js_workers", "JS worker processes")?,
            js_queue_depth: gauge("js_queue_depth", "Requests waiting for a JS worker (admitted beyond one per worker)")?,
            historical_cache_bytes: gauge(
                "historical_cache_bytes",
                "Bytes of committed transactions the historical-query cache holds (at most memory.historical_cache_bytes)",
            )?,
            js_totals: {
                type Total = (&'static str, &'static str, PoolTotal);
                let totals: [Total; 8] = [
                    ("executions", "JS executions (requests and governance calls)", |m| m.executions),
                    ("interpreters_created", "JS interpreters created", |m| m.interpreters_created),
                    ("interpreters_reused", "JS executions on a kept interpreter (interpreter_reuse)", |m| m.interpreters_reused),
                    ("limit_stops", "Scripts stopped at a time, heap or stack limit", |m| m.limit_stops),
                    ("worker_crashes", "JS worker processes that crashed", |m| m.worker_crashes),
                    ("workers_started", "JS worker processes started", |m| m.workers_started),
                    ("workers_retired", "JS worker processes replaced between jobs", |m| m.workers_retired),
                    ("busy_rejections", "Requests refused because every JS worker was busy and the queue full", |m| m.busy_rejections),
                ];
                totals
                    .into_iter()
                    .map(|(name, help, total)| Ok((IntCounter::new(format!("consort_js_{name}_total"), help)?, total)))
                    .collect::<Result<_, prometheus::Error>>()?
            },
            requests,
            latency,
            registry,
        };
        let r = &m.registry;
        r.register(Box::new(m.requests.clone()))?;
        r.register(Box::new(m.latency.clone()))?;
        for g in [
            &m.committed_seqno,
            &m.commit_lag,
            &m.view,
            &m.ledger_bytes,
            &m.ledger_chunks,
            &m.snapshot_seqno,
            &m.js_workers,
            &m.js_queue_depth,
            &m.historical_cache_bytes,
        ] {
            r.register(Box::new(g.clone()))?;
        }
        r.register(Box::new(m.role.clone()))?;
        for (c, _) in &m.js_totals {
            r.register(Box::new(c.clone()))?;
        }
        // Resident memory, open file descriptors, CPU time (Linux; nothing elsewhere).
        r.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;
        Ok(m)
    }

    /// Counts one answered request.
    pub fn answered(&self, actor: Actor, status: hyper::StatusCode, took: Duration) {
        let class = class(actor);
        self.requests.with_label_values(&[class, status.as_str()]).inc();
        self.latency.with_label_values(&[class]).observe(took.as_secs_f64());
    }

    /// The text a scrape gets, with the figures read now.
    pub fn render(&self, f: &Figures) -> String {
        let to_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.committed_seqno.set(to_i64(f.committed_seqno));
        self.commit_lag.set(to_i64(f.raft.last_appended.saturating_sub(f.raft.last_applied)));
        self.view.set(to_i64(f.raft.view));
        for role in ROLES {
            self.role.with_label_values(&[role]).set(i64::from(role == f.raft.role));
        }
        self.ledger_bytes.set(to_i64(f.ledger_bytes));
        self.ledger_chunks.set(to_i64(f.ledger_chunks));
        self.snapshot_seqno.set(to_i64(f.snapshot_seqno));
        self.js_workers.set(to_i64(f.js.workers as u64));
        self.js_queue_depth.set(to_i64(f.js.admitted.saturating_sub(f.js.workers) as u64));
        self.historical_cache_bytes.set(to_i64(f.historical_cache_bytes));
        for (counter, total) in &self.js_totals {
            // The pool counts; the counter follows it (it never goes back).
            counter.inc_by(total(&f.js).saturating_sub(counter.get()));
        }
        let mut out = Vec::new();
        // Encoding into memory fails only on a malformed family, which the registry rules out.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(role: &'static str, executions: u64) -> Figures {
        Figures {
            raft: consort_consensus::RaftFigures { view: 3, role, last_appended: 12, last_applied: 10 },
            committed_seqno: 9,
            ledger_bytes: 4096,
            ledger_chunks: 2,
            snapshot_seqno: 0,
            js: consort_js::PoolMetrics { executions, workers: 2, ..Default::default() },
            historical_cache_bytes: 0,
        }
    }

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.parse().ok()))
    }

    #[test]
    fn requests_and_figures_render_as_prometheus_text() {
        let m = Metrics::new().expect("metrics");
        m.answered(Actor::App, hyper::StatusCode::OK, Duration::from_millis(3));
        m.answered(Actor::App, hyper::StatusCode::OK, Duration::from_millis(30));
        m.answered(Actor::Gov, hyper::StatusCode::BAD_REQUEST, Duration::from_millis(1));
        let text = m.render(&figures("primary", 5));
        assert_eq!(value(&text, r#"consort_requests_total{class="app",status="200"}"#), Some(2.0), "{text}");
        assert_eq!(value(&text, r#"consort_requests_total{class="gov",status="400"}"#), Some(1.0));
        assert_eq!(value(&text, r#"consort_request_duration_seconds_bucket{class="app",le="0.005"}"#), Some(1.0));
        assert_eq!(value(&text, r#"consort_request_duration_seconds_count{class="app"}"#), Some(2.0));
        assert_eq!(value(&text, "consort_commit_lag"), Some(2.0));
        assert_eq!(value(&text, "consort_committed_seqno"), Some(9.0));
        assert_eq!(value(&text, r#"consort_raft_role{role="primary"}"#), Some(1.0));
        assert_eq!(value(&text, r#"consort_raft_role{role="backup"}"#), Some(0.0));
        assert_eq!(value(&text, "consort_js_executions_total"), Some(5.0));
        assert!(text.contains("# TYPE consort_js_executions_total counter"), "{text}");
        // The next scrape follows the pool's totals and the role as they are then.
        let text = m.render(&figures("backup", 8));
        assert_eq!(value(&text, "consort_js_executions_total"), Some(8.0));
        assert_eq!(value(&text, r#"consort_raft_role{role="primary"}"#), Some(0.0));
        assert_eq!(value(&text, r#"consort_raft_role{role="backup"}"#), Some(1.0));
    }
}
