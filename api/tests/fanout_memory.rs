//! The fan-out query that used to run 27 s and grow the process by
//! ~400 MB (three nested `first: 100` lists from a customer token) is
//! refused before it runs: quickly, and without memory growth. Alone in
//! its own test binary, so no other test's allocations muddy the reading.

mod common;

use std::time::{Duration, Instant};

use common::TestApp;
use serde_json::json;

const FAN_OUT: &str = r#"{ customer(externalId: "partner") { children(creditSystem: {key: "photos"}, first: 100) { nodes { customer { children(creditSystem: {key: "photos"}, first: 100) { nodes { customer { children(creditSystem: {key: "photos"}, first: 100) { nodes { used } } } } } } } } } }"#;

/// This process's resident set, in bytes (Linux).
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

#[tokio::test]
async fn the_fan_out_query_is_refused_fast_and_costs_no_memory() {
    let app = TestApp::spawn().await;
    app.ok(
        &app.admin_key,
        r#"mutation {
          createCreditSystem(input: {key: "photos", name: "Photos", unitSingular: "photo", unitPlural: "photos", precision: 0}) { creditSystem { id } }
          p: createCustomer(input: {externalId: "partner", name: "Partner"}) { customer { id } }
        }"#,
        json!({}),
    )
    .await;
    let token = app
        .ok(
            &app.admin_key,
            r#"mutation { createCustomerToken(customer: {externalId: "partner"}, ttlSeconds: 600, includeDescendants: true) { token } }"#,
            json!({}),
        )
        .await["createCustomerToken"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    // Warm up (connection pool, allocator), then measure.
    let (_, body) = app.gql(Some(&token), FAN_OUT, json!({})).await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "QUERY_TOO_COMPLEX");
    let before = rss_bytes();
    let mut fastest = Duration::MAX;
    for _ in 0..50 {
        let started = Instant::now();
        let (_, body) = app.gql(Some(&token), FAN_OUT, json!({})).await;
        fastest = fastest.min(started.elapsed());
        assert_eq!(body["errors"][0]["extensions"]["measure"], "cost", "{body}");
    }
    let grown = rss_bytes().saturating_sub(before);
    assert!(grown < 10 << 20, "the process grew by {grown} bytes");
    // The fastest of 50 (a refusal takes ~1 ms; the query, when it ran,
    // took 27 s): robust to a noisy machine.
    assert!(
        fastest < Duration::from_millis(100),
        "fastest refusal {fastest:?}"
    );
}
