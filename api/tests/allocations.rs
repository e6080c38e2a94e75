//! Allocation down a partner → client → event tree over HTTP.

mod common;

use chrono::Duration;
use common::{TestApp, code, field};
use serde_json::{Value, json};
use service::api_keys::Role;

const ALLOCATE: &str = r#"mutation($from: String!, $to: String!, $amount: Credits!, $key: String!) {
  allocateCredits(input: {from: {externalId: $from}, to: {externalId: $to}, creditSystem: {key: "photos"}, amount: $amount, note: "event budget", idempotencyKey: $key}) {
    outEntry { type amount balanceAfter } inEntry { type amount balanceAfter } grants { category amount expiresAt }
  }
}"#;

async fn tree(app: &TestApp) {
    let setup = r#"mutation {
      createCreditSystem(input: {key: "photos", name: "Photos", unitSingular: "photo", unitPlural: "photos", precision: 0}) { creditSystem { id } }
      partner: createCustomer(input: {externalId: "partner", name: "Partner"}) { customer { id } }
      client: createCustomer(input: {externalId: "client", name: "Client", parent: {externalId: "partner"}}) { customer { id } }
      event: createCustomer(input: {externalId: "event", name: "Event", parent: {externalId: "client"}}) { customer { id } }
      other: createCustomer(input: {externalId: "other-client", name: "Other", parent: {externalId: "partner"}}) { customer { id } }
      soon: grantCredits(input: {customer: {externalId: "partner"}, creditSystem: {key: "photos"}, amount: "100", category: PURCHASED,
        expiresAt: "2026-03-01T00:00:00Z", costBasis: "0.5", reason: "bulk", idempotencyKey: "g1"}) { grant { id } }
      later: grantCredits(input: {customer: {externalId: "partner"}, creditSystem: {key: "photos"}, amount: "300", category: PURCHASED,
        expiresAt: "2026-12-01T00:00:00Z", costBasis: "0.4", reason: "bulk", idempotencyKey: "g2"}) { grant { id } }
    }"#;
    app.ok(&app.admin_key, setup, json!({})).await;
}

fn vars(from: &str, to: &str, amount: &str, key: &str) -> Value {
    json!({"from": from, "to": to, "amount": amount, "key": key})
}

