//! `consort`: run a node, a one-node sandbox, and the offline tools that members, users and
//! auditors run (key generation, ledger and receipt verification).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use consort_node::config::{Command as NodeCommand, IdentityConfig, StartConfig};
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
    },
    /// Start a one-node network with member0 and user0, deploy an app, print how to call it.
    Sandbox {
        #[arg(long, default_value = "workspace")]
        workspace: PathBuf,
        #[arg(long, default_value_t = 8000)]
        rpc_port: u16,
        /// An app directory (app.json and src/) or a bundle.json.
        #[arg(long)]
        app: Option<PathBuf>,
        /// Milliseconds between signature transactions (a receipt is available after the next one).
        #[arg(long, default_value_t = 1000)]
        signature_delay_ms: u64,
    },
    /// Write NAME_privk.pem and NAME_cert.pem: a member's or user's identity.
    Keygen {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "secp384r1")]
        curve: consort_crypto::Curve,
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Offline checks of a ledger.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
    /// Offline checks of receipts.
    Receipt {
        #[command(subcommand)]
        command: ReceiptCommand,
    },
    /// A JS worker process; the node starts these itself.
    #[command(hide = true)]
    JsWorker,
}

#[derive(Subcommand)]
enum LedgerCommand {
    /// Check every entry, Merkle root and signature of a ledger directory.
    Verify {
        dir: PathBuf,
        /// Pin the service certificate instead of reading it from the ledger's genesis.
        #[arg(long)]
        service_cert: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ReceiptCommand {
    /// Check a receipt (JSON from /app/receipt) against the service certificate.
    Verify {
        #[arg(long)]
        service_cert: PathBuf,
        receipt: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::JsWorker => return consort_js::worker_main(),
        Command::Start { config } => run_node(config),
        Command::Sandbox { workspace, rpc_port, app, signature_delay_ms } => sandbox(&workspace, rpc_port, app, signature_delay_ms),
        Command::Keygen { name, curve, dir } => {
            keygen(&dir, &name, curve).map(|(k, c)| println!("wrote {} and {}", k.display(), c.display()))
        }
        Command::Ledger { command: LedgerCommand::Verify { dir, service_cert } } => ledger_verify(&dir, service_cert.as_deref()),
        Command::Receipt { command: ReceiptCommand::Verify { service_cert, receipt } } => receipt_verify(&service_cert, &receipt),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("consort: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CONSORT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    tracing::info!("stopping");
}

fn run_node(config: Option<PathBuf>) -> Result<(), String> {
    init_logging();
    let config = match config {
        Some(path) => NodeConfig::from_file(&path)?,
        None => NodeConfig::default(),
    };
    runtime()?.block_on(async {
        let node = Node::start(config).await?;
        eprintln!("consort: node {} serving on https://{}", node.node_id(), node.rpc_address());
        node.serve(shutdown_signal()).await
    })
}

fn keygen(dir: &Path, name: &str, curve: consort_crypto::Curve) -> Result<(PathBuf, PathBuf), String> {
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

fn sandbox(workspace: &Path, rpc_port: u16, app: Option<PathBuf>, signature_delay_ms: u64) -> Result<(), String> {
    init_logging();
    let common = workspace.join("sandbox_common");
    for name in ["member0", "user0"] {
        if !common.join(format!("{name}_cert.pem")).exists() {
            keygen(&common, name, consort_crypto::Curve::Secp384r1)?;
        }
    }
    let identity =
        |name: &str| IdentityConfig { certificate: common.join(format!("{name}_cert.pem")), data: None, encryption_public_key: None };
    let mut config = NodeConfig {
        rpc_address: format!("127.0.0.1:{rpc_port}"),
        node_address: format!("127.0.0.1:{}", rpc_port.wrapping_add(1)),
        directory: workspace.join("node0"),
        command: NodeCommand::Start(StartConfig {
            members: vec![identity("member0")],
            users: vec![identity("user0")],
            app,
            ..Default::default()
        }),
        ..NodeConfig::default()
    };
    config.ledger_signatures.delay_ms = signature_delay_ms;
    config.js.runtime_options.return_exception_details = true;
    config.js.runtime_options.log_exception_details = true;
    runtime()?.block_on(async {
        let node = Node::start(config).await?;
        let cert_path = common.join("service_cert.pem");
        std::fs::write(&cert_path, node.service_cert_pem()).map_err(|e| format!("writing {}: {e}", cert_path.display()))?;
        print_instructions(&common, node.rpc_address());
        node.serve(shutdown_signal()).await
    })
}

fn print_instructions(common: &Path, addr: std::net::SocketAddr) {
    let c = common.display();
    let curl = format!("curl --cacert {c}/service_cert.pem --cert {c}/user0_cert.pem --key {c}/user0_privk.pem");
    let url = format!("https://{addr}");
    println!("Consort sandbox is running at {url} (Ctrl-C to stop). Identities and the service certificate are in {c}/");
    println!("Try the logging sample:");
    println!(
        "  {curl} -X POST {url}/app/log/private -H 'content-type: application/json' --data '{{\"id\": 1, \"msg\": \"a private message\"}}'"
    );
    println!(
        "  {curl} -X POST {url}/app/log/public -H 'content-type: application/json' --data '{{\"id\": 1, \"msg\": \"a public message\"}}'"
    );
    println!("  {curl} '{url}/app/log/private?id=1'");
    println!("  {curl} '{url}/app/log/public?id=1'");
    println!("  {curl} {url}/app/log/private/count");
    println!("  {curl} -i {url}/app/commit");
    println!("  {curl} '{url}/app/receipt?transaction_id=<the x-ms-ccf-transaction-id of a POST>' > receipt.json");
    println!("  consort receipt verify --service-cert {c}/service_cert.pem receipt.json");
    println!("READY {url}");
}

fn ledger_verify(dir: &Path, service_cert: Option<&Path>) -> Result<(), String> {
    let pinned = match service_cert {
        Some(p) => Some(std::fs::read_to_string(p).map_err(|e| format!("reading {}: {e}", p.display()))?),
        None => None,
    };
    let report = consort_ledger::verify::verify_dir(dir, pinned.as_deref()).map_err(|f| format!("ledger verification FAILED: {f}"))?;
    println!(
        "ledger OK: {} entries in {} chunk files, {} signatures, last signed seqno {}, {} entries after it not yet signed",
        report.entries,
        report.chunks,
        report.signatures,
        report.last_signed_seqno.map_or("none".into(), |s| s.to_string()),
        report.unsigned_entries
    );
    if let Some(t) = report.torn_tail {
        println!("note: torn, unacknowledged write at the end: {t} (a node cuts it off when it restarts)");
    }
    Ok(())
}

fn receipt_verify(service_cert: &Path, receipt: &Path) -> Result<(), String> {
    let pem = std::fs::read_to_string(service_cert).map_err(|e| format!("reading {}: {e}", service_cert.display()))?;
    let der = consort_crypto::cert_der_from_pem(&pem).map_err(|e| format!("{}: {e}", service_cert.display()))?;
    let text = std::fs::read_to_string(receipt).map_err(|e| format!("reading {}: {e}", receipt.display()))?;
    let receipt: consort_ledger::Receipt = serde_json::from_str(&text).map_err(|e| format!("{}: not a receipt: {e}", receipt.display()))?;
    let txid = receipt.verify(&der).map_err(|e| format!("receipt REJECTED: {e}"))?;
    println!("receipt OK: transaction {txid} is in the ledger signed by node {}", receipt.node_id);
    Ok(())
}
