//! The governance flows over a constitution written in Rust: every proposal state change,
//! ballots, withdrawals, the replay window, state digests and acks, and the errors of each.

use std::sync::Mutex;

use consort_kv::{Store, Tx, SINGLETON_KEY};
use serde_json::{json, Value};

use super::*;
use consort_kv::names::COSE_RECENT_PROPOSALS;

/// Where the fake constitution's `apply` writes: proposal id → proposal.
const APPLIED: &str = "public:applied";
const CONSTITUTION_SOURCE: &str = "the constitution";

/// A constitution whose behaviour the proposal's text picks (words in it), and ballots whose
/// source is `yes`, `no` or `throw`. Records every call with its phase.
#[derive(Default)]
struct Fake {
    calls: Mutex<Vec<(String, Phase)>>,
}

fn failure(reason: &str) -> Failure {
    Failure { reason: reason.into(), trace: Some(format!("at {reason}")) }
}

impl Fake {
    fn calls(&self) -> Vec<(String, Phase)> {
        self.calls.lock().expect("calls").clone()
    }

    fn answer(tx: &mut Tx, source: &str, function: &str, args: &[Value]) -> Result<Value, Failure> {
        let proposal = args[0].as_str().expect("the proposal is text");
        let has = |word: &str| proposal.contains(word);
        if function == "vote" {
            assert_eq!(args[1], json!("m0"), "ballots see the proposer");
            return match source {
                "yes" => Ok(json!(true)),
                "no" => Ok(json!(false)),
                _ => Err(failure("ballot broke")),
            };
        }
        assert_eq!(source, CONSTITUTION_SOURCE, "{function} runs the stored constitution");
        match function {
            "validate" if has("throw-validate") => Err(failure("validate broke")),
            "validate" if has("odd-validate") => Ok(json!(3)),
            "validate" if has("invalid") => Ok(json!({"valid": false, "description": "no such action"})),
            "validate" => Ok(json!({"valid": true})),
            "resolve" if has("resolve-throws") => Err(failure("resolve broke")),
            "resolve" if has("resolve-odd") => Ok(json!("Maybe")),
            "resolve" if has("accept-now") => Ok(json!("Accepted")),
            "resolve" => {
                let votes = args[2].as_array().expect("votes");
                let count = |v: bool| votes.iter().filter(|b| b["vote"] == json!(v)).count();
                Ok(json!(if count(true) >= 2 {
                    "Accepted"
                } else if count(false) >= 2 {
                    "Rejected"
                } else {
                    "Open"
                }))
            }
            "apply" => {
                let id = args[1].as_str().expect("the proposal id");
                tx.put(APPLIED, id.as_bytes().to_vec(), proposal.as_bytes().to_vec());
                if has("apply-throws") {
                    return Err(failure("apply broke"));
                }
                Ok(Value::Null)
            }
            other => panic!("the engine called {other}"),
        }
    }
}

impl Constitution for Fake {
    fn run(
        &self,
        tx: &mut Tx,
        source: &str,
        function: &str,
        args: Vec<Value>,
        phase: Phase,
    ) -> impl Future<Output = Result<Value, Failure>> + Send {
        self.calls.lock().expect("calls").push((function.to_owned(), phase));
        std::future::ready(Fake::answer(tx, source, function, &args))
    }
}

/// A store with the constitution set, and its transaction.
fn governed() -> Tx {
    let mut tx = Store::default().begin();
    put_json(&mut tx, CONSTITUTION, &SINGLETON_KEY, &CONSTITUTION_SOURCE);
    tx
}

/// A checked request by `member`; `seed` makes its signature (digest) distinct.
fn request(member: &str, content: &str, proposal_id: Option<&str>, seed: u8) -> SignedRequest {
    SignedRequest {
        member_id: member.into(),
        msg_type: "proposal".into(),
        created_at: 1_000 + u64::from(seed),
        proposal_id: proposal_id.map(str::to_owned),
        content: content.as_bytes().to_vec(),
        envelope: vec![seed; 4],
        request_digest: [seed; 32],
    }
}

