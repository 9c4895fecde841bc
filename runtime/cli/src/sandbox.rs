//! `consort sandbox`: a one-node network that member0 opens by governance, as CCF's sandbox
//! does, and the lines that show how to call it.

use std::path::{Path, PathBuf};

use consort_node::config::{Command as NodeCommand, IdentityConfig, StartConfig};
use consort_node::{Node, NodeConfig};

use crate::gov_client;

#[derive(clap::Args)]
pub struct SandboxArgs {
    #[arg(long, default_value = "workspace")]
    pub workspace: PathBuf,
    #[arg(long, default_value_t = 8000)]
    pub rpc_port: u16,
    /// An app directory (app.json and src/) or a bundle.json, deployed by a `set_js_app` proposal.
    #[arg(long)]
    pub app: Option<PathBuf>,
    /// Milliseconds between signature transactions (a receipt is available after the next one).
    #[arg(long, default_value_t = 1000)]
    pub signature_delay_ms: u64,
}

pub fn run(args: SandboxArgs) -> Result<(), String> {
    crate::init_logging();
    // Read and check the app before anything starts, so a bad bundle is reported at once.
    let app = match &args.app {
        Some(path) => Some(gov_client::actions::set_js_app(path)?),
        None => None,
    };
    let common = args.workspace.join("sandbox_common");
    for name in ["member0", "user0"] {
        if !common.join(format!("{name}_cert.pem")).exists() {
            crate::keygen(&common, name, consort_crypto::Curve::Secp384r1)?;
        }
    }
    let member0 =
        IdentityConfig { certificate: common.join("member0_cert.pem"), data: None, encryption_public_key: None, recovery_role: None };
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
    crate::runtime()?.block_on(async {
        let node = Node::start(config).await?;
        let cert_path = common.join("service_cert.pem");
        std::fs::write(&cert_path, node.service_cert_pem()).map_err(|e| format!("writing {}: {e}", cert_path.display()))?;
        let serving = {
            let node = node.clone();
            tokio::spawn(async move { node.serve(crate::shutdown_signal()).await })
        };
        let url = format!("https://{}", node.rpc_address());
        let member = gov_client::GovClient::new(&url, node.service_cert_pem(), gov_client::load_signer(&common.join("member0"))?)?;
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
    member: &gov_client::GovClient,
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
        actions.push(gov_client::actions::set_user(&common.join("user0_cert.pem"))?);
    }
    actions.extend(app);
    if !open {
        actions.push(gov_client::actions::transition_service_to_open(service_cert));
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
