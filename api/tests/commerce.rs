//! Catalog, pricing, purchases and metered usage over HTTP, on SQLite and
//! PostgreSQL.

mod common;

use chrono::{Duration, TimeZone, Utc};
use common::{TestApp, code, field};
use serde_json::{Value, json};
use service::api_keys::Role;

/// The README's catalog walk-through, block by block, as written.
async fn run_walk_through(app: &TestApp) -> Vec<Value> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let section = readme
        .split("<!-- catalog-walk-through:start -->")
        .nth(1)
        .and_then(|s| s.split("<!-- catalog-walk-through:end -->").next())
        .expect("README has the catalog walk-through");
    let blocks: Vec<&str> = section
        .split("```graphql")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .collect();
    assert_eq!(blocks.len(), 8);
    let mut answers: Vec<Value> = Vec::new();
    for block in blocks {
        let block = match answers.last() {
            Some(prev) if block.contains("ORDER-ID-FROM-STEP-6") => block.replace(
                "ORDER-ID-FROM-STEP-6",
                prev["purchaseCredits"]["order"]["id"].as_str().unwrap(),
            ),
            _ => block.to_owned(),
        };
        answers.push(app.ok(&app.admin_key, &block, json!({})).await);
    }
    answers
}

#[tokio::test]
async fn readme_catalog_walk_through_runs_as_written() {
    let app = TestApp::spawn().await;
    let a = run_walk_through(&app).await;
    assert_eq!(a[1]["publishPlan"]["plan"]["status"], "PUBLISHED");
    let grants = &a[4]["ai"]["grants"];
    assert_eq!(grants[0]["category"], "INCLUDED");
    assert_eq!(grants[0]["amount"], "10000");
    // The clock stands at 2026-01-31T12:00Z: the first period ends Feb 28.
    assert_eq!(grants[0]["expiresAt"], "2026-02-28T12:00:00+00:00");
    let usage = &a[4]["trackUsage"]["entry"];
    assert_eq!(
        (
            usage["amount"].as_str(),
            usage["quantity"].as_str(),
            usage["balanceAfter"].as_str()
        ),
        (Some("-1.5"), Some("3"), Some("9998.5"))
    );
    let quote = &a[5]["purchaseCredits"]["order"]["quote"];
    assert_eq!(quote["subtotal"], "137500.00");
    assert_eq!(quote["total"], "137500.00");
    assert_eq!(quote["unitPrice"], "0.55");
    let paid = &a[6]["confirmTopUpPayment"]["order"];
    assert_eq!(paid["status"], "PAID");
    assert_eq!(paid["grant"]["category"], "PURCHASED");
    assert_eq!(paid["grant"]["costBasis"], "0.55");
    assert_eq!(paid["grant"]["expiresAt"], "2027-01-31T12:00:00+00:00");
    let customer = &a[7]["customer"];
    let balances: Vec<(String, String)> = customer["wallets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["creditSystem"]["key"].as_str().unwrap().to_owned(),
                w["balance"]["available"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        balances.contains(&("ai-tokens".into(), "9998.5".into())),
        "{balances:?}"
    );
    assert!(
        balances.contains(&("cabina".into(), "250000".into())),
        "{balances:?}"
    );
    // The purchase history: only PURCHASED grants, each with its payment.
    let purchases: Vec<Value> = customer["wallets"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|w| w["purchases"]["edges"].as_array().unwrap().clone())
        .map(|e| e["node"].clone())
        .collect();
    assert_eq!(
        purchases,
        vec![json!({
            "category": "PURCHASED",
            "amount": "250000",
            "order": {
                "gateway": "stripe",
                "paymentId": "pi_3Nx",
                "quote": {"total": "137500.00", "currency": "EUR"}
            }
        })],
        "the AI wallet's INCLUDED grant is not a purchase"
    );
    let check = &a[7]["checkEntitlement"];
    assert_eq!(
        check,
        &json!({"allowed": true, "creditCost": "5", "available": "9998.5"})
    );
    app.verify_all().await;
}

const QUOTE: &str = r#"query($q: Credits!) { quoteTopUp(customer: {externalId: "studio-7"}, creditSystem: {key: "cabina"}, quantity: $q) { subtotal total unitPrice lines { tier quantity amount } } }"#;

#[tokio::test]
async fn reference_prices_volume_and_graduated() {
    let app = TestApp::spawn().await;
    run_walk_through(&app).await;
    for (quantity, subtotal) in [
        ("10000", "8000.00"),
        ("50000", "35000.00"),
        ("100000", "65000.00"),
        ("250000", "137500.00"),
    ] {
        let data = app.ok(&app.admin_key, QUOTE, json!({"q": quantity})).await;
        assert_eq!(data["quoteTopUp"]["subtotal"], subtotal, "{quantity}");
        assert_eq!(data["quoteTopUp"]["lines"].as_array().unwrap().len(), 1);
    }
    // The same tiers, graduated, on a new draft of the plan.
    let dup = r#"mutation { duplicatePlan(input: {plan: {key: "cabina-partner"}, key: "cabina-graduated", name: "Graduated"}) { plan { status copiedFrom { key } credits { id } } } }"#;
    let data = app.ok(&app.admin_key, dup, json!({})).await;
    assert_eq!(data["duplicatePlan"]["plan"]["status"], "DRAFT");
    assert_eq!(
        data["duplicatePlan"]["plan"]["copiedFrom"]["key"],
        "cabina-partner"
    );
    let pc = data["duplicatePlan"]["plan"]["credits"][0]["id"].clone();
    let update = r#"mutation($pc: ID!) { updatePlanCredit(input: {planCredit: $pc, pricing: {commitment: UPFRONT, currency: "EUR",
        topUpPrice: {pricingType: GRADUATED, model: PER_PACKAGE, packageSize: "1000", tiers: [
          {firstUnit: "0", lastUnit: "10000", amount: "800"}, {firstUnit: "10000", lastUnit: "50000", amount: "700"},
          {firstUnit: "50000", lastUnit: "100000", amount: "650"}, {firstUnit: "100000", amount: "550"}]}}}) { planCredit { id } } }"#;
    app.ok(&app.admin_key, update, json!({"pc": pc})).await;
    let publish =
        r#"mutation { publishPlan(input: {plan: {key: "cabina-graduated"}}) { plan { status } } }"#;
    app.ok(&app.admin_key, publish, json!({})).await;
    let sub = r#"mutation { createCustomer(input: {externalId: "grad", name: "Grad"}) { customer { id } }
        subscribe(input: {customer: {externalId: "grad"}, plan: {key: "cabina-graduated"}, idempotencyKey: "s-grad"}) { subscription { id } } }"#;
    app.ok(&app.admin_key, sub, json!({})).await;
    let q = r#"{ quoteTopUp(customer: {externalId: "grad"}, creditSystem: {key: "cabina"}, quantity: "250000") { subtotal lines { tier amount } } }"#;
    let data = app.ok(&app.admin_key, q, json!({})).await;
    // 10 × 800 + 40 × 700 + 50 × 650 + 150 × 550 = 151,000.00
    assert_eq!(data["quoteTopUp"]["subtotal"], "151000.00");
    assert_eq!(data["quoteTopUp"]["lines"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn published_plans_are_frozen_and_archived_plans_take_no_subscribers() {
    let app = TestApp::spawn().await;
    run_walk_through(&app).await;
    let attach = r#"mutation { attachCreditSystem(input: {plan: {key: "ai-pro"}, creditSystem: {key: "sms"}, included: {amount: "10", resetInterval: DAILY}}) { planCredit { id } } }"#;
    let (_, body) = app.gql(Some(&app.admin_key), attach, json!({})).await;
    assert_eq!((code(&body), field(&body)), ("CONFLICT", "plan"));
    let set = r#"mutation { setEntitlement(input: {plan: {key: "ai-pro"}, feature: {key: "api.call"}, creditSystem: {key: "ai-tokens"}, creditCost: "1"}) { entitlement { id } } }"#;
    let (_, body) = app.gql(Some(&app.admin_key), set, json!({})).await;
    assert_eq!(code(&body), "CONFLICT");
    let credit = app
        .ok(
            &app.admin_key,
            r#"{ plan(key: "ai-pro") { credits { id } } }"#,
            json!({}),
        )
        .await["plan"]["credits"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let update = format!(
        r#"mutation {{ updatePlanCredit(input: {{planCredit: "{credit}", included: {{amount: "1", resetInterval: MONTHLY}}}}) {{ planCredit {{ id }} }} }}"#
    );
    for edit in [
        update.as_str(),
        r#"mutation { detachCreditSystem(input: {plan: {key: "ai-pro"}, creditSystem: {key: "ai-tokens"}}) { plan { id } } }"#,
        r#"mutation { removeEntitlement(input: {plan: {key: "ai-pro"}, feature: {key: "api.call"}}) { plan { id } } }"#,
    ] {
        let (_, body) = app.gql(Some(&app.admin_key), edit, json!({})).await;
        assert_eq!(
            (code(&body), field(&body)),
            ("CONFLICT", "plan"),
            "{edit}: {body}"
        );
    }
    let archive =
        r#"mutation { archivePlan(input: {plan: {key: "sms-basic"}}) { plan { status } } }"#;
    app.ok(&app.admin_key, archive, json!({})).await;
    let sub = r#"mutation { subscribe(input: {customer: {externalId: "studio-7"}, plan: {key: "sms-basic"}, idempotencyKey: "s-sms"}) { subscription { id } } }"#;
    let (_, body) = app.gql(Some(&app.admin_key), sub, json!({})).await;
    assert_eq!((code(&body), field(&body)), ("CONFLICT", "plan"));
    // A draft can't be subscribed to either, and it is editable.
    let draft = r#"mutation { createPlan(input: {product: {key: "sms"}, key: "sms-2", name: "SMS 2", billingInterval: MONTHLY}) { plan { status } }
        attachCreditSystem(input: {plan: {key: "sms-2"}, creditSystem: {key: "sms"}, included: {amount: "50", resetInterval: WEEKLY, rolloverCap: "25"}}) { planCredit { included { amount resetInterval rolloverCap } } } }"#;
    let data = app.ok(&app.admin_key, draft, json!({})).await;
    assert_eq!(
        data["attachCreditSystem"]["planCredit"]["included"],
        json!({"amount": "50", "resetInterval": "WEEKLY", "rolloverCap": "25"})
    );
    let sub = r#"mutation { subscribe(input: {customer: {externalId: "studio-7"}, plan: {key: "sms-2"}, idempotencyKey: "s-sms-2"}) { subscription { id } } }"#;
    let (_, body) = app.gql(Some(&app.admin_key), sub, json!({})).await;
    assert_eq!(code(&body), "CONFLICT");
}

#[tokio::test]
async fn tier_tables_are_validated_naming_the_tier() {
    let app = TestApp::spawn().await;
    run_walk_through(&app).await;
    app.ok(
        &app.admin_key,
        r#"mutation { createPlan(input: {product: {key: "sms"}, key: "bad", name: "Bad", billingInterval: MONTHLY}) { plan { id } } }"#,
        json!({}),
    )
    .await;
    let attach = r#"mutation($tiers: [PriceTierInput!]!) { attachCreditSystem(input: {plan: {key: "bad"}, creditSystem: {key: "sms"},
        pricing: {commitment: PAY_AS_YOU_GO, currency: "EUR", topUpPrice: {pricingType: VOLUME, model: PER_UNIT, tiers: $tiers}}}) { planCredit { id } } }"#;
    let cases = [
        (
            json!([{"firstUnit": "0", "lastUnit": "100", "amount": "1"}, {"firstUnit": "150", "amount": "1"}]),
            "pricing.topUpPrice.tiers[1]",
        ),
        (
            json!([{"firstUnit": "0", "lastUnit": "100", "amount": "1"}, {"firstUnit": "50", "amount": "1"}]),
            "pricing.topUpPrice.tiers[1]",
        ),
        (
            json!([{"firstUnit": "0", "amount": "1"}, {"firstUnit": "100", "amount": "1"}]),
            "pricing.topUpPrice.tiers[0]",
        ),
        (
            json!([{"firstUnit": "5", "amount": "1"}]),
            "pricing.topUpPrice.tiers[0]",
        ),
        (
            json!([{"firstUnit": "0", "amount": "-1"}]),
            "pricing.topUpPrice.tiers[0]",
        ),
        (json!([]), "pricing.topUpPrice.tiers"),
    ];
    for (tiers, expected) in cases {
        let (_, body) = app
            .gql(Some(&app.admin_key), attach, json!({"tiers": tiers}))
            .await;
        assert_eq!(
            (code(&body), field(&body)),
            ("VALIDATION", expected),
            "{tiers}: {body}"
        );
    }
}

