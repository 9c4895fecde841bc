//! A member's side of governance: sign requests as CCF's `ccf_cose_sign1` does and send them to
//! a node's `/gov` API. `consort gov` and the sandbox (which opens its service by proposal and
//! vote, as CCF's sandbox does) both use this.

use std::path::{Path, PathBuf};
use std::time::Duration;

use consort_crypto::{GovMessage, GovSigner};
use serde_json::{json, Value};

pub const API_VERSION: &str = "2024-07-01";

/// Right after a service starts there is no signature to acknowledge yet; `ack` retries this long.
const STATE_DIGEST_WAIT: Duration = Duration::from_secs(30);

/// The ballot `--accept` submits: CCF's usual "vote for" ballot.
pub const ACCEPT_BALLOT: &str = "export function vote (proposal, proposerId) { return true; }";
pub const REJECT_BALLOT: &str = "export function vote (proposal, proposerId) { return false; }";

/// What the service answered.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    /// The body as the user reads it: pretty JSON, or the text as sent.
    pub fn body_text(&self) -> String {
        match &self.body {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            v => serde_json::to_string_pretty(v).unwrap_or_default(),
        }
    }

    /// The answer itself if it is a success, else an error carrying it whole.
    pub fn success(self) -> Result<Answer, String> {
        if (200..300).contains(&self.status) {
            Ok(self)
        } else {
            Err(format!("the service answered {}: {}", self.status, self.body_text()))
        }
    }

    /// Prints the body on stdout (so it can be piped to jq) and the status on stderr.
    pub fn print(&self) {
        eprintln!("HTTP {}", self.status);
        let body = self.body_text();
        if !body.is_empty() {
            out!("{body}");
        }
    }
}

/// A member identity from `<prefix>_cert.pem` and `<prefix>_privk.pem` (as `consort keygen` and
/// CCF's keygenerator.sh write them).
pub fn load_signer(prefix: &Path) -> Result<GovSigner, String> {
    let cert = with_suffix(prefix, "_cert.pem");
    let key = with_suffix(prefix, "_privk.pem");
    let cert_pem = std::fs::read_to_string(&cert).map_err(|e| format!("reading {}: {e}", cert.display()))?;
    let key_pem = std::fs::read_to_string(&key).map_err(|e| format!("reading {}: {e}", key.display()))?;
    GovSigner::from_pem(&key_pem, &cert_pem).map_err(|e| format!("{} and {}: {e}", key.display(), cert.display()))
}

pub fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

pub struct GovClient {
    base: String,
    http: reqwest::Client,
    signer: GovSigner,
}

