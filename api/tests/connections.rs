//! Connection hygiene (issue 13, item 8): slow clients are cut off, many
//! connections neither crash nor starve the server, a request that runs
//! too long is stopped with a GraphQL error and its transaction rolled
//! back.

mod common;

use std::time::{Duration, Instant};

use api::http::HttpLimits;
use common::TestApp;
use sea_orm::ConnectionTrait;
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// A client that sends half a request's headers and then nothing.
async fn slow_client(app: &TestApp) -> TcpStream {
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    s
}

/// `/healthz` answers within `within` (a liveness bound, not a benchmark).
async fn healthy_within(app: &TestApp, within: Duration) {
    let client = reqwest::Client::new();
    let answered = tokio::time::timeout(within, client.get(app.url("/healthz")).send()).await;
    let resp = answered
        .unwrap_or_else(|_| panic!("/healthz did not answer within {within:?}"))
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    let mut app = TestApp::spawn().await;
    app.restart_with(HttpLimits {
        header_read_timeout: Duration::from_secs(1),
        ..HttpLimits::default()
    })
    .await;
    let mut slow = slow_client(&app).await;
    let started = Instant::now();
    let mut buf = [0u8; 256];
    // The server closes the connection (maybe after a 408): read to EOF.
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match slow.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "a client that never finished its headers was kept open"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn a_thousand_slow_connections_do_not_starve_the_server() {
    let app = TestApp::spawn().await;
    let mut held = Vec::with_capacity(1_000);
    for _ in 0..1_000 {
        held.push(slow_client(&app).await);
    }
    healthy_within(&app, Duration::from_secs(1)).await;
    let data = app
        .ok(&app.admin_key, "{ viewer { role } }", json!({}))
        .await;
    assert_eq!(data["viewer"]["role"], "ADMIN");
    drop(held);
}

#[tokio::test]
async fn connections_over_the_cap_wait_until_slow_ones_are_cut_off() {
    let mut app = TestApp::spawn().await;
    app.restart_with(HttpLimits {
        connections_max: 20,
        header_read_timeout: Duration::from_secs(1),
        ..HttpLimits::default()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(slow_client(&app).await);
    }
    // All 20 slots are taken by clients that never finish; the 21st
    // connection is served once the header timeout frees a slot.
    healthy_within(&app, Duration::from_secs(10)).await;
    drop(held);
}

#[tokio::test]
async fn a_request_that_runs_too_long_is_stopped_and_rolled_back() {
    let mut app = TestApp::spawn().await;
    app.ok(
        &app.admin_key,
        r#"mutation {
          createCreditSystem(input: {key: "t", name: "T", unitSingular: "t", unitPlural: "ts", precision: 0}) { creditSystem { id } }
          createCustomer(input: {externalId: "c", name: "C"}) { customer { id } }
          grantCredits(input: {customer: {externalId: "c"}, creditSystem: {key: "t"}, amount: "10", category: PURCHASED, reason: "r", idempotencyKey: "g"}) { grant { id } }
        }"#,
        json!({}),
    )
    .await;
    app.restart_with(HttpLimits {
        request_timeout: Duration::from_secs(1),
        ..HttpLimits::default()
    })
    .await;
    // Another writer holds the wallet (PostgreSQL: its row lock; SQLite:
    // the one writer connection) while the consume comes in.
    let blocker = app.t.db.begin_write().await.unwrap();
    blocker
        .execute_unprepared("UPDATE wallet SET updated_at = updated_at")
        .await
        .unwrap();
    let consume = r#"mutation { consumeCredits(input: {customer: {externalId: "c"}, creditSystem: {key: "t"}, amount: "3", feature: "f", idempotencyKey: "u1"}) { entry { balanceAfter } } }"#;
    let resp = reqwest::Client::new()
        .post(app.url("/graphql"))
        .bearer_auth(&app.admin_key)
        .header("accept", "application/graphql-response+json")
        .json(&json!({"query": consume}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 504);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "TIMEOUT", "{body}");
    blocker.rollback().await.unwrap();
    // Nothing of the stopped request remains; its retry applies once.
    let read = r#"{ customer(externalId: "c") { wallet(creditSystem: {key: "t"}) { balance { available } entries(first: 10) { nodes { type } } } } }"#;
    let data = app.ok(&app.admin_key, read, json!({})).await;
    let wallet = &data["customer"]["wallet"];
    assert_eq!(wallet["balance"]["available"], "10", "{data}");
    assert_eq!(wallet["entries"]["nodes"].as_array().unwrap().len(), 1);
    let again = app.ok(&app.admin_key, consume, json!({})).await;
    assert_eq!(again["consumeCredits"]["entry"]["balanceAfter"], "7");
    app.verify_all().await;
}
