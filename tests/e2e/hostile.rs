//! Hostile scripts against a real node: each is answered with a 500 that names what stopped
//! it, and a client calling a well-behaved endpoint at the same time sees no failure.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use consort_tests::{open_node, repo_root, set_js_app, temp_workspace, Gov, Member, Sandbox};
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_scripts_never_take_the_node_down() {
    hostile_scripts_against("process").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_scripts_never_take_the_node_down_on_its_threads() {
    hostile_scripts_against("threads").await;
}

/// Every hostile script against a node running scripts with `js.isolation = isolation`.
async fn hostile_scripts_against(isolation: &str) {
    let ws = temp_workspace(&format!("hostile-{isolation}"));
    let js = json!({"workers": 2, "isolation": isolation,
        "runtime_options": {"max_execution_time_ms": 500, "max_heap_bytes": 64 * 1024 * 1024, "return_exception_details": true}});
    let (s, _) = open_node(&ws, json!({"js": js}), vec![set_js_app(&repo_root().join("tests/apps/hostile"))]).await;
    let client = s.client(None);
    let stop = Arc::new(AtomicBool::new(false));
    let bystander = {
        let (client, stop, url) = (client.clone(), stop.clone(), s.url("/app/ok"));
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                match client.post(&url).send().await {
                    Ok(r) if r.status() == StatusCode::OK => ok += 1,
                    Ok(r) => failed.push(format!("{} {}", r.status(), r.text().await.unwrap_or_default())),
                    Err(e) => failed.push(e.to_string()),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (ok, failed)
        })
    };
    let cases = [
        ("endless", "max_execution_time_ms"),
        ("spread", "max_execution_time_ms"),
        ("callbacks", "max_execution_time_ms"),
        ("recursion", "max_stack_bytes"),
        ("heap", "max_heap_bytes"),
        ("strings", "max_heap_bytes"),
        ("huge", "max_heap_bytes"),
        ("throwsNonError", "an Error"),
        // A structure nested past JSON.stringify's bound: a catchable RangeError now, no crash.
        ("crash", "RangeError: JSON.stringify"),
    ];
    for (name, expect) in cases {
        let r = client.post(s.url(&format!("/app/{name}"))).send().await.expect("answered");
        let status = r.status();
        let body: Value = r.json().await.expect("json error");
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{name}: {body}");
        assert_eq!(body["error"]["code"], "InternalError", "{name}");
        // CCF's message, then what the details say: the thrown value or the limit's words and
        // the limit it was (the sandbox returns exception details).
        let detail = &body["error"]["details"][0];
        let message = format!(
            "{} {} {}",
            body["error"]["message"].as_str().expect("message"),
            detail["message"].as_str().unwrap_or_default(),
            detail["trace"].as_str().unwrap_or_default()
        );
        // A heap bomb may run out of time first on a slow machine, and the deep case may not
        // finish building its structure within the time limit: either way a limit is honest.
        let may_time_out = expect == "max_heap_bytes" || name == "crash";
        let limit_hit = message.contains(expect) || (may_time_out && message.contains("max_execution_time_ms"));
        assert!(limit_hit, "{name}: {message} should mention {expect}");
    }
    let metrics: Value = client.get(s.url("/node/js_metrics")).send().await.expect("metrics").json().await.expect("json");
    assert_eq!(metrics["isolation"], isolation, "{metrics}");
    assert!(metrics["limit_stops"].as_u64() >= Some(6), "{metrics}");
    assert_eq!(metrics["max_execution_time"], 500);
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = bystander.await.expect("bystander");
    assert!(failed.is_empty(), "the concurrent client saw failures: {failed:?}");
    assert!(ok > 10, "the concurrent client was served ({ok} calls)");
    drop(s);
    let _ = std::fs::remove_dir_all(&ws);
}