async fn propose(tx: &mut Tx, js: &Fake, text: &str, seed: u8) -> String {
    let view = create_proposal(tx, js, &request("m0", text, None, seed), b"state").await.expect("created");
    view["proposalId"].as_str().expect("id").to_owned()
}

async fn create(tx: &mut Tx, js: &Fake, text: &str, seed: u8) -> Result<Value, GovError> {
    create_proposal(tx, js, &request("m0", text, None, seed), b"state").await
}

async fn vote(tx: &mut Tx, js: &Fake, id: &str, member: &str, ballot: &str, seed: u8) -> Result<Value, GovError> {
    let body = json!({ "ballot": ballot }).to_string();
    submit_ballot(tx, js, &request(member, &body, Some(id), seed), id, member).await
}

fn info(tx: &mut Tx, id: &str) -> ProposalInfo {
    get_json(tx, PROPOSALS_INFO, id.as_bytes()).expect("recorded")
}

fn refused(r: Result<impl std::fmt::Debug, GovError>) -> (u16, &'static str, String) {
    let e = r.expect_err("refused");
    (e.status, e.code, e.message)
}

#[tokio::test]
async fn a_valid_proposal_opens_under_an_id_bound_to_the_state_read_and_the_request() {
    let (mut tx, js) = (governed(), Fake::default());
    let view = create_proposal(&mut tx, &js, &request("m0", "{\"actions\": []}", None, 1), b"state").await.expect("created");
    let id = view["proposalId"].as_str().expect("id").to_owned();
    let expected = hex::encode(Sha256::new().chain_update(b"state").chain_update([1u8; 32]).finalize());
    assert_eq!(id, expected);
    assert_eq!(view, json!({"proposalId": id, "proposerId": "m0", "proposalState": "Open", "ballotCount": 0}));
    assert_eq!(tx.get(PROPOSALS, id.as_bytes()).as_deref(), Some(&b"{\"actions\": []}"[..]));
    assert_eq!(info(&mut tx, &id).state, ProposalState::Open);
    assert_eq!(get_json::<Vec<u8>>(&mut tx, COSE_HISTORY, b"m0"), Some(vec![1; 4]), "the signed request is kept");
    assert_eq!(tx.size(COSE_RECENT_PROPOSALS), 1, "the submission is in the replay window");
    assert_eq!(js.calls(), [("validate".to_owned(), Phase::ReadOnly), ("resolve".to_owned(), Phase::ReadOnly)]);
    // The same text read at another state is another proposal.
    let other = create_proposal(&mut tx, &js, &request("m0", "{\"actions\": []}", None, 2), b"later").await.expect("created");
    assert_ne!(other["proposalId"], json!(id));
}

#[tokio::test]
async fn a_proposal_is_refused_when_validation_says_no_or_fails_or_it_replays() {
    let (mut tx, js) = (governed(), Fake::default());
    assert_eq!(
        refused(create(&mut tx, &js, "invalid", 1).await),
        (400, "ProposalFailedToValidate", "Proposal failed to validate: no such action".into())
    );
    assert_eq!(
        refused(create(&mut tx, &js, "odd-validate", 2).await),
        (500, "InternalError", "Validation failed to return an object".into())
    );
    let (status, code, message) = refused(create(&mut tx, &js, "throw-validate", 3).await);
    assert_eq!((status, code, message.as_str()), (500, "InternalError", "Failed to execute validation: validate broke"));
    create(&mut tx, &js, "fine", 4).await.expect("created");
    // The same request again, once the state it was read at has moved on.
    let replay = create_proposal(&mut tx, &js, &request("m0", "fine", None, 4), b"later").await;
    assert_eq!(refused(replay).1, "ProposalReplay");
    assert_eq!(refused(create(&mut tx, &js, "fine", 4).await).2, "Proposal ID collision.", "and at the same state");
    assert_eq!(refused(create(&mut tx, &js, "fine", 0).await).1, "ProposalCreatedTooLongAgo", "older than the window's median");
}

