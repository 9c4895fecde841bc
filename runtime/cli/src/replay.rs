//! `consort replay`: run a committed app transaction again from a ledger, on the state just
//! before it and its recorded inputs, and show its console output, its response and its write
//! set next to the recorded one (`consort_node::replay` does the work).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::Args;
use consort_node::replay::{self, AppChoice, ReplayJob, Replayed, SecretsFrom};

#[derive(Args)]
pub struct ReplayArgs {
    /// The ledger directory (a node's `ledger/`).
    #[arg(long)]
    ledger: PathBuf,
    /// The transaction, `view.seqno`.
    #[arg(long)]
    txid: consort_kv::TxId,
    /// A node's directory (its key and ledger secrets open the ledger); by default the
    /// ledger directory's parent.
    #[arg(long, conflicts_with = "recovery_key")]
    node_dir: Option<PathBuf>,
    /// Instead of a node's directory: a recovery member's RSA encryption private key
    /// (`NAME_enc_privk.pem`); give as many as the recovery threshold. Their shares in the
    /// ledger give every ledger secret. Needs --service-cert.
    #[arg(long, requires = "service_cert")]
    recovery_key: Vec<PathBuf>,
    /// The service certificate the ledger is checked under (with --recovery-key).
    #[arg(long)]
    service_cert: Option<PathBuf>,
    /// Where the node keeps snapshots (read from the newest one before the transaction); by
    /// default the node directory's `snapshots/`.
    #[arg(long)]
    snapshots: Option<PathBuf>,
    /// Run another recorded app version instead of the one that ran the transaction.
    #[arg(long, conflicts_with = "app")]
    app_version: Option<u64>,
    /// Run the app in this directory (app.json and its modules, as `--set-js-app` takes) on
    /// the recorded inputs: a fix tried against the transaction that showed the bug.
    #[arg(long)]
    app: Option<PathBuf>,
}

pub fn run(args: ReplayArgs) -> Result<(), String> {
    let node_dir = match args.node_dir {
        Some(d) => d,
        None => args.ledger.parent().filter(|p| !p.as_os_str().is_empty()).map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(".")),
    };
    let snapshots = args.snapshots.or_else(|| Some(node_dir.join("snapshots")).filter(|d| d.is_dir()));
    let read = |p: &PathBuf| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
    let secrets = match (&args.service_cert, args.recovery_key.is_empty()) {
        (Some(cert), false) => SecretsFrom::RecoveryKeys {
            service_cert_pem: read(cert)?,
            encryption_keys: args.recovery_key.iter().map(read).collect::<Result<_, _>>()?,
        },
        _ => SecretsFrom::NodeDir(node_dir),
    };
    let app = match (args.app_version, args.app) {
        (Some(n), _) => AppChoice::Version(n),
        (None, Some(dir)) => {
            let bundle = consort_node::load_app(&dir).map_err(|e| format!("--app {}: {e}", dir.display()))?;
            AppChoice::Bundle { bundle: std::sync::Arc::new(bundle), from: dir.display().to_string() }
        }
        (None, None) => AppChoice::Recorded,
    };
    // The script's console lines, as they are written, on stdout.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn,consort::app=debug"))
        .with_writer(std::io::stdout)
        .with_ansi(std::io::stdout().is_terminal())
        .without_time()
        .with_target(false)
        .try_init();
    let job = ReplayJob { ledger: args.ledger, snapshots, secrets, txid: args.txid };
    let before = replay::read(&job).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    out!("console (the handler's output, as it runs):");
    let replayed = runtime.block_on(async { replay::Replayer::default().run(before, &app).await }).map_err(|e| e.to_string())?;
    print(&replayed);
    Ok(())
}

fn print(r: &Replayed) {
    out!("transaction {}: recorded as run by app version {}; replayed with {}", r.txid, r.recorded_app.version, r.ran);
    match &r.snapshot {
        Some(s) => out!("state before it: from {} and {} ledger entries after it", s.display(), r.replayed_entries),
        None => out!("state before it: {} ledger entries from the start", r.replayed_entries),
    }
    match &r.response {
        Ok(resp) => {
            let verdict = if r.same_response() { "the same as recorded" } else { "differs from the recorded one" };
            out!("response: {} ({verdict}; recorded: {})", resp.status, r.recorded_response.status);
            out!("  body: {}", clip(&String::from_utf8_lossy(&resp.body)));
        }
        Err(e) => out!("response: none, the handler failed: {e} (recorded: {})", r.recorded_response.status),
    }
    let keys = |w: &consort_kv::WriteSet| w.maps.values().map(|m| m.len()).sum::<usize>();
    if r.differences.is_empty() {
        out!("write set: identical to the recorded one ({} keys)", keys(&r.recorded_writes));
    } else {
        out!(
            "write set: differs from the recorded one in {} of its keys (recorded {} keys, replayed {}):",
            r.differences.len(),
            keys(&r.recorded_writes),
            keys(&r.writes)
        );
        for d in &r.differences {
            out!("  {} {}", d.map, replay::show_key(&d.key));
            out!("    recorded: {}", written(&d.left));
            out!("    replayed: {}", written(&d.right));
        }
    }
    if r.beyond_recording > 0 {
        out!("note: the run drew {} time or random values beyond those recorded (given live values)", r.beyond_recording);
    }
}

fn written(w: &Option<Option<Vec<u8>>>) -> String {
    match w {
        None => "(not written)".into(),
        Some(None) => "(removed)".into(),
        Some(Some(v)) => clip(&replay::show_value(v)),
    }
}

/// At most 400 characters of `s`.
fn clip(s: &str) -> String {
    match s.char_indices().nth(400) {
        Some((at, _)) => format!("{}… ({} bytes)", &s[..at], s.len()),
        None => s.to_owned(),
    }
}
