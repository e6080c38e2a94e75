//! The console's Customers, Money and Operations pages in headless
//! Chromium against the real server (Playwright scripts in
//! `tests/browser/`: console.mjs, customer_actions.mjs, operations.mjs,
//! paint.mjs). Each script signs in with a key, works the UI as a person
//! would, runs axe-core on every page it visits and writes screenshots to
//! `target/screenshots/console-*.png`; the test checks what it saw against
//! the API.
//!
//! The browser tests of this file run one at a time (one Chromium at a
//! time on a 2-core machine, and the paint figure measured alone).

mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration as StdDuration,
};

use axum::{Router, http::StatusCode, routing::post};
use common::{
    TestApp,
    browser::{install_harness, run_script, screenshot_path, skip_browser_test},
};
use serde_json::{Value, json};
use service::{
    api_keys::Role,
    notifications::{TargetPolicy, dispatch, webhooks},
};
use worker::transports::HttpTransport;

/// One browser at a time.
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn shots_dir() -> String {
    screenshot_path("console-customer.png")
        .parent()
        .unwrap()
        .display()
        .to_string()
}

/// Every page's axe-core result: it ran, and no serious or critical
/// violation. Returns how many pages were checked.
fn assert_accessible(seen: &Value) -> usize {
    let axe = seen["axe"].as_object().unwrap();
    for (page, result) in axe {
        assert!(result["rules"].as_u64().unwrap() > 10, "{page}");
        let serious: Vec<&Value> = result["violations"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["impact"] == "serious" || v["impact"] == "critical")
            .collect();
        assert!(serious.is_empty(), "accessibility on {page}: {serious:#?}");
    }
    axe.len()
}

/// Nothing outside the server, no page error, no CSP violation, and only
/// the console's own paths and the API.
fn assert_clean(seen: &Value) {
    assert_eq!(seen["external"], json!([]), "{seen}");
    assert_eq!(seen["pageErrors"], json!([]), "{seen}");
    assert_eq!(seen["csp"], json!([]), "{seen}");
    for path in seen["requests"].as_array().unwrap() {
        let path = path.as_str().unwrap();
        assert!(
            path.starts_with("/console")
                || path.starts_with("/assets/")
                || path.starts_with("/graphql"),
            "{path}"
        );
    }
}

fn assert_screenshots(names: &[&str]) {
    for name in names {
        let path = screenshot_path(name);
        assert!(
            std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) > 10_000,
            "{name}"
        );
    }
}

fn remove_screenshots(names: &[&str]) {
    for name in names {
        let _ = std::fs::remove_file(screenshot_path(name));
    }
}

/// Alice (1,000 photos bought, 10 used, a 77-photo promotion), her child,
/// Bob, Carol, and the published plan "pro" with 100 photos included each
/// month and graduated top-up tiers.
async fn catalog_and_customers(app: &TestApp) {
    let key = &app.admin_key;
    app.ok(key, r#"mutation {
      createCreditSystem(input: {key: "photos", name: "Photos", unitSingular: "photo", unitPlural: "photos", precision: 0}) { creditSystem { id } }
      a: createCustomer(input: {externalId: "alice", name: "Alice Smith", email: "alice@example.com"}) { customer { id } }
      b: createCustomer(input: {externalId: "bob", name: "Bob Jones"}) { customer { id } }
      c: createCustomer(input: {externalId: "carol", name: "Carol Diaz"}) { customer { id } }
      ga: grantCredits(input: {customer: {externalId: "alice"}, creditSystem: {key: "photos"}, amount: "1000", category: PURCHASED, reason: "r", idempotencyKey: "ga"}) { grant { id } }
      ca: consumeCredits(input: {customer: {externalId: "alice"}, creditSystem: {key: "photos"}, amount: "10", idempotencyKey: "ca", description: "photo 1"}) { entry { id } }
      gb: grantCredits(input: {customer: {externalId: "bob"}, creditSystem: {key: "photos"}, amount: "9876", category: PURCHASED, reason: "r", idempotencyKey: "gb"}) { grant { id } }
      createProduct(input: {key: "studio", name: "Studio"}) { product { id } }
      createPlan(input: {product: {key: "studio"}, key: "pro", name: "Pro", billingInterval: MONTHLY}) { plan { id } }
    }"#, json!({})).await;
    app.ok(key, r#"mutation { attachCreditSystem(input: {plan: {key: "pro"}, creditSystem: {key: "photos"},
        included: {amount: "100", resetInterval: MONTHLY},
        pricing: {commitment: UPFRONT, currency: "EUR", taxRate: "0.27", topUpPrice: {pricingType: GRADUATED, model: PER_UNIT,
          tiers: [{firstUnit: "0", lastUnit: "1000", amount: "0.10"}, {firstUnit: "1000", amount: "0.08"}]}}}) { planCredit { id } } }"#, json!({})).await;
}