#[tokio::test]
async fn a_proposal_needs_a_constitution_and_text() {
    let js = Fake::default();
    let mut bare = Store::default().begin();
    let (status, code, _) = refused(create_proposal(&mut bare, &js, &request("m0", "x", None, 1), b"s").await);
    assert_eq!((status, code), (500, "InternalError"));
    let mut tx = governed();
    let mut req = request("m0", "", None, 2);
    req.content = vec![0xff, 0xfe];
    assert_eq!(refused(create_proposal(&mut tx, &js, &req, b"s").await).1, "InvalidInput");
    assert!(js.calls().is_empty(), "nothing ran");
}

#[tokio::test]
async fn ballots_accept_a_proposal_and_its_apply_keeps_its_writes() {
    let (mut tx, js) = (governed(), Fake::default());
    let id = propose(&mut tx, &js, "{}", 1).await;
    let view = vote(&mut tx, &js, &id, "m1", "yes", 2).await.expect("ballot");
    assert_eq!((view["proposalState"].clone(), view["ballotCount"].clone()), (json!("Open"), json!(1)));
    assert!(view.get("finalVotes").is_none(), "no final votes while open");
    assert!(tx.get(APPLIED, id.as_bytes()).is_none());
    let view = vote(&mut tx, &js, &id, "m2", "yes", 3).await.expect("ballot");
    assert_eq!(view["proposalState"], json!("Accepted"));
    assert_eq!(view["finalVotes"], json!({"m1": true, "m2": true}));
    assert_eq!(view["voteFailures"], json!({}));
    assert_eq!(tx.get(APPLIED, id.as_bytes()).as_deref(), Some(&b"{}"[..]), "apply's writes are kept");
    assert_eq!(info(&mut tx, &id).state, ProposalState::Accepted);
    assert_eq!(get_json::<Vec<u8>>(&mut tx, COSE_HISTORY, b"m2"), Some(vec![3; 4]));
    let calls = js.calls();
    assert_eq!(calls.last(), Some(&("apply".to_owned(), Phase::Apply)));
    assert!(calls[..calls.len() - 1].iter().all(|(_, phase)| *phase == Phase::ReadOnly), "{calls:?}");
    // Each resolution ran every ballot so far: 0, then 1, then 2.
    assert_eq!(calls.iter().filter(|(f, _)| f == "vote").count(), 3);
    assert_eq!(refused(vote(&mut tx, &js, &id, "m3", "yes", 4).await).1, "ProposalNotOpen");
}

#[tokio::test]
async fn ballots_reject_a_proposal_without_applying_it() {
    let (mut tx, js) = (governed(), Fake::default());
    let id = propose(&mut tx, &js, "{}", 1).await;
    vote(&mut tx, &js, &id, "m1", "no", 2).await.expect("ballot");
    let view = vote(&mut tx, &js, &id, "m2", "no", 3).await.expect("ballot");
    assert_eq!((view["proposalState"].clone(), view["finalVotes"].clone()), (json!("Rejected"), json!({"m1": false, "m2": false})));
    assert!(js.calls().iter().all(|(f, _)| f != "apply"));
    assert!(tx.get(APPLIED, id.as_bytes()).is_none());
}

#[tokio::test]
async fn a_ballot_that_fails_is_reported_when_the_proposal_closes() {
    let (mut tx, js) = (governed(), Fake::default());
    let id = propose(&mut tx, &js, "{}", 1).await;
    vote(&mut tx, &js, &id, "m1", "throw", 2).await.expect("a failing ballot is still cast");
    vote(&mut tx, &js, &id, "m2", "yes", 3).await.expect("ballot");
    let view = vote(&mut tx, &js, &id, "m3", "yes", 4).await.expect("ballot");
    assert_eq!(view["proposalState"], json!("Accepted"));
    assert_eq!(view["ballotCount"], json!(3));
    assert_eq!(view["finalVotes"], json!({"m2": true, "m3": true}), "a failed ballot is no vote");
    assert_eq!(view["voteFailures"], json!({"m1": {"reason": "ballot broke", "trace": "at ballot broke"}}));
}

