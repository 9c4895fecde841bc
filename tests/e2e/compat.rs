//! Issue 17: what CCF apps and clients expect of routing, errors and the `ccf` global, against
//! a real node running the compat test app.

use consort_tests::{repo_root, temp_workspace, Sandbox};
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