/// A `set_js_app` action for one module whose top level is `source`.
fn app_running_at_load(source: &str) -> Value {
    json!({"name": "set_js_app", "args": {"bundle": {
        "metadata": {"endpoints": {"/x": {"get": {"js_module": "m.js", "js_function": "f", "authn_policies": [], "mode": "readonly"}}}},
        "modules": [{"name": "m.js", "module": format!("{source}\nexport function f() {{ return {{}}; }}")}],
    }}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_get_prompt_4xx_answers_and_change_nothing() {
    let ws = temp_workspace("bad-inputs");
    let s = Sandbox::start(&ws, Some(&repo_root().join("samples/logging")));
    let read = |suffix: &str| std::fs::read_to_string(s.common().join(format!("member0_{suffix}.pem"))).expect("member0 identity");
    let (gov, member) = (Gov::new(&s), Member::from_pem(&read("privk"), &read("cert")));
    let user = s.client(Some("user0"));

    // Invalid UTF-8 inside a JSON string is refused (the body is never silently changed).
    let mut body = br#"{"id": 7, "msg": "caf"#.to_vec();
    body.extend([0xC3, 0x28]);
    body.extend(br#""}"#);
    let r = user.post(s.url("/app/log/private")).header("content-type", "application/json").body(body).send().await.expect("post");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = user.get(s.url("/app/log/private?id=7")).send().await.expect("get");
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "nothing was written");

    // A malformed percent escape in the query is the client's error.
    let r = user.get(s.url("/app/log/private?id=%zz")).send().await.expect("get");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.expect("text").contains("malformed percent-encoding"));

    // A module that loops or allocates without end at its top level fails validation (400 at
    // the validation's own limit, not a 500 from the governance call's), and the app is unchanged.
    for source in ["while (true) {}", "const kept = []; while (true) kept.push(new Array(4096).fill(7));"] {
        let (status, body) = gov.propose(&member, json!([app_running_at_load(source)])).await;
        assert_eq!((status, &body["error"]["code"]), (StatusCode::BAD_REQUEST, &json!("ProposalFailedToValidate")), "{source}: {body}");
    }
    assert_eq!(user.get(s.url("/app/log/private/count")).send().await.expect("count").status(), StatusCode::OK, "the sample still serves");

    // A governance request dated in 2100 (or long ago) is refused, whatever the replay window says.
    let proposal = serde_json::to_vec(&json!({"actions": [{"name": "trigger_ledger_rekey"}]})).expect("json");
    for created_at in [4_102_444_800u64, 1_000_000_000] {
        let signed = member.sign_as(&member.id, "proposal", None, Some(created_at), &proposal);
        let (status, body, _) = gov.post("/members/proposals:create", signed).await;
        assert_eq!((status, &body["error"]["code"]), (StatusCode::BAD_REQUEST, &json!("InvalidCreatedAt")), "{created_at}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_connections_cannot_starve_well_behaved_clients() {
    let ws = temp_workspace("slow-connections");
    // A handshake deadline longer than the user's request timeout (30 s): without the eviction
    // of the oldest handshakes the user would wait for the attacker's to expire.
    let limits = json!({"connections_max": 48, "connections_soft_max": 40, "handshakes_max": 8, "tls_handshake_timeout_ms": 120_000});
    let (s, port) = open_node(&ws, json!({"limits": limits}), vec![]).await;

    // An attacker holds connections that send one byte now and then and never finish their TLS
    // handshake: far more than the node's slots, from the same address as the user.
    let attack = consort_tests::attack::trickle(port, 400, Duration::from_millis(100));
    consort_tests::eventually("the attacker to hold more connections than the node has slots", async || {
        attack.opened.load(Ordering::Relaxed) > 100
    })
    .await;
    // The user connects afresh for every request (each needs a handshake) and is served. The
    // node makes room for a new handshake by closing the oldest, and the attacker replaces
    // every connection closed: on a machine so loaded that eight of the attacker's connections
    // arrive while the user's handshake runs, the user's is the oldest and is closed too. A
    // user who tries again gets through; one whose every attempt fails is starved.
    let (mut served, mut resets) = (0, 0);
    for _ in 0..30 {
        for attempt in 1..=5 {
            let user = s.client(None);
            match user.get(s.url("/node/commit")).send().await {
                // Evicted handshakes give their slots back when their tasks next run: on a
                // loaded machine the user may arrive while the attacker's closed connections
                // still count past the soft cap, and is told at once to come back (503).
                Ok(r) if r.status() == StatusCode::SERVICE_UNAVAILABLE && attempt < 5 => {
                    let body: Value = r.json().await.expect("json");
                    assert_eq!(body["error"]["code"], "SessionCapExceeded", "{body}");
                    resets += 1;
                }
                Ok(r) => {
                    assert_eq!(r.status(), StatusCode::OK);
                    served += 1;
                    break;
                }
                // Closed during its handshake: as a connect error, or, in TLS 1.3, as a failed
                // send (the client's handshake ends when the server's Finished arrives and it
                // sends its own with the request; the node's ends when it reads that Finished,
                // so the node can still evict it as a handshake after the request left).
                Err(e) if attempt < 5 && !e.is_timeout() && (e.is_connect() || e.is_request()) => resets += 1,
                Err(e) => panic!("the user's request is not answered in {attempt} attempts: {e}"),
            }
        }
    }
    attack.stop();
    assert_eq!(served, 30, "({resets} attempts were closed during their handshake or told to come back)");

    // Past the soft cap a new connection gets one 503 and is closed; past the hard cap, closed.
    // (Connections of the attack may still be closing on the node's side: the cap is reached at
    // the 41st connection at the latest.)
    let mut sessions = Vec::new();
    let refused = loop {
        let c = s.client(None);
        let r = c.get(s.url("/node/commit")).send().await.expect("answered");
        if r.status() == StatusCode::SERVICE_UNAVAILABLE {
            break r;
        }
        assert_eq!(r.status(), StatusCode::OK);
        sessions.push(c);
        assert!(sessions.len() <= 40, "the soft cap (40) let {} sessions in", sessions.len());
    };
    assert_eq!(refused.json::<Value>().await.expect("json")["error"]["code"], "SessionCapExceeded");
    drop(sessions);
}

/// With `connections_per_address_max`, one address cannot hold every connection: an attacker
/// on 127.0.0.2 keeps as many idle TLS sessions open as it can (finished handshakes, which no
/// eviction of handshakes frees), and a user on 127.0.0.1 still connects and is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_hold_every_connection() {
    let ws = temp_workspace("per-address");
    let limits = json!({"connections_max": 24, "connections_soft_max": 24, "handshakes_max": 8, "connections_per_address_max": 10});
    let (s, _) = open_node(&ws, json!({"limits": limits}), vec![]).await;
    let attacker = |_| {
        let ca = std::fs::read(s.common().join("service_cert.pem")).expect("service cert");
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&ca).expect("ca")])
            .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
            .build()
            .expect("client")
    };
    // Each client keeps its session open after its request (keep-alive).
    let sessions: Vec<reqwest::Client> = (0..30).map(attacker).collect();
    let mut served = 0;
    for c in &sessions {
        if c.get(s.url("/node/commit")).send().await.is_ok_and(|r| r.status() == StatusCode::OK) {
            served += 1;
        }
    }
    assert_eq!(served, 10, "the attacker's address gets its share of the connections and no more");
    // More than the node's connections were asked for; a user from another address is served.
    for _ in 0..10 {
        let r = s.client(None).get(s.url("/node/commit")).send().await.expect("the user's request is answered");
        assert_eq!(r.status(), StatusCode::OK);
    }
    drop(sessions);
}
