//! `consort`: run a node, a one-node sandbox, members' governance tool (`consort gov`), and the
//! offline tools that members, users and auditors run (key generation, ledger and receipt
//! verification, replay of a transaction).

/// `println!` for what a one-shot command prints: a reader that has gone (`consort ... | head`)
/// ends the process quietly, with the status a shell gives a program killed by SIGPIPE.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::print_out(format_args!($($arg)*))
    };
}

mod dev;
mod gov;
mod gov_client;
mod replay;
mod sandbox;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use consort_node::{Node, NodeConfig};

/// Counts each thread's live bytes so JS workers can enforce `max_heap_bytes`.
#[global_allocator]
static ALLOC: consort_alloc::CountingAllocator = consort_alloc::CountingAllocator;

#[derive(Parser)]
#[command(name = "consort", version, about = "A replicated, governed host for JavaScript applications")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a node from a configuration file (JSON or TOML); without one, a one-node sandbox.
    Start {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Stop when the process that started this one exits (how `consort sandbox --nodes`
        /// starts its other nodes, so that none outlives it, even if it is killed).
        #[arg(long, hide = true)]
        stop_with_parent: bool,
    },
    /// Start a one-node network whose member0 opens it by governance (adds user0, deploys the
    /// app, opens the service), and print how to call it.
    Sandbox(sandbox::SandboxArgs),
    /// The inner loop for an app: a one-node network with the app deployed, rebuilt (npm run
    /// build) and redeployed by governance on every change, its console output shown here.
    Dev(dev::DevArgs),
    /// Sign governance requests with a member's key and send them to a node.
    Gov(gov::GovArgs),
    /// Write NAME_privk.pem and NAME_cert.pem: a member's or user's identity.
    Keygen {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "secp384r1")]
        curve: consort_crypto::Curve,
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Also write NAME_enc_privk.pem and NAME_enc_pubk.pem: an RSA encryption key for a
        /// recovery member (as CCF's keygenerator.sh --gen-enc-key).
        #[arg(long)]
        gen_enc_key: bool,
    },
    /// Offline checks of a ledger.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
    /// Offline checks of snapshots.
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
    /// Offline checks of receipts.
    Receipt {
        #[command(subcommand)]
        command: ReceiptCommand,
    },
    /// Run a committed app transaction again from a ledger, on its recorded inputs, and show
    /// its console output, its response and its write set next to the recorded one.
    Replay(replay::ReplayArgs),
    /// A JS worker process; the node starts these itself.
    #[command(hide = true)]
    JsWorker {
        /// `json` for one JSON object per log line (the node's `logging.format`).
        #[arg(long, default_value = "text")]
        log_format: String,
    },
}