impl GovClient {
    /// A client of the service at `url` (https://host:port), trusting only `service_cert_pem`.
    pub fn new(url: &str, service_cert_pem: &str, signer: GovSigner) -> Result<GovClient, String> {
        let ca = reqwest::Certificate::from_pem(service_cert_pem.as_bytes()).map_err(|e| format!("service certificate: {e}"))?;
        let http = reqwest::Client::builder()
            .tls_certs_only([ca])
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| format!("HTTPS client: {e}"))?;
        Ok(GovClient { base: url.trim_end_matches('/').to_owned(), http, signer })
    }

    pub fn member_id(&self) -> &str {
        self.signer.id()
    }

    fn url(&self, path: &str) -> String {
        format!("{}/gov{path}?api-version={API_VERSION}", self.base)
    }

    async fn answer(r: Result<reqwest::Response, reqwest::Error>, url: &str) -> Result<Answer, String> {
        let r = r.map_err(|e| format!("{url}: {e}"))?;
        let status = r.status().as_u16();
        let text = r.text().await.map_err(|e| format!("{url}: reading the answer: {e}"))?;
        let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        Ok(Answer { status, body })
    }

    pub async fn get(&self, path: &str) -> Result<Answer, String> {
        let url = self.url(path);
        Self::answer(self.http.get(&url).send().await, &url).await
    }

    /// Signs `payload` as a `msg_type` request created now and POSTs it to `path`.
    pub async fn post(&self, path: &str, msg_type: &str, proposal_id: Option<&str>, payload: &[u8]) -> Result<Answer, String> {
        let created_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_err(|e| e.to_string())?.as_secs();
        let body = self
            .signer
            .sign(&GovMessage { msg_type, proposal_id, created_at }, payload)
            .map_err(|e| format!("signing the request: {e}"))?;
        let url = self.url(path);
        Self::answer(self.http.post(&url).header("content-type", "application/cose").body(body).send().await, &url).await
    }

    /// `state-digests/{me}:update` then `:ack`: an Accepted member becomes Active.
    pub async fn ack(&self) -> Result<Answer, String> {
        let id = self.member_id().to_owned();
        let deadline = tokio::time::Instant::now() + STATE_DIGEST_WAIT;
        let digest = loop {
            let a = self.post(&format!("/members/state-digests/{id}:update"), "state_digest", None, b"").await?;
            match a.status {
                200 => break a.body["stateDigest"].clone(),
                // No signature over the ledger yet (a service that just started).
                500 if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
                _ => return a.success(),
            }
        };
        let ack = serde_json::to_vec(&json!({"stateDigest": digest})).map_err(|e| e.to_string())?;
        self.post(&format!("/members/state-digests/{id}:ack"), "ack", None, &ack).await?.success()
    }

    pub async fn propose(&self, proposal: &Value) -> Result<Answer, String> {
        let body = serde_json::to_vec(proposal).map_err(|e| e.to_string())?;
        self.post("/members/proposals:create", "proposal", None, &body).await?.success()
    }

    /// What the proposal would write if it were accepted now; nothing is stored.
    pub async fn dry_run(&self, proposal: &Value) -> Result<Answer, String> {
        let body = serde_json::to_vec(proposal).map_err(|e| e.to_string())?;
        self.post("/members/proposals:dry-run", "proposal", None, &body).await?.success()
    }

    pub async fn vote(&self, proposal_id: &str, ballot: &str) -> Result<Answer, String> {
        let body = serde_json::to_vec(&json!({"ballot": ballot})).map_err(|e| e.to_string())?;
        let path = format!("/members/proposals/{proposal_id}/ballots/{}:submit", self.member_id());
        self.post(&path, "ballot", Some(proposal_id), &body).await?.success()
    }

    pub async fn withdraw(&self, proposal_id: &str) -> Result<Answer, String> {
        self.post(&format!("/members/proposals/{proposal_id}:withdraw"), "withdrawal", Some(proposal_id), b"").await?.success()
    }

    /// What CCF's `submit_recovery_share.sh` does: fetches this member's encrypted recovery
    /// share, decrypts it with the member's RSA key (`enc_private_pem`), and submits it.
    pub async fn submit_recovery_share(&self, enc_private_pem: &str) -> Result<Answer, String> {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let id = self.member_id().to_owned();
        let fetched = self.get(&format!("/recovery/encrypted-shares/{id}")).await?.success()?;
        let encrypted = fetched.body["encryptedShare"].as_str().ok_or("the answer has no encryptedShare")?;
        let encrypted = b64.decode(encrypted).map_err(|e| format!("encryptedShare: {e}"))?;
        let share = consort_crypto::recovery::decrypt_share(enc_private_pem, &encrypted)
            .map_err(|e| format!("decrypting the recovery share with the member's encryption key: {e}"))?;
        let body = serde_json::to_vec(&json!({"share": b64.encode(share)})).map_err(|e| e.to_string())?;
        self.post(&format!("/recovery/members/{id}:recover"), "recovery_share", None, &body).await?.success()
    }

    /// The identity of the service a recovered service recovers (`/node/service/previous_identity`).
    pub async fn previous_service_identity(&self) -> Result<String, String> {
        let url = format!("{}/node/service/previous_identity", self.base);
        let a = Self::answer(self.http.get(&url).send().await, &url).await?.success()?;
        a.body["previous_service_identity"].as_str().map(str::to_owned).ok_or_else(|| format!("{url}: no previous_service_identity"))
    }

    /// This member's status (Accepted, Active), as the service has it.
    pub async fn my_status(&self) -> Result<String, String> {
        let a = self.get(&format!("/service/members/{}", self.member_id())).await?.success()?;
        Ok(a.body["status"].as_str().unwrap_or_default().to_owned())
    }

    pub async fn service_status(&self) -> Result<String, String> {
        let a = self.get("/service/info").await?.success()?;
        Ok(a.body["status"].as_str().unwrap_or_default().to_owned())
    }

    /// Proposes `actions`, votes for them as this member, and returns the proposal's state
    /// after the vote.
    pub async fn propose_and_accept(&self, actions: Vec<Value>) -> Result<Answer, String> {
        let created = self.propose(&json!({ "actions": actions })).await?;
        let id = created.body["proposalId"].as_str().ok_or_else(|| format!("no proposalId in {}", created.body_text()))?.to_owned();
        self.vote(&id, ACCEPT_BALLOT).await
    }
}

/// The actions CCF's tooling builds for the common cases.
pub mod actions {
    use super::*;

    fn read(path: &Path) -> Result<String, String> {
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))
    }

    pub fn set_user(cert: &Path) -> Result<Value, String> {
        Ok(json!({"name": "set_user", "args": {"cert": read(cert)?}}))
    }

    pub fn set_member(cert: &Path) -> Result<Value, String> {
        Ok(json!({"name": "set_member", "args": {"cert": read(cert)?}}))
    }

    /// `remove_user` by id, or by the certificate file whose id it is.
    pub fn remove_user(cert_or_id: &str) -> Result<Value, String> {
        let path = Path::new(cert_or_id);
        let id = if path.is_file() {
            consort_crypto::ParsedCert::from_pem(&read(path)?).map_err(|e| format!("{cert_or_id}: {e}"))?.id()
        } else {
            cert_or_id.to_owned()
        };
        Ok(json!({"name": "remove_user", "args": {"user_id": id}}))
    }

    /// The app in `dir` (app.json and src/, or a bundle.json), checked as the node will check it.
    pub fn set_js_app(dir: &Path) -> Result<Value, String> {
        let bundle = consort_node::load_app(dir).map_err(|e| e.to_string())?;
        Ok(json!({"name": "set_js_app", "args": {"bundle": bundle.to_json(), "disable_bytecode_cache": false}}))
    }

    pub fn remove_js_app() -> Value {
        json!({"name": "remove_js_app", "args": {}})
    }

    /// Opens the service; for a recovered service, `previous_service_cert_pem` names the
    /// identity of the service it recovers.
    pub fn transition_service_to_open(service_cert_pem: &str, previous_service_cert_pem: Option<&str>) -> Value {
        let mut args = json!({"next_service_identity": service_cert_pem});
        if let Some(previous) = previous_service_cert_pem {
            args["previous_service_identity"] = json!(previous);
        }
        json!({"name": "transition_service_to_open", "args": args})
    }
}
