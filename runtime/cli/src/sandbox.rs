//! `consort sandbox`: a network on loopback that member0 opens by governance, as CCF's sandbox
//! does, and the lines that show how to call it. Every node, node 0 included, is its own
//! `consort start --config` process supervised by the sandbox: node i serves on the i-th pair
//! of ports; any node can be killed and restarted by hand (the sandbox prints each pid and the
//! command), and Ctrl-C stops them all.

use std::path::{Path, PathBuf};
use std::time::Duration;

use consort_ledger::Durability;
use serde_json::{json, Value};

use crate::gov_client;

#[derive(clap::Args)]
pub struct SandboxArgs {
    #[arg(long, default_value = "workspace")]
    pub workspace: PathBuf,
    #[arg(long, default_value_t = 8000)]
    pub rpc_port: u16,
    /// An app directory (app.json and src/) or a bundle.json, deployed by a `set_js_app`
    /// proposal. Without it a new sandbox gets the logging sample (built into the binary).
    #[arg(long)]
    pub app: Option<PathBuf>,
    /// Milliseconds between signature transactions (a receipt is available after the next one).
    #[arg(long, default_value_t = 1000)]
    pub signature_delay_ms: u64,
    /// When ledger appends are synced to disk: `signatures` (CCF's model) or `transactions`.
    #[arg(long, default_value = "signatures", value_parser = parse_ledger_sync)]
    pub ledger_sync: Durability,
    /// How many nodes: node i serves clients on rpc-port + 2i and peers on rpc-port + 2i + 1.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=NODES_MAX as i64))]
    pub nodes: u16,
    /// Recover the sandbox in --workspace whose nodes are gone: its node directories move to
    /// lost<N>/, a new node 0 recovers the service from node 0's ledger and snapshots, and
    /// member0 opens it by proposal and submits its recovery share.
    #[arg(long)]
    pub recover: bool,
    /// Where the nodes run scripts: `process` (worker processes) or `threads` (`js.isolation`).
    #[arg(long, default_value = "process", value_parser = ["process", "threads"])]
    pub js_isolation: String,
    /// The nodes log JSON lines (what `consort dev` reads back).
    #[arg(skip)]
    pub json_logs: bool,
}

/// `--ledger-sync`, read as the node configuration's `ledger.sync` is.
fn parse_ledger_sync(s: &str) -> Result<Durability, String> {
    serde_json::from_value(serde_json::Value::from(s)).map_err(|e| e.to_string())
}

/// The most nodes a sandbox starts.
const NODES_MAX: u16 = 9;

/// How long the sandbox waits for its joining nodes to become voters, and for node 0 to serve.
const JOIN_TIMEOUT: Duration = Duration::from_secs(120);

/// The logging sample, deployed when no `--app` is given: the sandbox works from any directory.
const LOGGING_SAMPLE: [(&str, &str); 2] = [
    ("logging.js", include_str!("../../../samples/logging/src/logging.js")),
    ("util.js", include_str!("../../../samples/logging/src/util.js")),
];
const LOGGING_SAMPLE_METADATA: &str = include_str!("../../../samples/logging/app.json");

fn logging_sample() -> Result<Value, String> {
    let metadata: Value = serde_json::from_str(LOGGING_SAMPLE_METADATA).map_err(|e| format!("the built-in logging sample: {e}"))?;
    let modules: Vec<Value> = LOGGING_SAMPLE.iter().map(|(name, module)| json!({"name": name, "module": module})).collect();
    let bundle = consort_js::Bundle::from_json(json!({"metadata": metadata, "modules": modules}).to_string().as_bytes())
        .map_err(|e| format!("the built-in logging sample: {e}"))?;
    Ok(json!({"name": "set_js_app", "args": {"bundle": bundle.to_json(), "disable_bytecode_cache": false}}))
}

/// One node the sandbox started: its index, process and configuration file.
struct Child {
    index: u16,
    process: tokio::process::Child,
    config: PathBuf,
}

pub fn run(args: SandboxArgs) -> Result<(), String> {
    run_with(args, None)
}