#[tokio::test]
async fn ballots_are_checked_against_the_proposal_the_member_and_what_was_cast() {
    let (mut tx, js) = (governed(), Fake::default());
    let id = propose(&mut tx, &js, "{}", 1).await;
    let unknown = "ab".repeat(32);
    let (status, code, _) = refused(vote(&mut tx, &js, &unknown, "m1", "yes", 2).await);
    assert_eq!((status, code), (404, "ProposalNotFound"));
    // Signed for another proposal than the one in the path.
    let body = json!({"ballot": "yes"}).to_string();
    let (status, code, _) = refused(submit_ballot(&mut tx, &js, &request("m1", &body, Some(&unknown), 3), &id, "m1").await);
    assert_eq!((status, code), (400, "InvalidAuthenticationInfo"));
    // Signed by another member than the one in the path.
    let (status, code, message) = refused(submit_ballot(&mut tx, &js, &request("m1", &body, Some(&id), 4), &id, "m2").await);
    assert_eq!((status, code), (400, "InvalidAuthenticationInfo"));
    assert!(message.contains("(m2)") && message.contains("(m1)"), "{message}");
    let (status, code, _) = refused(submit_ballot(&mut tx, &js, &request("m1", "{\"vote\": 1}", Some(&id), 5), &id, "m1").await);
    assert_eq!((status, code), (400, "InvalidInput"));
    vote(&mut tx, &js, &id, "m1", "yes", 6).await.expect("ballot");
    let before = info(&mut tx, &id);
    let again = vote(&mut tx, &js, &id, "m1", "yes", 7).await.expect("the same ballot again is accepted");
    assert_eq!((again["ballotCount"].clone(), info(&mut tx, &id)), (json!(1), before));
    assert_eq!(refused(vote(&mut tx, &js, &id, "m1", "no", 8).await).1, "VoteAlreadyExists");
}

#[tokio::test]
async fn resolve_that_fails_or_answers_nonsense_fails_the_proposal() {
    let (mut tx, js) = (governed(), Fake::default());
    let id = propose(&mut tx, &js, "resolve-throws", 1).await;
    let failed = info(&mut tx, &id);
    assert_eq!(failed.state, ProposalState::Failed);
    assert_eq!(
        failed.failure,
        Some(Failure { reason: "Failed to resolve(): resolve broke".into(), trace: Some("at resolve broke".into()) })
    );
    let id = propose(&mut tx, &js, "resolve-odd", 2).await;
    let failed = info(&mut tx, &id);
    assert_eq!(failed.state, ProposalState::Failed);
    assert_eq!(failed.failure.map(|f| f.reason), Some("resolve() returned invalid status value: \"Maybe\"".into()));
    assert!(js.calls().iter().all(|(f, _)| f != "apply"));
}

#[tokio::test]
async fn an_apply_that_fails_leaves_none_of_its_writes() {
    let (mut tx, js) = (governed(), Fake::default());
    let id = propose(&mut tx, &js, "accept-now apply-throws", 1).await;
    let failed = info(&mut tx, &id);
    assert_eq!(failed.state, ProposalState::Failed);
    assert_eq!(failed.failure.map(|f| f.reason), Some("Failed to apply(): apply broke".into()));
    assert!(tx.get(APPLIED, id.as_bytes()).is_none(), "apply wrote before it threw: gone");
    let id = propose(&mut tx, &js, "accept-now", 2).await;
    assert_eq!(info(&mut tx, &id).state, ProposalState::Accepted);
    assert!(tx.get(APPLIED, id.as_bytes()).is_some());
}

