//! Usage-% alert settings over GraphQL (a real server on port 0): set on a
//! wallet and on a plan credit, shown back, and refused with `VALIDATION`
//! naming the field when out of bounds. (Alerts themselves, over real SMTP
//! and a real webhook receiver: worker/tests/usage_alerts.rs.)

mod common;

use common::{TestApp, code, field};
use serde_json::json;

const CONFIGURE: &str = r#"mutation($p: [Decimal!]) {
  configureWallet(input: {customer: {externalId: "acme"}, creditSystem: {key: "tokens"}, usageAlertPercents: $p}) {
    wallet { usageAlertPercents }
  }
}"#;

const ALERTS: &str = r#"{ customer(externalId: "acme") { wallet(creditSystem: {key: "tokens"}) {
  usageAlertPercents usageAlerts { percents source } } } }"#;

#[tokio::test]
async fn usage_alert_percents_are_set_shown_and_bounded() {
    let app = TestApp::spawn().await;
    let key = &app.admin_key;
    app.ok(
        key,
        r#"mutation {
          createCreditSystem(input: {key: "tokens", name: "AI tokens", unitSingular: "token", unitPlural: "tokens", precision: 0}) { creditSystem { id } }
          createCustomer(input: {externalId: "acme", name: "Acme"}) { customer { id } }
          createProduct(input: {key: "p", name: "P"}) { product { id } }
          createPlan(input: {product: {key: "p"}, key: "pro", name: "Pro", billingInterval: MONTHLY}) { plan { id } }
        }"#,
        json!({}),
    )
    .await;

    // A wallet's own list, sorted and without repeats; [] is off; null
    // clears it (the plan's or the default apply).
    let data = app
        .ok(key, CONFIGURE, json!({"p": ["90", "50.5", "90"]}))
        .await;
    assert_eq!(
        data["configureWallet"]["wallet"]["usageAlertPercents"],
        json!(["50.5", "90"])
    );
    let data = app.ok(key, CONFIGURE, json!({"p": []})).await;
    assert_eq!(
        data["configureWallet"]["wallet"]["usageAlertPercents"],
        json!([])
    );
    let data = app.ok(key, ALERTS, json!({})).await;
    assert_eq!(
        data["customer"]["wallet"]["usageAlerts"],
        json!({"percents": [], "source": "WALLET"})
    );
    let data = app.ok(key, CONFIGURE, json!({"p": null})).await;
    assert_eq!(
        data["configureWallet"]["wallet"]["usageAlertPercents"],
        json!(null)
    );

    for (bad, at) in [
        (json!(["0"]), "usageAlertPercents[0]"),
        (json!(["75", "1000.01"]), "usageAlertPercents[1]"),
        (json!(["-3"]), "usageAlertPercents[0]"),
        (json!(["33.333"]), "usageAlertPercents[0]"),
        (json!(vec!["1"; 11]), "usageAlertPercents"),
    ] {
        let (_, body) = app.gql(Some(key), CONFIGURE, json!({"p": bad})).await;
        assert_eq!((code(&body), field(&body)), ("VALIDATION", at), "{bad}");
    }
    // Nothing stored by the refused ones.
    let data = app
        .ok(
            key,
            r#"{ customer(externalId: "acme") { wallet(creditSystem: {key: "tokens"}) { usageAlertPercents } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        data["customer"]["wallet"]["usageAlertPercents"],
        json!(null)
    );

    // On a plan credit: attach, read back, replace, refuse.
    const ATTACH: &str = r#"mutation($p: [Decimal!]) {
      attachCreditSystem(input: {plan: {key: "pro"}, creditSystem: {key: "tokens"},
        included: {amount: "1000", resetInterval: MONTHLY}, usageAlertPercents: $p}) {
        planCredit { id usageAlertPercents }
      }
    }"#;
    let (_, body) = app
        .gql(Some(key), ATTACH, json!({"p": ["80", "2000"]}))
        .await;
    assert_eq!(
        (code(&body), field(&body)),
        ("VALIDATION", "usageAlertPercents[1]")
    );
    let data = app.ok(key, ATTACH, json!({"p": ["80", "95"]})).await;
    let pc = data["attachCreditSystem"]["planCredit"]["id"].clone();
    assert_eq!(
        data["attachCreditSystem"]["planCredit"]["usageAlertPercents"],
        json!(["80", "95"])
    );
    let data = app
        .ok(
            key,
            r#"mutation($pc: ID!) { updatePlanCredit(input: {planCredit: $pc,
              included: {amount: "1000", resetInterval: MONTHLY}, usageAlertPercents: []}) {
              planCredit { usageAlertPercents } } }"#,
            json!({"pc": pc}),
        )
        .await;
    assert_eq!(
        data["updatePlanCredit"]["planCredit"]["usageAlertPercents"],
        json!([])
    );

    // What is in force: the default until a plan with a list is subscribed
    // to, then the plan's.
    let data = app.ok(key, ALERTS, json!({})).await;
    assert_eq!(
        data["customer"]["wallet"]["usageAlerts"],
        json!({"percents": ["75", "90", "100"], "source": "DEFAULT"})
    );
    app.ok(
        key,
        r#"mutation($pc: ID!) {
          updatePlanCredit(input: {planCredit: $pc, included: {amount: "1000", resetInterval: MONTHLY},
            usageAlertPercents: ["95", "80"]}) { planCredit { id } }
          publishPlan(input: {plan: {key: "pro"}}) { plan { status } }
          subscribe(input: {customer: {externalId: "acme"}, plan: {key: "pro"}, idempotencyKey: "s-1"}) { subscription { id } }
        }"#,
        json!({"pc": pc}),
    )
    .await;
    let data = app.ok(key, ALERTS, json!({})).await;
    assert_eq!(
        data["customer"]["wallet"],
        json!({"usageAlertPercents": null, "usageAlerts": {"percents": ["80", "95"], "source": "PLAN"}})
    );
    // The wallet's own list wins over the plan's.
    app.ok(key, CONFIGURE, json!({"p": ["50"]})).await;
    let data = app.ok(key, ALERTS, json!({})).await;
    assert_eq!(
        data["customer"]["wallet"]["usageAlerts"],
        json!({"percents": ["50"], "source": "WALLET"})
    );
}
