//! The replay window of proposals (`public:ccf.gov.cose_recent_proposals`), as CCF keeps it: the
//! most recent `window` submissions by `created_at`; a submission already in the window, or older
//! than the window's median, is refused.

use consort_kv::{Tx, SINGLETON_KEY};

use crate::GovError;
use consort_kv::names::{COSE_RECENT_PROPOSALS, SERVICE_CONFIG};

/// CCF's default window size.
pub const DEFAULT_WINDOW: usize = 100;
/// `created_at` is kept as ten decimal digits so that keys sort by time.
const CREATED_AT_MAX: u64 = 9_999_999_999;

fn window_size(tx: &mut Tx) -> usize {
    crate::get_json::<serde_json::Value>(tx, SERVICE_CONFIG, &SINGLETON_KEY)
        .and_then(|c| c.get("recent_cose_proposals_window_size").and_then(|w| w.as_u64()))
        .map_or(DEFAULT_WINDOW, |w| (w as usize).max(1))
}

/// Admits a proposal submission into the window, or says why it is refused.
pub fn admit(tx: &mut Tx, created_at: u64, request_digest: &[u8; 32], proposal_id: &str) -> Result<(), GovError> {
    if created_at > CREATED_AT_MAX {
        return Err(GovError::new(400, "InvalidCreatedAt", "Header parameter created_at value is too large"));
    }
    let key = format!("{created_at:0>10}:{}", hex::encode(request_digest));
    if let Some(existing) = crate::get_json::<String>(tx, COSE_RECENT_PROPOSALS, key.as_bytes()) {
        return Err(GovError::new(400, "ProposalReplay", format!("Proposal submission replay, already exists as proposal {existing}")));
    }
    let mut keys: Vec<String> =
        tx.entries(COSE_RECENT_PROPOSALS).into_iter().map(|(k, _)| String::from_utf8_lossy(&k).into_owned()).collect();
    keys.sort();
    if let Some(median) = keys.get(keys.len() / 2) {
        let min_created_at = median.split(':').next().unwrap_or_default();
        if key.as_str().split(':').next().unwrap_or_default() < min_created_at {
            return Err(GovError::new(
                400,
                "ProposalCreatedTooLongAgo",
                format!("Proposal created too long ago, created_at must be greater than {min_created_at}"),
            ));
        }
    }
    crate::put_json(tx, COSE_RECENT_PROPOSALS, key.as_bytes(), &proposal_id);
    let window = window_size(tx);
    // Keep the newest `window` entries, the new one included.
    let excess = (keys.len() + 1).saturating_sub(window);
    for old in keys.iter().take(excess) {
        tx.remove(COSE_RECENT_PROPOSALS, old.as_bytes().to_vec());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use consort_kv::Store;

    #[test]
    fn duplicates_and_submissions_older_than_the_median_are_refused_and_the_window_is_bounded() {
        let store = Store::default();
        let mut tx = store.begin();
        crate::put_json(&mut tx, SERVICE_CONFIG, &SINGLETON_KEY, &serde_json::json!({"recent_cose_proposals_window_size": 4}));
        for (i, t) in [100u64, 200, 300, 400, 500].into_iter().enumerate() {
            admit(&mut tx, t, &[i as u8; 32], &format!("p{i}")).expect("in order");
        }
        assert_eq!(tx.size(COSE_RECENT_PROPOSALS), 4, "the oldest left the window");
        let dup = admit(&mut tx, 500, &[4; 32], "again").expect_err("replay");
        assert_eq!((dup.code, dup.message.contains("p4")), ("ProposalReplay", true));
        // Window now 200..500: the median key is 400.
        let old = admit(&mut tx, 300, &[9; 32], "late").expect_err("too old");
        assert_eq!(old.code, "ProposalCreatedTooLongAgo");
        assert!(old.message.contains("0000000400"), "{}", old.message);
        admit(&mut tx, 400, &[10; 32], "same second as the median").expect("not older than the median");
        assert_eq!(admit(&mut tx, 10_000_000_000, &[11; 32], "x").expect_err("too large").code, "InvalidCreatedAt");
    }
}
