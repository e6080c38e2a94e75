//! Refunds of top-up orders (`refundTopUpOrder`), over HTTP, on SQLite and
//! PostgreSQL: what remains of the order's grant comes back as a VOID
//! entry, never more; what was spent is said; the money is pro rata.

mod common;

use common::{TestApp, code, field};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use service::api_keys::Role;

/// A customer on a plan selling "credits" at 0.03 EUR each plus 27 % VAT:
/// 1,000 credits cost 30.00 + 8.10 = 38.10 EUR.
async fn setup(app: &TestApp) {
    app.ok(
        &app.admin_key,
        r#"mutation {
          createCreditSystem(input: {key: "credits", name: "Credits", unitSingular: "credit", unitPlural: "credits", precision: 0}) { creditSystem { id } }
          createProduct(input: {key: "app", name: "App"}) { product { id } }
          createPlan(input: {product: {key: "app"}, key: "payg", name: "PAYG", billingInterval: MONTHLY}) { plan { id } }
          attachCreditSystem(input: {plan: {key: "payg"}, creditSystem: {key: "credits"},
            pricing: {commitment: PAY_AS_YOU_GO, currency: "EUR", taxRate: "0.27",
              topUpPrice: {pricingType: VOLUME, model: PER_UNIT, tiers: [{firstUnit: "0", amount: "0.03"}]}}}) { planCredit { id } }
          publishPlan(input: {plan: {key: "payg"}}) { plan { status } }
          createCustomer(input: {externalId: "org-1", name: "Org 1"}) { customer { id } }
          subscribe(input: {customer: {externalId: "org-1"}, plan: {key: "payg"}, idempotencyKey: "sub-1"}) { subscription { id } }
        }"#,
        json!({}),
    )
    .await;
}

/// A paid order of `quantity` credits; returns its id.
async fn paid_order(app: &TestApp, quantity: &str, key: &str) -> Value {
    let data = app
        .ok(
            &app.admin_key,
            r#"mutation($q: Credits!, $k: String!) { purchaseCredits(input: {customer: {externalId: "org-1"}, creditSystem: {key: "credits"}, quantity: $q, idempotencyKey: $k}) { order { id quote { total } } } }"#,
            json!({"q": quantity, "k": key}),
        )
        .await;
    let id = data["purchaseCredits"]["order"]["id"].clone();
    app.ok(
        &app.admin_key,
        r#"mutation($id: ID!, $p: String!) { confirmTopUpPayment(input: {order: $id, gateway: "stripe", paymentId: $p}) { order { status } } }"#,
        json!({"id": id, "p": format!("pi_{key}")}),
    )
    .await;
    id
}

async fn consume(app: &TestApp, amount: &str, key: &str) {
    app.ok(
        &app.admin_key,
        r#"mutation($input: ConsumeCreditsInput!) { consumeCredits(input: $input) { entry { id } } }"#,
        json!({"input": {"customer": {"externalId": "org-1"}, "creditSystem": {"key": "credits"}, "amount": amount, "idempotencyKey": key}}),
    )
    .await;
}

const REFUND: &str = r#"mutation($id: ID!, $q: Credits, $k: String!) {
  refundTopUpOrder(input: {order: $id, quantity: $q, reason: "customer asked", idempotencyKey: $k}) {
    order { status refundedQuantity refundedAmount quote { total currency } grant { remaining voidedAt } }
    refund { id quantity refundedQuantity notRefundableQuantity amount currency reason entry { type amount } }
  }
}"#;

async fn refund(app: &TestApp, id: &Value, quantity: Option<&str>, key: &str) -> (u16, Value) {
    app.gql(
        Some(&app.admin_key),
        REFUND,
        json!({"id": id, "q": quantity, "k": key}),
    )
    .await
}

