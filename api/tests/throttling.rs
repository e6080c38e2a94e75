//! Rate limits against the real server: a credential gets its burst, then
//! 429 `RATE_LIMITED` with `Retry-After`, `RateLimit` and
//! `RateLimit-Policy`; it recovers after `Retry-After`; other credentials
//! are unaffected; wrong secrets from one address get 429 after their
//! budget, and then so does a correct one from there.

mod common;

use std::{collections::BTreeMap, time::Duration};

use api::http::throttle::{IpNet, Limit, Rate, RateLimits};
use common::{TestApp, code};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use service::api_keys::Role;

const VIEWER: &str = "{ viewer { role } }";
const CUSTOMER: &str = r#"{ customer(externalId: "client") { externalId } }"#;

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

/// POSTs `query` with the credential (and an `X-Forwarded-For`).
async fn post(app: &TestApp, credential: &str, forwarded_for: Option<&str>, query: &str) -> Answer {
    let mut req = reqwest::Client::new()
        .post(app.url("/graphql"))
        .bearer_auth(credential)
        .json(&json!({ "query": query }));
    if let Some(xff) = forwarded_for {
        req = req.header("x-forwarded-for", xff);
    }
    let resp = req.send().await.unwrap();
    Answer {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        body: resp.json().await.unwrap(),
    }
}

/// A structured-field item with integer parameters, as both `RateLimit`
/// fields send it: `"api-key";r=0;t=5` → (`api-key`, {r: 0, t: 5}).
fn item(headers: &HeaderMap, name: &str) -> (String, BTreeMap<String, u64>) {
    let value = headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header in {headers:?}"))
        .to_str()
        .unwrap();
    let mut parts = value.split(';');
    let policy = parts.next().unwrap();
    let policy = policy
        .strip_prefix('"')
        .and_then(|p| p.strip_suffix('"'))
        .unwrap_or_else(|| panic!("{name}: the item is not a string: {value}"));
    let params = parts
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap();
            (k.to_owned(), v.parse().unwrap())
        })
        .collect();
    (policy.to_owned(), params)
}

fn params(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

/// A 429 with every header, parsable; returns its `Retry-After`.
fn assert_limited(a: &Answer, policy: &str, q: u64, w: u64) -> u64 {
    assert_eq!(a.status, 429, "{}", a.body);
    assert_eq!(code(&a.body), "RATE_LIMITED");
    assert_eq!(a.body["errors"][0]["extensions"]["retryable"], true);
    assert_eq!(a.body["errors"][0]["extensions"]["policy"], policy);
    let retry_after: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=w).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(
        item(&a.headers, "ratelimit"),
        (policy.into(), params(&[("r", 0), ("t", retry_after)]))
    );
    assert_eq!(
        item(&a.headers, "ratelimit-policy"),
        (policy.into(), params(&[("q", q), ("w", w)]))
    );
    retry_after
}

