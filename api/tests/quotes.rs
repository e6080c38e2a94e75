//! `quoteTopUp(pricing: …)`: a price previewed before it is saved (the
//! console's price editor), through the same arithmetic as a customer's
//! quote; bad input refused with the field at fault; any key may ask.

mod common;

use common::{TestApp, code, field};
use serde_json::{Value, json};

const PREVIEW: &str = r#"query($q: Credits!, $p: PlanPricingInput!) {
  quoteTopUp(creditSystem: {key: "tokens"}, quantity: $q, pricing: $p) {
    quantity subtotal tax total currency unitPrice lines { tier quantity unitAmount amount } } }"#;

fn graduated() -> Value {
    json!({"commitment": "PAY_AS_YOU_GO", "currency": "EUR", "taxRate": "0.2", "minQuantity": "10",
        "maxQuantity": "100000",
        "topUpPrice": {"pricingType": "GRADUATED", "model": "PER_UNIT", "tiers": [
            {"firstUnit": "0", "lastUnit": "1000", "amount": "0.05"},
            {"firstUnit": "1000", "amount": "0.03"}]}})
}

async fn setup(app: &TestApp) {
    app.ok(&app.admin_key, r#"mutation {
      createCreditSystem(input: {key: "tokens", name: "Tokens", unitSingular: "token", unitPlural: "tokens", precision: 0}) { creditSystem { id } }
      createProduct(input: {key: "api", name: "API"}) { product { id } }
      createPlan(input: {product: {key: "api"}, key: "payg", name: "Pay as you go", billingInterval: MONTHLY}) { plan { id } }
      createCustomer(input: {externalId: "c1", name: "C1"}) { customer { id } }
    }"#, json!({})).await;
}

#[tokio::test]
async fn a_preview_quotes_what_the_saved_plan_then_charges() {
    let app = TestApp::spawn().await;
    setup(&app).await;
    let read = app.key(service::api_keys::Role::Read).await;
    // 1000 × 0.05 + 1500 × 0.03 = 95.00, tax 19.00: any key may preview.
    let preview = app
        .ok(&read, PREVIEW, json!({"q": "2500", "p": graduated()}))
        .await["quoteTopUp"]
        .clone();
    assert_eq!(preview["subtotal"], "95.00", "{preview}");
    assert_eq!(preview["tax"], "19.00");
    assert_eq!(preview["total"], "114.00");
    assert_eq!(preview["currency"], "EUR");
    assert_eq!(preview["lines"].as_array().unwrap().len(), 2);
    assert_eq!(preview["lines"][1]["quantity"], "1500");

    // Saved, published, subscribed: the customer's quote is the same.
    app.ok(
        &app.admin_key,
        r#"mutation($p: PlanPricingInput!) {
          attachCreditSystem(input: {plan: {key: "payg"}, creditSystem: {key: "tokens"}, pricing: $p}) { planCredit { id } }
          publishPlan(input: {plan: {key: "payg"}}) { plan { status } }
          subscribe(input: {customer: {externalId: "c1"}, plan: {key: "payg"}, idempotencyKey: "s1"}) { subscription { id } } }"#,
        json!({"p": graduated()}),
    )
    .await;
    let charged = app
        .ok(
            &read,
            r#"{ quoteTopUp(customer: {externalId: "c1"}, creditSystem: {key: "tokens"}, quantity: "2500") {
              quantity subtotal tax total currency unitPrice lines { tier quantity unitAmount amount } } }"#,
            json!({}),
        )
        .await["quoteTopUp"]
        .clone();
    assert_eq!(preview, charged);
    app.verify_all().await;
}