#[derive(Subcommand)]
enum LedgerCommand {
    /// Check every entry, Merkle root and signature of a ledger directory.
    Verify {
        dir: PathBuf,
        /// Pin the service certificate instead of reading it from the ledger's genesis.
        #[arg(long)]
        service_cert: Option<PathBuf>,
        /// For a ledger that starts after a snapshot (a node that joined from one): that
        /// snapshot, `snapshot_<first seqno - 1>.committed`.
        #[arg(long)]
        snapshot: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum SnapshotCommand {
    /// Check a snapshot (snapshot_<seqno>.committed) against a ledger directory: the entry at
    /// its seqno is a signature of its view, and the ledger's public state there equals its own.
    Verify {
        snapshot: PathBuf,
        #[arg(long)]
        ledger: PathBuf,
    },
}

#[derive(Subcommand)]
enum ReceiptCommand {
    /// Check a receipt (JSON from /app/receipt) against the service certificate.
    Verify {
        #[arg(long)]
        service_cert: PathBuf,
        /// For a receipt issued before a recovery: the previous identities as the recovered
        /// service endorsed them (PEM bundle, newest first: `endorsements` of
        /// `GET /node/service/previous_identity`).
        #[arg(long)]
        endorsements: Option<PathBuf>,
        receipt: PathBuf,
    },
}

fn print_out(args: std::fmt::Arguments) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args).and_then(|()| stdout.write_all(b"\n")) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
        panic!("writing to stdout: {e}");
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::JsWorker { log_format } => return consort_js::worker_main(log_format == "json"),
        Command::Start { config: Some(config), stop_with_parent } => run_node(&config, stop_with_parent),
        // SPEC 8: with no configuration at all, `consort start` runs the one-node sandbox.
        Command::Start { config: None, .. } => sandbox::run(sandbox::SandboxArgs {
            workspace: "workspace".into(),
            rpc_port: 8000,
            app: None,
            signature_delay_ms: 1000,
            ledger_sync: consort_ledger::Durability::SyncPoints,
            nodes: 1,
            recover: false,
            js_isolation: "process".into(),
            json_logs: false,
        }),
        Command::Sandbox(args) => sandbox::run(args),
        Command::Dev(args) => dev::run(args),
        Command::Gov(args) => gov::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Keygen { name, curve, dir, gen_enc_key } => keygen(&dir, &name, curve).and_then(|(k, c)| {
            out!("wrote {} and {}", k.display(), c.display());
            if gen_enc_key {
                let (k, p) = keygen_encryption(&dir, &name)?;
                out!("wrote {} and {}", k.display(), p.display());
            }
            Ok(())
        }),
        Command::Ledger { command: LedgerCommand::Verify { dir, service_cert, snapshot } } => {
            ledger_verify(&dir, service_cert.as_deref(), snapshot.as_deref())
        }
        Command::Receipt { command: ReceiptCommand::Verify { service_cert, endorsements, receipt } } => {
            receipt_verify(&service_cert, endorsements.as_deref(), &receipt)
        }
        Command::Snapshot { command: SnapshotCommand::Verify { snapshot, ledger } } => {
            consort_consensus::snapshot::verify(&snapshot, &ledger).map(|r| {
                out!(
                    "snapshot OK: the state at {}.{} ({} public maps, {} public keys; private maps sealed), its Merkle tree, signature and views match the ledger",
                    r.view,
                    r.seqno,
                    r.public_maps,
                    r.public_keys,
                )
            })
            .map_err(|e| e.to_string())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("consort: {e}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) fn init_logging(json: bool) {
    consort_js::init_logging("info,openraft=warn", json);
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())
}

/// Resolves on Ctrl-C or SIGTERM. The handlers are installed when this is called, not when the
/// future is first polled: a signal that comes in between is kept for it, instead of taking
/// the default action (ending the process at once, leaving its children behind).
pub(crate) fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, Signal, SignalKind};
    async fn received(signal: Option<Signal>) {
        match signal {
            Some(mut s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    }
    let (interrupt, terminate) = (signal(SignalKind::interrupt()).ok(), signal(SignalKind::terminate()).ok());
    async move {
        tokio::select! {
            _ = received(interrupt) => {},
            _ = received(terminate) => {},
        }
        tracing::info!("stopping");
    }
}

/// Resolves when this process's parent has exited (it was re-parented); never if `watch` is off.
async fn parent_gone(watch: bool) {
    if !watch {
        return std::future::pending().await;
    }
    let parent = std::os::unix::process::parent_id();
    while std::os::unix::process::parent_id() == parent {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    tracing::warn!("the process that started this node exited: stopping");
}

fn run_node(config: &Path, stop_with_parent: bool) -> Result<(), String> {
    let config = NodeConfig::from_file(config).map_err(|e| e.to_string())?;
    init_logging(config.logging.format == consort_node::config::LogFormat::Json);
    runtime()?.block_on(async {
        let node = tokio::select! {
            node = Node::start(config) => node.map_err(|e| e.to_string())?,
            _ = parent_gone(stop_with_parent) => return Err("the process that started this node exited".into()),
        };
        let shutdown = shutdown_signal();
        eprintln!("consort: node {} serving on https://{}", node.node_id(), node.rpc_address());
        node.serve(async {
            tokio::select! {
                _ = shutdown => {}
                _ = parent_gone(stop_with_parent) => {}
            }
        })
        .await
        .map_err(|e| e.to_string())
    })
}

pub(crate) fn keygen(dir: &Path, name: &str, curve: consort_crypto::Curve) -> Result<(PathBuf, PathBuf), String> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(format!("--name {name:?}: use letters, digits, '_' and '-'"));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let (key, cert) = consort_crypto::identity_cert(name, curve).map_err(|e| e.to_string())?;
    let key_path = dir.join(format!("{name}_privk.pem"));
    let cert_path = dir.join(format!("{name}_cert.pem"));
    std::fs::write(&key_path, key).map_err(|e| format!("writing {}: {e}", key_path.display()))?;
    std::fs::write(&cert_path, cert).map_err(|e| format!("writing {}: {e}", cert_path.display()))?;
    Ok((key_path, cert_path))
}

/// `NAME_enc_privk.pem` and `NAME_enc_pubk.pem`: a recovery member's RSA encryption key.
pub(crate) fn keygen_encryption(dir: &Path, name: &str) -> Result<(PathBuf, PathBuf), String> {
    let (private, public) = consort_crypto::recovery::generate_encryption_key().map_err(|e| e.to_string())?;
    let private_path = dir.join(format!("{name}_enc_privk.pem"));
    let public_path = dir.join(format!("{name}_enc_pubk.pem"));
    std::fs::write(&private_path, private).map_err(|e| format!("writing {}: {e}", private_path.display()))?;
    std::fs::write(&public_path, public).map_err(|e| format!("writing {}: {e}", public_path.display()))?;
    Ok((private_path, public_path))
}

fn ledger_verify(dir: &Path, service_cert: Option<&Path>, snapshot: Option<&Path>) -> Result<(), String> {
    let pinned = match service_cert {
        Some(p) => Some(std::fs::read_to_string(p).map_err(|e| format!("reading {}: {e}", p.display()))?),
        None => None,
    };
    let start = snapshot.map(consort_consensus::snapshot::verify_start).transpose().map_err(|e| e.to_string())?;
    let first = start.as_ref().map_or(0, |s| s.snapshot_seqno + 1);
    if start.is_none() {
        if let Some(c) = consort_ledger::files::list_chunks(dir).ok().and_then(|c| c.into_iter().next()).filter(|c| c.first > 0) {
            return Err(format!(
                "ledger verification FAILED: the ledger starts at seqno {} (its node joined from a snapshot); pass --snapshot <the snapshot_{}.committed it started from>",
                c.first,
                c.first - 1
            ));
        }
    }
    let report =
        consort_ledger::verify::verify_dir_from(dir, pinned.as_deref(), start).map_err(|f| format!("ledger verification FAILED: {f}"))?;
    // Bytes after the last record of the open chunk: a write a crash tore (a node cuts it off
    // when it restarts) or damage; either way the files are not as a clean node leaves them.
    if let Some(t) = report.torn_tail {
        return Err(format!(
            "ledger verification FAILED: damage after the last record, {t}; the {} entries before it verify (if the node crashed, it cuts this off when it restarts)",
            report.entries - first
        ));
    }
    out!(
        "ledger OK: {} entries (seqnos {first} to {}) in {} chunk files, {} signatures, last signed seqno {}, {} entries after it not yet signed",
        report.entries - first,
        report.entries.saturating_sub(1),
        report.chunks,
        report.signatures,
        report.last_signed_seqno.map_or("none".into(), |s| s.to_string()),
        report.unsigned_entries
    );
    Ok(())
}

fn receipt_verify(service_cert: &Path, endorsements: Option<&Path>, receipt: &Path) -> Result<(), String> {
    let pem = std::fs::read_to_string(service_cert).map_err(|e| format!("reading {}: {e}", service_cert.display()))?;
    let der = consort_crypto::cert_der_from_pem(&pem).map_err(|e| format!("{}: {e}", service_cert.display()))?;
    let chain = match endorsements {
        None => Vec::new(),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
            let blocks = pem::parse_many(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            blocks.into_iter().filter(|b| b.tag() == "CERTIFICATE").map(|b| b.into_contents()).collect()
        }
    };
    let text = std::fs::read_to_string(receipt).map_err(|e| format!("reading {}: {e}", receipt.display()))?;
    let receipt: consort_ledger::Receipt = serde_json::from_str(&text).map_err(|e| format!("{}: not a receipt: {e}", receipt.display()))?;
    let txid = receipt.verify_with_endorsements(&der, &chain).map_err(|e| format!("receipt REJECTED: {e}"))?;
    out!("receipt OK: transaction {txid} is in the ledger signed by node {}", receipt.node_id);
    if let Some(app) = &receipt.app_version {
        out!("run by app version {} (bundle digest {})", app.version, app.bundle_digest);
    }
    Ok(())
}
