//! `consort`: run a node, a one-node sandbox, members' governance tool (`consort gov`), and the
//! offline tools that members, users and auditors run (key generation, ledger and receipt
//! verification).

mod gov;

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
    /// Start a one-node network whose member0 opens it by governance (adds user0, deploys the
    /// app, opens the service), and print how to call it.
    Sandbox(SandboxArgs),
    /// Sign governance requests with a member's key and send them to a node.
    Gov(GovArgs),
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

#[derive(clap::Args)]
struct SandboxArgs {
    #[arg(long, default_value = "workspace")]
    workspace: PathBuf,
    #[arg(long, default_value_t = 8000)]
    rpc_port: u16,
    /// An app directory (app.json and src/) or a bundle.json, deployed by a `set_js_app` proposal.
    #[arg(long)]
    app: Option<PathBuf>,
    /// Milliseconds between signature transactions (a receipt is available after the next one).
    #[arg(long, default_value_t = 1000)]
    signature_delay_ms: u64,
}

#[derive(clap::Args)]
struct GovArgs {
    /// The node to send requests to.
    #[arg(long, default_value = "https://127.0.0.1:8000")]
    url: String,
    /// The service certificate: the only one the client trusts.
    #[arg(long, default_value = "workspace/sandbox_common/service_cert.pem")]
    service_cert: PathBuf,
    /// The member's files: PREFIX_cert.pem and PREFIX_privk.pem.
    #[arg(long, default_value = "workspace/sandbox_common/member0")]
    member: PathBuf,
    #[command(subcommand)]
    command: GovCommand,
}