#[tokio::test]
async fn only_the_proposer_withdraws_and_only_an_open_proposal() {
    let (mut tx, js) = (governed(), Fake::default());
    let id = propose(&mut tx, &js, "{}", 1).await;
    let withdrawal = |member: &str, id: &str, seed: u8| request(member, "", Some(id), seed);
    let (status, code, _) = refused(withdraw_proposal(&mut tx, &withdrawal("m1", &id, 2), &id));
    assert_eq!((status, code), (403, "AuthorizationFailed"));
    let (status, code, _) = refused(withdraw_proposal(&mut tx, &withdrawal("m0", "other", 3), &id));
    assert_eq!((status, code), (400, "InvalidAuthenticationInfo"));
    let view = withdraw_proposal(&mut tx, &withdrawal("m0", &id, 4), &id).expect("withdrawn").expect("known");
    assert_eq!(view["proposalState"], json!("Withdrawn"));
    let again = withdraw_proposal(&mut tx, &withdrawal("m0", &id, 5), &id).expect("idempotent").expect("known");
    assert_eq!(again["proposalState"], json!("Withdrawn"));
    assert_eq!(refused(vote(&mut tx, &js, &id, "m1", "yes", 6).await).1, "ProposalNotOpen");
    let unknown = "cd".repeat(32);
    assert_eq!(withdraw_proposal(&mut tx, &withdrawal("m0", &unknown, 7), &unknown).expect("unknown"), None);
    let accepted = propose(&mut tx, &js, "accept-now", 8).await;
    let (status, code, _) = refused(withdraw_proposal(&mut tx, &withdrawal("m0", &accepted, 9), &accepted));
    assert_eq!((status, code), (400, "ProposalNotOpen"));
}

#[tokio::test]
async fn a_closing_proposal_forgets_the_other_closed_ones_and_keeps_the_open_ones() {
    let (mut tx, js) = (governed(), Fake::default());
    let first = propose(&mut tx, &js, "accept-now", 1).await;
    let open = propose(&mut tx, &js, "{}", 2).await;
    assert!(tx.has(PROPOSALS_INFO, first.as_bytes()), "the last closed proposal stays");
    let last = propose(&mut tx, &js, "accept-now again", 3).await;
    assert!(!tx.has(PROPOSALS_INFO, first.as_bytes()) && !tx.has(PROPOSALS, first.as_bytes()), "forgotten");
    assert!(tx.has(PROPOSALS_INFO, open.as_bytes()) && tx.has(PROPOSALS, open.as_bytes()));
    assert_eq!(info(&mut tx, &last).state, ProposalState::Accepted);
    let view = withdraw_proposal(&mut tx, &request("m0", "", Some(&open), 4), &open).expect("withdrawn").expect("known");
    assert_eq!(view["proposalState"], json!("Withdrawn"));
    assert!(!tx.has(PROPOSALS_INFO, last.as_bytes()), "a withdrawal closes too");
}

#[tokio::test]
async fn a_member_acknowledges_the_digest_it_was_given_and_becomes_active() {
    let mut tx = governed();
    put_json(&mut tx, MEMBERS_INFO, b"m1", &json!({"status": "Accepted", "member_data": {"x": 1}}));
    let digest = |root: &str| json!({ "stateDigest": root }).to_string();
    let (status, code, _) = refused(ack_state_digest(&mut tx, &request("m1", &digest("aa"), None, 1), "m1"));
    assert_eq!((status, code), (403, "AuthorizationFailed"), "nothing to acknowledge yet");
    let (status, code, _) = refused(update_state_digest(&mut tx, &request("m1", "", None, 2), "m1", None));
    assert_eq!((status, code), (500, "InternalError"), "no signature yet");
    assert_eq!(refused(update_state_digest(&mut tx, &request("m1", "", None, 3), "m2", Some("aa".into()))).1, "InvalidAuthenticationInfo");
    let update = update_state_digest(&mut tx, &request("m1", "", None, 4), "m1", Some("aa".into())).expect("updated");
    assert_eq!(update, json!({"memberId": "m1", "stateDigest": "aa"}));
    let (status, code, message) = refused(ack_state_digest(&mut tx, &request("m1", &digest("bb"), None, 5), "m1"));
    assert_eq!((status, code), (400, "StateDigestMismatch"));
    assert!(message.contains("aa") && message.contains("bb"), "{message}");
    assert_eq!(refused(ack_state_digest(&mut tx, &request("m1", "[]", None, 6), "m1")).1, "InvalidInput");
    assert_eq!(refused(ack_state_digest(&mut tx, &request("m1", &digest("aa"), None, 7), "m2")).1, "InvalidAuthenticationInfo");
    let member = |tx: &mut Tx| get_json::<Value>(tx, MEMBERS_INFO, b"m1").expect("member");
    assert_eq!(member(&mut tx)["status"], json!("Accepted"), "refused acks change nothing");
    ack_state_digest(&mut tx, &request("m1", &digest("aa"), None, 8), "m1").expect("acknowledged");
    assert_eq!(member(&mut tx), json!({"status": "Active", "member_data": {"x": 1}}));
    let ack = get_json::<Value>(&mut tx, MEMBERS_ACKS, b"m1").expect("ack");
    assert_eq!((ack["state_digest"].clone(), ack["cose_sign1_req"].clone()), (json!("aa"), json!([8, 8, 8, 8])));
    // A member whose record is missing cannot become active.
    put_json(&mut tx, MEMBERS_ACKS, b"m9", &json!({"state_digest": "aa"}));
    assert_eq!(refused(ack_state_digest(&mut tx, &request("m9", &digest("aa"), None, 9), "m9")).0, 500);
}