#[tokio::test]
async fn a_bad_preview_is_refused_with_its_field() {
    let app = TestApp::spawn().await;
    setup(&app).await;
    let key = app.admin_key.clone();
    let refused = async |query: &str, vars: Value| -> (String, String, String) {
        let (_, body) = app.gql(Some(&key), query, vars).await;
        assert!(body["data"].is_null(), "{body}");
        (
            code(&body).to_owned(),
            field(&body).to_owned(),
            body["errors"][0]["message"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
        )
    };
    let with = |f: &dyn Fn(&mut Value)| {
        let mut p = graduated();
        f(&mut p);
        p
    };

    // Neither customer nor pricing; both.
    let (c, f, _) = refused(
        r#"{ quoteTopUp(creditSystem: {key: "tokens"}, quantity: "5") { total } }"#,
        json!({}),
    )
    .await;
    assert_eq!((c.as_str(), f.as_str()), ("VALIDATION", "pricing"));
    let both = r#"query($p: PlanPricingInput!) { quoteTopUp(customer: {externalId: "c1"}, creditSystem: {key: "tokens"}, quantity: "5", pricing: $p) { total } }"#;
    let (c, f, _) = refused(both, json!({"p": graduated()})).await;
    assert_eq!((c.as_str(), f.as_str()), ("VALIDATION", "pricing"));

    let cases: Vec<(&str, Value, &str)> = vec![
        // A gap between tiers.
        (
            "2500",
            with(&|p| p["topUpPrice"]["tiers"][1]["firstUnit"] = json!("1200")),
            "pricing.topUpPrice.tiers[1]",
        ),
        // Below the minimum, above the maximum, finer than the precision.
        ("5", graduated(), "quantity"),
        ("200000", graduated(), "quantity"),
        ("20.5", graduated(), "quantity"),
        ("0", graduated(), "quantity"),
        // Min above max; a bad tax rate; a bad currency.
        (
            "50",
            with(&|p| p["minQuantity"] = json!("100000000")),
            "pricing.maxQuantity",
        ),
        (
            "50",
            with(&|p| p["taxRate"] = json!("27")),
            "pricing.topUpPrice.taxRate",
        ),
        (
            "50",
            with(&|p| p["currency"] = json!("EURO")),
            "pricing.topUpPrice.currency",
        ),
        // PER_PACKAGE without its size; no top-up price.
        (
            "50",
            with(&|p| p["topUpPrice"]["model"] = json!("PER_PACKAGE")),
            "pricing.topUpPrice.packageSize",
        ),
        (
            "50",
            with(&|p| {
                p.as_object_mut().unwrap().remove("topUpPrice");
            }),
            "pricing.topUpPrice",
        ),
        // A limit without its action.
        (
            "50",
            with(&|p| p["lowCreditLimit"] = json!("5")),
            "pricing.lowCreditAction",
        ),
    ];
    for (q, p, expected) in cases {
        let (c, f, m) = refused(PREVIEW, json!({"q": q, "p": p})).await;
        assert_eq!(
            (c.as_str(), f.as_str()),
            ("VALIDATION", expected),
            "{q}: {m}"
        );
        assert!(!m.is_empty());
    }

    // Bounded: 101 tiers are refused, 100 are quoted.
    let tiers = |n: usize| -> Value {
        (0..n)
            .map(|i| {
                let mut t = json!({"firstUnit": i.to_string(), "lastUnit": (i + 1).to_string(), "amount": "1"});
                if i + 1 == n {
                    t["lastUnit"] = Value::Null;
                }
                t
            })
            .collect()
    };
    let many = with(&|p| p["topUpPrice"]["tiers"] = tiers(101));
    let (c, f, m) = refused(PREVIEW, json!({"q": "50", "p": many})).await;
    assert_eq!(
        (c.as_str(), f.as_str()),
        ("VALIDATION", "pricing.topUpPrice"),
        "{m}"
    );
    let hundred = with(&|p| p["topUpPrice"]["tiers"] = tiers(100));
    let data = app
        .ok(&key, PREVIEW, json!({"q": "50", "p": hundred}))
        .await;
    assert_eq!(data["quoteTopUp"]["subtotal"], "50.00");
    assert_eq!(data["quoteTopUp"]["lines"].as_array().unwrap().len(), 50);

    // An unknown credit system.
    let (c, f, _) = refused(
        r#"query($p: PlanPricingInput!) { quoteTopUp(creditSystem: {key: "nope"}, quantity: "5", pricing: $p) { total } }"#,
        json!({"p": graduated()}),
    )
    .await;
    assert_eq!((c.as_str(), f.as_str()), ("NOT_FOUND", "creditSystem"));
    app.verify_all().await;
}
