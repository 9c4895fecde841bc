//! The node's key material on disk: created on first start, read back on restart.

use std::path::Path;

use consort_crypto::{endorse_node_cert, node_id_of_public_key, self_signed_service_cert, LedgerSecret, NodeKey};

pub struct NodeIdentity {
    pub node_key: NodeKey,
    pub node_cert_pem: String,
    pub node_id: String,
    pub service_cert_pem: String,
    /// The service identity's key: every trusted node holds it, so that whichever is primary
    /// can endorse joining nodes.
    pub service_key: NodeKey,
    pub ledger_secret: LedgerSecret,
    /// Secrets of rekeys that happened before this node joined (given at join).
    pub later_ledger_secrets: Vec<(u64, LedgerSecret)>,
}

/// What a trusted node receives when it joins: everything [`NodeIdentity`] holds but its key.
pub struct JoinGrant {
    pub node_cert_pem: String,
    pub service_key_pem: String,
    pub ledger_secret: LedgerSecret,
    pub later_ledger_secrets: Vec<(u64, LedgerSecret)>,
}

const NODE_KEY: &str = "node_privk.pem";
const NODE_CERT: &str = "node_cert.pem";
const SERVICE_KEY: &str = "service_privk.pem";
const SERVICE_CERT: &str = "service_cert.pem";
const LEDGER_SECRET: &str = "ledger_secret";
const LATER_LEDGER_SECRETS: &str = "ledger_secrets_at_join.json";

fn write_private(path: &Path, contents: &[u8]) -> Result<(), String> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path).map_err(|e| format!("creating {}: {e}", path.display()))?;
    f.write_all(contents).and_then(|_| f.sync_all()).map_err(|e| format!("writing {}: {e}", path.display()))
}

fn read(dir: &Path, name: &str) -> Result<String, String> {
    std::fs::read_to_string(dir.join(name)).map_err(|e| format!("reading {}: {e}", dir.join(name).display()))
}

impl NodeIdentity {
    /// Whether `dir` already holds a node (then the node resumes instead of starting afresh).
    pub fn exists(dir: &Path) -> bool {
        dir.join(NODE_KEY).exists()
    }

    /// Creates a service identity, a node key and its endorsed certificate, and a ledger secret.
    pub fn create(dir: &Path, hostnames: &[String]) -> Result<NodeIdentity, String> {
        let identity = NodeIdentity::generate(hostnames)?;
        identity.save(dir)?;
        Ok(identity)
    }

    /// A new service identity and node, in memory only ([`NodeIdentity::save`] writes it).
    pub fn generate(hostnames: &[String]) -> Result<NodeIdentity, String> {
        let service_key = NodeKey::generate();
        let service_cert_pem = self_signed_service_cert(&service_key, "Consort Service").map_err(|e| e.to_string())?;
        let node_key = NodeKey::generate();
        let node_cert_pem = endorse_node_cert(&node_key.public_key_der(), "Consort Node", hostnames, &service_cert_pem, &service_key)
            .map_err(|e| e.to_string())?;
        let node_id = node_id_of_public_key(&node_key.public_key_der());
        Ok(NodeIdentity {
            node_key,
            node_cert_pem,
            node_id,
            service_cert_pem,
            service_key,
            ledger_secret: LedgerSecret::generate(),
            later_ledger_secrets: Vec::new(),
        })
    }

    /// Writes a service founder's identity to `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        write_private(&dir.join(SERVICE_KEY), self.service_key.to_pem().as_bytes())?;
        write_private(&dir.join(SERVICE_CERT), self.service_cert_pem.as_bytes())?;
        write_private(&dir.join(LEDGER_SECRET), hex::encode(self.ledger_secret.as_bytes()).as_bytes())?;
        write_private(&dir.join(NODE_CERT), self.node_cert_pem.as_bytes())?;
        // Written last: its presence means the identity is complete.
        write_private(&dir.join(NODE_KEY), self.node_key.to_pem().as_bytes())
    }

    /// Writes what a joining node was granted next to its own key, and returns its identity.
    pub fn create_joined(dir: &Path, node_key: NodeKey, service_cert_pem: &str, grant: JoinGrant) -> Result<NodeIdentity, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let service_key = NodeKey::from_pem(&grant.service_key_pem).map_err(|e| format!("the granted service key: {e}"))?;
        write_private(&dir.join(SERVICE_KEY), service_key.to_pem().as_bytes())?;
        write_private(&dir.join(SERVICE_CERT), service_cert_pem.as_bytes())?;
        write_private(&dir.join(LEDGER_SECRET), hex::encode(grant.ledger_secret.as_bytes()).as_bytes())?;
        let later: Vec<(u64, String)> = grant.later_ledger_secrets.iter().map(|(from, s)| (*from, hex::encode(s.as_bytes()))).collect();
        write_private(&dir.join(LATER_LEDGER_SECRETS), serde_json::to_string(&later).expect("pairs serialise").as_bytes())?;
        write_private(&dir.join(NODE_CERT), grant.node_cert_pem.as_bytes())?;
        write_private(&dir.join(NODE_KEY), node_key.to_pem().as_bytes())?;
        let node_id = node_id_of_public_key(&node_key.public_key_der());
        Ok(NodeIdentity {
            node_key,
            node_cert_pem: grant.node_cert_pem,
            node_id,
            service_cert_pem: service_cert_pem.to_owned(),
            service_key,
            ledger_secret: grant.ledger_secret,
            later_ledger_secrets: grant.later_ledger_secrets,
        })
    }

    pub fn load(dir: &Path) -> Result<NodeIdentity, String> {
        let node_key = NodeKey::from_pem(&read(dir, NODE_KEY)?).map_err(|e| format!("{NODE_KEY}: {e}"))?;
        let secret_hex = read(dir, LEDGER_SECRET)?;
        let secret: [u8; 32] = hex::decode(secret_hex.trim())
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| format!("{LEDGER_SECRET}: not 32 hex bytes"))?;
        let node_id = node_id_of_public_key(&node_key.public_key_der());
        let later_ledger_secrets = match std::fs::read_to_string(dir.join(LATER_LEDGER_SECRETS)) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| e.to_string())
                .and_then(secrets_from_hex)
                .map_err(|e| format!("{LATER_LEDGER_SECRETS}: {e}"))?,
            Err(_) => Vec::new(),
        };
        Ok(NodeIdentity {
            node_key,
            node_cert_pem: read(dir, NODE_CERT)?,
            node_id,
            service_cert_pem: read(dir, SERVICE_CERT)?,
            service_key: NodeKey::from_pem(&read(dir, SERVICE_KEY)?).map_err(|e| format!("{SERVICE_KEY}: {e}"))?,
            ledger_secret: LedgerSecret::from_bytes(secret),
            later_ledger_secrets,
        })
    }
}

/// `[(first seqno, "hex secret"), ...]`, as written at join and sent in join answers.
pub fn secrets_from_hex(pairs: Vec<(u64, String)>) -> Result<Vec<(u64, LedgerSecret)>, String> {
    pairs
        .into_iter()
        .map(|(from, h)| {
            let raw: [u8; 32] = hex::decode(h.trim()).ok().and_then(|v| v.try_into().ok()).ok_or("a secret is not 32 hex bytes")?;
            Ok((from, LedgerSecret::from_bytes(raw)))
        })
        .collect()
}
