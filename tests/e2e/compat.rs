//! Issue 17: what CCF apps and clients expect of routing, errors and the `ccf` global, against
//! a real node running the compat test app.

use consort_tests::{eventually, repo_root, temp_workspace, Gov, Member, Sandbox};
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};

async fn call(c: &Client, method: Method, url: &str, headers: &[(&str, &str)]) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut req = c.request(method, url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.expect("request");
    let (status, h) = (r.status(), r.headers().clone());
    let text = r.text().await.expect("body");
    (status, h, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn allow(h: &reqwest::header::HeaderMap) -> &str {
    h.get("allow").and_then(|v| v.to_str().ok()).unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_as_ccf_routes() {
    let ws = temp_workspace("compat-routing");
    let s = Sandbox::start(&ws, Some(&repo_root().join("tests/apps/compat")));
    let c = s.client(Some("user0"));
    let get = async |path: &str| call(&c, Method::GET, &s.url(path), &[]).await;

    // The app's own /commit wins over the built-in one; /node/commit is still the built-in.
    assert_eq!(get("/app/commit").await.2, json!({"mine": true}));
    assert!(get("/node/commit").await.2["transaction_id"].is_string());
    // Other built-ins the app does not define still answer.
    assert_eq!(get("/app/api").await.0, StatusCode::OK);

    // request.route is the full template, /app included; parameters as they are in the path.
    let (status, _, body) = get("/app/echo/a%20b").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (&body["route"], &body["params"]["foo"], &body["path"]),
        (&json!("/app/echo/{foo}"), &json!("a%20b"), &json!("/app/echo/a%20b"))
    );
    // A parameter ended by a literal, as CCF's templates allow.
    let (status, _, body) = call(&c, Method::POST, &s.url("/app/jobs/42:cancel"), &[]).await;
    assert_eq!((status, &body["params"]["id"]), (StatusCode::OK, &json!("42")), "{body}");

    // A path that starts with none of /app, /gov, /node goes to the app.
    let (status, _, body) = get("/rootlevel").await;
    assert_eq!((status, &body["route"]), (StatusCode::OK, &json!("/app/rootlevel")), "{body}");
    let (status, _, body) = get("/elsewhere/nothing").await;
    assert_eq!((status, &body["error"]["code"]), (StatusCode::NOT_FOUND, &json!("ResourceNotFound")), "{body}");

    // Two templates matching one path: a 500 naming both, never a silent pick.
    let (status, _, body) = get("/app/x/y").await;
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(message.contains("/x/{a}") && message.contains("/{b}/y"), "{body}");
    assert_eq!(get("/app/x/z").await.2["route"], json!("/app/x/{a}"));

    // OPTIONS: 204 with Allow; another method: 405 with Allow. App, node and gov alike.
    let (status, h, _) = call(&c, Method::OPTIONS, &s.url("/app/only-post"), &[]).await;
    assert_eq!((status, allow(&h)), (StatusCode::NO_CONTENT, "OPTIONS, POST"));
    let (status, h, body) = get("/app/only-post").await;
    assert_eq!(
        (status, allow(&h), &body["error"]["code"]),
        (StatusCode::METHOD_NOT_ALLOWED, "OPTIONS, POST", &json!("UnsupportedHttpVerb"))
    );
    let (status, h, _) = call(&c, Method::DELETE, &s.url("/app/receipt"), &[]).await;
    assert_eq!((status, allow(&h)), (StatusCode::METHOD_NOT_ALLOWED, "OPTIONS, GET, HEAD"));
    let (status, h, _) = call(&c, Method::OPTIONS, &s.url("/node/commit"), &[]).await;
    assert_eq!((status, allow(&h)), (StatusCode::NO_CONTENT, "OPTIONS, GET, HEAD"));
    let (status, h, _) = call(&c, Method::PUT, &s.url("/node/join"), &[]).await;
    assert_eq!((status, allow(&h)), (StatusCode::METHOD_NOT_ALLOWED, "OPTIONS, POST"));
    let (status, h, _) = call(&c, Method::GET, &s.url("/gov/members/proposals:create?api-version=2024-07-01"), &[]).await;
    assert_eq!((status, allow(&h)), (StatusCode::METHOD_NOT_ALLOWED, "OPTIONS, POST"));
    let (status, h, _) = call(&c, Method::OPTIONS, &s.url("/gov/service/info"), &[]).await;
    assert_eq!((status, allow(&h)), (StatusCode::NO_CONTENT, "OPTIONS, GET"));
    assert_eq!(call(&c, Method::OPTIONS, &s.url("/app/nowhere"), &[]).await.0, StatusCode::NOT_FOUND);

    // Accept on a built-in JSON endpoint: 400 unparseable, 406 unsatisfiable, else JSON.
    let node_commit = s.url("/node/commit");
    let cases = [
        ("nonsense", StatusCode::BAD_REQUEST),
        ("text/html", StatusCode::NOT_ACCEPTABLE),
        ("text/html;q=0.9,image/jpeg;video/mpeg;q=0.8", StatusCode::NOT_ACCEPTABLE),
        ("*/*", StatusCode::OK),
        ("application/*", StatusCode::OK),
        ("application/json", StatusCode::OK),
        ("text/html;q=0.9,image/jpeg;video/mpeg;q=0.8,*/*;q=0.1", StatusCode::OK),
    ];
    for (accept, want) in cases {
        let (status, h, body) = call(&c, Method::GET, &node_commit, &[("accept", accept)]).await;
        assert_eq!(status, want, "Accept: {accept}: {body}");
        if want == StatusCode::OK {
            assert_eq!(h.get("content-type").and_then(|v| v.to_str().ok()), Some("application/json"));
        }
    }
    assert_eq!(call(&c, Method::GET, &s.url("/app/tx?transaction_id=2.1"), &[("accept", "text/html")]).await.0, StatusCode::NOT_ACCEPTABLE);
}

/// The sandbox's member0, to change the runtime options by governance.
fn sandbox_member(s: &Sandbox) -> Member {
    let read = |suffix: &str| std::fs::read_to_string(s.common().join(format!("member0_{suffix}.pem"))).expect("member0 identity");
    Member::from_pem(&read("privk"), &read("cert"))
}

async fn set_options(gov: &Gov, member: &Member, heap: u64, stack: u64, time: u64, details: bool) {
    let args = json!({"max_heap_bytes": heap, "max_stack_bytes": stack, "max_execution_time_ms": time,
        "log_exception_details": details, "return_exception_details": details, "max_cached_interpreters": 10});
    gov.pass(&[member], json!([{"name": "set_js_runtime_options", "args": args}])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_and_limits_in_ccf_shapes() {
    let ws = temp_workspace("compat-errors");
    let s = Sandbox::start(&ws, Some(&repo_root().join("tests/apps/compat")));
    let (gov, member) = (Gov::new(&s), sandbox_member(&s));
    let c = s.client(Some("user0"));
    let post = async |path: &str, body: Value| {
        let r = c.post(s.url(path)).json(&body).send().await.expect("post");
        let status = r.status();
        (status, r.json::<Value>().await.unwrap_or(Value::Null))
    };
    const THROWN: &str = "Exception thrown while executing.";
    const TOO_LONG: &str = "Operation took too long to complete.";
    let failed = |(status, body): (StatusCode, Value), message: &str, detail: Option<&str>| {
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
        assert_eq!((&body["error"]["code"], &body["error"]["message"]), (&json!("InternalError"), &json!(message)), "{body}");
        match detail {
            Some(d) => assert_eq!(
                (&body["error"]["details"][0]["code"], &body["error"]["details"][0]["message"]),
                (&json!("JSException"), &json!(d)),
                "{body}"
            ),
            None => assert!(body["error"].get("details").is_none(), "{body}"),
        }
    };

    // An exception (the sandbox returns exception details): CCF's message, the thrown error and
    // its trace in details.
    let (status, body) = call(&c, Method::GET, &s.url("/app/throw"), &[]).await.into_parts();
    failed((status, body.clone()), THROWN, Some("Error: boom from the handler"));
    assert!(body["error"]["details"][0]["trace"].as_str().is_some_and(|t| t.contains("compat.js:") && !t.contains("unknown")), "{body}");

    // Date is real time; the CCF 6 switches answer their previous setting.
    let (_, _, t) = call(&c, Method::GET, &s.url("/app/time"), &[]).await;
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as f64;
    assert!(t["before"].as_f64().is_some_and(|b| b > 1.7e12 && b <= now_ms), "{t}");
    assert_eq!((&t["switch"], &t["metrics"]), (&json!([false, true]), &json!([false, true])), "{t}");
    assert_eq!(t["refused"], "TypeError: First argument must be a boolean", "{t}");

    // Stack: a smaller stack overflows deeper recursion; one too small for any call fails at once.
    assert_eq!(post("/app/recursive", json!({"depth": 10})).await.0, StatusCode::OK);
    set_options(&gov, &member, 100 << 20, 512 << 10, 5000, true).await;
    failed(post("/app/recursive", json!({"depth": 100_000})).await, THROWN, Some("InternalError: stack overflow"));
    assert_eq!(post("/app/recursive", json!({"depth": 10})).await.0, StatusCode::OK);
    set_options(&gov, &member, 100 << 20, 100, 5000, true).await;
    failed(post("/app/recursive", json!({"depth": 1})).await, THROWN, Some("InternalError: stack overflow"));
    // Around the least stack Consort gives a context: an answer or a stack overflow, never a
    // crashed worker.
    for stack in [15 << 10, 16 << 10, 17 << 10, 24 << 10] {
        set_options(&gov, &member, 100 << 20, stack, 5000, true).await;
        let (status, body) = post("/app/recursive", json!({"depth": 4})).await;
        if status != StatusCode::OK {
            failed((status, body), THROWN, Some("InternalError: stack overflow"));
        }
    }

    // Heap: values CCF accepts are applied as given, however small.
    set_options(&gov, &member, 3 << 20, 1 << 20, 5000, true).await;
    failed(post("/app/alloc", json!({"size": 5 << 20})).await, THROWN, Some("InternalError: out of memory"));
    assert_eq!(post("/app/alloc", json!({"size": 1 << 10})).await.0, StatusCode::OK);
    set_options(&gov, &member, 100, 1 << 20, 5000, true).await;
    failed(post("/app/alloc", json!({"size": 1})).await, THROWN, Some("InternalError: out of memory"));

    // Time: a budget of 0 fails every request, as in CCF.
    set_options(&gov, &member, 100 << 20, 1 << 20, 30, true).await;
    failed(post("/app/sleep", json!({"time": 500})).await, TOO_LONG, Some("InternalError: interrupted"));
    set_options(&gov, &member, 100 << 20, 1 << 20, 0, true).await;
    failed(post("/app/sleep", json!({"time": 10})).await, TOO_LONG, Some("InternalError: interrupted"));

    // Without return_exception_details: CCF's messages, no details.
    set_options(&gov, &member, 100 << 20, 1 << 20, 5000, false).await;
    failed(call(&c, Method::GET, &s.url("/app/throw"), &[]).await.into_parts(), THROWN, None);
    assert_eq!(post("/app/sleep", json!({"time": 10})).await.0, StatusCode::OK);
}

trait IntoParts {
    fn into_parts(self) -> (StatusCode, Value);
}

impl IntoParts for (StatusCode, reqwest::header::HeaderMap, Value) {
    fn into_parts(self) -> (StatusCode, Value) {
        (self.0, self.2)
    }
}

/// A process the test started, stopped by PID however the test ends.
struct StoppedOnDrop(std::process::Child);

impl Drop for StoppedOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_deploys_the_logging_sample_and_runs_every_node_as_its_own_process() {
    let ws = temp_workspace("compat-sandbox");
    let port = consort_tests::cluster::free_ports(4);
    let s = Sandbox::start_with(&ws, None, port, &["--nodes", "2"]);
    // Without --app: the logging sample, so the curl lines the sandbox prints work as printed.
    let user = s.client(Some("user0"));
    let r = user.post(s.url("/app/log/private")).json(&json!({"id": 1, "msg": "a private message"})).send().await.expect("post");
    assert_eq!(r.status(), StatusCode::OK);
    // Every node is its own process, node 0 included, with its pid printed.
    let pids = s.node_pids();
    assert_eq!(pids.len(), 2, "{pids:?}");
    for pid in &pids {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("a running node");
        assert!(String::from_utf8_lossy(&cmdline).contains("start"), "node {pid} is a `consort start` process");
    }
    // Node 1 killed and restarted by hand with the command the sandbox printed: it serves again.
    let at1 = format!("https://127.0.0.1:{}", port + 2);
    let ok = std::process::Command::new("kill").args(["-KILL", &pids[1].to_string()]).status().expect("kill").success();
    assert!(ok);
    eventually("node 1 to be gone", async || std::net::TcpStream::connect(("127.0.0.1", port + 2)).is_err()).await;
    let log = std::fs::File::create(ws.join("node1-by-hand.log")).expect("log");
    let _node1 = StoppedOnDrop(
        std::process::Command::new(consort_tests::consort_bin())
            .args(["start", "--config"])
            .arg(ws.join("node1.json"))
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("restart node 1"),
    );
    eventually("node 1 to serve the write again", async || {
        let Ok(r) = user.get(format!("{at1}/app/log/private?id=1")).send().await else { return false };
        r.status() == StatusCode::OK && r.json::<Value>().await.is_ok_and(|v| v["msg"] == "a private message")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snp_attestation_reports_are_verified_as_ccf_verifies_them() {
    use base64::Engine;
    use consort_crypto::snp::fixture;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let ws = temp_workspace("compat-snp");
    let member = Member::create(&ws, "member0");
    // A chain made with test keys, its root trusted by this node's configuration (AMD's roots
    // are always trusted; a test chain's never is unless configured).
    let chip = [5u8; 64];
    let chain = fixture::chain((3, 0, 8, 115, None), chip, false);
    let stranger = fixture::chain((3, 0, 8, 115, None), chip, false);
    let mut config =
        consort_tests::cluster::node_config(&ws, "n0", json!({"type": "start", "members": [{"certificate": ws.join("member0_cert.pem")}]}));
    config["js"]["snp_trusted_roots"] = json!([{"product": "Milan", "fingerprint": chain.ark_fingerprint}]);
    let s = Sandbox::start_config(&ws, config);
    let service_cert = std::fs::read_to_string(s.common().join("service_cert.pem")).expect("service cert");
    Gov::new(&s).open_service(&member, &service_cert, vec![consort_tests::set_js_app(&repo_root().join("tests/apps/compat"))]).await;
    let c = s.client(None);
    let verify = async |report: &[u8], pem: &str, extra: Value| {
        let mut body = json!({"evidence": b64(report), "endorsements": b64(pem.as_bytes())});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let r = c.post(s.url("/app/snp")).json(&body).send().await.expect("snp");
        (r.status(), r.json::<Value>().await.expect("json"))
    };
    let mut report = fixture::report(fixture::milan_tcb(3, 0, 8, 115), chip);
    fixture::sign(&mut report, &chain.vcek);

    let (status, a) = verify(&report, &chain.pem, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{a}");
    assert_eq!(
        (&a["version"], &a["reported_tcb"], &a["measurement"]),
        (&json!(3), &json!("7308000000000003"), &json!("09".repeat(48))),
        "{a}"
    );
    assert_eq!(
        (&a["report_data"], &a["chip_id_bytes"], &a["signature_r_bytes"], &a["buffers"]),
        (&json!("07".repeat(64)), &json!(64), &json!(72), &json!(true))
    );
    assert_eq!(a["policy"], json!({"abi_minor": 0, "abi_major": 1, "smt": 1, "migrate_ma": 0, "debug": 0, "single_socket": 0}));
    assert_eq!((&a["flags"]["signing_key"], &a["plaform_info"]["smt_en"]), (&json!(0), &json!(0)));
    assert_eq!(verify(&report, &chain.pem, json!({"endorsed_tcb": "7308000000000003"})).await.0, StatusCode::OK);

    // Refusals: CCF's RangeErrors with CCF's words.
    let mut tampered = report.clone();
    tampered[0x90] ^= 1;
    let mut stranger_report = fixture::report(fixture::milan_tcb(3, 0, 8, 115), chip);
    fixture::sign(&mut stranger_report, &stranger.vcek);
    let refusals = [
        (tampered, chain.pem.clone(), json!({}), "Chip certificate (VCEK) did not sign this attestation"),
        (stranger_report, stranger.pem.clone(), json!({}), "The root of trust public key for this attestation was not the expected one"),
        (report.clone(), chain.pem.clone(), json!({"endorsed_tcb": "0000000000000000"}), "does not match reported TCB 7308000000000003"),
        (report[..100].to_vec(), chain.pem.clone(), json!({}), "not of expected size 1184: 100"),
        (report.clone(), chain.pem.clone(), json!({"uvm_endorsements": "AA=="}), "uvm_endorsements is not implemented"),
    ];
    for (r, pem, extra, why) in refusals {
        let (status, e) = verify(&r, &pem, extra).await;
        assert_eq!((status, &e["name"]), (StatusCode::BAD_REQUEST, &json!("RangeError")), "{why}: {e}");
        assert!(e["message"].as_str().is_some_and(|m| m.contains(why)), "{why}: {e}");
    }
}
