//! Every event type, caused through the API and the scheduled jobs on the
//! test clock, delivered by the worker's real HTTP transport to a receiver
//! on 127.0.0.1:0, and each body checked against the JSON Schema that
//! `GET /webhooks/schemas` serves: ids prefixed as the API speaks them (a
//! received customer id works in `customer(id:)`), amounts decimal
//! strings, no field the schema does not list. SQLite and PostgreSQL.

mod common;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration as StdDuration,
};

use axum::{Router, body::Bytes, http::HeaderMap, routing::post};
use chrono::{Duration, TimeZone, Utc};
use common::TestApp;
use serde_json::{Value, json};
use service::{
    allowances, expiry,
    notifications::{TargetPolicy, dispatch, payloads, webhooks},
    outbox::EventType,
};
use worker::transports::HttpTransport;

type Hits = Arc<Mutex<Vec<(HeaderMap, String)>>>;

/// A webhook receiver on 127.0.0.1:0 keeping each delivery.
async fn receiver() -> (String, Hits) {
    let hits: Hits = Arc::default();
    let kept = hits.clone();
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let kept = kept.clone();
            async move {
                let body = String::from_utf8(body.to_vec()).unwrap();
                kept.lock().unwrap().push((headers, body));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, hits)
}

/// The README's catalog walk-through, blocks 1–7 (plans, a subscription,
/// usage, a paid Cabina order); returns the order's id.
async fn walk_through(app: &TestApp) -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let section = readme
        .split("<!-- catalog-walk-through:start -->")
        .nth(1)
        .and_then(|s| s.split("<!-- catalog-walk-through:end -->").next())
        .unwrap();
    let mut order = String::new();
    for block in section.split("```graphql").skip(1).take(7) {
        let block = block
            .split("```")
            .next()
            .unwrap()
            .replace("ORDER-ID-FROM-STEP-6", &order);
        let data = app.ok(&app.admin_key, &block, json!({})).await;
        if let Some(id) = data["purchaseCredits"]["order"]["id"].as_str() {
            order = id.to_owned();
        }
    }
    order
}

/// Dispatches the outbox and delivers what is due.
async fn deliver(app: &TestApp, http: &HttpTransport) {
    dispatch(&app.t.db, &app.clock, 1_000).await.unwrap();
    let report = webhooks::deliver_due(&app.t.db, &app.clock, http, 1_000)
        .await
        .unwrap();
    assert_eq!(report.attempted, report.delivered, "{report:?}");
}

