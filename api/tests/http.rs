//! The real HTTP server on port 0: authentication, roles, tenancy, limits.

mod common;

use common::{TestApp, code, field};
use serde_json::json;
use service::api_keys::Role;

const VIEWER: &str = "{ viewer { tenant { id name } role apiKeyId } }";
const KEYS: &str =
    "{ apiKeys(first: 200) { edges { node { id name role active } } pageInfo { hasNextPage } } }";
const CREATE_KEY: &str = "mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { apiKey { id role hint } secret } }";
const REVOKE_KEY: &str =
    "mutation($id: ID!) { revokeApiKey(input: {id: $id}) { apiKey { id active revokedAt } } }";

#[tokio::test]
async fn health_and_readiness_answer_without_a_key() {
    let app = TestApp::spawn().await;
    let healthz = reqwest::get(app.url("/healthz")).await.unwrap();
    assert_eq!(healthz.status(), 200);
    let readyz = reqwest::get(app.url("/readyz")).await.unwrap();
    assert_eq!(readyz.status(), 200);
    // GraphiQL is served on GET to a browser.
    let ide = reqwest::Client::new()
        .get(app.url("/graphql"))
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .unwrap();
    assert_eq!(ide.status(), 200);
    assert!(ide.text().await.unwrap().contains("graphiql"));
}

#[tokio::test]
async fn a_request_without_a_valid_key_is_401() {
    let app = TestApp::spawn().await;
    let (status, body) = app.gql(None, VIEWER, json!({})).await;
    assert_eq!(status, 401);
    assert_eq!(code(&body), "UNAUTHENTICATED");
    for bad in [
        "nonsense",
        "ck_live_",
        &app.admin_key[..app.admin_key.len() - 1],
    ] {
        let (status, body) = app.gql(Some(bad), VIEWER, json!({})).await;
        assert_eq!(status, 401, "{bad}");
        assert_eq!(code(&body), "UNAUTHENTICATED");
    }
}

#[tokio::test]
async fn the_viewer_is_the_keys_tenant_and_role() {
    let app = TestApp::spawn().await;
    let data = app.ok(&app.admin_key, VIEWER, json!({})).await;
    assert_eq!(data["viewer"]["tenant"]["name"], "default");
    assert_eq!(data["viewer"]["role"], "ADMIN");
    let read = app.key(Role::Read).await;
    let data = app.ok(&read, VIEWER, json!({})).await;
    assert_eq!(data["viewer"]["role"], "READ");
}

