//! `make soak`: does a node's memory stay bounded as its ledger grows? A one-node sandbox takes
//! `SOAK_WRITES` (default 1,000,000) committed writes and a three-node sandbox a fifth of that,
//! from the load client `make bench` uses, rewriting a hundred keys so that the state does not
//! grow. Each node's resident memory is sampled as the writes go; the run fails if any node
//! grew by more than 10% from the 20% mark to the end. Receipts for the first and the last write
//! verify offline, and so does every node's ledger. Prints the figures and draws memory over
//! writes to `docs/soak.png`.
//!
//! Uses the binary named by `CONSORT_BIN` (make soak builds and names the release one).

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use consort_bench::Load;
use consort_tests::{consort, repo_root, temp_workspace, Sandbox};

/// Growth allowed from the 20% mark to the end.
const GROWTH_MAX: f64 = 0.10;

/// One node's resident memory after so many writes.
#[derive(Clone, Copy)]
struct Sample {
    writes: u64,
    rss_mb: f64,
}

struct Run {
    label: String,
    writes: u64,
    seconds: f64,
    /// Per node, its samples.
    nodes: Vec<Vec<Sample>>,
    checks: Vec<String>,
}

fn rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The RSS at the 20% mark and at the end, and the growth between them.
fn growth(samples: &[Sample], total: u64) -> (f64, f64, f64) {
    let mark = samples.iter().find(|s| s.writes >= total / 5).or(samples.first()).map_or(0.0, |s| s.rss_mb);
    let end = samples.last().map_or(0.0, |s| s.rss_mb);
    (mark, end, if mark > 0.0 { end / mark - 1.0 } else { 0.0 })
}

/// Drives `writes` committed writes through the sandbox's first node, sampling every node.
async fn soak(label: &str, nodes: usize, writes: u64) -> Run {
    let ws = temp_workspace(&format!("soak-{nodes}"));
    let port = consort_tests::cluster::free_ports(2 * nodes as u16);
    let extra: Vec<String> = if nodes > 1 { vec!["--nodes".into(), nodes.to_string()] } else { Vec::new() };
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let mut s = Sandbox::start_with(&ws, Some(&repo_root().join("samples/logging")), port, &extra);
    let pids = s.node_pids();
    assert_eq!(pids.len(), nodes, "the sandbox named its nodes' pids");
    let load = Load::start(&s, &s.url(""), "POST", 64, Some(100));
    let started = Instant::now();
    let mut samples = vec![Vec::new(); nodes];
    let mut next_report = 0;
    loop {
        let done = load.succeeded.load(Ordering::Relaxed);
        for (i, pid) in pids.iter().enumerate() {
            if let Some(rss_mb) = rss_mb(*pid) {
                samples[i].push(Sample { writes: done, rss_mb });
            }
        }
        if done >= next_report {
            eprintln!(
                "{label}: {done} writes, {:.0} s, node 0 at {:.1} MB",
                started.elapsed().as_secs_f64(),
                samples[0].last().map_or(0.0, |s| s.rss_mb)
            );
            next_report += writes / 10;
        }
        if done >= writes {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (first, last) = load.txids.lock().expect("lock").expect("writes were answered");
    let row = load.finish(label).await;
    let seconds = started.elapsed().as_secs_f64();
    let mut checks =
        vec![format!("{} writes answered ({} failed), {:.0} writes/s", row.requests, row.failures, row.requests as f64 / seconds)];

    // Receipts for the first and the last write verify offline.
    let user = s.client(Some("user0"));
    let service_cert = s.common().join("service_cert.pem");
    for txid in [first, last] {
        let txid = txid.to_string();
        s.wait_committed(&user, &txid).await;
        let receipt = user.get(s.url(&format!("/app/receipt?transaction_id={txid}"))).send().await.expect("receipt");
        assert!(receipt.status().is_success(), "receipt for {txid}: {}", receipt.status());
        let file = ws.join(format!("receipt-{txid}.json"));
        std::fs::write(&file, receipt.bytes().await.expect("receipt body")).expect("write receipt");
        let (ok, out) = consort(&["receipt", "verify", "--service-cert", path(&service_cert), path(&file)]);
        assert!(ok, "the receipt for {txid} verifies: {out}");
        checks.push(format!("receipt for {txid} verifies"));
    }
    s.stop();
    for i in 0..nodes {
        let ledger = ws.join(format!("node{i}/ledger"));
        let (ok, out) = consort(&["ledger", "verify", path(&ledger)]);
        assert!(ok, "node {i}'s ledger verifies: {out}");
        checks.push(format!("node {i}: {}", out.trim()));
    }
    let _ = std::fs::remove_dir_all(&ws);
    Run { label: label.to_owned(), writes: row.requests as u64, seconds, nodes: samples, checks }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// Draws each run's memory over writes, one panel per run, into `file`.
fn plot(runs: &[Run], file: &Path) -> Result<(), String> {
    use plotters::prelude::*;
    // Text needs a font; the system's DejaVu Sans when there is one (none is kept in the repo).
    let font = std::fs::read("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf").map_err(|e| format!("a font for the plot: {e}"))?;
    plotters::style::register_font("sans-serif", FontStyle::Normal, font.leak()).map_err(|_| "the font does not load".to_string())?;
    let root = BitMapBackend::new(file, (1200, 450)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let panels = root.split_evenly((1, runs.len()));
    for (run, area) in runs.iter().zip(panels.iter()) {
        let top = run.nodes.iter().flatten().map(|s| s.rss_mb).fold(0.0, f64::max) * 1.2;
        let mut chart = ChartBuilder::on(area)
            .caption(&run.label, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(0.0..(run.writes as f64 / 1000.0), 0.0..top.max(1.0))
            .map_err(|e| e.to_string())?;
        chart.configure_mesh().x_desc("committed writes (thousands)").y_desc("resident memory (MB)").draw().map_err(|e| e.to_string())?;
        for (i, samples) in run.nodes.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(samples.iter().map(|s| (s.writes as f64 / 1000.0, s.rss_mb)), color.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(format!("node {i}"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    let writes: u64 = std::env::var("SOAK_WRITES").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let runs = vec![
        soak(&format!("one node, {} writes", writes), 1, writes).await,
        soak(&format!("three nodes, {} writes", writes / 5), 3, writes / 5).await,
    ];
    let mut failed = false;
    println!("| run | writes | seconds | node | RSS at 20% (MB) | RSS at the end (MB) | growth |");
    println!("|---|---:|---:|---|---:|---:|---:|");
    for run in &runs {
        for (i, samples) in run.nodes.iter().enumerate() {
            let (mark, end, g) = growth(samples, run.writes);
            failed |= g > GROWTH_MAX;
            println!("| {} | {} | {:.0} | node {i} | {mark:.1} | {end:.1} | {:+.1}% |", run.label, run.writes, run.seconds, g * 100.0);
        }
    }
    for run in &runs {
        for c in &run.checks {
            println!("- {}: {c}", run.label);
        }
    }
    let png = repo_root().join("docs/soak.png");
    match plot(&runs, &png) {
        Ok(()) => println!("Memory over writes: {}", png.canonicalize().unwrap_or(png).display()),
        Err(e) => println!("No plot: {e}"),
    }
    if failed {
        println!("FAILED: a node's memory grew by more than {:.0}% from the 20% mark to the end", GROWTH_MAX * 100.0);
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
