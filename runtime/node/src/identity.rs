//! The node's key material on disk: created on first start, read back on restart.

use std::path::Path;

use consort_crypto::{endorse_node_cert, node_id_of_public_key, self_signed_service_cert, LedgerSecret, NodeKey};

pub struct NodeIdentity {
    pub node_key: NodeKey,
    pub node_cert_pem: String,
    pub node_id: String,
    pub service_cert_pem: String,
    pub ledger_secret: LedgerSecret,
}

const NODE_KEY: &str = "node_privk.pem";
const NODE_CERT: &str = "node_cert.pem";
const SERVICE_KEY: &str = "service_privk.pem";
const SERVICE_CERT: &str = "service_cert.pem";
const LEDGER_SECRET: &str = "ledger_secret";

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
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let service_key = NodeKey::generate();
        let service_cert_pem = self_signed_service_cert(&service_key, "Consort Service").map_err(|e| e.to_string())?;
        let node_key = NodeKey::generate();
        let node_cert_pem = endorse_node_cert(&node_key.public_key_der(), "Consort Node", hostnames, &service_cert_pem, &service_key)
            .map_err(|e| e.to_string())?;
        let ledger_secret = LedgerSecret::generate();
        write_private(&dir.join(SERVICE_KEY), service_key.to_pem().as_bytes())?;
        write_private(&dir.join(SERVICE_CERT), service_cert_pem.as_bytes())?;
        write_private(&dir.join(LEDGER_SECRET), hex::encode(ledger_secret.as_bytes()).as_bytes())?;
        write_private(&dir.join(NODE_CERT), node_cert_pem.as_bytes())?;
        // Written last: its presence means the identity is complete.
        write_private(&dir.join(NODE_KEY), node_key.to_pem().as_bytes())?;
        let node_id = node_id_of_public_key(&node_key.public_key_der());
        Ok(NodeIdentity { node_key, node_cert_pem, node_id, service_cert_pem, ledger_secret })
    }

    pub fn load(dir: &Path) -> Result<NodeIdentity, String> {
        let node_key = NodeKey::from_pem(&read(dir, NODE_KEY)?).map_err(|e| format!("{NODE_KEY}: {e}"))?;
        let secret_hex = read(dir, LEDGER_SECRET)?;
        let secret: [u8; 32] = hex::decode(secret_hex.trim())
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| format!("{LEDGER_SECRET}: not 32 hex bytes"))?;
        let node_id = node_id_of_public_key(&node_key.public_key_der());
        Ok(NodeIdentity {
            node_key,
            node_cert_pem: read(dir, NODE_CERT)?,
            node_id,
            service_cert_pem: read(dir, SERVICE_CERT)?,
            ledger_secret: LedgerSecret::from_bytes(secret),
        })
    }
}
