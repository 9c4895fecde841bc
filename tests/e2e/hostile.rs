//! Hostile scripts against a real node: each is answered with a 500 that names what stopped
//! it, and a client calling a well-behaved endpoint at the same time sees no failure.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use consort_tests::{repo_root, set_js_app, temp_workspace, Gov, Member, Sandbox};
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_scripts_never_take_the_node_down() {
    let ws = temp_workspace("hostile");
    let port = Sandbox::free_port();
    let dir = ws.join("node");
    let member = Member::create(&ws, "member0");
    let s = Sandbox::start_config(
        &ws,
        json!({
            "rpc_address": format!("127.0.0.1:{port}"),
            "node_address": format!("127.0.0.1:{}", Sandbox::free_port()),
            "directory": dir,
            "js": {"workers": 2, "runtime_options": {"max_execution_time_ms": 500, "max_heap_bytes": 64 * 1024 * 1024, "return_exception_details": true}},
            "command": {"type": "start", "members": [{"certificate": ws.join("member0_cert.pem")}]},
        }),
    );
    let service_cert = std::fs::read_to_string(dir.join("service_cert.pem")).expect("service cert");
    Gov::new(&s).open_service(&member, &service_cert, vec![set_js_app(&repo_root().join("tests/apps/hostile"))]).await;
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
        ("crash", "crashed its JS worker"),
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
        // A heap bomb may run out of time first on a slow machine, and the crash case may not
        // finish building its structure within the time limit: either way a limit is honest.
        let may_time_out = expect == "max_heap_bytes" || name == "crash";
        let limit_hit = message.contains(expect) || (may_time_out && message.contains("max_execution_time_ms"));
        assert!(limit_hit, "{name}: {message} should mention {expect}");
    }
    let metrics: Value = client.get(s.url("/node/js_metrics")).send().await.expect("metrics").json().await.expect("json");
    assert!(metrics["limit_stops"].as_u64() >= Some(6), "{metrics}");
    assert_eq!(metrics["max_execution_time"], 500);
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = bystander.await.expect("bystander");
    assert!(failed.is_empty(), "the concurrent client saw failures: {failed:?}");
    assert!(ok > 10, "the concurrent client was served ({ok} calls)");
    drop(s);
    let _ = std::fs::remove_dir_all(&ws);
}
