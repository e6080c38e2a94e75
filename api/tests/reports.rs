//! Usage reports over HTTP, in a non-UTC time zone across month and year
//! boundaries; the breakdowns add up to the ledger.

mod common;

use chrono::{DateTime, Utc};
use common::{TestApp, code, field};
use serde_json::{Value, json};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().into()
}

async fn story(app: &TestApp) {
    let setup = r#"mutation {
      setTimeZone(timeZone: "Europe/Budapest")
      createCreditSystem(input: {key: "tokens", name: "Tokens", unitSingular: "token", unitPlural: "tokens", precision: 0}) { creditSystem { id } }
      createCustomer(input: {externalId: "acme", name: "Acme"}) { customer { id } }
      grantCredits(input: {customer: {externalId: "acme"}, creditSystem: {key: "tokens"}, amount: "10000", category: PURCHASED, reason: "pack", idempotencyKey: "g"}) { entry { id } }
    }"#;
    app.clock.set(at("2026-11-01T00:00:00Z"));
    let data = app.ok(&app.admin_key, setup, json!({})).await;
    assert_eq!(data["setTimeZone"], "Europe/Budapest");
    let consume = r#"mutation($a: Credits!, $k: String!, $f: String, $e: String, $u: String, $d: JSON) {
      consumeCredits(input: {customer: {externalId: "acme"}, creditSystem: {key: "tokens"}, amount: $a, idempotencyKey: $k,
        feature: $f, eventRef: $e, userRef: $u, dimensions: $d}) { entry { id } } }"#;
    for (when, amount, feature, event, user, dims) in [
        (
            "2026-11-15T10:00:00Z",
            "10",
            "chat",
            "e1",
            "alice",
            json!({"style": "noir"}),
        ),
        // 23:59 on Dec 31 in Budapest: December.
        (
            "2026-12-31T22:59:00Z",
            "20",
            "image",
            "e1",
            "bob",
            json!({"style": "pop"}),
        ),
        // 00:00 on Jan 1 in Budapest: January, and the new year.
        (
            "2026-12-31T23:00:00Z",
            "30",
            "image",
            "e2",
            "alice",
            json!({"style": "noir"}),
        ),
        // 00:30 on Feb 1 in Budapest: February.
        (
            "2027-01-31T23:30:00Z",
            "45",
            "chat",
            "e2",
            "alice",
            Value::Null,
        ),
    ] {
        app.clock.set(at(when));
        app.ok(
            &app.admin_key,
            consume,
            json!({"a": amount, "k": when, "f": feature, "e": event, "u": user, "d": dims}),
        )
        .await;
    }
    app.clock.set(at("2027-02-10T12:00:00Z"));
}

#[tokio::test]
async fn months_follow_the_tenants_calendar() {
    let app = TestApp::spawn().await;
    story(&app).await;
    let q = r#"{ usageSummary(customer: {externalId: "acme"}, creditSystem: {key: "tokens"}) { month credits count isCurrent } }"#;
    let data = app.ok(&app.admin_key, q, json!({})).await;
    assert_eq!(
        data["usageSummary"],
        json!([
            {"month": "2026-11", "credits": "10", "count": 1, "isCurrent": false},
            {"month": "2026-12", "credits": "20", "count": 1, "isCurrent": false},
            {"month": "2027-01", "credits": "30", "count": 1, "isCurrent": false},
            {"month": "2027-02", "credits": "45", "count": 1, "isCurrent": true},
        ])
    );
    let (_, body) = app
        .gql(
            Some(&app.admin_key),
            "{ usageSummary(months: 0) { month } }",
            json!({}),
        )
        .await;
    assert_eq!((code(&body), field(&body)), ("VALIDATION", "months"));
    let (_, body) = app
        .gql(
            Some(&app.admin_key),
            r#"mutation { setTimeZone(timeZone: "Mars/Olympus") }"#,
            json!({}),
        )
        .await;
    assert_eq!((code(&body), field(&body)), ("VALIDATION", "timeZone"));
}

#[tokio::test]
async fn breakdowns_add_up_to_the_ledger() {
    let app = TestApp::spawn().await;
    story(&app).await;
    let q = r#"query($g: UsageGroupBy!, $d: String) { usageBreakdown(from: "2026-11-01T00:00:00Z", to: "2027-03-01T00:00:00Z", groupBy: $g, dimension: $d) { key credits count averagePerUse } }"#;
    let rows = |v: Value| v["usageBreakdown"].clone();
    assert_eq!(
        rows(app.ok(&app.admin_key, q, json!({"g": "FEATURE"})).await),
        json!([
            {"key": "chat", "credits": "55", "count": 2, "averagePerUse": "27.5"},
            {"key": "image", "credits": "50", "count": 2, "averagePerUse": "25"},
        ])
    );
    assert_eq!(
        rows(
            app.ok(&app.admin_key, q, json!({"g": "DIMENSION", "d": "style"}))
                .await
        ),
        json!([
            {"key": null, "credits": "45", "count": 1, "averagePerUse": "45"},
            {"key": "noir", "credits": "40", "count": 2, "averagePerUse": "20"},
            {"key": "pop", "credits": "20", "count": 1, "averagePerUse": "20"},
        ])
    );
    let days = rows(app.ok(&app.admin_key, q, json!({"g": "DAY"})).await);
    let keys: Vec<&str> = days
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        vec!["2027-02-01", "2027-01-01", "2026-12-31", "2026-11-15"]
    );
    let users = rows(app.ok(&app.admin_key, q, json!({"g": "USER_REF"})).await);
    assert_eq!(
        users[0],
        json!({"key": "alice", "credits": "85", "count": 3, "averagePerUse": "28.333333"})
    );
    // Every grouping sums to the ledger's usage, and so does the tenant-wide view.
    let ledger = app
        .ok(&app.admin_key, r#"{ customer(externalId: "acme") { wallets { entries(first: 50, filter: {types: [USAGE]}) { edges { node { amount } } } } } }"#, json!({}))
        .await;
    let used: i64 = ledger["customer"]["wallets"][0]["entries"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            -e["node"]["amount"]
                .as_str()
                .unwrap()
                .parse::<i64>()
                .unwrap()
        })
        .sum();
    for g in ["FEATURE", "EVENT_REF", "USER_REF", "DAY", "CUSTOMER"] {
        let total: i64 = rows(app.ok(&app.admin_key, q, json!({"g": g})).await)
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["credits"].as_str().unwrap().parse::<i64>().unwrap())
            .sum();
        assert_eq!(total, used, "{g}");
    }
    for (vars, f) in [
        (json!({"g": "DIMENSION"}), "dimension"),
        (json!({"g": "DIMENSION", "d": "a.b"}), "dimension"),
    ] {
        let (_, body) = app.gql(Some(&app.admin_key), q, vars).await;
        assert_eq!((code(&body), field(&body)), ("VALIDATION", f));
    }
    let backwards = r#"{ usageBreakdown(from: "2027-03-01T00:00:00Z", to: "2026-11-01T00:00:00Z", groupBy: FEATURE) { key } }"#;
    let (_, body) = app.gql(Some(&app.admin_key), backwards, json!({})).await;
    assert_eq!((code(&body), field(&body)), ("VALIDATION", "to"));
    let long_days = r#"{ usageBreakdown(from: "2025-01-01T00:00:00Z", to: "2027-03-01T00:00:00Z", groupBy: DAY) { key } }"#;
    let (_, body) = app.gql(Some(&app.admin_key), long_days, json!({})).await;
    assert_eq!((code(&body), field(&body)), ("VALIDATION", "to"));
    app.verify_all().await;
}
