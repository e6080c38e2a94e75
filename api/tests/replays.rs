//! Idempotency first, over HTTP: a retried mutation with the same key and
//! input answers what it answered the first time, whatever changed since
//! (time, expiry, the sweep, a cancelled subscription, an archived plan),
//! and writes nothing; a new key is validated against the present.

mod common;

use chrono::Duration;
use common::{TestApp, code, field};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use service::Clock;

const SETUP: &str = r#"mutation {
  createCreditSystem(input: {key: "tokens", name: "Tokens", unitSingular: "token", unitPlural: "tokens", precision: 0}) { creditSystem { id } }
  createProduct(input: {key: "studio", name: "Studio"}) { product { id } }
  createFeature(input: {key: "render", name: "Render", unit: "image"}) { feature { id } }
  createPlan(input: {product: {key: "studio"}, key: "pro", name: "Pro", billingInterval: MONTHLY}) { plan { id } }
  attachCreditSystem(input: {plan: {key: "pro"}, creditSystem: {key: "tokens"},
    included: {amount: "100", resetInterval: MONTHLY},
    pricing: {commitment: PAY_AS_YOU_GO, currency: "EUR", expiration: "P7D",
      topUpPrice: {pricingType: VOLUME, model: PER_UNIT, tiers: [{firstUnit: "0", amount: "0.01"}]}}}) { planCredit { id } }
  setEntitlement(input: {plan: {key: "pro"}, feature: {key: "render"}, creditSystem: {key: "tokens"}, creditCost: "2"}) { entitlement { id } }
  publishPlan(input: {plan: {key: "pro"}}) { plan { status } }
  createCustomer(input: {externalId: "acme", name: "Acme"}) { customer { id } }
}"#;

const SUBSCRIBE: &str = r#"mutation($k: String!) {
  subscribe(input: {customer: {externalId: "acme"}, plan: {key: "pro"}, idempotencyKey: $k}) {
    subscription { id status } grants { id amount expiresAt } } }"#;
const PURCHASE: &str = r#"mutation($k: String!) {
  purchaseCredits(input: {customer: {externalId: "acme"}, creditSystem: {key: "tokens"}, quantity: "500", idempotencyKey: $k}) {
    order { id status quantity quote { total } grant { id } } } }"#;
const CONFIRM: &str = r#"mutation($id: ID!, $p: String!) {
  confirmTopUpPayment(input: {order: $id, gateway: "test", paymentId: $p}) {
    order { id status paymentId grant { id amount expiresAt } } } }"#;
const TRACK: &str = r#"mutation($k: String!) {
  trackUsage(input: {customer: {externalId: "acme"}, feature: {key: "render"}, quantity: "3", idempotencyKey: $k}) {
    entry { id type amount balanceAfter quantity feature } } }"#;
const GRANT: &str = r#"mutation($k: String!, $at: DateTime!) {
  grantCredits(input: {customer: {externalId: "acme"}, creditSystem: {key: "tokens"}, amount: "10", category: PROMOTIONAL,
    expiresAt: $at, reason: "welcome", idempotencyKey: $k}) {
    grant { id amount remaining expiresAt } entry { id type amount balanceAfter } } }"#;
const HOLD: &str = r#"mutation($k: String!, $at: DateTime!) {
  createHold(input: {customer: {externalId: "acme"}, creditSystem: {key: "tokens"}, amount: "5", expiresAt: $at, idempotencyKey: $k}) {
    hold { id amount status expiresAt } entry { id type amount balanceAfter } } }"#;

async fn entries(app: &TestApp) -> u64 {
    entity::ledger_entry::Entity::find()
        .filter(entity::ledger_entry::Column::TenantId.eq(app.tenant_id))
        .count(app.t.db.reader())
        .await
        .unwrap()
}

async fn sweep(app: &TestApp) {
    service::expiry::sweep(&app.t.db, &app.clock, 100)
        .await
        .unwrap();
}