async fn available(app: &TestApp) -> String {
    let data = app
        .ok(
            &app.admin_key,
            r#"{ customer(externalId: "org-1") { wallet(creditSystem: {key: "credits"}) { balance { available } } } }"#,
            json!({}),
        )
        .await;
    data["customer"]["wallet"]["balance"]["available"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The `topup.refunded` events written, oldest first.
async fn refunded_events(app: &TestApp) -> Vec<Value> {
    entity::outbox_event::Entity::find()
        .filter(entity::outbox_event::Column::EventType.eq("topup.refunded"))
        .all(app.t.db.reader())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.payload)
        .collect()
}

#[tokio::test]
async fn a_full_refund_of_an_unspent_order_takes_everything_back() {
    let app = TestApp::spawn().await;
    setup(&app).await;
    let id = paid_order(&app, "1000", "o1").await;
    assert_eq!(available(&app).await, "1000");

    let (status, body) = refund(&app, &id, None, "r1").await;
    assert_eq!(status, 200, "{body}");
    let out = &body["data"]["refundTopUpOrder"];
    assert_eq!(out["order"]["status"], "REFUNDED");
    assert_eq!(out["order"]["refundedQuantity"], "1000");
    assert_eq!(out["order"]["refundedAmount"], "38.10");
    assert_eq!(out["order"]["grant"]["remaining"], "0");
    assert!(out["order"]["grant"]["voidedAt"].is_string());
    let r = &out["refund"];
    assert_eq!(
        (
            &r["quantity"],
            &r["refundedQuantity"],
            &r["notRefundableQuantity"],
            &r["amount"],
            &r["currency"]
        ),
        (
            &json!("1000"),
            &json!("1000"),
            &json!("0"),
            &json!("38.10"),
            &json!("EUR")
        )
    );
    assert_eq!(r["entry"], json!({"type": "VOID", "amount": "-1000"}));
    assert_eq!(available(&app).await, "0");

    // The event says what happened.
    let events = refunded_events(&app).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["status"], "REFUNDED");
    assert_eq!(events[0]["refund"]["refunded"], "1000");
    assert_eq!(events[0]["refund"]["notRefundable"], "0");
    assert_eq!(events[0]["refund"]["amount"], "38.10");

    // A replay answers the original refund and writes nothing.
    let (_, again) = refund(&app, &id, None, "r1").await;
    assert_eq!(again, body);
    assert_eq!(refunded_events(&app).await.len(), 1);
    // The same key for another request is refused.
    let (_, body) = refund(&app, &id, Some("5"), "r1").await;
    assert_eq!(code(&body), "IDEMPOTENCY_CONFLICT");
    // Nothing is left to refund.
    let (_, body) = refund(&app, &id, None, "r2").await;
    assert_eq!((code(&body), field(&body)), ("CONFLICT", "order"));
    app.verify_all().await;
}

#[tokio::test]
async fn a_partly_spent_order_says_what_could_not_be_taken_back() {
    let app = TestApp::spawn().await;
    setup(&app).await;
    let id = paid_order(&app, "1000", "o1").await;
    consume(&app, "300", "c1").await;

    let (status, body) = refund(&app, &id, None, "r1").await;
    assert_eq!(status, 200, "{body}");
    let out = &body["data"]["refundTopUpOrder"];
    assert_eq!(out["refund"]["quantity"], "1000");
    assert_eq!(out["refund"]["refundedQuantity"], "700");
    assert_eq!(out["refund"]["notRefundableQuantity"], "300");
    // 38.10 × 700 / 1000 = 26.67
    assert_eq!(out["refund"]["amount"], "26.67");
    assert_eq!(out["refund"]["entry"]["amount"], "-700");
    assert_eq!(out["order"]["status"], "REFUNDED");
    assert_eq!(out["order"]["refundedQuantity"], "700");
    assert_eq!(available(&app).await, "0");
    let (_, body) = refund(&app, &id, Some("1"), "r2").await;
    assert_eq!(code(&body), "CONFLICT");
    app.verify_all().await;
}

