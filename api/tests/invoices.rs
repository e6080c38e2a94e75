//! Invoices paid with credits over HTTP: apply holds the credits (soonest
//! expiring first, across the customer's wallets in the currency), finalize
//! spends them, void gives them back; one application per invoice id.

mod common;

use common::{TestApp, code, field};
use serde_json::{Value, json};
use service::api_keys::Role;

const APPLY: &str = r#"mutation($customer: String!, $id: String!, $currency: String!, $subtotal: Decimal!, $key: String!) {
  applyCreditsToInvoice(customer: {externalId: $customer}, invoice: {externalId: $id, currency: $currency, subtotal: $subtotal}, idempotencyKey: $key) {
    externalId currency subtotal creditApplied totalDue status note customer { externalId }
  }
}"#;

const BALANCES: &str = r#"query {
  customer(externalId: "acme") {
    usd: wallet(creditSystem: {key: "usd"}) { balance { available pending } }
    promo: wallet(creditSystem: {key: "usd-promo"}) { balance { available pending } }
  }
}"#;

async fn setup(app: &TestApp) {
    let q = r#"mutation {
      a: createCreditSystem(input: {key: "usd", name: "Service credit", unitSingular: "dollar", unitPlural: "dollars", precision: 2, kind: MONETARY, currency: "USD"}) { creditSystem { id } }
      b: createCreditSystem(input: {key: "usd-promo", name: "Promo credit", unitSingular: "dollar", unitPlural: "dollars", precision: 2, kind: MONETARY, currency: "usd"}) { creditSystem { id } }
      c: createCreditSystem(input: {key: "tokens", name: "Tokens", unitSingular: "token", unitPlural: "tokens", precision: 0}) { creditSystem { id } }
      createCustomer(input: {externalId: "acme", name: "Acme"}) { customer { id } }
      g1: grantCredits(input: {customer: {externalId: "acme"}, creditSystem: {key: "usd"}, amount: "50", category: PURCHASED, reason: "prepaid", idempotencyKey: "g1"}) { grant { id } }
      g2: grantCredits(input: {customer: {externalId: "acme"}, creditSystem: {key: "usd-promo"}, amount: "30", category: PROMOTIONAL, expiresAt: "2026-03-01T00:00:00Z", reason: "promo", idempotencyKey: "g2"}) { grant { id } }
      g3: grantCredits(input: {customer: {externalId: "acme"}, creditSystem: {key: "tokens"}, amount: "1000", category: PURCHASED, reason: "tokens", idempotencyKey: "g3"}) { grant { id } }
    }"#;
    app.ok(&app.admin_key, q, json!({})).await;
}

fn apply(id: &str, currency: &str, subtotal: &str, key: &str) -> Value {
    json!({"customer": "acme", "id": id, "currency": currency, "subtotal": subtotal, "key": key})
}

