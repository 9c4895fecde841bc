//! `consort gov`: a member's commands. Each signs its request with the member's key, sends it,
//! prints the service's JSON answer on stdout (`HTTP <status>` on stderr) and fails on a refusal.

use std::path::PathBuf;

use clap::Subcommand;

use crate::gov_client;

#[derive(clap::Args)]
pub struct GovArgs {
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
pub enum GovCommand {
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
        /// rollback_js_app: deploy again the app of this version (`consort gov app-versions`).
        #[arg(long)]
        rollback_js_app: Option<u64>,
        /// transition_service_to_open, naming the --service-cert as the next service identity.
        #[arg(long)]
        open_service: bool,
        /// With --open-service on a recovered service: the certificate of the service it
        /// recovers (the previous service identity).
        #[arg(long, requires = "open_service")]
        previous_service_cert: Option<PathBuf>,
        /// Vote for the proposal right after creating it.
        #[arg(long, conflicts_with = "dry_run")]
        accept: bool,
        /// Do not propose: show what the proposal would write if it were accepted now.
        #[arg(long)]
        dry_run: bool,
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
    /// Fetch this member's recovery share, decrypt it and submit it to a recovering service
    /// (what CCF's submit_recovery_share.sh does).
    SubmitRecoveryShare {
        /// The member's RSA encryption private key; default: the --member prefix's
        /// `_enc_privk.pem`.
        #[arg(long)]
        enc_key: Option<PathBuf>,
    },
    /// List proposals.
    List,
    /// Show a proposal, with its actions.
    Show { proposal_id: String },
    /// Show the service's status, members and nodes.
    Info,
    /// List the app's versions (number, bundle digest, proposal, seqno); with a number, print
    /// that version's bundle.
    AppVersions { version: Option<u64> },
}

/// `consort gov ...`: prints each answer; fails if the service refused.
pub fn run(args: GovArgs) -> Result<(), String> {
    let cert = std::fs::read_to_string(&args.service_cert).map_err(|e| format!("reading {}: {e}", args.service_cert.display()))?;
    let client = gov_client::GovClient::new(&args.url, &cert, gov_client::load_signer(&args.member)?)?;
    crate::runtime()?.block_on(async {
        let answer = match args.command {
            GovCommand::Propose {
                file,
                set_user,
                remove_user,
                set_member,
                set_js_app,
                remove_js_app,
                rollback_js_app,
                open_service,
                previous_service_cert,
                accept,
                dry_run,
            } => {
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
                    actions.push(gov_client::actions::set_user(c)?);
                }
                for u in &remove_user {
                    actions.push(gov_client::actions::remove_user(u)?);
                }
                for c in &set_member {
                    actions.push(gov_client::actions::set_member(c)?);
                }
                if let Some(dir) = &set_js_app {
                    actions.push(gov_client::actions::set_js_app(dir)?);
                }
                if remove_js_app {
                    actions.push(gov_client::actions::remove_js_app());
                }
                if let Some(version) = rollback_js_app {
                    actions.push(serde_json::json!({"name": "rollback_js_app", "args": {"version": version}}));
                }
                if open_service {
                    let previous = match &previous_service_cert {
                        Some(p) => Some(std::fs::read_to_string(p).map_err(|e| format!("reading {}: {e}", p.display()))?),
                        None => None,
                    };
                    actions.push(gov_client::actions::transition_service_to_open(&cert, previous.as_deref()));
                }
                if actions.is_empty() {
                    return Err("nothing to propose: give a proposal file or at least one action flag".into());
                }
                if dry_run {
                    client.dry_run(&proposal).await?
                } else {
                    let created = client.propose(&proposal).await?;
                    if !accept {
                        created
                    } else {
                        created.print();
                        let id = created.body["proposalId"].as_str().ok_or("the answer has no proposalId")?.to_owned();
                        client.vote(&id, gov_client::ACCEPT_BALLOT).await?
                    }
                }
            }
            GovCommand::Vote { proposal_id, accept, reject, ballot } => {
                let ballot = match (accept, reject, ballot) {
                    (true, _, _) => gov_client::ACCEPT_BALLOT.to_owned(),
                    (_, true, _) => gov_client::REJECT_BALLOT.to_owned(),
                    (_, _, Some(f)) => std::fs::read_to_string(&f).map_err(|e| format!("reading {}: {e}", f.display()))?,
                    _ => return Err("say how to vote: --accept, --reject or --ballot FILE".into()),
                };
                client.vote(&proposal_id, &ballot).await?
            }
            GovCommand::Withdraw { proposal_id } => client.withdraw(&proposal_id).await?,
            GovCommand::Ack => client.ack().await?,
            GovCommand::SubmitRecoveryShare { enc_key } => {
                let path = enc_key.unwrap_or_else(|| gov_client::with_suffix(&args.member, "_enc_privk.pem"));
                let pem = std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
                client.submit_recovery_share(&pem).await?
            }
            GovCommand::List => client.get("/members/proposals").await?.success()?,
            GovCommand::Show { proposal_id } => {
                let info = client.get(&format!("/members/proposals/{proposal_id}")).await?.success()?;
                let actions = client.get(&format!("/members/proposals/{proposal_id}/actions")).await?.success()?;
                gov_client::Answer { status: info.status, body: serde_json::json!({"proposal": info.body, "actions": actions.body}) }
            }
            GovCommand::AppVersions { version: None } => client.get("/service/javascript-app/versions").await?.success()?,
            GovCommand::AppVersions { version: Some(n) } => {
                client.get(&format!("/service/javascript-app/versions/{n}")).await?.success()?
            }
            GovCommand::Info => {
                let mut all = serde_json::Map::new();
                for (name, path) in [("service", "/service/info"), ("members", "/service/members"), ("nodes", "/service/nodes")] {
                    all.insert(name.into(), client.get(path).await?.success()?.body);
                }
                gov_client::Answer { status: 200, body: serde_json::Value::Object(all) }
            }
        };
        answer.print();
        Ok(())
    })
}