#[tokio::test]
async fn transfers_go_down_the_tree_and_keep_their_expiry() {
    let app = TestApp::spawn().await;
    tree(&app).await;
    let write = app.key(Role::Write).await;
    let data = app
        .ok(&write, ALLOCATE, vars("partner", "client", "150", "a1"))
        .await;
    let a = &data["allocateCredits"];
    assert_eq!(
        a["outEntry"],
        json!({"type": "TRANSFER_OUT", "amount": "-150", "balanceAfter": "250"})
    );
    assert_eq!(
        a["inEntry"],
        json!({"type": "TRANSFER_IN", "amount": "150", "balanceAfter": "150"})
    );
    // 100 from the block expiring in March, 50 from December's: each keeps its expiry.
    assert_eq!(
        a["grants"],
        json!([
            {"category": "TRANSFER", "amount": "100", "expiresAt": "2026-03-01T00:00:00+00:00"},
            {"category": "TRANSFER", "amount": "50", "expiresAt": "2026-12-01T00:00:00+00:00"},
        ])
    );
    // A retry is the same allocation.
    let again = app
        .ok(&write, ALLOCATE, vars("partner", "client", "150", "a1"))
        .await;
    assert_eq!(again["allocateCredits"]["inEntry"], a["inEntry"]);
    // Client → its event, two levels down from the partner.
    app.ok(&write, ALLOCATE, vars("client", "event", "120", "a2"))
        .await;
    // When March comes, the transferred March credits expire with their source block.
    app.clock.set(
        chrono::DateTime::parse_from_rfc3339("2026-03-01T00:00:00Z")
            .unwrap()
            .into(),
    );
    let balance = r#"query($id: String!) { customer(externalId: $id) { wallet(creditSystem: {key: "photos"}) { balance { available } } } }"#;
    let available = |v: Value| {
        v["customer"]["wallet"]["balance"]["available"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        available(app.ok(&write, balance, json!({"id": "partner"})).await),
        "250"
    );
    assert_eq!(
        available(app.ok(&write, balance, json!({"id": "event"})).await),
        "20"
    );
    assert_eq!(
        available(app.ok(&write, balance, json!({"id": "client"})).await),
        "30"
    );
    app.clock.advance(Duration::days(1));
    app.verify_all().await;
}

#[tokio::test]
async fn transfers_up_sideways_or_across_tenants_are_refused() {
    let app = TestApp::spawn().await;
    tree(&app).await;
    app.ok(
        &app.admin_key,
        ALLOCATE,
        vars("partner", "client", "10", "ok"),
    )
    .await;
    for (from, to, f) in [
        ("client", "partner", "to"),
        ("client", "other-client", "to"),
        ("client", "client", "to"),
        ("partner", "nobody", "to"),
    ] {
        let (_, body) = app
            .gql(
                Some(&app.admin_key),
                ALLOCATE,
                vars(from, to, "1", &format!("{from}-{to}")),
            )
            .await;
        assert_eq!(
            (code(&body), field(&body)),
            ("VALIDATION", f),
            "{from} → {to}"
        );
    }
    let (_, body) = app
        .gql(
            Some(&app.admin_key),
            ALLOCATE,
            vars("partner", "client", "1000", "big"),
        )
        .await;
    assert_eq!(code(&body), "INSUFFICIENT_CREDITS");
    let (_, body) = app
        .gql(
            Some(&app.admin_key),
            ALLOCATE,
            vars("partner", "client", "0", "zero"),
        )
        .await;
    assert_eq!((code(&body), field(&body)), ("VALIDATION", "amount"));
    let (_, body) = app
        .gql(
            Some(&app.key(Role::Read).await),
            ALLOCATE,
            vars("partner", "client", "1", "read"),
        )
        .await;
    assert_eq!(code(&body), "FORBIDDEN");
    let (_, other) = app.other_tenant("other").await;
    let (_, body) = app
        .gql(Some(&other), ALLOCATE, vars("partner", "client", "1", "x"))
        .await;
    assert_eq!(code(&body), "NOT_FOUND");
    app.verify_all().await;
}

#[tokio::test]
async fn the_partner_view_shows_each_child_with_usage_and_status() {
    let app = TestApp::spawn().await;
    tree(&app).await;
    app.ok(
        &app.admin_key,
        ALLOCATE,
        vars("partner", "client", "100", "a1"),
    )
    .await;
    app.ok(
        &app.admin_key,
        ALLOCATE,
        vars("partner", "other-client", "100", "a2"),
    )
    .await;
    let consume = r#"mutation($c: String!, $a: Credits!, $k: String!) { consumeCredits(input: {customer: {externalId: $c}, creditSystem: {key: "photos"}, amount: $a, idempotencyKey: $k}) { entry { id } } }"#;
    app.ok(
        &app.admin_key,
        consume,
        json!({"c": "client", "a": "75", "k": "u1"}),
    )
    .await;
    app.ok(
        &app.admin_key,
        consume,
        json!({"c": "other-client", "a": "90", "k": "u2"}),
    )
    .await;
    let view = r#"{ customer(externalId: "partner") {
        balanceSummary(creditSystem: {key: "photos"}) { totalPurchased totalAllocated available }
        children(creditSystem: {key: "photos"}, first: 10) { edges { node { customer { externalId } allocated used remaining usagePercent status } } }
    } }"#;
    let data = app.ok(&app.key(Role::Read).await, view, json!({})).await;
    let c = &data["customer"];
    assert_eq!(
        c["balanceSummary"],
        json!({"totalPurchased": "400", "totalAllocated": "200", "available": "200"})
    );
    let children: Vec<Value> = c["children"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .collect();
    assert_eq!(
        children,
        vec![
            json!({"customer": {"externalId": "client"}, "allocated": "100", "used": "75", "remaining": "25", "usagePercent": "75", "status": "WATCH"}),
            json!({"customer": {"externalId": "other-client"}, "allocated": "100", "used": "90", "remaining": "10", "usagePercent": "90", "status": "CRITICAL"}),
        ]
    );
    // Thresholds are the tenant's to set.
    let set = r#"mutation { setUsageThresholds(input: {watchPercent: "80", criticalPercent: "95"}) { watchPercent criticalPercent } }"#;
    app.ok(&app.admin_key, set, json!({})).await;
    let data = app.ok(&app.admin_key, view, json!({})).await;
    let statuses: Vec<&str> = data["customer"]["children"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["HEALTHY", "WATCH"]);
    let bad = r#"mutation { setUsageThresholds(input: {watchPercent: "90", criticalPercent: "80"}) { watchPercent } }"#;
    let (_, body) = app.gql(Some(&app.admin_key), bad, json!({})).await;
    assert_eq!(
        (code(&body), field(&body)),
        ("VALIDATION", "criticalPercent")
    );
}