#[tokio::test]
async fn apply_then_finalize_spends_the_soonest_expiring_credits() {
    let app = TestApp::spawn().await;
    setup(&app).await;
    let write = app.key(Role::Write).await;
    let data = app
        .ok(&write, APPLY, apply("INV-1", "usd", "45.50", "i1"))
        .await;
    assert_eq!(
        data["applyCreditsToInvoice"],
        json!({"externalId": "INV-1", "currency": "USD", "subtotal": "45.5", "creditApplied": "45.5",
               "totalDue": "0", "status": "PENDING", "note": null, "customer": {"externalId": "acme"}})
    );
    // The promo credits expire first: all 30 of them, then 15.50 of the rest.
    let b = app.ok(&write, BALANCES, json!({})).await;
    assert_eq!(
        b["customer"]["promo"]["balance"],
        json!({"available": "0", "pending": "30"})
    );
    assert_eq!(
        b["customer"]["usd"]["balance"],
        json!({"available": "34.5", "pending": "15.5"})
    );
    // A retry is the same application; another key for the same invoice is refused.
    let again = app
        .ok(&write, APPLY, apply("INV-1", "USD", "45.50", "i1"))
        .await;
    assert_eq!(again, data);
    let (_, body) = app
        .gql(Some(&write), APPLY, apply("INV-1", "USD", "45.50", "i2"))
        .await;
    assert_eq!(code(&body), "CONFLICT");
    assert_eq!(field(&body), "invoice.externalId");
    let (_, body) = app
        .gql(Some(&write), APPLY, apply("INV-1", "USD", "10", "i1"))
        .await;
    assert_eq!(code(&body), "IDEMPOTENCY_CONFLICT");

    // The hold belongs to the invoice: releaseHold can't take it back.
    let holds = app
        .ok(
            &write,
            r#"{ customer(externalId: "acme") { wallet(creditSystem: {key: "usd"}) { entries(first: 5) { nodes { type hold { id } } } } } }"#,
            json!({}),
        )
        .await;
    let hold_id = holds["customer"]["wallet"]["entries"]["nodes"][0]["hold"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, body) = app
        .gql(
            Some(&write),
            r#"mutation($h: ID!) { releaseHold(input: {hold: $h, idempotencyKey: "r1"}) { hold { id } } }"#,
            json!({"h": hold_id}),
        )
        .await;
    assert_eq!(code(&body), "CONFLICT");

    let finalize = r#"mutation($id: String!) { finalizeInvoice(externalId: $id) { status creditApplied totalDue settledAt } }"#;
    let done = app.ok(&write, finalize, json!({"id": "INV-1"})).await;
    assert_eq!(done["finalizeInvoice"]["status"], "FINALIZED");
    assert_eq!(done["finalizeInvoice"]["creditApplied"], "45.5");
    // Finalizing twice is the same; voiding a finalized invoice is refused.
    assert_eq!(app.ok(&write, finalize, json!({"id": "INV-1"})).await, done);
    let (_, body) = app
        .gql(
            Some(&write),
            r#"mutation { voidInvoice(externalId: "INV-1") { status } }"#,
            json!({}),
        )
        .await;
    assert_eq!(code(&body), "CONFLICT");
    let b = app.ok(&write, BALANCES, json!({})).await;
    assert_eq!(
        b["customer"]["promo"]["balance"],
        json!({"available": "0", "pending": "0"})
    );
    assert_eq!(
        b["customer"]["usd"]["balance"],
        json!({"available": "34.5", "pending": "0"})
    );
    // The ledger shows the payment as INVOICE entries.
    let entries = app
        .ok(
            &write,
            r#"{ customer(externalId: "acme") { wallet(creditSystem: {key: "usd"}) { entries(first: 1) { nodes { type amount balanceAfter } } } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        entries["customer"]["wallet"]["entries"]["nodes"][0],
        json!({"type": "INVOICE", "amount": "-15.5", "balanceAfter": "34.5"})
    );
    app.verify_all().await;
}

#[tokio::test]
async fn void_returns_the_credits_and_a_short_balance_leaves_the_rest_due() {
    let app = TestApp::spawn().await;
    setup(&app).await;
    let write = app.key(Role::Write).await;
    let data = app
        .ok(&write, APPLY, apply("INV-2", "USD", "100", "i1"))
        .await;
    let inv = &data["applyCreditsToInvoice"];
    assert_eq!(inv["creditApplied"], "80");
    assert_eq!(inv["totalDue"], "20");
    assert!(inv["note"].as_str().unwrap().contains("only 80"), "{inv}");
    let b = app.ok(&write, BALANCES, json!({})).await;
    assert_eq!(b["customer"]["usd"]["balance"]["available"], "0");
    let voided = app
        .ok(
            &write,
            r#"mutation { voidInvoice(externalId: "INV-2") { status creditApplied } }"#,
            json!({}),
        )
        .await;
    assert_eq!(voided["voidInvoice"]["status"], "VOIDED");
    let b = app.ok(&write, BALANCES, json!({})).await;
    assert_eq!(
        b["customer"]["usd"]["balance"],
        json!({"available": "50", "pending": "0"})
    );
    assert_eq!(
        b["customer"]["promo"]["balance"],
        json!({"available": "30", "pending": "0"})
    );
    let (_, body) = app
        .gql(
            Some(&write),
            r#"mutation { finalizeInvoice(externalId: "INV-2") { status } }"#,
            json!({}),
        )
        .await;
    assert_eq!(code(&body), "CONFLICT");
    app.verify_all().await;
}