/// [`run`], with `consort dev`'s watch ticked while the sandbox runs.
pub fn run_with(args: SandboxArgs, mut dev: Option<crate::dev::Watch>) -> Result<(), String> {
    crate::init_logging(false);
    // Read and check the app before anything starts, so a bad bundle is reported at once.
    let app = match &args.app {
        Some(path) => gov_client::actions::set_js_app(path)?,
        None => logging_sample()?,
    };
    let common = args.workspace.join("sandbox_common");
    for name in ["member0", "user0"] {
        if !common.join(format!("{name}_cert.pem")).exists() {
            crate::keygen(&common, name, consort_crypto::Curve::Secp384r1)?;
        }
    }
    // member0 is a recovery Participant, as in CCF's sandbox.
    if !common.join("member0_enc_pubk.pem").exists() {
        crate::keygen_encryption(&common, "member0")?;
    }
    let command = if args.recover {
        let r = lose_nodes(&args.workspace, &common)?;
        json!({"type": "recover", "previous_ledger": r.previous_ledger, "previous_snapshots": r.previous_snapshots,
               "previous_service_identity": r.previous_service_identity})
    } else {
        json!({"type": "start", "members": [{"certificate": common.join("member0_cert.pem"),
               "encryption_public_key": common.join("member0_enc_pubk.pem")}]})
    };
    let hints = Hints { endpoints: endpoints_of(&app), app_dir: args.app.clone() };
    let node0_cert = args.workspace.join("node0").join("service_cert.pem");
    // A network that already ran needs a majority of its nodes to elect a primary, so all its
    // nodes start together; new ones join once node 0 serves.
    let resuming = node0_cert.exists();
    crate::runtime()?.block_on(async {
        let mut children = Vec::new();
        let result = supervise(&args, &common, (command, resuming), &node0_cert, (app, &hints), &mut children, dev.as_mut()).await;
        stop_children(children).await;
        result
    })
}

/// Starts the nodes (node 0 with `command`; the others with it when `resuming` a network that
/// ran, else once node 0 serves), opens the service with `app`, and runs until stopped.
async fn supervise(
    args: &SandboxArgs,
    common: &Path,
    (command, resuming): (Value, bool),
    node0_cert: &Path,
    (app, hints): (Value, &Hints),
    children: &mut Vec<Child>,
    mut dev: Option<&mut crate::dev::Watch>,
) -> Result<(), String> {
    // Caught from now on: a stop asked for while the network starts ends it once it has started,
    // with its nodes stopped, rather than killing the sandbox and orphaning them.
    let shutdown = crate::shutdown_signal();
    children.push(spawn_node(args, 0, command)?);
    if resuming {
        for i in 1..args.nodes {
            children.push(spawn_node(args, i, join_command(args, node0_cert))?);
        }
    }
    let url = format!("https://127.0.0.1:{}", args.rpc_port);
    let service_cert = wait_for_node0(&url, node0_cert, &mut children[0]).await?;
    let cert_path = common.join("service_cert.pem");
    std::fs::write(&cert_path, &service_cert).map_err(|e| format!("writing {}: {e}", cert_path.display()))?;
    if !resuming {
        for i in 1..args.nodes {
            children.push(spawn_node(args, i, join_command(args, node0_cert))?);
        }
    }
    wait_for_voters(&url, &service_cert, usize::from(args.nodes)).await?;
    let member = gov_client::GovClient::new(&url, &service_cert, gov_client::load_signer(&common.join("member0"))?)?;
    open_recovered(&member, common, &service_cert).await.map_err(|e| format!("opening the recovered sandbox: {e}"))?;
    // A given app is deployed whenever the sandbox starts; the default one only with a new service.
    let app = (args.app.is_some() || member.service_status().await? != "Open").then_some(app);
    open_by_governance(&member, common, &service_cert, app).await.map_err(|e| format!("opening the sandbox by governance: {e}"))?;
    print_instructions(common, &url, children, hints);
    // Until Ctrl-C (or SIGTERM, caught since the sandbox started): a node that exits is
    // reported, and may be restarted by hand.
    tokio::pin!(shutdown);
    let mut running: Vec<bool> = children.iter().map(|_| true).collect();
    loop {
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        if let Some(watch) = dev.as_deref_mut() {
            watch.tick(&member).await;
        }
        for (c, up) in children.iter_mut().zip(running.iter_mut()) {
            if *up {
                if let Ok(Some(status)) = c.process.try_wait() {
                    *up = false;
                    println!("node {} exited ({status}); restart it with: consort start --config {}", c.index, c.config.display());
                }
            }
        }
    }
}