#[tokio::test]
async fn purchases_confirm_once_fail_and_expire() {
    let app = TestApp::spawn().await;
    run_walk_through(&app).await;
    let write = app.key(Role::Write).await;
    let read = app.key(Role::Read).await;
    let buy = r#"mutation($q: Credits!, $k: String!) { purchaseCredits(input: {customer: {externalId: "studio-7"}, creditSystem: {key: "sms"}, quantity: $q, idempotencyKey: $k}) { order { id status quote { total } } } }"#;
    // studio-7 has no SMS plan yet.
    let (_, body) = app
        .gql(Some(&write), buy, json!({"q": "500", "k": "o1"}))
        .await;
    assert_eq!((code(&body), field(&body)), ("VALIDATION", "creditSystem"));
    app.ok(&app.admin_key, r#"mutation { subscribe(input: {customer: {externalId: "studio-7"}, plan: {key: "sms-basic"}, idempotencyKey: "s-sms"}) { subscription { id } } }"#, json!({})).await;
    for (q, f) in [
        ("99", "quantity"),
        ("100001", "quantity"),
        ("10.5", "quantity"),
    ] {
        let (_, body) = app
            .gql(Some(&write), buy, json!({"q": q, "k": format!("bad-{q}")}))
            .await;
        assert_eq!((code(&body), field(&body)), ("VALIDATION", f), "{q}");
    }
    let (_, body) = app
        .gql(Some(&read), buy, json!({"q": "500", "k": "o1"}))
        .await;
    assert_eq!(code(&body), "FORBIDDEN");
    // READ can quote: 1,500 SMS = 10 packages × 5.00 + 5 × 4.00 = 70.00
    let quote = app
        .ok(&read, r#"{ quoteTopUp(customer: {externalId: "studio-7"}, creditSystem: {key: "sms"}, quantity: "1500") { total } }"#, json!({}))
        .await;
    assert_eq!(quote["quoteTopUp"]["total"], "70.00");

    let order = app.ok(&write, buy, json!({"q": "1500", "k": "o1"})).await;
    let again = app.ok(&write, buy, json!({"q": "1500", "k": "o1"})).await;
    assert_eq!(order, again, "a retried purchase is the same order");
    let id = order["purchaseCredits"]["order"]["id"].clone();
    let confirm = r#"mutation($id: ID!, $p: String!) { confirmTopUpPayment(input: {order: $id, gateway: "barion", paymentId: $p}) { order { status grant { id amount } } } }"#;
    // Recording a payment mints credits: ADMIN only, never WRITE.
    let (_, body) = app
        .gql(Some(&write), confirm, json!({"id": id, "p": "pay-1"}))
        .await;
    assert_eq!(code(&body), "FORBIDDEN");
    let admin = &app.admin_key;
    let first = app
        .ok(admin, confirm, json!({"id": id, "p": "pay-1"}))
        .await;
    let second = app
        .ok(admin, confirm, json!({"id": id, "p": "pay-1"}))
        .await;
    assert_eq!(first, second, "confirming twice grants once");
    let (_, body) = app
        .gql(Some(admin), confirm, json!({"id": id, "p": "pay-2"}))
        .await;
    assert_eq!((code(&body), field(&body)), ("CONFLICT", "paymentId"));
    let balance = r#"{ customer(externalId: "studio-7") { wallet(creditSystem: {key: "sms"}) { balance { available purchased } } } }"#;
    let data = app.ok(&read, balance, json!({})).await;
    assert_eq!(
        data["customer"]["wallet"]["balance"],
        json!({"available": "1500", "purchased": "1500"})
    );

    // A failed payment; a pending order that expires after 24 hours.
    let failed =
        app.ok(&write, buy, json!({"q": "100", "k": "o2"})).await["purchaseCredits"]["order"]["id"]
            .clone();
    let fail = r#"mutation($id: ID!) { failTopUpPayment(input: {order: $id, reason: "card declined"}) { order { status failureReason } } }"#;
    let (_, body) = app.gql(Some(&write), fail, json!({"id": failed})).await;
    assert_eq!(code(&body), "FORBIDDEN");
    let data = app.ok(admin, fail, json!({"id": failed})).await;
    assert_eq!(data["failTopUpPayment"]["order"]["status"], "FAILED");
    let (_, body) = app
        .gql(Some(admin), confirm, json!({"id": failed, "p": "late"}))
        .await;
    assert_eq!(code(&body), "CONFLICT");
    let stale =
        app.ok(&write, buy, json!({"q": "100", "k": "o3"})).await["purchaseCredits"]["order"]["id"]
            .clone();
    app.clock.advance(Duration::hours(24));
    let status = app
        .ok(
            &read,
            r#"query($id: ID!) { topUpOrder(id: $id) { status } }"#,
            json!({"id": stale}),
        )
        .await;
    assert_eq!(status["topUpOrder"]["status"], "EXPIRED");
    let (_, body) = app
        .gql(Some(admin), confirm, json!({"id": stale, "p": "late"}))
        .await;
    assert_eq!((code(&body), field(&body)), ("CONFLICT", "order"));
    let listed = app
        .ok(&read, r#"{ topUpOrders(customer: {externalId: "studio-7"}, status: EXPIRED) { edges { node { id } } } }"#, json!({}))
        .await;
    assert_eq!(listed["topUpOrders"]["edges"].as_array().unwrap().len(), 1);
    app.verify_all().await;
}

#[tokio::test]
async fn metered_usage_is_priced_by_the_plan() {
    let app = TestApp::spawn().await;
    run_walk_through(&app).await;
    let write = app.key(Role::Write).await;
    let track = r#"mutation($q: Decimal!, $k: String!, $f: String!) { trackUsage(input: {customer: {externalId: "studio-7"}, feature: {key: $f}, quantity: $q, idempotencyKey: $k}) { entry { amount quantity feature } } }"#;
    let data = app
        .ok(
            &write,
            track,
            json!({"q": "0.2", "k": "t1", "f": "api.call"}),
        )
        .await;
    assert_eq!(
        data["trackUsage"]["entry"],
        json!({"amount": "-0.1", "quantity": "0.2", "feature": "api.call"})
    );
    // 0.5 × 0.01 = 0.005 needs three decimals; ai-tokens has two.
    let (_, body) = app
        .gql(
            Some(&write),
            track,
            json!({"q": "0.01", "k": "t2", "f": "api.call"}),
        )
        .await;
    assert_eq!((code(&body), field(&body)), ("VALIDATION", "quantity"));
    app.ok(&app.admin_key, r#"mutation { createFeature(input: {key: "video.render", name: "Video", unit: "minute"}) { feature { id } } }"#, json!({})).await;
    let (_, body) = app
        .gql(
            Some(&write),
            track,
            json!({"q": "1", "k": "t3", "f": "video.render"}),
        )
        .await;
    assert_eq!(
        (code(&body), field(&body)),
        ("FEATURE_NOT_ENTITLED", "feature")
    );
    let check = r#"{ checkEntitlement(customer: {externalId: "studio-7"}, feature: {key: "video.render"}) { allowed reason } }"#;
    let data = app.ok(&write, check, json!({})).await;
    assert_eq!(
        data["checkEntitlement"],
        json!({"allowed": false, "reason": "NOT_ENTITLED"})
    );
    let (_, body) = app
        .gql(
            Some(&app.key(Role::Read).await),
            track,
            json!({"q": "1", "k": "t4", "f": "api.call"}),
        )
        .await;
    assert_eq!(code(&body), "FORBIDDEN");
    // Too much for the balance: all or nothing, with the numbers.
    let (_, body) = app
        .gql(
            Some(&write),
            track,
            json!({"q": "30000", "k": "t5", "f": "api.call"}),
        )
        .await;
    assert_eq!(code(&body), "INSUFFICIENT_CREDITS");
    let data = app
        .ok(&write, r#"{ checkEntitlement(customer: {externalId: "studio-7"}, feature: {key: "api.call"}, quantity: "30000") { allowed reason creditCost } }"#, json!({}))
        .await;
    assert_eq!(
        data["checkEntitlement"],
        json!({"allowed": false, "reason": "INSUFFICIENT_CREDITS", "creditCost": "15000"})
    );
    app.verify_all().await;
}

#[tokio::test]
async fn block_limits_and_mandatory_purchases_gate_usage() {
    let app = TestApp::spawn().await;
    run_walk_through(&app).await;
    let plan = r#"mutation {
      createPlan(input: {product: {key: "ai-assistant"}, key: "ai-strict", name: "AI strict", billingInterval: MONTHLY}) { plan { id } }
      attachCreditSystem(input: {plan: {key: "ai-strict"}, creditSystem: {key: "ai-tokens"},
        included: {amount: "100", resetInterval: MONTHLY},
        pricing: {commitment: PAY_AS_YOU_GO, currency: "EUR", lowCreditLimit: "20", lowCreditAction: BLOCK, mandatoryPurchase: true,
          topUpPrice: {pricingType: VOLUME, model: PER_UNIT, tiers: [{firstUnit: "0", amount: "0.01"}]}}}) { planCredit { id } }
      setEntitlement(input: {plan: {key: "ai-strict"}, feature: {key: "api.call"}, creditSystem: {key: "ai-tokens"}, creditCost: "10"}) { entitlement { id } }
      publishPlan(input: {plan: {key: "ai-strict"}}) { plan { status } }
      createCustomer(input: {externalId: "strict", name: "Strict"}) { customer { id } }
      subscribe(input: {customer: {externalId: "strict"}, plan: {key: "ai-strict"}, idempotencyKey: "s-strict"}) { subscription { id } }
    }"#;
    app.ok(&app.admin_key, plan, json!({})).await;
    let track = r#"mutation($q: Decimal!, $k: String!) { trackUsage(input: {customer: {externalId: "strict"}, feature: {key: "api.call"}, quantity: $q, idempotencyKey: $k}) { entry { balanceAfter } } }"#;
    let (_, body) = app
        .gql(Some(&app.admin_key), track, json!({"q": "1", "k": "u1"}))
        .await;
    assert_eq!(code(&body), "PURCHASE_REQUIRED");
    let buy = r#"mutation { purchaseCredits(input: {customer: {externalId: "strict"}, creditSystem: {key: "ai-tokens"}, quantity: "10", idempotencyKey: "strict-o1"}) { order { id } } }"#;
    let id = app.ok(&app.admin_key, buy, json!({})).await["purchaseCredits"]["order"]["id"].clone();
    app.ok(&app.admin_key, r#"mutation($id: ID!) { confirmTopUpPayment(input: {order: $id, gateway: "test", paymentId: "p"}) { order { status } } }"#, json!({"id": id})).await;
    // 110 available; the BLOCK limit keeps 20: 9 calls (90) fit, a 10th doesn't.
    let data = app
        .ok(&app.admin_key, track, json!({"q": "9", "k": "u2"}))
        .await;
    assert_eq!(data["trackUsage"]["entry"]["balanceAfter"], "20");
    let (_, body) = app
        .gql(Some(&app.admin_key), track, json!({"q": "1", "k": "u3"}))
        .await;
    assert_eq!(code(&body), "LOW_CREDIT_LIMIT");
    assert_eq!(body["errors"][0]["extensions"]["limit"], "20");
    // Direct consumption is held to the same floor.
    let consume = r#"mutation { consumeCredits(input: {customer: {externalId: "strict"}, creditSystem: {key: "ai-tokens"}, amount: "0.01", idempotencyKey: "c1"}) { entry { id } } }"#;
    let (_, body) = app.gql(Some(&app.admin_key), consume, json!({})).await;
    assert_eq!(code(&body), "LOW_CREDIT_LIMIT");
    let check = r#"{ checkEntitlement(customer: {externalId: "strict"}, feature: {key: "api.call"}) { allowed reason available } }"#;
    let data = app.ok(&app.admin_key, check, json!({})).await;
    assert_eq!(
        data["checkEntitlement"],
        json!({"allowed": false, "reason": "LOW_CREDIT_LIMIT", "available": "20"})
    );
    app.verify_all().await;
}

#[tokio::test]
async fn auto_top_up_requests_one_order_below_its_trigger() {
    let app = TestApp::spawn().await;
    run_walk_through(&app).await;
    let plan = r#"mutation {
      createPlan(input: {product: {key: "sms"}, key: "sms-auto", name: "SMS auto", billingInterval: MONTHLY}) { plan { id } }
      attachCreditSystem(input: {plan: {key: "sms-auto"}, creditSystem: {key: "sms"},
        pricing: {commitment: PAY_AS_YOU_GO, currency: "EUR", autoTopUp: {below: "50", quantity: "500"},
          topUpPrice: {pricingType: VOLUME, model: PER_UNIT, tiers: [{firstUnit: "0", amount: "0.04"}]}}}) { planCredit { pricing { autoTopUp { below quantity } } } }
      publishPlan(input: {plan: {key: "sms-auto"}}) { plan { status } }
      createCustomer(input: {externalId: "auto", name: "Auto"}) { customer { id } }
      subscribe(input: {customer: {externalId: "auto"}, plan: {key: "sms-auto"}, idempotencyKey: "s-auto"}) { subscription { id } }
      grantCredits(input: {customer: {externalId: "auto"}, creditSystem: {key: "sms"}, amount: "100", category: PROMOTIONAL, reason: "welcome", idempotencyKey: "g-auto"}) { entry { id } }
    }"#;
    let data = app.ok(&app.admin_key, plan, json!({})).await;
    assert_eq!(
        data["attachCreditSystem"]["planCredit"]["pricing"]["autoTopUp"],
        json!({"below": "50", "quantity": "500"})
    );
    let consume = r#"mutation($a: Credits!, $k: String!) { consumeCredits(input: {customer: {externalId: "auto"}, creditSystem: {key: "sms"}, amount: $a, idempotencyKey: $k}) { entry { balanceAfter } } }"#;
    let orders = r#"{ topUpOrders(customer: {externalId: "auto"}) { edges { node { status automatic quantity quote { total } } } } }"#;
    // Above the trigger: nothing.
    app.ok(&app.admin_key, consume, json!({"a": "30", "k": "c1"}))
        .await;
    service::notifications::dispatch(&app.t.db, &app.clock, 100)
        .await
        .unwrap();
    assert_eq!(
        app.ok(&app.admin_key, orders, json!({})).await["topUpOrders"]["edges"],
        json!([])
    );
    // Below it: one automatic order, however many consumptions follow.
    for (a, k) in [("30", "c2"), ("5", "c3"), ("5", "c4")] {
        app.ok(&app.admin_key, consume, json!({"a": a, "k": k}))
            .await;
        service::notifications::dispatch(&app.t.db, &app.clock, 100)
            .await
            .unwrap();
    }
    let data = app.ok(&app.admin_key, orders, json!({})).await;
    assert_eq!(
        data["topUpOrders"]["edges"],
        json!([{"node": {"status": "PENDING", "automatic": true, "quantity": "500", "quote": {"total": "20.00"}}}])
    );
    app.verify_all().await;
}

#[tokio::test]
async fn catalog_and_commerce_mutations_refuse_bad_input() {
    let app = TestApp::spawn().await;
    run_walk_through(&app).await;
    let write = app.key(Role::Write).await;
    let cases: Vec<(&str, &str, &str, Option<&str>)> = vec![
        (
            r#"mutation { createProduct(input: {key: "Bad Key", name: "x"}) { product { id } } }"#,
            "admin",
            "VALIDATION",
            Some("key"),
        ),
        (
            r#"mutation { createProduct(input: {key: "ok", name: "x"}) { product { id } } }"#,
            "write",
            "FORBIDDEN",
            None,
        ),
        (
            r#"mutation { createFeature(input: {key: "f", name: "", unit: "call"}) { feature { id } } }"#,
            "admin",
            "VALIDATION",
            Some("name"),
        ),
        (
            r#"mutation { createPlan(input: {product: {key: "nope"}, key: "p", name: "P", billingInterval: MONTHLY}) { plan { id } } }"#,
            "admin",
            "NOT_FOUND",
            Some("product"),
        ),
        (
            r#"mutation { createPlan(input: {product: {id: "cus_00000000000000000000000000000000"}, key: "p", name: "P", billingInterval: MONTHLY}) { plan { id } } }"#,
            "admin",
            "VALIDATION",
            Some("product"),
        ),
        (
            r#"mutation { publishPlan(input: {plan: {key: "nope"}}) { plan { id } } }"#,
            "admin",
            "NOT_FOUND",
            Some("plan"),
        ),
        (
            r#"mutation { subscribe(input: {customer: {externalId: "nobody"}, plan: {key: "ai-pro"}, idempotencyKey: "x"}) { subscription { id } } }"#,
            "admin",
            "NOT_FOUND",
            Some("customer"),
        ),
        (
            r#"mutation { subscribe(input: {customer: {externalId: "studio-7"}, plan: {key: "ai-pro"}, idempotencyKey: ""}) { subscription { id } } }"#,
            "admin",
            "VALIDATION",
            Some("idempotencyKey"),
        ),
        (
            r#"mutation { subscribe(input: {customer: {externalId: "studio-7"}, plan: {key: "ai-pro"}, idempotencyKey: "w"}) { subscription { id } } }"#,
            "write",
            "FORBIDDEN",
            None,
        ),
        (
            r#"mutation { cancelSubscription(input: {subscription: "sub_00000000000000000000000000000000"}) { subscription { id } } }"#,
            "admin",
            "NOT_FOUND",
            Some("subscription"),
        ),
        (
            r#"mutation { cancelSubscription(input: {subscription: "ord_00000000000000000000000000000000"}) { subscription { id } } }"#,
            "admin",
            "VALIDATION",
            Some("subscription"),
        ),
        (
            r#"mutation { confirmTopUpPayment(input: {order: "ord_00000000000000000000000000000000", gateway: "g", paymentId: "p"}) { order { id } } }"#,
            "admin",
            "NOT_FOUND",
            Some("order"),
        ),
        (
            r#"mutation { failTopUpPayment(input: {order: "ord_00000000000000000000000000000000", reason: ""}) { order { id } } }"#,
            "admin",
            "VALIDATION",
            Some("reason"),
        ),
        (
            r#"mutation { trackUsage(input: {customer: {externalId: "studio-7"}, feature: {key: "api.call"}, quantity: "0", idempotencyKey: "z"}) { entry { id } } }"#,
            "write",
            "VALIDATION",
            Some("quantity"),
        ),
        (
            r#"mutation { trackUsage(input: {customer: {externalId: "studio-7"}, feature: {key: "nope"}, quantity: "1", idempotencyKey: "z"}) { entry { id } } }"#,
            "write",
            "NOT_FOUND",
            Some("feature"),
        ),
    ];
    for (query, who, expected, f) in cases {
        let key = if who == "admin" {
            &app.admin_key
        } else {
            &write
        };
        let (_, body) = app.gql(Some(key), query, json!({})).await;
        assert_eq!(code(&body), expected, "{query}: {body}");
        if let Some(f) = f {
            assert_eq!(field(&body), f, "{query}");
        }
    }
    // Another tenant's plan is simply not there.
    let (_, other) = app.other_tenant("other").await;
    let (_, body) = app
        .gql(Some(&other), r#"{ plan(key: "ai-pro") { id } }"#, json!({}))
        .await;
    assert_eq!(code(&body), "NOT_FOUND");
    app.verify_all().await;
}

#[tokio::test]
async fn recurring_prices_order_once_per_billing_period() {
    let app = TestApp::spawn().await;
    run_walk_through(&app).await;
    let plan = r#"mutation {
      createPlan(input: {product: {key: "sms"}, key: "sms-monthly", name: "SMS monthly", billingInterval: MONTHLY}) { plan { id } }
      attachCreditSystem(input: {plan: {key: "sms-monthly"}, creditSystem: {key: "sms"},
        pricing: {commitment: UPFRONT, currency: "EUR", taxRate: "0.27",
          recurringPrice: {quantity: "1000", price: {pricingType: VOLUME, model: PER_UNIT, tiers: [{firstUnit: "0", amount: "0.01"}]}}}}) {
        planCredit { pricing { recurringPrice { quantity price { model } } } } }
      publishPlan(input: {plan: {key: "sms-monthly"}}) { plan { status } }
      createCustomer(input: {externalId: "monthly", name: "Monthly"}) { customer { id } }
      subscribe(input: {customer: {externalId: "monthly"}, plan: {key: "sms-monthly"}, idempotencyKey: "s-monthly"}) { subscription { id } }
    }"#;
    app.ok(&app.admin_key, plan, json!({})).await;
    let orders = r#"{ topUpOrders(customer: {externalId: "monthly"}) { edges { node { id status automatic quantity quote { total } } } } }"#;
    let list = |data: &Value| data["topUpOrders"]["edges"].as_array().unwrap().clone();
    let first = list(&app.ok(&app.admin_key, orders, json!({})).await);
    assert_eq!(
        first.len(),
        1,
        "the first billing period is ordered at once"
    );
    assert_eq!(first[0]["node"]["automatic"], true);
    assert_eq!(first[0]["node"]["quote"]["total"], "12.70"); // 1000 × 0.01 + 27 %
    // The same period again changes nothing; the next period orders once.
    service::allowances::reset_due(&app.t.db, &app.clock, 100)
        .await
        .unwrap();
    assert_eq!(
        list(&app.ok(&app.admin_key, orders, json!({})).await).len(),
        1
    );
    app.clock.advance(Duration::days(29));
    for _ in 0..2 {
        service::allowances::reset_due(&app.t.db, &app.clock, 100)
            .await
            .unwrap();
    }
    let both = list(&app.ok(&app.admin_key, orders, json!({})).await);
    assert_eq!(both.len(), 2);
    // The first one went unpaid for 24 hours; the new one is paid and its
    // credits are granted like any purchase.
    assert_eq!(both[1]["node"]["status"], "EXPIRED");
    let confirm = r#"mutation($id: ID!) { confirmTopUpPayment(input: {order: $id, gateway: "sepa", paymentId: "m1"}) { order { status grant { amount category } } } }"#;
    let data = app
        .ok(
            &app.admin_key,
            confirm,
            json!({"id": both[0]["node"]["id"]}),
        )
        .await;
    assert_eq!(
        data["confirmTopUpPayment"]["order"]["grant"],
        json!({"amount": "1000", "category": "PURCHASED"})
    );
    app.verify_all().await;
}

/// A canceled subscription keeps what it was granted, gets no period that
/// starts at or after `cancelAt`, and reads `CANCELED` from then on.
#[tokio::test]
async fn a_canceled_subscription_stops_resetting_at_its_cancel_date() {
    let app = TestApp::spawn().await;
    run_walk_through(&app).await;
    // studio-7 is on ai-pro since 2026-01-31T12:00Z (10,000 tokens a month).
    let subs = r#"{ customer(externalId: "studio-7") { subscriptions { id status cancelAt plan { key } } } }"#;
    let data = app.ok(&app.admin_key, subs, json!({})).await;
    let sub = data["customer"]["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["plan"]["key"] == "ai-pro")
        .unwrap()
        .clone();
    assert_eq!(sub["status"], "ACTIVE");
    let cancel = r#"mutation($s: ID!, $at: DateTime) { cancelSubscription(input: {subscription: $s, at: $at}) { subscription { status cancelAt } } }"#;
    let data = app
        .ok(
            &app.admin_key,
            cancel,
            json!({"s": sub["id"], "at": "2026-03-15T00:00:00Z"}),
        )
        .await;
    assert_eq!(
        data["cancelSubscription"]["subscription"],
        json!({"status": "ACTIVE", "cancelAt": "2026-03-15T00:00:00+00:00"})
    );
    // Months later: periods starting Feb 28 (before the cancel date) were
    // granted; those from Mar 31 on were not.
    app.clock
        .set(Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap());
    for _ in 0..2 {
        service::allowances::reset_due(&app.t.db, &app.clock, 100)
            .await
            .unwrap();
    }
    let included = r#"{ customer(externalId: "studio-7") { wallet(creditSystem: {key: "ai-tokens"}) {
        grants(first: 20, filter: {categories: [INCLUDED]}) { edges { node { amount expiresAt } } } } } }"#;
    let data = app.ok(&app.admin_key, included, json!({})).await;
    let ends: Vec<&str> = data["customer"]["wallet"]["grants"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["expiresAt"].as_str().unwrap())
        .collect();
    assert_eq!(
        ends,
        vec!["2026-03-31T12:00:00+00:00", "2026-02-28T12:00:00+00:00"],
        "newest first: the period Feb 28 – Mar 31 and the first one"
    );
    let data = app.ok(&app.admin_key, subs, json!({})).await;
    let after = data["customer"]["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["plan"]["key"] == "ai-pro")
        .unwrap()
        .clone();
    assert_eq!(after["status"], "CANCELED");
    // Canceling again, later, keeps the earlier date (nothing changes).
    let data = app
        .ok(&app.admin_key, cancel, json!({"s": sub["id"], "at": null}))
        .await;
    assert_eq!(
        data["cancelSubscription"]["subscription"],
        json!({"status": "CANCELED", "cancelAt": "2026-03-15T00:00:00+00:00"})
    );
    app.verify_all().await;
}
