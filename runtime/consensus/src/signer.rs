//! Signature transactions: every `signature_tx_count` applied entries or `signature_delay_ms`,
//! whichever comes first, the primary signs the Merkle root of everything applied so far.

use std::sync::Weak;
use std::time::Duration;

use base64::Engine;
use consort_ledger::SignatureRecord;
use tokio::time::{sleep_until, Instant};

use crate::handle::Consensus;
use crate::types::{Proposal, ProposalKind};

pub async fn run(consensus: Weak<Consensus>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let (mut applied, delay, count) = match consensus.upgrade() {
        Some(c) => (c.applied_watch(), Duration::from_millis(c.config.signature_delay_ms.max(1)), c.config.signature_tx_count.max(1)),
        None => return,
    };
    let mut deadline = Instant::now() + delay;
    loop {
        tokio::select! {
            changed = applied.changed() => if changed.is_err() { return },
            _ = sleep_until(deadline) => {},
            _ = stop.wait_for(|s| *s) => return,
        }
        let Some(c) = consensus.upgrade() else { return };
        let (unsigned, covered, record) = {
            let ledger = c.ledger();
            let covered = ledger.last_applied.seqno;
            let unsigned = ledger.unsigned();
            let record = ledger.root_at(covered).ok().map(|root| (root, ledger.view_of(covered).unwrap_or(0)));
            (unsigned, covered, record)
        };
        let due = unsigned >= count || (unsigned > 0 && Instant::now() >= deadline);
        if Instant::now() >= deadline {
            deadline = Instant::now() + delay;
        }
        if !due || !c.is_primary() {
            continue;
        }
        let Some((root, view)) = record else { continue };
        let record = SignatureRecord {
            sig: base64::engine::general_purpose::STANDARD.encode(c.config.node_key.sign(&root)),
            node: c.config.node_id.clone(),
            view,
            seqno: covered,
            root: hex::encode(root),
            cert: c.config.node_cert_pem.clone(),
        };
        let public = serde_json::to_vec(&record).expect("signature record serialises");
        let proposal =
            Proposal { kind: ProposalKind::Signature, claims_digest: [0; 32], public, private: Vec::new(), app: None, inputs: Vec::new() };
        if let Err(e) = c.submit(proposal).await {
            tracing::warn!("signature transaction failed: {e}");
        }
        deadline = Instant::now() + delay;
    }
}