/// The configuration of node `i` (its directory `node<i>`, ports rpc-port + 2i and + 2i + 1).
fn node_config(args: &SandboxArgs, i: u16, command: Value) -> Result<Value, String> {
    let port = |k: u16| {
        args.rpc_port.checked_add(k).ok_or_else(|| format!("--rpc-port {} leaves no room for {} nodes", args.rpc_port, args.nodes))
    };
    Ok(json!({
        "rpc_address": format!("127.0.0.1:{}", port(2 * i)?),
        "node_address": format!("127.0.0.1:{}", port(2 * i + 1)?),
        "directory": args.workspace.join(format!("node{i}")),
        "ledger_signatures": {"delay_ms": args.signature_delay_ms},
        "ledger": {"sync": args.ledger_sync},
        // The sandbox is for developing: exceptions are logged and answered with their details.
        "js": {"isolation": args.js_isolation, "runtime_options": {"return_exception_details": true, "log_exception_details": true}},
        "logging": {"format": if args.json_logs { "json" } else { "text" }},
        "command": command,
    }))
}

fn join_command(args: &SandboxArgs, service_cert: &Path) -> Value {
    json!({"type": "join", "target_rpc_address": format!("127.0.0.1:{}", args.rpc_port), "service_certificate": service_cert})
}

/// Starts node `i` as a child process (it stops if the sandbox is gone); its configuration is
/// `node<i>.json` and its log `node<i>.log` in the workspace.
fn spawn_node(args: &SandboxArgs, i: u16, command: Value) -> Result<Child, String> {
    let config = node_config(args, i, command)?;
    let file = args.workspace.join(format!("node{i}.json"));
    std::fs::create_dir_all(&args.workspace).map_err(|e| format!("creating {}: {e}", args.workspace.display()))?;
    std::fs::write(&file, serde_json::to_string_pretty(&config).expect("JSON")).map_err(|e| format!("writing {}: {e}", file.display()))?;
    let log = args.workspace.join(format!("node{i}.log"));
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&log).map_err(|e| format!("opening {}: {e}", log.display()))?;
    let program = std::env::current_exe().map_err(|e| format!("locating the consort binary: {e}"))?;
    let process = tokio::process::Command::new(program)
        .args(["start", "--stop-with-parent", "--config"])
        .arg(&file)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting node {i}: {e}"))?;
    Ok(Child { index: i, process, config: file })
}