#[tokio::test]
async fn a_quantity_refunds_part_and_the_rest_never_beyond_what_remains() {
    let app = TestApp::spawn().await;
    setup(&app).await;
    let id = paid_order(&app, "1000", "o1").await;

    // 333 of 1,000: 38.10 × 333 / 1000 = 12.6873 → 12.69.
    let (_, body) = refund(&app, &id, Some("333"), "r1").await;
    let out = &body["data"]["refundTopUpOrder"];
    assert_eq!(out["order"]["status"], "PARTIALLY_REFUNDED", "{body}");
    assert_eq!(out["refund"]["refundedQuantity"], "333");
    assert_eq!(out["refund"]["notRefundableQuantity"], "0");
    assert_eq!(out["refund"]["amount"], "12.69");
    assert_eq!(out["order"]["grant"]["remaining"], "667");
    assert!(out["order"]["grant"]["voidedAt"].is_null());
    assert_eq!(available(&app).await, "667");

    // 600 more are spent; at most 667 are left to ask for.
    consume(&app, "600", "c1").await;
    let (_, body) = refund(&app, &id, Some("668"), "r2").await;
    assert_eq!((code(&body), field(&body)), ("VALIDATION", "quantity"));
    let (_, body) = refund(&app, &id, Some("0.5"), "r2").await;
    assert_eq!((code(&body), field(&body)), ("VALIDATION", "quantity"));

    // The rest: 67 remain of the 667 asked for.
    let (_, body) = refund(&app, &id, None, "r3").await;
    let out = &body["data"]["refundTopUpOrder"];
    assert_eq!(out["order"]["status"], "REFUNDED", "{body}");
    assert_eq!(out["refund"]["quantity"], "667");
    assert_eq!(out["refund"]["refundedQuantity"], "67");
    assert_eq!(out["refund"]["notRefundableQuantity"], "600");
    // 400 taken back in all: 38.10 × 0.4 = 15.24, of which 12.69 before.
    assert_eq!(out["refund"]["amount"], "2.55");
    assert_eq!(out["order"]["refundedQuantity"], "400");
    assert_eq!(out["order"]["refundedAmount"], "15.24");
    assert_eq!(available(&app).await, "0");
    let (_, body) = refund(&app, &id, None, "r4").await;
    assert_eq!(code(&body), "CONFLICT");

    // An order whose credits all come back refunds exactly its total.
    let id = paid_order(&app, "7", "o2").await;
    let mut sum = rust_decimal::Decimal::ZERO;
    for (q, k) in [("1", "a"), ("3", "b"), ("3", "c")] {
        let (_, body) = refund(&app, &id, Some(q), k).await;
        sum += body["data"]["refundTopUpOrder"]["refund"]["amount"]
            .as_str()
            .unwrap()
            .parse::<rust_decimal::Decimal>()
            .unwrap();
    }
    // 7 × 0.03 = 0.21 + 27 % = 0.2667 → 0.27
    assert_eq!(sum.to_string(), "0.27");
    app.verify_all().await;
}

#[tokio::test]
async fn only_admin_keys_refund_and_only_paid_orders() {
    let app = TestApp::spawn().await;
    setup(&app).await;
    let id = paid_order(&app, "100", "o1").await;
    for role in [Role::Read, Role::Write] {
        let key = app.key(role).await;
        let (_, body) = app
            .gql(Some(&key), REFUND, json!({"id": id, "q": null, "k": "r1"}))
            .await;
        assert_eq!(code(&body), "FORBIDDEN", "{role:?}");
    }
    assert_eq!(available(&app).await, "100");
    let pending = app
        .ok(
            &app.admin_key,
            r#"mutation { purchaseCredits(input: {customer: {externalId: "org-1"}, creditSystem: {key: "credits"}, quantity: "10", idempotencyKey: "o2"}) { order { id } } }"#,
            json!({}),
        )
        .await["purchaseCredits"]["order"]["id"]
        .clone();
    let (_, body) = refund(&app, &pending, None, "r2").await;
    assert_eq!((code(&body), field(&body)), ("CONFLICT", "order"));
    let (_, body) = refund(
        &app,
        &json!("ord_00000000000000000000000000000000"),
        None,
        "r3",
    )
    .await;
    assert_eq!(code(&body), "NOT_FOUND");
    app.verify_all().await;
}