#[tokio::test]
async fn every_event_type_is_delivered_as_its_schema_says() {
    let app = TestApp::spawn().await;
    let (url, hits) = receiver().await;
    let all: Vec<String> = EventType::ALL
        .iter()
        .map(|t| t.as_str().to_owned())
        .collect();
    webhooks::create_endpoint(
        &app.t.db,
        &app.clock,
        TargetPolicy::AllowPrivate,
        app.tenant_id,
        &url,
        &all,
        "",
    )
    .await
    .unwrap();
    let http = HttpTransport::new(StdDuration::from_secs(5), TargetPolicy::AllowPrivate).unwrap();

    // credits.granted (the AI plan's allowance, the paid order),
    // credits.consumed (usage), topup.requested, topup.paid.
    let paid = walk_through(&app).await;
    let ok = |q: &'static str, vars: Value| {
        let app = &app;
        async move { app.ok(&app.admin_key, q, vars).await }
    };
    // Most of the AI tokens used (usage thresholds).
    ok(
        r#"mutation { consumeCredits(input: {customer: {externalId: "studio-7"}, creditSystem: {key: "ai-tokens"}, amount: "9200", idempotencyKey: "big"}) { entry { id } } }"#,
        json!({}),
    )
    .await;
    // topup.requested: an automatic top-up below 50 SMS.
    ok(
        r#"mutation {
          createPlan(input: {product: {key: "sms"}, key: "sms-auto", name: "SMS auto", billingInterval: MONTHLY}) { plan { id } }
          attachCreditSystem(input: {plan: {key: "sms-auto"}, creditSystem: {key: "sms"},
            pricing: {commitment: PAY_AS_YOU_GO, currency: "EUR", autoTopUp: {below: "50", quantity: "500"},
              topUpPrice: {pricingType: VOLUME, model: PER_UNIT, tiers: [{firstUnit: "0", amount: "0.04"}]}}}) { planCredit { id } }
          publishPlan(input: {plan: {key: "sms-auto"}}) { plan { status } }
          subscribe(input: {customer: {externalId: "studio-7"}, plan: {key: "sms-auto"}, idempotencyKey: "s-auto"}) { subscription { id } }
        }"#,
        json!({}),
    )
    .await;
    // wallet.balance_low, _depleted, _recovered on the SMS wallet.
    ok(
        r#"mutation { updateCreditSystem(input: {creditSystem: {key: "sms"}, lowBalanceThreshold: "50"}) { creditSystem { id } } }"#,
        json!({}),
    )
    .await;
    let sms = |amount: &str, key: &str, consume: bool| {
        let q = if consume {
            r#"mutation($a: Credits!, $k: String!) { consumeCredits(input: {customer: {externalId: "studio-7"}, creditSystem: {key: "sms"}, amount: $a, idempotencyKey: $k}) { entry { id } } }"#
        } else {
            r#"mutation($a: Credits!, $k: String!) { grantCredits(input: {customer: {externalId: "studio-7"}, creditSystem: {key: "sms"}, amount: $a, category: ADMIN, reason: "ops", idempotencyKey: $k}) { grant { id } } }"#
        };
        ok(q, json!({"a": amount, "k": key}))
    };
    sms("100", "s1", false).await;
    sms("60", "s2", true).await;
    deliver(&app, &http).await; // the auto top-up is asked for after dispatch
    sms("40", "s3", true).await;
    sms("100", "s4", false).await;
    // grant.voided.
    let voided = sms("5", "s5", false).await["grantCredits"]["grant"]["id"].clone();
    ok(
        r#"mutation($g: ID!) { voidGrant(input: {grant: $g, reason: "mistake", idempotencyKey: "v1"}) { grant { id } } }"#,
        json!({"g": voided}),
    )
    .await;
    // topup.failed, topup.refunded.
    let failed = ok(
        r#"mutation { purchaseCredits(input: {customer: {externalId: "studio-7"}, creditSystem: {key: "cabina"}, quantity: "10000", idempotencyKey: "order-2"}) { order { id } } }"#,
        json!({}),
    )
    .await["purchaseCredits"]["order"]["id"]
        .clone();
    ok(
        r#"mutation($o: ID!) { failTopUpPayment(input: {order: $o, reason: "card declined"}) { order { status } } }"#,
        json!({"o": failed}),
    )
    .await;
    ok(
        r#"mutation($o: ID!) { refundTopUpOrder(input: {order: $o, quantity: "1000", reason: "goodwill", idempotencyKey: "r1"}) { order { status } } }"#,
        json!({"o": paid}),
    )
    .await;
    deliver(&app, &http).await;

    // credits.expiring_soon: the allowance ends 2026-02-28T12:00Z.
    app.clock
        .set(Utc.with_ymd_and_hms(2026, 2, 23, 12, 0, 0).unwrap());
    expiry::sweep(&app.t.db, &app.clock, 100).await.unwrap();
    deliver(&app, &http).await;
    // credits.expired and allowance.reset: the next period.
    app.clock
        .set(Utc.with_ymd_and_hms(2026, 2, 28, 12, 0, 1).unwrap());
    expiry::sweep(&app.t.db, &app.clock, 100).await.unwrap();
    allowances::reset_due(&app.t.db, &app.clock, 100)
        .await
        .unwrap();
    deliver(&app, &http).await;
    app.clock.advance(Duration::seconds(1));
    deliver(&app, &http).await;

    // The schemas the API serves, without a key.
    let client = reqwest::Client::new();
    let served: BTreeMap<String, Value> = client
        .get(app.url("/webhooks/schemas"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let one = client
        .get(app.url("/webhooks/schemas/topup.paid"))
        .send()
        .await
        .unwrap();
    assert_eq!(one.status(), 200);
    assert_eq!(one.json::<Value>().await.unwrap(), served["topup.paid"]);
    let none = client
        .get(app.url("/webhooks/schemas/credits.nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 404);

    let got = hits.lock().unwrap().clone();
    let mut seen: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (headers, raw) in &got {
        let body: Value = serde_json::from_str(raw).unwrap();
        let kind = body["type"].as_str().unwrap().to_owned();
        let schema = served
            .get(&kind)
            .unwrap_or_else(|| panic!("no schema served for {kind}"));
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(schema)
            .unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{kind}: {errors:#?}\n{body:#}");
        // The webhook-id header is the body's id.
        assert_eq!(
            headers["webhook-id"].to_str().unwrap(),
            body["id"],
            "{body}"
        );
        seen.entry(kind).or_default().push(body);
    }
    let missing: Vec<&String> = all.iter().filter(|t| !seen.contains_key(*t)).collect();
    assert!(missing.is_empty(), "no delivery of {missing:?}");
    // A schema catches drift: an extra field, a raw UUID.
    let granted = &seen["credits.granted"][0];
    let validator = jsonschema::validator_for(&served["credits.granted"]).unwrap();
    let mut extra = granted.clone();
    extra["data"]["surprise"] = json!(1);
    assert!(!validator.is_valid(&extra));
    let mut raw = granted.clone();
    raw["data"]["walletId"] = json!(uuid::Uuid::now_v7().to_string());
    assert!(!validator.is_valid(&raw));

    // The ids work as the API's arguments.
    let low = &seen["wallet.balance_low"][0]["data"];
    let q = r#"query($c: ID!, $s: ID!) { customer(id: $c) { id externalId } creditSystem(id: $s) { key } }"#;
    let found = app
        .ok(
            &app.admin_key,
            q,
            json!({"c": low["customer"]["id"], "s": low["creditSystem"]["id"]}),
        )
        .await;
    assert_eq!(found["customer"]["id"], low["customer"]["id"]);
    assert_eq!(found["customer"]["externalId"], "studio-7");
    assert_eq!(low["customer"]["externalId"], "studio-7");
    assert_eq!(found["creditSystem"]["key"], "sms");
    assert_eq!(low["creditSystem"]["key"], "sms");
    let paid_event = &seen["topup.paid"][0]["data"];
    assert_eq!(paid_event["orderId"].as_str(), Some(paid.as_str()));
    let refund = &seen["topup.refunded"][0]["data"]["refund"];
    let entry = app
        .ok(
            &app.admin_key,
            r#"query($o: ID!) { topUpOrder(id: $o) { grant { id sourceId metadata reason } } }"#,
            json!({"o": paid}),
        )
        .await;
    let grant = &entry["topUpOrder"]["grant"];
    assert_eq!(grant["sourceId"].as_str(), Some(paid.as_str()));
    assert_eq!(grant["metadata"]["orderId"].as_str(), Some(paid.as_str()));
    assert_eq!(grant["reason"], format!("top-up order {paid}"));
    assert!(refund["entryId"].as_str().unwrap().starts_with("ent_"));
    // The tenant is ours, as the API names it.
    let viewer = app
        .ok(&app.admin_key, "{ viewer { tenant { id } } }", json!({}))
        .await;
    assert_eq!(
        seen["topup.paid"][0]["tenant"],
        viewer["viewer"]["tenant"]["id"]
    );

    // The delivery log shows the same event id; a redelivery sends the
    // same body.
    let deliveries = app
        .ok(
            &app.admin_key,
            "{ webhookDeliveries(first: 1) { edges { node { id eventId body } } } }",
            json!({}),
        )
        .await;
    let node = &deliveries["webhookDeliveries"]["edges"][0]["node"];
    let body: Value = serde_json::from_str(node["body"].as_str().unwrap()).unwrap();
    assert_eq!(node["eventId"], body["id"]);
    app.ok(
        &app.admin_key,
        "mutation($d: ID!) { redeliverWebhook(input: {delivery: $d}) { delivery { id } } }",
        json!({"d": node["id"]}),
    )
    .await;
    deliver(&app, &http).await;
    let again = hits.lock().unwrap().clone();
    assert_eq!(again.len(), got.len() + 1);
    let (headers, raw) = again.last().unwrap();
    assert_eq!(raw, node["body"].as_str().unwrap());
    assert_eq!(headers["webhook-id"].to_str().unwrap(), node["eventId"]);
    // The files the service embeds are the ones served.
    assert_eq!(served.len(), payloads::SCHEMAS.len());
    app.verify_all().await;
}