/// The first error's code and field.
async fn refused(app: &TestApp, query: &str, variables: Value) -> (String, String) {
    let (_, body) = app.gql(Some(&app.admin_key), query, variables).await;
    let field = body["errors"][0]["extensions"]["field"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (code(&body).to_owned(), field)
}

#[tokio::test]
async fn grants_and_holds_replay_after_their_expiry() {
    let app = TestApp::spawn().await;
    app.ok(&app.admin_key, SETUP, json!({})).await;
    let at = (app.clock.now() + Duration::hours(1)).to_rfc3339();
    let grant = app
        .ok(&app.admin_key, GRANT, json!({"k": "g1", "at": at}))
        .await["grantCredits"]
        .clone();
    let hold = app
        .ok(&app.admin_key, HOLD, json!({"k": "h1", "at": at}))
        .await["createHold"]
        .clone();
    assert_eq!(hold["entry"]["balanceAfter"], "5");

    app.clock.advance(Duration::hours(2));
    sweep(&app).await;
    let written = entries(&app).await;
    let replay = app
        .ok(&app.admin_key, GRANT, json!({"k": "g1", "at": at}))
        .await["grantCredits"]
        .clone();
    assert_eq!(replay["entry"], grant["entry"]);
    assert_eq!(replay["grant"]["id"], grant["grant"]["id"]);
    assert_eq!(replay["grant"]["expiresAt"], grant["grant"]["expiresAt"]);
    assert_eq!(replay["grant"]["remaining"], "0", "as it is now: expired");
    let replay = app
        .ok(&app.admin_key, HOLD, json!({"k": "h1", "at": at}))
        .await["createHold"]
        .clone();
    assert_eq!(replay["entry"], hold["entry"]);
    assert_eq!(replay["hold"]["id"], hold["hold"]["id"]);
    assert_eq!(replay["hold"]["status"], "RELEASED");
    assert_eq!(entries(&app).await, written, "replays write nothing");

    // New keys with the same input meet the present.
    for (query, key) in [(GRANT, "g2"), (HOLD, "h2")] {
        assert_eq!(
            refused(&app, query, json!({"k": key, "at": at})).await,
            ("VALIDATION".into(), "expiresAt".into())
        );
    }
    // The same key with other input is still a conflict.
    let later = (app.clock.now() + Duration::hours(1)).to_rfc3339();
    let (_, body) = app
        .gql(Some(&app.admin_key), GRANT, json!({"k": "g1", "at": later}))
        .await;
    assert_eq!(
        (code(&body), field(&body)),
        ("IDEMPOTENCY_CONFLICT", "idempotencyKey")
    );
    assert_eq!(entries(&app).await, written);
    app.verify_all().await;
}

#[tokio::test]
async fn purchases_usage_and_subscriptions_replay_after_the_plan_is_gone() {
    let app = TestApp::spawn().await;
    app.ok(&app.admin_key, SETUP, json!({})).await;
    let sub = app.ok(&app.admin_key, SUBSCRIBE, json!({"k": "s1"})).await["subscribe"].clone();
    let order =
        app.ok(&app.admin_key, PURCHASE, json!({"k": "o1"})).await["purchaseCredits"]["order"]
            .clone();
    assert_eq!(order["status"], "PENDING");
    let id = order["id"].clone();
    let paid = app
        .ok(&app.admin_key, CONFIRM, json!({"id": id, "p": "pay-1"}))
        .await["confirmTopUpPayment"]["order"]
        .clone();
    assert_eq!(paid["status"], "PAID");
    let usage =
        app.ok(&app.admin_key, TRACK, json!({"k": "u1"})).await["trackUsage"]["entry"].clone();
    assert_eq!(usage["amount"], "-6");

    // The subscription ends, the plan is archived, a week passes: the
    // purchased credits (7 days) and the order's window (24 h) are over.
    let cancel = r#"mutation($id: ID!) { cancelSubscription(input: {subscription: $id}) { subscription { id } } }"#;
    app.ok(
        &app.admin_key,
        cancel,
        json!({"id": sub["subscription"]["id"]}),
    )
    .await;
    let archive = r#"mutation { archivePlan(input: {plan: {key: "pro"}}) { plan { status } } }"#;
    app.ok(&app.admin_key, archive, json!({})).await;
    app.clock.advance(Duration::days(8));
    sweep(&app).await;
    let written = entries(&app).await;

    let replay = app.ok(&app.admin_key, SUBSCRIBE, json!({"k": "s1"})).await["subscribe"].clone();
    assert_eq!(replay["subscription"]["id"], sub["subscription"]["id"]);
    assert_eq!(replay["grants"], sub["grants"]);
    let replay =
        app.ok(&app.admin_key, PURCHASE, json!({"k": "o1"})).await["purchaseCredits"]["order"]
            .clone();
    assert_eq!(
        (&replay["id"], &replay["quote"], &replay["quantity"]),
        (&order["id"], &order["quote"], &order["quantity"])
    );
    assert_eq!(replay["status"], "PAID", "the order as it is now");
    assert_eq!(replay["grant"]["id"], paid["grant"]["id"]);
    let replay = app
        .ok(&app.admin_key, CONFIRM, json!({"id": id, "p": "pay-1"}))
        .await["confirmTopUpPayment"]["order"]
        .clone();
    assert_eq!(replay, paid);
    let replay =
        app.ok(&app.admin_key, TRACK, json!({"k": "u1"})).await["trackUsage"]["entry"].clone();
    assert_eq!(replay, usage);
    assert_eq!(entries(&app).await, written, "replays write nothing");

    // New keys meet the present: no plan sells or includes anything now.
    assert_eq!(
        refused(&app, SUBSCRIBE, json!({"k": "s2"})).await,
        ("CONFLICT".into(), "plan".into())
    );
    assert_eq!(
        refused(&app, PURCHASE, json!({"k": "o2"})).await,
        ("VALIDATION".into(), "creditSystem".into())
    );
    assert_eq!(
        refused(&app, TRACK, json!({"k": "u2"})).await.0,
        "FEATURE_NOT_ENTITLED"
    );
    assert_eq!(
        refused(&app, CONFIRM, json!({"id": id, "p": "pay-2"})).await,
        ("CONFLICT".into(), "paymentId".into())
    );
    // A usage key replayed with another quantity is a conflict.
    let other = r#"mutation { trackUsage(input: {customer: {externalId: "acme"}, feature: {key: "render"}, quantity: "4", idempotencyKey: "u1"}) { entry { id } } }"#;
    assert_eq!(
        refused(&app, other, json!({})).await.0,
        "IDEMPOTENCY_CONFLICT"
    );
    assert_eq!(entries(&app).await, written);
    app.verify_all().await;
}
