use std::sync::Arc;

use base64::Engine;
use consort_kv::{State, TxId};

use super::*;

struct Member {
    id: String,
    private_pem: String,
}

/// A state with `roles.len()` active members (`None`: no encryption key) and a threshold.
fn service(roles: &[Option<&str>], threshold: Option<u8>) -> (State, Vec<Member>) {
    let mut state = State::default();
    let mut tx = Tx::new(Arc::new(state.clone()));
    let mut members = Vec::new();
    for (i, role) in roles.iter().enumerate() {
        let id = format!("{i:064x}");
        let mut info = serde_json::json!({"status": "Active", "member_data": null});
        let mut private_pem = String::new();
        if let Some(role) = role {
            let (private, public) = consort_crypto::recovery::generate_encryption_key().expect("keygen");
            tx.put(MEMBERS_ENCRYPTION_KEYS, id.clone().into_bytes(), public.into_bytes());
            info["recovery_role"] = serde_json::json!(role);
            private_pem = private;
        }
        put_json(&mut tx, MEMBERS_INFO, id.as_bytes(), &info);
        members.push(Member { id, private_pem });
    }
    if let Some(t) = threshold {
        put_json(&mut tx, SERVICE_CONFIG, &SINGLETON_KEY, &serde_json::json!({"recovery_threshold": t}));
    }
    state.apply(TxId::new(1, 1), tx.write_set());
    (state, members)
}

fn commit(state: &mut State, tx: Tx, seqno: u64) {
    state.apply(TxId::new(2, seqno), tx.write_set());
}

fn secrets() -> Vec<RecoverySecret> {
    vec![
        RecoverySecret { from: Some(0), secret: LedgerSecret::generate() },
        RecoverySecret { from: Some(7), secret: LedgerSecret::generate() },
        RecoverySecret { from: None, secret: LedgerSecret::generate() },
    ]
}

/// The member's share as it would submit it: decrypted, as `{"share": base64}`.
fn payload(state: &State, m: &Member) -> Vec<u8> {
    let encrypted = encrypted_share(state, &m.id).expect("the member holds a share");
    let share = consort_crypto::recovery::decrypt_share(&m.private_pem, &encrypted).expect("decrypt");
    serde_json::to_vec(&serde_json::json!({"share": base64::engine::general_purpose::STANDARD.encode(share)})).expect("json")
}

fn waiting(state: &mut State, seqno: u64) {
    let mut tx = Tx::new(Arc::new(state.clone()));
    put_json(&mut tx, SERVICE_INFO, &SINGLETON_KEY, &serde_json::json!({"status": "WaitingForRecoveryShares"}));
    commit(state, tx, seqno);
}

#[test]
fn threshold_participants_or_one_owner_open_every_secret() {
    let (mut state, members) = service(&[Some("Participant"), Some("Participant"), Some("Owner"), None], Some(2));
    let issued = secrets();
    let mut tx = Tx::new(Arc::new(state.clone()));
    assert_eq!(issue_shares(&mut tx, &issued).expect("issue"), 3, "two participants and the owner");
    commit(&mut state, tx, 10);
    assert!(encrypted_share(&state, &members[3].id).is_none(), "a member without a recovery role holds no share");
    waiting(&mut state, 11);
    let expected: Vec<(u64, [u8; 32])> =
        vec![(0, *issued[0].secret.as_bytes()), (7, *issued[1].secret.as_bytes()), (11, *issued[2].secret.as_bytes())];
    let opened = |tx: &mut Tx| -> Vec<(u64, [u8; 32])> {
        combine_submitted(tx).expect("combine").into_iter().map(|(f, s)| (f, *s.as_bytes())).collect()
    };

    // Two participants: one is not enough, both are.
    let mut tx = Tx::new(Arc::new(state.clone()));
    let first = submit_share(&mut tx, &members[0].id, &payload(&state, &members[0])).expect("submit");
    assert_eq!((first.count, first.threshold, first.reached()), (1, 2, false));
    let again = submit_share(&mut tx, &members[0].id, &payload(&state, &members[0])).expect("submit again");
    assert_eq!(again.count, 1, "the same member twice counts once");
    assert!(combine_submitted(&mut tx).expect_err("one share").contains("1 of the 2"));
    let second = submit_share(&mut tx, &members[1].id, &payload(&state, &members[1])).expect("submit");
    assert!(second.reached());
    assert_eq!(opened(&mut tx), expected, "the rekey's secret applies after the record's transaction");

    // The owner alone.
    let mut tx = Tx::new(Arc::new(state.clone()));
    let owner = submit_share(&mut tx, &members[2].id, &payload(&state, &members[2])).expect("submit");
    assert!(owner.full_key && owner.reached());
    assert_eq!(opened(&mut tx), expected);
}