#[tokio::test]
async fn a_created_key_works_and_a_revoked_key_is_401() {
    let app = TestApp::spawn().await;
    let data = app
        .ok(
            &app.admin_key,
            CREATE_KEY,
            json!({ "input": { "role": "WRITE", "name": "billing backend" } }),
        )
        .await;
    let secret = data["createApiKey"]["secret"].as_str().unwrap().to_owned();
    let id = data["createApiKey"]["apiKey"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(data["createApiKey"]["apiKey"]["role"], "WRITE");
    let viewer = app.ok(&secret, VIEWER, json!({})).await;
    assert_eq!(viewer["viewer"]["role"], "WRITE");
    assert_eq!(viewer["viewer"]["apiKeyId"], id.as_str());

    let data = app
        .ok(&app.admin_key, REVOKE_KEY, json!({ "id": id }))
        .await;
    assert_eq!(data["revokeApiKey"]["apiKey"]["active"], false);
    let (status, body) = app.gql(Some(&secret), VIEWER, json!({})).await;
    assert_eq!(status, 401);
    assert_eq!(code(&body), "UNAUTHENTICATED");
}

#[tokio::test]
async fn weaker_roles_are_forbidden_admin_fields_and_change_nothing() {
    let app = TestApp::spawn().await;
    let before = app.ok(&app.admin_key, KEYS, json!({})).await;
    for role in [Role::Read, Role::Write] {
        let key = app.key(role).await;
        let (status, body) = app
            .gql(
                Some(&key),
                CREATE_KEY,
                json!({ "input": { "role": "ADMIN" } }),
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(code(&body), "FORBIDDEN", "{role:?}");
        let (_, body) = app.gql(Some(&key), KEYS, json!({})).await;
        assert_eq!(code(&body), "FORBIDDEN");
    }
    let after = app.ok(&app.admin_key, KEYS, json!({})).await;
    let count = |v: &serde_json::Value| v["apiKeys"]["edges"].as_array().unwrap().len();
    // Only the two keys this test made directly, no ADMIN key from the refused mutations.
    assert_eq!(count(&after), count(&before) + 2);
    let admins = after["apiKeys"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["node"]["role"] == "ADMIN")
        .count();
    assert_eq!(admins, 1);
}

#[tokio::test]
async fn one_tenant_never_sees_another_tenants_keys() {
    let app = TestApp::spawn().await;
    let (_, b_key) = app.other_tenant("b").await;
    let a_keys = app.ok(&app.admin_key, KEYS, json!({})).await;
    let b_keys = app.ok(&b_key, KEYS, json!({})).await;
    let ids = |v: &serde_json::Value| -> Vec<String> {
        v["apiKeys"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (a_ids, b_ids) = (ids(&a_keys), ids(&b_keys));
    assert_eq!((a_ids.len(), b_ids.len()), (1, 1));
    assert_ne!(a_ids, b_ids);

    // B naming A's key gets NOT_FOUND, and A's key keeps working.
    let (_, body) = app
        .gql(Some(&b_key), REVOKE_KEY, json!({ "id": a_ids[0] }))
        .await;
    assert_eq!(code(&body), "NOT_FOUND");
    app.ok(&app.admin_key, VIEWER, json!({})).await;
}

#[tokio::test]
async fn bad_input_gets_a_code_and_the_field() {
    let app = TestApp::spawn().await;
    let (_, body) = app
        .gql(Some(&app.admin_key), REVOKE_KEY, json!({ "id": "cus_123" }))
        .await;
    assert_eq!((code(&body), field(&body)), ("VALIDATION", "id"));

    let (_, body) = app
        .gql(
            Some(&app.admin_key),
            "{ apiKeys(first: 500) { edges { cursor } } }",
            json!({}),
        )
        .await;
    assert_eq!((code(&body), field(&body)), ("VALIDATION", "first"));

    let (_, body) = app
        .gql(
            Some(&app.admin_key),
            r#"{ apiKeys(after: "bogus") { edges { cursor } } }"#,
            json!({}),
        )
        .await;
    assert_eq!((code(&body), field(&body)), ("VALIDATION", "after"));

    let (_, body) = app
        .gql(
            Some(&app.admin_key),
            CREATE_KEY,
            json!({ "input": { "role": "ADMIN", "name": "x".repeat(101) } }),
        )
        .await;
    assert_eq!((code(&body), field(&body)), ("VALIDATION", "name"));

    let (_, body) = app
        .gql(
            Some(&app.admin_key),
            CREATE_KEY,
            json!({ "input": { "role": "ROOT" } }),
        )
        .await;
    assert_eq!(code(&body), "VALIDATION");

    // Revoking the last ADMIN key is a conflict, and the key still works.
    let viewer = app.ok(&app.admin_key, VIEWER, json!({})).await;
    let (_, body) = app
        .gql(
            Some(&app.admin_key),
            REVOKE_KEY,
            json!({ "id": viewer["viewer"]["apiKeyId"] }),
        )
        .await;
    assert_eq!(code(&body), "CONFLICT");
    app.ok(&app.admin_key, VIEWER, json!({})).await;

    let (_, body) = app
        .gql(Some(&app.admin_key), "{ viewer { nope } }", json!({}))
        .await;
    assert_eq!(code(&body), "VALIDATION");
}

#[tokio::test]
async fn key_lists_paginate_with_opaque_cursors() {
    let app = TestApp::spawn().await;
    for _ in 0..4 {
        app.key(Role::Read).await;
    }
    let query = "query($after: String) { apiKeys(first: 2, after: $after) { edges { node { id } } pageInfo { hasNextPage endCursor } } }";
    let mut after = serde_json::Value::Null;
    let mut seen = Vec::new();
    for _ in 0..10 {
        let data = app
            .ok(&app.admin_key, query, json!({ "after": after }))
            .await;
        let conn = &data["apiKeys"];
        for e in conn["edges"].as_array().unwrap() {
            seen.push(e["node"]["id"].as_str().unwrap().to_owned());
        }
        if conn["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = conn["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(seen.len(), 5);
    seen.dedup();
    assert_eq!(seen.len(), 5);
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused() {
    let app = TestApp::spawn().await;
    let padding = " ".repeat(api::http::BODY_LIMIT_BYTES + 1);
    let resp = reqwest::Client::new()
        .post(app.url("/graphql"))
        .bearer_auth(&app.admin_key)
        .header("content-type", "application/json")
        .body(format!(r#"{{"query":"{{ viewer {{ role }} }}{padding}"}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
}

#[tokio::test]
async fn queries_nested_too_deep_are_refused() {
    let app = TestApp::spawn().await;
    // 13 levels of data, over the limit of 12: a request error (no
    // `data`), HTTP 200 under application/json.
    let deep = format!(
        "{{ customer(externalId: \"x\") {{ {} id {} }} }}",
        "parent { ".repeat(11),
        "}".repeat(11)
    );
    let (status, body) = app.gql(Some(&app.admin_key), &deep, json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(code(&body), "QUERY_TOO_COMPLEX");
    assert_eq!(body["errors"][0]["extensions"]["measure"], "depth");
    assert_eq!(body["errors"][0]["extensions"]["limit"], 12);
    assert!(body.get("data").is_none(), "{body}");
    // 12 levels run.
    let ok = format!(
        "{{ customer(externalId: \"x\") {{ {} id {} }} }}",
        "parent { ".repeat(10),
        "}".repeat(10)
    );
    let (_, body) = app.gql(Some(&app.admin_key), &ok, json!({})).await;
    assert_eq!(code(&body), "NOT_FOUND", "{body}");
}

#[tokio::test]
async fn job_runs_show_in_the_jobs_query_and_metrics() {
    use service::jobs::{Job, Lease, record};
    let app = TestApp::spawn().await;
    let sweep = record(
        &app.t.db,
        &app.clock,
        Job::ExpirySweep,
        Lease::DEFAULT,
        async {
            service::expiry::sweep(&app.t.db, &app.clock, 10)
                .await
                .map(|r| r.wallets + r.orders)
        },
    )
    .await
    .unwrap();
    assert_eq!(sweep, 0);
    let failed: Result<u64, service::ledger::Error> = record(
        &app.t.db,
        &app.clock,
        Job::AllowanceReset,
        Lease::DEFAULT,
        async { Err(service::ledger::Error::Conflict("boom".into(), "x")) },
    )
    .await;
    assert!(failed.is_err());
    let data = app
        .ok(
            &app.admin_key,
            "{ jobs { name lastSuccessAt recentRuns(first: 5) { status processed error } } }",
            json!({}),
        )
        .await;
    let jobs = data["jobs"].as_array().unwrap();
    let by_name = |n: &str| jobs.iter().find(|j| j["name"] == n).unwrap().clone();
    assert_eq!(
        by_name("expiry_sweep")["recentRuns"][0]["status"],
        "SUCCEEDED"
    );
    assert!(by_name("expiry_sweep")["lastSuccessAt"].is_string());
    assert_eq!(
        by_name("allowance_reset")["recentRuns"][0]["status"],
        "FAILED"
    );
    assert_eq!(by_name("allowance_reset")["recentRuns"][0]["error"], "boom");
    let read = app.key(Role::Read).await;
    let (_, body) = app.gql(Some(&read), "{ jobs { name } }", json!({})).await;
    assert_eq!(code(&body), "FORBIDDEN");

    // Metrics are served on a listener of their own (METRICS_ADDR), never
    // on the API's port.
    let on_api = reqwest::get(app.url("/metrics")).await.unwrap();
    assert_eq!(on_api.status(), 404);
    let stop = tokio_util::sync::CancellationToken::new();
    let addr = worker::observability::serve_metrics(
        "127.0.0.1:0".parse().unwrap(),
        app.t.db.clone(),
        std::sync::Arc::new(app.clock.clone()),
        stop.clone(),
    )
    .await
    .unwrap();
    let metrics = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    stop.cancel();
    assert!(
        metrics.contains(r#"credits_job_runs_total{job="expiry_sweep",status="succeeded"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"credits_job_runs_total{job="allowance_reset",status="failed"} 1"#));
    assert!(metrics.contains("credits_job_last_duration_seconds{job=\"expiry_sweep\"}"));
}

#[tokio::test]
async fn cors_answers_only_the_configured_origins() {
    common::install_tls_provider();
    let t = service::testing::TestDb::new().await;
    let clock = std::sync::Arc::new(service::SystemClock);
    let cors = api::http::cors(&["https://app.example".into(), " ".into()])
        .unwrap()
        .expect("a CORS layer");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = api::server::app(t.db.clone(), clock).layer(cors);
    tokio::spawn(axum::serve(listener, app).into_future());
    let preflight = |origin: &'static str| {
        reqwest::Client::new()
            .request(reqwest::Method::OPTIONS, format!("http://{addr}/graphql"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "authorization,content-type",
            )
            .send()
    };
    let ok = preflight("https://app.example").await.unwrap();
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    assert!(api::http::cors(&[]).unwrap().is_none());
    assert!(api::http::cors(&["bad\norigin".into()]).is_err());
}