/// Waits until node 0 has written the service certificate and answers; its text.
async fn wait_for_node0(url: &str, cert: &Path, node0: &mut Child) -> Result<String, String> {
    let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
    loop {
        if let Ok(Some(status)) = node0.process.try_wait() {
            return Err(format!("node 0 exited ({status}); see node0.log in the workspace"));
        }
        if let Ok(pem) = std::fs::read_to_string(cert) {
            let answered = match reqwest::Certificate::from_pem(pem.as_bytes()) {
                Ok(ca) => match reqwest::Client::builder().tls_certs_only([ca]).timeout(Duration::from_secs(5)).build() {
                    Ok(http) => http.get(format!("{url}/node/state")).send().await.is_ok(),
                    Err(_) => false,
                },
                Err(_) => false,
            };
            if answered {
                return Ok(pem);
            }
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("node 0 did not serve within {JOIN_TIMEOUT:?}; see node0.log in the workspace"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Moves the lost sandbox's node directories (and their configurations and logs) to
/// `lost<N>/` in the workspace, and names node 0's ledger and snapshots, and the service
/// certificate, as what the new node 0 recovers from.
fn lose_nodes(workspace: &Path, common: &Path) -> Result<consort_node::config::RecoverConfig, String> {
    if !workspace.join("node0").join("ledger").is_dir() {
        return Err(format!("--recover: {} holds no node0/ledger to recover from", workspace.display()));
    }
    let lost = (1..).map(|n| workspace.join(format!("lost{n}"))).find(|d| !d.exists()).expect("an unused name");
    std::fs::create_dir_all(&lost).map_err(|e| format!("creating {}: {e}", lost.display()))?;
    let entries = std::fs::read_dir(workspace).map_err(|e| format!("{}: {e}", workspace.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        // What the sandbox made for node i: node<i>/, node<i>.json, node<i>.log.
        let stem = name.split('.').next().unwrap_or_default();
        let ours = stem.strip_prefix("node").is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()));
        if ours && matches!(name.strip_prefix(stem), Some("" | ".json" | ".log")) {
            std::fs::rename(entry.path(), lost.join(&name)).map_err(|e| format!("moving {name} to {}: {e}", lost.display()))?;
        }
    }
    let previous_cert = lost.join("service_cert.pem");
    std::fs::copy(common.join("service_cert.pem"), &previous_cert).map_err(|e| format!("keeping the previous service certificate: {e}"))?;
    let node0 = lost.join("node0");
    Ok(consort_node::config::RecoverConfig {
        previous_ledger: node0.join("ledger"),
        previous_snapshots: Some(node0.join("snapshots")).filter(|d| d.is_dir()),
        previous_service_identity: previous_cert,
    })
}

/// On a recovered service, what the members do: open it by proposal (naming the previous
/// identity), then submit member0's recovery share, and wait until the service is open.
async fn open_recovered(member: &gov_client::GovClient, common: &Path, service_cert: &str) -> Result<(), String> {
    let status = member.service_status().await?;
    if status != "Recovering" && status != "WaitingForRecoveryShares" {
        return Ok(());
    }
    if status == "Recovering" {
        let info = member.previous_service_identity().await?;
        let voted = member.propose_and_accept(vec![gov_client::actions::transition_service_to_open(service_cert, Some(&info))]).await?;
        if voted.body["proposalState"] != "Accepted" {
            return Err(format!("the proposal to open the recovered service was not accepted: {}", voted.body_text()));
        }
    }
    let key = std::fs::read_to_string(common.join("member0_enc_privk.pem")).map_err(|e| format!("member0's encryption key: {e}"))?;
    member.submit_recovery_share(&key).await?;
    let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
    while member.service_status().await? != "Open" {
        if tokio::time::Instant::now() > deadline {
            return Err(format!("the recovered service did not open in {JOIN_TIMEOUT:?} (see /node/state)"));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Waits until `/node/consensus` on node 0 shows `n` voters.
async fn wait_for_voters(url: &str, service_cert: &str, n: usize) -> Result<(), String> {
    if n == 1 {
        return Ok(());
    }
    let ca = reqwest::Certificate::from_pem(service_cert.as_bytes()).map_err(|e| format!("service certificate: {e}"))?;
    let http = reqwest::Client::builder().tls_certs_only([ca]).build().map_err(|e| format!("HTTPS client: {e}"))?;
    let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
    loop {
        let voters = match http.get(format!("{url}/node/consensus")).send().await {
            Ok(r) => r.json::<serde_json::Value>().await.ok().and_then(|v| v["voters"].as_array().map(Vec::len)).unwrap_or(0),
            Err(_) => 0,
        };
        if voters >= n {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("only {voters} of {n} nodes became voters in {JOIN_TIMEOUT:?} (see node<i>.log in the workspace)"));
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Stops every node the sandbox started (SIGTERM; Ctrl-C reached them already), waits for
/// them, and kills any that did not stop.
async fn stop_children(children: Vec<Child>) {
    for child in &children {
        if let Some(pid) = child.process.id() {
            let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        }
    }
    for mut child in children {
        if tokio::time::timeout(Duration::from_secs(10), child.process.wait()).await.is_err() {
            let _ = child.process.kill().await;
        }
    }
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
        actions.push(gov_client::actions::transition_service_to_open(service_cert, None));
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

/// What the closing lines suggest calling: the deployed app's endpoints (method, path) and the
/// directory it came from (None: the built-in logging sample).
struct Hints {
    endpoints: Vec<(String, String)>,
    app_dir: Option<PathBuf>,
}

/// The endpoints of a `set_js_app` action's bundle, as (upper-case method, path), sorted.
fn endpoints_of(set_js_app: &Value) -> Vec<(String, String)> {
    let Some(endpoints) = set_js_app["args"]["bundle"]["metadata"]["endpoints"].as_object() else { return Vec::new() };
    let mut all: Vec<(String, String)> = endpoints
        .iter()
        .flat_map(|(path, methods)| {
            methods.as_object().into_iter().flatten().map(move |(method, _)| (method.to_ascii_uppercase(), path.clone()))
        })
        .collect();
    all.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
    all
}

/// Whether an app serves every endpoint of the logging sample (the tour below is written for it).
fn serves_the_logging_sample(endpoints: &[(String, String)]) -> bool {
    let sample: Value = serde_json::from_str(LOGGING_SAMPLE_METADATA).unwrap_or_default();
    let sample = endpoints_of(&json!({"args": {"bundle": {"metadata": sample}}}));
    !sample.is_empty() && sample.iter().all(|e| endpoints.contains(e))
}

/// One call of each endpoint of an app that is not the logging sample, with user0's identity.
fn endpoint_calls(curl: &str, url: &str, endpoints: &[(String, String)]) -> Vec<String> {
    endpoints
        .iter()
        .map(|(method, path)| match method.as_str() {
            "GET" => format!("  {curl} '{url}/app{path}'"),
            "DELETE" | "HEAD" | "OPTIONS" => format!("  {curl} -X {method} '{url}/app{path}'"),
            _ => format!("  {curl} -X {method} '{url}/app{path}' -H 'content-type: application/json' --data '{{}}'"),
        })
        .collect()
}

fn print_instructions(common: &Path, url: &str, children: &[Child], hints: &Hints) {
    let c = common.display();
    let curl = format!("curl --cacert {c}/service_cert.pem --cert {c}/user0_cert.pem --key {c}/user0_privk.pem");
    println!("Consort sandbox is running at {url} (Ctrl-C to stop). Identities and the service certificate are in {c}/");
    for child in children {
        let pid = child.process.id().map_or("?".to_owned(), |p| p.to_string());
        println!("  node {} (pid {pid}): restart it with consort start --config {}", child.index, child.config.display());
    }
    if children.len() > 1 {
        println!("Any node answers (backups forward writes to the primary); kill one (kill -9 <pid>) to try a failover.");
    }
    if !serves_the_logging_sample(&hints.endpoints) {
        println!("Call the app as user0 (path parameters in braces are yours to fill; the app's OpenAPI: {url}/app/api):");
        endpoint_calls(&curl, url, &hints.endpoints).iter().for_each(|line| println!("{line}"));
        println!("  {curl} -i {url}/app/commit");
    } else {
        print_logging_tour(&curl, url, &c.to_string());
    }
    let app = hints.app_dir.as_deref().map_or("samples/logging".to_owned(), |d| d.display().to_string());
    println!("Govern it as member0 (`consort gov --help` lists the commands):");
    println!("  consort gov --url {url} --service-cert {c}/service_cert.pem --member {c}/member0 info");
    println!("  consort gov --url {url} --service-cert {c}/service_cert.pem --member {c}/member0 propose --set-js-app {app} --accept");
    println!("Or in a browser that trusts {c}/service_cert.pem as a certificate authority (README, \"The web console\"):");
    println!("  {url}/console");
    for child in children {
        if let Some(pid) = child.process.id() {
            println!("PID node{} {pid}", child.index);
        }
    }
    println!("READY {url}");
}

/// The logging sample's calls: writes, reads, a receipt and its offline check.
fn print_logging_tour(curl: &str, url: &str, c: &str) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app_with(endpoints: Value) -> Value {
        json!({"name": "set_js_app", "args": {"bundle": {"metadata": {"endpoints": endpoints}, "modules": []}}})
    }

    #[test]
    fn the_closing_lines_follow_the_deployed_apps_endpoints() {
        let notes = app_with(json!({"/notes/{id}": {"get": {}, "delete": {}}, "/notes": {"post": {}}}));
        let endpoints = endpoints_of(&notes);
        let pairs = |v: &[(&str, &str)]| v.iter().map(|(m, p)| ((*m).to_owned(), (*p).to_owned())).collect::<Vec<_>>();
        assert_eq!(endpoints, pairs(&[("POST", "/notes"), ("DELETE", "/notes/{id}"), ("GET", "/notes/{id}")]));
        assert!(!serves_the_logging_sample(&endpoints));
        assert_eq!(
            endpoint_calls("curl", "https://h", &endpoints),
            [
                "  curl -X POST 'https://h/app/notes' -H 'content-type: application/json' --data '{}'",
                "  curl -X DELETE 'https://h/app/notes/{id}'",
                "  curl 'https://h/app/notes/{id}'",
            ]
        );

        // The built-in sample, and an app that serves all of its endpoints and more, get its tour.
        let logging = logging_sample().expect("the sample");
        let mut more = endpoints_of(&logging);
        assert!(more.contains(&("POST".to_owned(), "/log/private".to_owned())), "{more:?}");
        assert!(serves_the_logging_sample(&more));
        more.push(("GET".to_owned(), "/extra".to_owned()));
        assert!(serves_the_logging_sample(&more));
        more.retain(|(_, path)| path != "/log/public");
        assert!(!serves_the_logging_sample(&more));
        assert!(endpoints_of(&json!({"name": "set_js_app"})).is_empty());
    }
}