async fn available(app: &TestApp, customer: &str) -> String {
    let data = app
        .ok(
            &app.admin_key,
            r#"query($c: String!) { customer(externalId: $c) { wallet(creditSystem: {key: "photos"}) { balance { available } } } }"#,
            json!({"c": customer}),
        )
        .await;
    data["customer"]["wallet"]["balance"]["available"]
        .as_str()
        .unwrap()
        .to_owned()
}

// ------------------------------------------------------ sign in and grant

#[tokio::test]
async fn the_console_signs_in_finds_a_customer_and_grants_credits_in_chromium() {
    if skip_browser_test() {
        return;
    }
    install_harness();
    let _one = BROWSER.lock().await;
    let app = TestApp::spawn().await;
    let key = &app.admin_key;
    catalog_and_customers(&app).await;
    let read = app.key(Role::Read).await;
    let names = [
        "console-signin.png",
        "console-customers.png",
        "console-customer.png",
        "console-plan.png",
        "console-customer-read.png",
    ];
    remove_screenshots(&names);
    let seen = run_script("console.mjs", &[&app.url(""), key, &read, &shots_dir()]).await;
    assert_clean(&seen);

    assert!(
        seen["wrong"].as_str().unwrap().contains("not accepted"),
        "{seen}"
    );
    assert_eq!(
        seen["nav"],
        json!({"Customers": "/console/customers", "Plans": "/console/plans",
            "Credit systems": "/console/credit-systems", "Orders": "/console/orders",
            "Webhooks": "/console/webhooks", "Jobs": "/console/jobs", "API keys": "/console/api-keys"})
    );
    // The key in sessionStorage only.
    assert_eq!(seen["storage"]["session"], json!([key]), "{seen}");
    assert_eq!(seen["storage"]["local"], 0);
    assert_eq!(seen["storage"]["cookies"], "");
    assert_eq!(seen["allCustomers"], 3, "{seen}");
    let found = seen["found"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{seen}");
    assert!(found[0].as_str().unwrap().contains("Alice Smith"), "{seen}");

    // A refused amount says why (the server's VALIDATION message).
    let refused = seen["refused"].as_str().unwrap();
    assert!(
        refused.contains("Not granted") && refused.contains("amount"),
        "{refused}"
    );
    // The grant: the balance moved by 250, the history's newest entry is it.
    assert_eq!(seen["before"], "990 photos", "{seen}");
    assert_eq!(seen["after"], "1240 photos", "{seen}");
    assert!(seen["granted"].as_str().unwrap().contains("250"), "{seen}");
    let entry: Vec<&str> = seen["firstEntry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(entry[..3], ["Grant", "250 photos", "1240 photos"], "{seen}");
    assert!(entry[3].contains("Console goodwill"), "{seen}");
    assert_eq!(available(&app, "alice").await, "1240");

    // The plan's credits: allowance and tiers.
    let plan = seen["planText"].as_str().unwrap();
    assert!(
        plan.contains("100 photos") && plan.contains("MONTHLY"),
        "{plan}"
    );
    assert!(plan.contains("GRADUATED · PER_UNIT"), "{plan}");
    assert_eq!(
        seen["tiers"],
        json!([["0", "1000", "0.10", "—"], ["1000", "∞", "0.08", "—"]]),
        "{seen}"
    );
    assert!(
        seen["others"]["API keys"]
            .as_str()
            .unwrap()
            .contains("READ"),
        "{seen}"
    );

    // Signed out: the key is gone. A READ key: no write controls.
    assert_eq!(seen["afterSignOut"], 0, "{seen}");
    assert_eq!(seen["readView"]["available"], "1240 photos", "{seen}");
    assert_eq!(seen["readView"]["grantButtons"], 0, "{seen}");
    assert_eq!(seen["readView"]["forms"], 0, "{seen}");
    assert!(
        seen["readView"]["who"].as_str().unwrap().contains("READ"),
        "{seen}"
    );

    let missing = seen["missing"].as_str().unwrap();
    assert!(
        missing.contains("no customer") && missing.contains("nobody"),
        "{missing}"
    );
    // axe-core on every page visited: it ran, and nothing serious.
    assert_eq!(assert_accessible(&seen), 10, "{seen}");
    assert_screenshots(&names);
}

// ------------------------------------------------------- customer actions

#[tokio::test]
async fn a_customer_page_adjusts_voids_refunds_allocates_subscribes_and_makes_a_token_by_role() {
    if skip_browser_test() {
        return;
    }
    install_harness();
    let _one = BROWSER.lock().await;
    let app = TestApp::spawn().await;
    let key = &app.admin_key;
    catalog_and_customers(&app).await;
    app.ok(key, r#"mutation {
      kid: createCustomer(input: {externalId: "alice-kid", name: "Alice's event", parent: {externalId: "alice"}}) { customer { id } }
      promo: grantCredits(input: {customer: {externalId: "alice"}, creditSystem: {key: "photos"}, amount: "77", category: PROMOTIONAL, reason: "to void", idempotencyKey: "promo"}) { grant { id } }
      publishPlan(input: {plan: {key: "pro"}}) { plan { status } }
    }"#, json!({})).await;
    let write = app.key(Role::Write).await;
    let read = app.key(Role::Read).await;
    let names = [
        "console-customer-actions.png",
        "console-customer-write.png",
        "console-customer-read-actions.png",
    ];
    remove_screenshots(&names);
    let seen = run_script(
        "customer_actions.mjs",
        &[&app.url(""), key, &write, &read, &shots_dir()],
    )
    .await;
    assert_clean(&seen);
    let step = |name: &str| seen["steps"][name].clone();

    // Each write: the API's answer shown, the balance shown moved.
    assert_eq!(seen["start"], "1067 photos", "{seen}");
    assert!(
        step("adjust")["said"]
            .as_str()
            .unwrap()
            .contains("Adjusted by -40"),
        "{seen}"
    );
    assert_eq!(step("adjust")["balance"], "1027 photos", "{seen}");
    // The retry after a lost answer: the same key, applied once.
    assert!(
        step("adjust")["lost"]
            .as_str()
            .unwrap()
            .starts_with("Not adjusted"),
        "{seen}"
    );
    assert_eq!(step("adjust")["afterLost"], "1027 photos", "{seen}");
    assert!(
        step("void")["said"].as_str().unwrap().starts_with("Voided"),
        "{seen}"
    );
    assert_eq!(step("void")["balance"], "950 photos", "{seen}");
    assert_eq!(step("void")["status"], "voided", "{seen}");
    assert!(
        step("refund")["said"]
            .as_str()
            .unwrap()
            .contains("Refunded 10"),
        "{seen}"
    );
    assert_eq!(step("refund")["balance"], "960 photos", "{seen}");
    // A refused allocation says why (bob is not below alice).
    let refused = step("allocateRefused")["said"].as_str().unwrap().to_owned();
    assert!(refused.starts_with("Not allocated: "), "{refused}");
    assert!(refused.len() > "Not allocated: ".len() + 10, "{refused}");
    assert!(
        step("allocate")["said"]
            .as_str()
            .unwrap()
            .contains("Allocated 5 to alice-kid"),
        "{seen}"
    );
    assert_eq!(step("allocate")["balance"], "955 photos", "{seen}");
    assert_eq!(available(&app, "alice-kid").await, "5");
    // Subscribing grants the plan's included allowance: +100.
    assert!(
        step("subscribe")["said"]
            .as_str()
            .unwrap()
            .contains("Subscribed to Pro"),
        "{seen}"
    );
    assert_eq!(step("subscribe")["balance"], "1055 photos", "{seen}");
    assert!(
        step("subscribe")["row"]
            .as_str()
            .unwrap()
            .contains("ACTIVE"),
        "{seen}"
    );
    assert_eq!(available(&app, "alice").await, "1055");
    // Canceled from the subscriptions table (after a confirmation).
    let canceled = step("cancel")["row"].as_str().unwrap().to_owned();
    assert!(
        canceled.contains("CANCELED") || canceled.contains("2026-"),
        "{canceled}"
    );
    assert_eq!(step("cancel")["buttons"], 0, "{seen}");
    // The customer token, shown once, reads alice and nothing else.
    let token = step("token")["value"].as_str().unwrap().to_owned();
    assert!(
        step("token")["said"].as_str().unwrap().contains("expires"),
        "{seen}"
    );
    let (status, body) = app
        .gql(
            Some(&token),
            r#"{ customer(externalId: "alice") { wallet(creditSystem: {key: "photos"}) { balance { available } } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["customer"]["wallet"]["balance"]["available"], "1055",
        "{body}"
    );
    let (_, foreign) = app
        .gql(
            Some(&token),
            r#"{ customer(externalId: "bob") { name } }"#,
            json!({}),
        )
        .await;
    assert!(foreign["errors"].is_array(), "{foreign}");

    // WRITE: refund, allocate, token, edit the customer (as the API
    // allows); not grant, adjust, void, subscribe.
    assert_eq!(
        seen["writeView"]["regions"],
        json!([
            "Refund usage",
            "Allocate to a child",
            "Create a customer token",
            "Edit customer"
        ]),
        "{seen}"
    );
    assert_eq!(seen["writeView"]["voidButtons"], 0, "{seen}");
    assert_eq!(seen["writeView"]["cancelButtons"], 0, "{seen}");
    // READ: no form, no button of the console in <main>.
    assert_eq!(seen["readView"]["forms"], 0, "{seen}");
    assert_eq!(seen["readView"]["buttons"], 0, "{seen}");
    assert!(
        seen["readView"]["grantsRows"].as_u64().unwrap() >= 3,
        "{seen}"
    );
    assert_eq!(assert_accessible(&seen), 3, "{seen}");
    assert_screenshots(&names);
    app.verify_all().await;
}

// ------------------------------------------------------------- operations

type Hits = Arc<Mutex<usize>>;

/// A webhook receiver on 127.0.0.1:0 answering 500 to everything.
async fn failing_receiver() -> (String, Hits) {
    let hits: Hits = Arc::default();
    let kept = hits.clone();
    let app = Router::new().route(
        "/hook",
        post(move || {
            let kept = kept.clone();
            async move {
                *kept.lock().unwrap() += 1;
                (StatusCode::INTERNAL_SERVER_ERROR, "down for maintenance")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, hits)
}

#[tokio::test]
async fn webhooks_keys_jobs_orders_and_invoices_pages_work_in_chromium() {
    if skip_browser_test() {
        return;
    }
    install_harness();
    let _one = BROWSER.lock().await;
    let mut app = TestApp::spawn().await;
    app.restart_allowing_private_webhooks().await;
    let key = app.admin_key.clone();
    catalog_and_customers(&app).await;
    // What happened before the endpoint existed is not for it.
    dispatch(&app.t.db, &app.clock, 100).await.unwrap();

    // A failing endpoint with one failed attempt of a credits.granted.
    let (url, hits) = failing_receiver().await;
    webhooks::create_endpoint(
        &app.t.db,
        &app.clock,
        TargetPolicy::AllowPrivate,
        app.tenant_id,
        &url,
        &["credits.granted".to_owned()],
        "billing system",
    )
    .await
    .unwrap();
    app.ok(&key, r#"mutation { grantCredits(input: {customer: {externalId: "carol"}, creditSystem: {key: "photos"}, amount: "5", category: ADMIN, reason: "hook", idempotencyKey: "hook"}) { grant { id } } }"#, json!({})).await;
    let http = HttpTransport::new(StdDuration::from_secs(5), TargetPolicy::AllowPrivate).unwrap();
    dispatch(&app.t.db, &app.clock, 100).await.unwrap();
    webhooks::deliver_due(&app.t.db, &app.clock, &http, 100)
        .await
        .unwrap();
    assert_eq!(*hits.lock().unwrap(), 1);

    // 55 orders (5 of them failed: a second page, a filter), an invoice.
    app.ok(
        &key,
        r#"mutation { publishPlan(input: {plan: {key: "pro"}}) { plan { status } }
          subscribe(input: {customer: {externalId: "bob"}, plan: {key: "pro"}, idempotencyKey: "sub-bob"}) { subscription { id } } }"#,
        json!({}),
    )
    .await;
    let orders: Vec<String> = (0..55).map(|i| format!(
        r#"o{i}: purchaseCredits(input: {{customer: {{externalId: "bob"}}, creditSystem: {{key: "photos"}}, quantity: "{q}", idempotencyKey: "order-{i}"}}) {{ order {{ id }} }}"#,
        q = 10 + i
    )).collect();
    let made = app
        .ok(
            &key,
            &format!("mutation {{ {} }}", orders.join("\n")),
            json!({}),
        )
        .await;
    for i in 0..5 {
        app.ok(
            &key,
            "mutation($o: ID!) { failTopUpPayment(input: {order: $o, reason: \"card declined\"}) { order { status } } }",
            json!({"o": made[format!("o{i}")]["order"]["id"]}),
        )
        .await;
    }
    app.ok(
        &key,
        r#"mutation { applyCreditsToInvoice(customer: {externalId: "bob"}, invoice: {externalId: "INV-7", currency: "EUR", subtotal: "12.50"}, idempotencyKey: "inv-7") { status } }"#,
        json!({}),
    )
    .await;
    let read = app.key(Role::Read).await;

    let names = [
        "console-webhooks.png",
        "console-webhook-endpoint.png",
        "console-emails.png",
        "console-jobs.png",
        "console-api-keys.png",
        "console-orders.png",
        "console-order.png",
        "console-invoices.png",
        "console-webhooks-read.png",
    ];
    remove_screenshots(&names);
    let seen = run_script(
        "operations.mjs",
        &[&app.url(""), &key, &read, &url, &shots_dir()],
    )
    .await;
    assert_clean(&seen);

    // Webhooks: no events is refused with the API's message and field; a
    // new endpoint's secret is shown once; disable, delete.
    let refused = seen["webhooks"]["refused"].as_str().unwrap();
    assert!(
        refused.starts_with("Not created")
            && (refused.contains("events: ") || refused.contains("(events)")),
        "{refused}"
    );
    assert!(
        seen["webhooks"]["secret"]
            .as_str()
            .unwrap()
            .starts_with("whsec_"),
        "{seen}"
    );
    assert_eq!(seen["webhooks"]["endpointsAfterCreate"], 2, "{seen}");
    assert!(
        seen["webhooks"]["disabledRow"]
            .as_str()
            .unwrap()
            .contains("\tno"),
        "{seen}"
    );
    assert_eq!(seen["webhooks"]["endpointsAfterDelete"], 1, "{seen}");
    // The failing delivery with its attempt; Redeliver makes a new one.
    let first = seen["webhooks"]["deliveriesBefore"].as_array().unwrap();
    assert_eq!(first.len(), 1, "{seen}");
    assert!(first[0].as_str().unwrap().contains("HTTP 500"), "{seen}");
    assert!(
        seen["webhooks"]["redelivered"]
            .as_str()
            .unwrap()
            .contains("Redelivery queued"),
        "{seen}"
    );
    let after = seen["webhooks"]["deliveriesAfter"].as_array().unwrap();
    assert_eq!(after.len(), 2, "{seen}");
    assert!(
        after
            .iter()
            .any(|d| d.as_str().unwrap().contains("none yet")),
        "{seen}"
    );
    // Sent: the receiver is hit again, the new delivery has its attempt.
    webhooks::deliver_due(&app.t.db, &app.clock, &http, 100)
        .await
        .unwrap();
    assert_eq!(*hits.lock().unwrap(), 2);
    let deliveries = app
        .ok(
            &key,
            "{ webhookDeliveries(first: 10) { nodes { eventId attempts { statusCode } } } }",
            json!({}),
        )
        .await;
    let nodes = deliveries["webhookDeliveries"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2, "{deliveries}");
    assert_eq!(nodes[0]["eventId"], nodes[1]["eventId"]);
    for node in nodes {
        assert_eq!(node["attempts"], json!([{"statusCode": 500}]), "{node}");
    }

    // API keys: a new READ key works; revoked, it doesn't; the last ADMIN
    // key can't be revoked, and the page says why.
    let secret = seen["keys"]["secret"].as_str().unwrap();
    assert!(
        seen["keys"]["warning"]
            .as_str()
            .unwrap()
            .contains("shown only once"),
        "{seen}"
    );
    let (status, _) = app
        .gql(Some(secret), "{ viewer { role } }", json!({}))
        .await;
    assert_eq!(status, 401, "revoked from the UI");
    assert!(
        seen["keys"]["revokedRow"]
            .as_str()
            .unwrap()
            .contains("\tno"),
        "{seen}"
    );
    let last = seen["keys"]["lastAdmin"].as_str().unwrap();
    assert!(last.starts_with("Not revoked: "), "{last}");
    assert!(last.to_lowercase().contains("admin"), "{last}");
    let (status, _) = app.gql(Some(&key), "{ viewer { role } }", json!({})).await;
    assert_eq!(status, 200);

    // Orders: 50 a page, the next page, the FAILED filter, an order's page.
    assert_eq!(seen["orders"]["first"], 50, "{seen}");
    assert_eq!(seen["orders"]["second"], 5, "{seen}");
    assert_eq!(seen["orders"]["failed"], json!(vec!["FAILED"; 5]), "{seen}");
    assert!(
        seen["orders"]["order"]
            .as_str()
            .unwrap()
            .contains("card declined"),
        "{seen}"
    );
    assert!(
        seen["invoices"].as_str().unwrap().contains("INV-7"),
        "{seen}"
    );
    assert!(
        seen["jobs"].as_str().unwrap().contains("recent runs"),
        "{seen}"
    );
    // A READ key: told these pages are for ADMIN keys, no controls.
    assert_eq!(seen["readView"]["forms"], 0, "{seen}");
    assert_eq!(seen["readView"]["buttons"], 0, "{seen}");
    assert!(
        seen["readView"]["said"]
            .as_str()
            .unwrap()
            .contains("ADMIN keys only"),
        "{seen}"
    );
    assert_eq!(assert_accessible(&seen), 9, "{seen}");
    assert_screenshots(&names);
}

// ------------------------------------------------------------------ paint

/// First meaningful paint of a customer page with 3 wallets × 20 grants
/// × 20 usage entries: from navigation start until the three balances and
/// the first history rows are rendered, in Chromium. Printed, not
/// asserted against a threshold (README "Performance" has the figure).
#[tokio::test]
async fn a_big_customer_page_paints_and_the_time_is_measured() {
    if skip_browser_test() {
        return;
    }
    install_harness();
    let _one = BROWSER.lock().await;
    let app = TestApp::spawn().await;
    let key = &app.admin_key;
    app.ok(
        key,
        r#"mutation { createCustomer(input: {externalId: "big", name: "Big Studio"}) { customer { id } } }"#,
        json!({}),
    )
    .await;
    for system in ["photos", "videos", "prints"] {
        let mut ops = vec![format!(
            r#"cs: createCreditSystem(input: {{key: "{system}", name: "{system}", unitSingular: "unit", unitPlural: "units", precision: 0}}) {{ creditSystem {{ id }} }}"#
        )];
        for i in 0..20 {
            ops.push(format!(
                r#"g{i}: grantCredits(input: {{customer: {{externalId: "big"}}, creditSystem: {{key: "{system}"}}, amount: "{a}", category: PURCHASED, reason: "batch {i}", idempotencyKey: "{system}-g{i}"}}) {{ grant {{ id }} }}"#,
                a = 100 + i
            ));
        }
        for i in 0..20 {
            ops.push(format!(
                r#"c{i}: consumeCredits(input: {{customer: {{externalId: "big"}}, creditSystem: {{key: "{system}"}}, amount: "{a}", idempotencyKey: "{system}-c{i}", description: "job {i}"}}) {{ entry {{ id }} }}"#,
                a = 1 + i
            ));
        }
        app.ok(
            key,
            &format!("mutation {{ {} }}", ops.join("\n")),
            json!({}),
        )
        .await;
    }
    remove_screenshots(&["console-customer-big.png"]);
    let seen = run_script("paint.mjs", &[&app.url(""), key, "big", &shots_dir()]).await;
    assert_clean(&seen);
    let runs: Vec<f64> = seen["paints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(runs.len() >= 5 && runs.iter().all(|ms| *ms > 0.0), "{seen}");
    assert_eq!(seen["shown"]["balances"], 3, "{seen}");
    assert_eq!(seen["shown"]["grantRows"], 60, "{seen}");
    assert!(
        seen["shown"]["historyRows"].as_u64().unwrap() >= 3,
        "{seen}"
    );
    let mut sorted = runs.clone();
    sorted.sort_by(f64::total_cmp);
    let report = format!(
        "\ncustomer page first meaningful paint (3 wallets × 20 grants × 20 entries): \
         first load {:.0} ms, then median {:.0} ms, max {:.0} ms over {} reloads ({:?})\n\
         last reload's requests (start-end ms): {}\n",
        seen["cold"].as_f64().unwrap(),
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1],
        runs.len(),
        runs,
        seen["waterfall"]
    );
    // Past the test harness' capture: the figure is the point.
    let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), report.as_bytes());
    assert_eq!(assert_accessible(&seen), 1, "{seen}");
    assert_screenshots(&["console-customer-big.png"]);
}