#[test]
fn shares_of_an_earlier_issue_or_another_member_do_not_open_the_secrets() {
    let (mut state, members) = service(&[Some("Participant"), Some("Participant")], Some(2));
    let mut tx = Tx::new(Arc::new(state.clone()));
    issue_shares(&mut tx, &secrets()).expect("issue");
    commit(&mut state, tx, 10);
    let old = payload(&state, &members[0]);
    let mut tx = Tx::new(Arc::new(state.clone()));
    issue_shares(&mut tx, &secrets()).expect("reissue");
    commit(&mut state, tx, 11);
    waiting(&mut state, 12);
    let mut tx = Tx::new(Arc::new(state.clone()));
    submit_share(&mut tx, &members[0].id, &old).expect("a well-formed share is accepted");
    assert!(submit_share(&mut tx, &members[1].id, &payload(&state, &members[1])).expect("submit").reached());
    assert!(combine_submitted(&mut tx).expect_err("stale share").contains("do not give the recovery key"));
}

#[test]
fn submissions_are_refused_unless_waiting_from_a_share_holder_with_a_share() {
    let (mut state, members) = service(&[Some("Participant"), None], None);
    let mut tx = Tx::new(Arc::new(state.clone()));
    issue_shares(&mut tx, &secrets()).expect("issue");
    commit(&mut state, tx, 10);
    let good = payload(&state, &members[0]);
    let mut tx = Tx::new(Arc::new(state.clone()));
    assert_eq!(submit_share(&mut tx, &members[0].id, &good).expect_err("not waiting").code, "ServiceNotWaitingForRecoveryShares");
    waiting(&mut state, 11);
    let mut tx = Tx::new(Arc::new(state.clone()));
    assert_eq!(submit_share(&mut tx, &members[1].id, &good).expect_err("no role").status, 403);
    for bad in [&b"{}"[..], b"not json", br#"{"share": "!!"}"#, br#"{"share": "AAAA"}"#] {
        assert_eq!(submit_share(&mut tx, &members[0].id, bad).expect_err("malformed").status, 400, "{}", String::from_utf8_lossy(bad));
    }
    assert!(!tx.write_set().maps.contains_key(SUBMITTED_SHARES), "refused shares are not recorded");
    let done = submit_share(&mut tx, &members[0].id, &good).expect("threshold 1 by default");
    assert!(done.reached());
    assert_eq!(combine_submitted(&mut tx).expect("combine").len(), 3);
}

#[test]
fn no_recovery_member_removes_the_shares_and_writes_that_matter_reissue() {
    let (mut state, members) = service(&[Some("Participant")], None);
    let mut tx = Tx::new(Arc::new(state.clone()));
    issue_shares(&mut tx, &secrets()).expect("issue");
    commit(&mut state, tx, 10);
    let mut tx = Tx::new(Arc::new(state.clone()));
    put_json(&mut tx, MEMBERS_INFO, members[0].id.as_bytes(), &serde_json::json!({"status": "Accepted"}));
    assert!(reissue_needed(tx.write_set()));
    assert_eq!(issue_shares(&mut tx, &secrets()).expect("issue"), 0);
    commit(&mut state, tx, 11);
    assert!(encrypted_share(&state, &members[0].id).is_none());
    assert!(state.get(RECOVERY_SECRETS, &SINGLETON_KEY).is_none());
    let mut tx = Tx::new(Arc::new(state.clone()));
    tx.put("public:app.data", b"k".to_vec(), b"v".to_vec());
    assert!(!reissue_needed(tx.write_set()));
    tx.put(consort_kv::RECOVERY_SHARES_REFRESH_REQUESTS, Vec::new(), vec![1]);
    assert!(reissue_needed(tx.write_set()));
}

#[test]
fn shares_round_trip_and_malformed_ones_are_refused() {
    for s in [Share::Part(vec![3; 33]), Share::Full([9; 32])] {
        assert_eq!(Share::decode(&s.encode()).expect("decode"), s);
    }
    for bad in [&[][..], &[1u8; 10], &[2u8; 10], &[3u8; 34]] {
        assert!(Share::decode(bad).is_err());
    }
}