/// A customer token for `customer`.
async fn token(app: &TestApp, customer: &str) -> String {
    let data = app
        .ok(
            &app.admin_key,
            r#"mutation($c: String!) { createCustomerToken(customer: {externalId: $c}, ttlSeconds: 600) { token } }"#,
            json!({ "c": customer }),
        )
        .await;
    data["createCustomerToken"]["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_key_gets_its_burst_then_429_and_other_credentials_are_unaffected() {
    let mut app = TestApp::spawn().await;
    let read_key = app.key(Role::Read).await;
    app.ok(
        &app.admin_key,
        r#"mutation {
          a: createCustomer(input: {externalId: "client", name: "Client"}) { customer { id } }
          b: createCustomer(input: {externalId: "other", name: "Other"}) { customer { id } }
        }"#,
        json!({}),
    )
    .await;
    let (client_1, client_2) = (token(&app, "client").await, token(&app, "client").await);
    let other = token(&app, "other").await;
    // One request a minute: nothing comes back during the test.
    app.restart_with_rate_limits(RateLimits {
        api_key: Limit::Rate(Rate::per_minute(1, 3)),
        customer_token: Limit::Rate(Rate::per_minute(1, 2)),
        ..RateLimits::default()
    })
    .await;

    for left in [2, 1, 0] {
        let a = post(&app, &app.admin_key, None, VIEWER).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.body["data"]["viewer"]["role"], "ADMIN");
        assert_eq!(
            item(&a.headers, "ratelimit"),
            ("api-key".into(), params(&[("r", left), ("t", 60)]))
        );
        assert_eq!(
            item(&a.headers, "ratelimit-policy"),
            ("api-key".into(), params(&[("q", 3), ("w", 180)]))
        );
    }
    let a = post(&app, &app.admin_key, None, VIEWER).await;
    assert_limited(&a, "api-key", 3, 180);
    // GET takes from the same bucket; nothing ran.
    let get = reqwest::Client::new()
        .get(app.url("/graphql?query=%7B%20viewer%20%7B%20role%20%7D%20%7D"))
        .bearer_auth(&app.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(get.status().as_u16(), 429);

    // Another key of the same tenant has its own bucket.
    let a = post(&app, &read_key, None, VIEWER).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(item(&a.headers, "ratelimit").1["r"], 2);

    // Customer tokens: one bucket per customer, shared by its tokens.
    let a = post(&app, &client_1, None, CUSTOMER).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        item(&a.headers, "ratelimit"),
        ("customer-token".into(), params(&[("r", 1), ("t", 60)]))
    );
    assert_eq!(post(&app, &client_2, None, CUSTOMER).await.status, 200);
    let a = post(&app, &client_1, None, CUSTOMER).await;
    assert_limited(&a, "customer-token", 2, 120);
    assert_eq!(post(&app, &client_2, None, CUSTOMER).await.status, 429);
    let a = post(
        &app,
        &other,
        None,
        r#"{ customer(externalId: "other") { externalId } }"#,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);

    // Health checks are never throttled; the first key still is.
    for path in ["/healthz", "/readyz"] {
        let r = reqwest::get(app.url(path)).await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
    assert_eq!(post(&app, &app.admin_key, None, VIEWER).await.status, 429);
}

#[tokio::test]
async fn a_throttled_key_recovers_after_retry_after() {
    let mut app = TestApp::spawn().await;
    app.restart_with_rate_limits(RateLimits {
        api_key: Limit::Rate(Rate::per_second(1, 2)),
        ..RateLimits::default()
    })
    .await;
    // The burst, then 429 (a slow machine may earn a request back on the
    // way: the loop tolerates that, within a bound).
    let mut ok = 0;
    let limited = loop {
        let a = post(&app, &app.admin_key, None, VIEWER).await;
        if a.status == 429 {
            break a;
        }
        assert_eq!(a.status, 200, "{}", a.body);
        ok += 1;
        assert!(ok <= 20, "never throttled");
    };
    assert!(ok >= 2, "throttled before the burst: {ok}");
    let retry_after = assert_limited(&limited, "api-key", 2, 2);
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    let a = post(&app, &app.admin_key, None, VIEWER).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(item(&a.headers, "ratelimit").0, "api-key");
}

#[tokio::test]
async fn repeated_wrong_secrets_from_one_address_get_429_then_even_a_right_one() {
    let mut app = TestApp::spawn().await;
    app.restart_with_rate_limits(RateLimits {
        auth_failures: Limit::Rate(Rate::per_minute(1, 3)),
        ..RateLimits::default()
    })
    .await;
    let mut wrong = app.admin_key.clone();
    let last = wrong.pop().unwrap();
    wrong.push(if last == 'A' { 'B' } else { 'A' });

    for left in [2, 1, 0] {
        let a = post(&app, &wrong, None, VIEWER).await;
        assert_eq!(a.status, 401, "{}", a.body);
        assert_eq!(code(&a.body), "UNAUTHENTICATED");
        assert_eq!(
            item(&a.headers, "ratelimit"),
            ("auth-failures".into(), params(&[("r", left), ("t", 60)]))
        );
    }
    let a = post(&app, &wrong, None, VIEWER).await;
    assert_limited(&a, "auth-failures", 3, 180);
    // The address is refused before its credential is looked at, and a
    // client can't step around it with a header of its own.
    let a = post(&app, &app.admin_key, None, VIEWER).await;
    assert_limited(&a, "auth-failures", 3, 180);
    let a = post(&app, &app.admin_key, Some("198.51.100.9"), VIEWER).await;
    assert_eq!(a.status, 429);
    let r = reqwest::get(app.url("/healthz")).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_failure_budget() {
    let mut app = TestApp::spawn().await;
    app.restart_with_rate_limits(RateLimits {
        auth_failures: Limit::Rate(Rate::per_minute(1, 1)),
        trusted_proxies: vec!["127.0.0.0/8".parse::<IpNet>().unwrap()],
        ..RateLimits::default()
    })
    .await;
    let wrong = "ck_live_nope_nope";
    let (a, b) = (Some("198.51.100.1"), Some("203.0.113.5, 198.51.100.2"));
    assert_eq!(post(&app, wrong, a, VIEWER).await.status, 401);
    assert_eq!(post(&app, wrong, a, VIEWER).await.status, 429);
    assert_eq!(post(&app, &app.admin_key, a, VIEWER).await.status, 429);
    // Another client behind the same proxy: unaffected.
    assert_eq!(post(&app, &app.admin_key, b, VIEWER).await.status, 200);
    assert_eq!(post(&app, wrong, b, VIEWER).await.status, 401);
}