#[derive(Subcommand)]
enum GovCommand {
    /// Propose actions: those of a proposal file ({"actions": [...]}) and/or the helpers below.
    Propose {
        /// A proposal JSON file.
        file: Option<PathBuf>,
        /// set_user with this certificate (repeatable).
        #[arg(long)]
        set_user: Vec<PathBuf>,
        /// remove_user by id or by certificate file (repeatable).
        #[arg(long)]
        remove_user: Vec<String>,
        /// set_member with this certificate (repeatable).
        #[arg(long)]
        set_member: Vec<PathBuf>,
        /// set_js_app with the app in this directory (app.json and src/) or bundle.json.
        #[arg(long)]
        set_js_app: Option<PathBuf>,
        #[arg(long)]
        remove_js_app: bool,
        /// transition_service_to_open, naming the --service-cert as the next service identity.
        #[arg(long)]
        open_service: bool,
        /// Vote for the proposal right after creating it.
        #[arg(long)]
        accept: bool,
    },
    /// Submit a ballot on a proposal.
    Vote {
        proposal_id: String,
        #[arg(long, conflicts_with_all = ["reject", "ballot"])]
        accept: bool,
        #[arg(long, conflicts_with = "ballot")]
        reject: bool,
        /// A JS ballot (a module exporting `vote(proposal, proposerId)`).
        #[arg(long)]
        ballot: Option<PathBuf>,
    },
    /// Withdraw one of this member's open proposals.
    Withdraw { proposal_id: String },
    /// Acknowledge the state digest: an Accepted member becomes Active.
    Ack,
    /// List proposals.
    List,
    /// Show a proposal, with its actions.
    Show { proposal_id: String },
    /// Show the service's status, members and nodes.
    Info,
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
        Command::Start { config: Some(config) } => run_node(&config),
        // SPEC 8: with no configuration at all, `consort start` runs the one-node sandbox.
        Command::Start { config: None } => {
            sandbox(SandboxArgs { workspace: "workspace".into(), rpc_port: 8000, app: None, signature_delay_ms: 1000 })
        }
        Command::Sandbox(args) => sandbox(args),
        Command::Gov(args) => gov_command(args),
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

fn run_node(config: &Path) -> Result<(), String> {
    init_logging();
    let config = NodeConfig::from_file(config)?;
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

fn sandbox(args: SandboxArgs) -> Result<(), String> {
    init_logging();
    // Read and check the app before anything starts, so a bad bundle is reported at once.
    let app = match &args.app {
        Some(path) => Some(gov::actions::set_js_app(path)?),
        None => None,
    };
    let common = args.workspace.join("sandbox_common");
    for name in ["member0", "user0"] {
        if !common.join(format!("{name}_cert.pem")).exists() {
            keygen(&common, name, consort_crypto::Curve::Secp384r1)?;
        }
    }
    let member0 = IdentityConfig { certificate: common.join("member0_cert.pem"), data: None, encryption_public_key: None };
    let mut config = NodeConfig {
        rpc_address: format!("127.0.0.1:{}", args.rpc_port),
        node_address: format!("127.0.0.1:{}", args.rpc_port.wrapping_add(1)),
        directory: args.workspace.join("node0"),
        command: NodeCommand::Start(StartConfig { members: vec![member0], ..Default::default() }),
        ..NodeConfig::default()
    };
    config.ledger_signatures.delay_ms = args.signature_delay_ms;
    config.js.runtime_options.return_exception_details = true;
    config.js.runtime_options.log_exception_details = true;
    runtime()?.block_on(async {
        let node = Node::start(config).await?;
        let cert_path = common.join("service_cert.pem");
        std::fs::write(&cert_path, node.service_cert_pem()).map_err(|e| format!("writing {}: {e}", cert_path.display()))?;
        let serving = {
            let node = node.clone();
            tokio::spawn(async move { node.serve(shutdown_signal()).await })
        };
        let url = format!("https://{}", node.rpc_address());
        let member = gov::GovClient::new(&url, node.service_cert_pem(), gov::load_signer(&common.join("member0"))?)?;
        if let Err(e) = open_by_governance(&member, &common, node.service_cert_pem(), app).await {
            serving.abort();
            return Err(format!("opening the sandbox by governance: {e}"));
        }
        print_instructions(&common, node.rpc_address());
        serving.await.map_err(|e| format!("the node stopped: {e}"))?
    })
}

/// What CCF's sandbox does as member0: become Active, then one proposal that adds user0,
/// deploys the app and opens the service, accepted by member0's vote. On a network that is
/// already open, only a given app is (re)deployed.
async fn open_by_governance(
    member: &gov::GovClient,
    common: &Path,
    service_cert: &str,
    app: Option<serde_json::Value>,
) -> Result<(), String> {
    if member.my_status().await? != "Active" {
        member.ack().await?;
    }
    let mut actions = Vec::new();
    let open = member.service_status().await? == "Open";
    if !open {
        actions.push(gov::actions::set_user(&common.join("user0_cert.pem"))?);
    }
    actions.extend(app);
    if !open {
        actions.push(gov::actions::transition_service_to_open(service_cert));
    }
    if actions.is_empty() {
        return Ok(());
    }
    let voted = member.propose_and_accept(actions).await?;
    match voted.body["proposalState"].as_str() {
        Some("Accepted") => Ok(()),
        _ => Err(format!("the proposal was not accepted: {}", voted.body_text())),
    }
}

/// `consort gov ...`: prints each answer; fails if the service refused.
fn gov_command(args: GovArgs) -> Result<(), String> {
    let cert = std::fs::read_to_string(&args.service_cert).map_err(|e| format!("reading {}: {e}", args.service_cert.display()))?;
    let client = gov::GovClient::new(&args.url, &cert, gov::load_signer(&args.member)?)?;
    runtime()?.block_on(async {
        let answer = match args.command {
            GovCommand::Propose { file, set_user, remove_user, set_member, set_js_app, remove_js_app, open_service, accept } => {
                let mut proposal = match file {
                    Some(f) => {
                        let text = std::fs::read_to_string(&f).map_err(|e| format!("reading {}: {e}", f.display()))?;
                        serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", f.display()))?
                    }
                    None => serde_json::json!({"actions": []}),
                };
                let actions = proposal
                    .get_mut("actions")
                    .and_then(serde_json::Value::as_array_mut)
                    .ok_or("a proposal file holds {\"actions\": [...]}")?;
                for c in &set_user {
                    actions.push(gov::actions::set_user(c)?);
                }
                for u in &remove_user {
                    actions.push(gov::actions::remove_user(u)?);
                }
                for c in &set_member {
                    actions.push(gov::actions::set_member(c)?);
                }
                if let Some(dir) = &set_js_app {
                    actions.push(gov::actions::set_js_app(dir)?);
                }
                if remove_js_app {
                    actions.push(gov::actions::remove_js_app());
                }
                if open_service {
                    actions.push(gov::actions::transition_service_to_open(&cert));
                }
                if actions.is_empty() {
                    return Err("nothing to propose: give a proposal file or at least one action flag".into());
                }
                let created = client.propose(&proposal).await?;
                if !accept {
                    created
                } else {
                    created.print();
                    let id = created.body["proposalId"].as_str().ok_or("the answer has no proposalId")?.to_owned();
                    client.vote(&id, gov::ACCEPT_BALLOT).await?
                }
            }
            GovCommand::Vote { proposal_id, accept, reject, ballot } => {
                let ballot = match (accept, reject, ballot) {
                    (true, _, _) => gov::ACCEPT_BALLOT.to_owned(),
                    (_, true, _) => gov::REJECT_BALLOT.to_owned(),
                    (_, _, Some(f)) => std::fs::read_to_string(&f).map_err(|e| format!("reading {}: {e}", f.display()))?,
                    _ => return Err("say how to vote: --accept, --reject or --ballot FILE".into()),
                };
                client.vote(&proposal_id, &ballot).await?
            }
            GovCommand::Withdraw { proposal_id } => client.withdraw(&proposal_id).await?,
            GovCommand::Ack => client.ack().await?,
            GovCommand::List => client.get("/members/proposals").await?.success()?,
            GovCommand::Show { proposal_id } => {
                let info = client.get(&format!("/members/proposals/{proposal_id}")).await?.success()?;
                let actions = client.get(&format!("/members/proposals/{proposal_id}/actions")).await?.success()?;
                gov::Answer { status: info.status, body: serde_json::json!({"proposal": info.body, "actions": actions.body}) }
            }
            GovCommand::Info => {
                let mut all = serde_json::Map::new();
                for (name, path) in [("service", "/service/info"), ("members", "/service/members"), ("nodes", "/service/nodes")] {
                    all.insert(name.into(), client.get(path).await?.success()?.body);
                }
                gov::Answer { status: 200, body: serde_json::Value::Object(all) }
            }
        };
        answer.print();
        Ok(())
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
    println!("Govern it as member0 (`consort gov --help` lists the commands):");
    println!("  consort gov --url {url} --service-cert {c}/service_cert.pem --member {c}/member0 info");
    println!(
        "  consort gov --url {url} --service-cert {c}/service_cert.pem --member {c}/member0 propose --set-js-app samples/logging --accept"
    );

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