#[tokio::test]
async fn a_dry_run_validates_applies_and_shows_the_writes_storing_nothing_of_the_proposal() {
    let (mut tx, js) = (governed(), Fake::default());
    let answer = dry_run_proposal(&mut tx, &js, &request("m0", "{}", None, 1), b"state").await.expect("dry-run");
    assert_eq!((&answer["valid"], &answer["applied"], &answer["failure"]), (&json!(true), &json!(true), &Value::Null));
    let writes = answer["writes"].as_array().expect("writes");
    assert_eq!(writes.len(), 2, "the constitution (set up by the test) and apply's write: {writes:?}");
    assert!(writes.iter().any(|w| w["table"] == APPLIED && w["new"] == json!({})), "{writes:?}");
    // It runs validate then apply, as create and an accepting ballot would, and stores no proposal,
    // no proposal info, no history, nothing in the replay window.
    assert_eq!(
        js.calls().iter().map(|(f, p)| (f.as_str(), *p)).collect::<Vec<_>>(),
        [("validate", Phase::ReadOnly), ("apply", Phase::Apply)]
    );
    for table in [PROPOSALS, PROPOSALS_INFO, COSE_HISTORY, COSE_RECENT_PROPOSALS] {
        assert!(tx.write_set().maps.get(table).is_none_or(|w| w.is_empty()), "{table} written");
    }

    // Refused as create refuses; an apply that throws is reported, with no writes.
    assert_eq!(
        refused(dry_run_proposal(&mut governed(), &js, &request("m0", "invalid", None, 2), b"state").await).1,
        "ProposalFailedToValidate"
    );
    assert_eq!(refused(dry_run_proposal(&mut governed(), &js, &request("m0", "odd-validate", None, 3), b"state").await).0, 500);
    let answer = dry_run_proposal(&mut governed(), &js, &request("m0", "apply-throws", None, 4), b"state").await.expect("dry-run");
    assert_eq!(
        (&answer["applied"], &answer["failure"]["reason"], &answer["writes"]),
        (&json!(false), &json!("Failed to apply(): apply broke"), &json!([]))
    );
}

#[tokio::test]
async fn an_accepted_proposal_that_changes_the_app_records_a_version() {
    let (mut tx, js) = (governed(), Fake::default());
    // The fake's apply writes only its own table: no version.
    propose(&mut tx, &js, "accept-now", 1).await;
    assert!(crate::app_versions::versions(&mut tx).is_empty());
    // One whose apply wrote the modules table (as set_js_app does): version 1, naming it.
    tx.put(consort_kv::names::MODULES, b"/app.js".to_vec(), b"export function f() {}".to_vec());
    let id = propose(&mut tx, &js, "accept-now", 2).await;
    let versions = crate::app_versions::versions(&mut tx);
    assert_eq!(versions.iter().map(|v| (v.version, v.proposal_id.as_str())).collect::<Vec<_>>(), [(1, id.as_str())]);
}