#[tokio::test]
async fn another_currency_uses_nothing_and_says_why() {
    let app = TestApp::spawn().await;
    setup(&app).await;
    let write = app.key(Role::Write).await;
    let data = app
        .ok(&write, APPLY, apply("INV-3", "EUR", "12.00", "i1"))
        .await;
    let inv = &data["applyCreditsToInvoice"];
    assert_eq!(inv["creditApplied"], "0");
    assert_eq!(inv["totalDue"], "12");
    let note = inv["note"].as_str().unwrap();
    assert!(
        note.contains("no EUR credits") && note.contains("USD"),
        "{note}"
    );
    let b = app.ok(&write, BALANCES, json!({})).await;
    assert_eq!(b["customer"]["usd"]["balance"]["available"], "50");
    // Bad input changes nothing and names the field.
    for (vars, f) in [
        (apply("INV-4", "EURO", "1", "i2"), "invoice.currency"),
        (apply("INV-4", "USD", "1.001", "i2"), "invoice.subtotal"),
        (apply("INV-4", "USD", "0", "i2"), "invoice.subtotal"),
        (apply(" ", "USD", "1", "i2"), "invoice.externalId"),
    ] {
        let (_, body) = app.gql(Some(&write), APPLY, vars).await;
        assert_eq!(code(&body), "VALIDATION", "{body}");
        assert_eq!(field(&body), f);
    }
    let (_, body) = app
        .gql(
            Some(&app.key(Role::Read).await),
            APPLY,
            apply("INV-5", "USD", "1", "i3"),
        )
        .await;
    assert_eq!(code(&body), "FORBIDDEN");
    let none = app
        .ok(
            &write,
            r#"{ invoice(externalId: "INV-4") { id } }"#,
            json!({}),
        )
        .await;
    assert_eq!(none["invoice"], Value::Null);
    app.verify_all().await;
}

#[tokio::test]
async fn held_credits_go_back_after_90_days_and_the_invoice_can_only_be_voided() {
    let app = TestApp::spawn().await;
    setup(&app).await;
    let write = app.key(Role::Write).await;
    let data = app
        .ok(&write, APPLY, apply("INV-6", "USD", "40", "i1"))
        .await;
    assert_eq!(data["applyCreditsToInvoice"]["creditApplied"], "40");
    app.clock.advance(chrono::Duration::days(91));
    // The promo credits expired meanwhile; the service credit is back.
    let b = app.ok(&write, BALANCES, json!({})).await;
    assert_eq!(
        b["customer"]["usd"]["balance"],
        json!({"available": "50", "pending": "0"})
    );
    let (_, body) = app
        .gql(
            Some(&write),
            r#"mutation { finalizeInvoice(externalId: "INV-6") { status } }"#,
            json!({}),
        )
        .await;
    assert_eq!(code(&body), "CONFLICT");
    let voided = app
        .ok(
            &write,
            r#"mutation { voidInvoice(externalId: "INV-6") { status } }"#,
            json!({}),
        )
        .await;
    assert_eq!(voided["voidInvoice"]["status"], "VOIDED");
    let b = app.ok(&write, BALANCES, json!({})).await;
    assert_eq!(b["customer"]["usd"]["balance"]["available"], "50");
    app.verify_all().await;
}
