//! Payment-provider intake (`POST /payments/stripe/…`,
//! `POST /payments/mercadopago/…`) over a real server, on SQLite and
//! PostgreSQL: notifications signed exactly as Stripe and Mercado Pago
//! document, and a local fake of Mercado Pago's API on port 0.

mod common;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use api::http::{HttpLimits, throttle::RateLimits};
use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::IntoResponse,
    routing::get,
};
use chrono::Duration;
use common::TestApp;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use service::{Clock, notifications::TargetPolicy};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

const STRIPE_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const MP_SECRET: &str = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2";
const MP_TOKEN: &str = "APP_USR-1234567890-abcdef";

fn hmac_hex(secret: &str, message: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(message.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Payments fake Mercado Pago serves: payment id → its JSON.
type Payments = Arc<Mutex<HashMap<String, Value>>>;

/// `GET /v1/payments/{id}` as Mercado Pago answers it (Bearer token
/// checked).
async fn fake_payment(
    State(payments): State<Payments>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> impl IntoResponse {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if auth != format!("Bearer {MP_TOKEN}") {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "invalid token"})),
        );
    }
    match payments.lock().unwrap().get(&id) {
        Some(p) => (StatusCode::OK, Json(p.clone())),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"message": "Payment not found"})),
        ),
    }
}

struct Intake {
    app: TestApp,
    /// The server with the payment intake (the app's, pointed at the fake).
    base: String,
    mercadopago: Payments,
    client: reqwest::Client,
    shutdown: CancellationToken,
}

impl Drop for Intake {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Intake {
    async fn spawn() -> Self {
        let app = TestApp::spawn().await;
        let shutdown = CancellationToken::new();
        // The fake Mercado Pago API.
        let mercadopago: Payments = Arc::default();
        let fake = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake_url = format!("http://{}", fake.local_addr().unwrap());
        let router = Router::new()
            .route("/v1/payments/{id}", get(fake_payment))
            .with_state(mercadopago.clone());
        let stop = shutdown.clone();
        tokio::spawn(async move {
            axum::serve(fake, router)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
                .unwrap();
        });
        // The engine, as `api serve` runs it with MERCADOPAGO_API_URL and
        // WEBHOOK_ALLOW_PRIVATE=true (the fake is on loopback).
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let limits = HttpLimits::default();
        let router = api::server::app_with_payments(
            app.t.db.clone(),
            Arc::new(app.clock.clone()),
            limits.clone(),
            TargetPolicy::AllowPrivate,
            &RateLimits::off(),
            &fake_url,
        );
        tokio::spawn(api::http::serve::serve(
            listener,
            router,
            limits,
            shutdown.clone().cancelled_owned(),
        ));
        setup(&app).await;
        Self {
            app,
            base,
            mercadopago,
            client: reqwest::Client::new(),
            shutdown,
        }
    }

    async fn set_provider(&self, provider: &str, secret: &str, token: Option<&str>) -> String {
        let data = self
            .app
            .ok(
                &self.app.admin_key,
                r#"mutation($p: PaymentProvider!, $s: String!, $t: String) {
                  setPaymentProvider(input: {provider: $p, secret: $s, accessToken: $t}) { intake { provider path hasAccessToken } }
                }"#,
                json!({"p": provider, "s": secret, "t": token}),
            )
            .await;
        data["setPaymentProvider"]["intake"]["path"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// A PENDING order of 1,000 credits: 38.10 EUR.
    async fn order(&self, key: &str) -> String {
        let data = self
            .app
            .ok(
                &self.app.admin_key,
                r#"mutation($k: String!) { purchaseCredits(input: {customer: {externalId: "org-1"}, creditSystem: {key: "credits"}, quantity: "1000", idempotencyKey: $k}) { order { id quote { total currency } } } }"#,
                json!({"k": key}),
            )
            .await;
        assert_eq!(
            data["purchaseCredits"]["order"]["quote"],
            json!({"total": "38.10", "currency": "EUR"})
        );
        data["purchaseCredits"]["order"]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn read_order(&self, id: &str) -> Value {
        self.app
            .ok(
                &self.app.admin_key,
                r#"query($id: ID!) { topUpOrder(id: $id) { status gateway paymentId failureReason paymentIssue refundedQuantity grant { amount remaining } } }"#,
                json!({"id": id}),
            )
            .await["topUpOrder"]
            .clone()
    }

    async fn available(&self) -> String {
        let data = self
            .app
            .ok(
                &self.app.admin_key,
                r#"{ customer(externalId: "org-1") { wallet(creditSystem: {key: "credits"}) { balance { available } } } }"#,
                json!({}),
            )
            .await;
        data["customer"]["wallet"]["balance"]["available"]
            .as_str()
            .unwrap_or("0")
            .to_owned()
    }

    /// POSTs raw bytes with headers; returns the status and the JSON answer.
    async fn post(&self, path: &str, headers: &[(&str, String)], body: Vec<u8>) -> (u16, Value) {
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A Stripe event signed as Stripe signs it at Unix time `t`.
    async fn stripe_at(&self, path: &str, event: &Value, secret: &str, t: i64) -> (u16, Value) {
        let body = serde_json::to_string(event).unwrap();
        let v1 = hmac_hex(secret, &format!("{t}.{body}"));
        self.post(
            path,
            &[("stripe-signature", format!("t={t},v1={v1}"))],
            body.into_bytes(),
        )
        .await
    }

    async fn stripe(&self, path: &str, event: &Value) -> (u16, Value) {
        let t = self.app.clock.now().timestamp();
        self.stripe_at(path, event, STRIPE_SECRET, t).await
    }

    /// A Mercado Pago notification of payment `id`, signed as Mercado Pago
    /// signs it (manifest `id:…;request-id:…;ts:…;`).
    async fn mercadopago(
        &self,
        path: &str,
        id: &str,
        request_id: &str,
        secret: &str,
    ) -> (u16, Value) {
        let ts = self.app.clock.now().timestamp().to_string();
        let manifest = format!("id:{};request-id:{request_id};ts:{ts};", id.to_lowercase());
        let v1 = hmac_hex(secret, &manifest);
        let body = json!({
            "action": "payment.updated", "api_version": "v1", "data": {"id": id},
            "date_created": "2026-01-31T12:00:00Z", "id": 12345, "live_mode": false,
            "type": "payment", "user_id": "44444",
        });
        self.post(
            &format!("{path}?data.id={id}&type=payment"),
            &[
                ("x-signature", format!("ts={ts},v1={v1}")),
                ("x-request-id", request_id.to_owned()),
            ],
            serde_json::to_vec(&body).unwrap(),
        )
        .await
    }

    fn mp_payment(&self, id: &str, status: &str, order: &str, amount: Value, currency: &str) {
        self.mercadopago.lock().unwrap().insert(
            id.to_owned(),
            json!({
                "id": id.parse::<i64>().unwrap(), "status": status, "status_detail": format!("{status}_detail"),
                "external_reference": order, "transaction_amount": amount, "currency_id": currency,
                "transaction_amount_refunded": 0,
            }),
        );
    }
}

/// A customer on a plan selling "credits" at 0.03 EUR each plus 27 % VAT.
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

fn checkout_completed(event_id: &str, order: &str, pi: &str, amount: i64, currency: &str) -> Value {
    json!({
        "id": event_id, "object": "event", "type": "checkout.session.completed", "api_version": "2024-06-20",
        "data": {"object": {
            "id": format!("cs_test_{event_id}"), "object": "checkout.session", "amount_total": amount,
            "currency": currency, "payment_intent": pi, "payment_status": "paid", "status": "complete",
            "metadata": {"order_id": order},
        }},
    })
}

fn intent_event(event_id: &str, kind: &str, order: &str, pi: &str, amount: i64) -> Value {
    json!({
        "id": event_id, "object": "event", "type": kind,
        "data": {"object": {
            "id": pi, "object": "payment_intent", "amount": amount, "amount_received": amount,
            "currency": "eur", "metadata": {"order_id": order},
            "last_payment_error": {"message": "Your card was declined."},
        }},
    })
}

fn charge_refunded(event_id: &str, pi: &str, amount: i64, refunded: i64) -> Value {
    json!({
        "id": event_id, "object": "event", "type": "charge.refunded",
        "data": {"object": {
            "id": format!("ch_{pi}"), "object": "charge", "amount": amount, "amount_refunded": refunded,
            "currency": "eur", "payment_intent": pi, "refunded": amount == refunded, "metadata": {},
        }},
    })
}

#[tokio::test]
async fn stripe_confirms_by_checkout_session_or_payment_intent_once() {
    let s = Intake::spawn().await;
    let path = s.set_provider("STRIPE", STRIPE_SECRET, None).await;
    assert!(path.starts_with("/payments/stripe/"), "{path}");
    let listed = s
        .app
        .ok(
            &s.app.admin_key,
            "{ paymentProviders { provider path hasAccessToken } }",
            json!({}),
        )
        .await;
    assert_eq!(
        listed["paymentProviders"],
        json!([{"provider": "STRIPE", "path": path, "hasAccessToken": false}])
    );
    // Setting the secret again keeps the URL.
    assert_eq!(s.set_provider("STRIPE", STRIPE_SECRET, None).await, path);

    let first = s.order("o1").await;
    let event = checkout_completed("evt_1", &first, "pi_1", 3810, "eur");
    let (status, body) = s.stripe(&path, &event).await;
    assert_eq!(
        (status, &body["outcome"]),
        (200, &json!("CONFIRMED")),
        "{body}"
    );
    let order = s.read_order(&first).await;
    assert_eq!(
        (
            &order["status"],
            &order["gateway"],
            &order["paymentId"],
            &order["grant"]["amount"]
        ),
        (
            &json!("PAID"),
            &json!("stripe"),
            &json!("pi_1"),
            &json!("1000")
        )
    );
    // A redelivery is a no-op, answered 200.
    let (status, body) = s.stripe(&path, &event).await;
    assert_eq!((status, &body["replay"]), (200, &json!(true)), "{body}");
    // payment_intent.succeeded for the same payment grants nothing more.
    let (status, body) = s
        .stripe(
            &path,
            &intent_event("evt_2", "payment_intent.succeeded", &first, "pi_1", 3810),
        )
        .await;
    assert_eq!(
        (status, &body["outcome"]),
        (200, &json!("CONFIRMED")),
        "{body}"
    );
    assert_eq!(s.available().await, "1000");

    // payment_intent.succeeded alone confirms too.
    let second = s.order("o2").await;
    let (status, body) = s
        .stripe(
            &path,
            &intent_event("evt_3", "payment_intent.succeeded", &second, "pi_2", 3810),
        )
        .await;
    assert_eq!(
        (status, &body["outcome"]),
        (200, &json!("CONFIRMED")),
        "{body}"
    );
    assert_eq!(s.read_order(&second).await["status"], "PAID");
    assert_eq!(s.available().await, "2000");

    // An event not acted on is acknowledged.
    let (status, body) = s
        .stripe(
            &path,
            &json!({"id": "evt_4", "type": "customer.created", "data": {"object": {}}}),
        )
        .await;
    assert_eq!(
        (status, &body["outcome"]),
        (200, &json!("IGNORED")),
        "{body}"
    );
    s.app.verify_all().await;
}

#[tokio::test]
async fn stripe_payment_failed_fails_and_charge_refunded_refunds() {
    let s = Intake::spawn().await;
    let path = s.set_provider("STRIPE", STRIPE_SECRET, None).await;

    let failed = s.order("o1").await;
    let (status, body) = s
        .stripe(
            &path,
            &intent_event(
                "evt_f",
                "payment_intent.payment_failed",
                &failed,
                "pi_f",
                3810,
            ),
        )
        .await;
    assert_eq!(
        (status, &body["outcome"]),
        (200, &json!("FAILED")),
        "{body}"
    );
    let order = s.read_order(&failed).await;
    assert_eq!(order["status"], "FAILED");
    assert_eq!(order["failureReason"], "stripe: Your card was declined.");

    // Paid, 300 spent, then refunded in full at Stripe: what remains comes back.
    let paid = s.order("o2").await;
    s.stripe(
        &path,
        &checkout_completed("evt_p", &paid, "pi_p", 3810, "eur"),
    )
    .await;
    s.app
        .ok(
            &s.app.admin_key,
            r#"mutation { consumeCredits(input: {customer: {externalId: "org-1"}, creditSystem: {key: "credits"}, amount: "300", idempotencyKey: "c1"}) { entry { id } } }"#,
            json!({}),
        )
        .await;
    let (status, body) = s
        .stripe(&path, &charge_refunded("evt_r", "pi_p", 3810, 3810))
        .await;
    assert_eq!(
        (status, &body["outcome"]),
        (200, &json!("REFUNDED")),
        "{body}"
    );
    let order = s.read_order(&paid).await;
    assert_eq!(order["status"], "REFUNDED");
    assert_eq!(order["refundedQuantity"], "700");
    assert_eq!(s.available().await, "0");
    let (status, body) = s
        .stripe(&path, &charge_refunded("evt_r", "pi_p", 3810, 3810))
        .await;
    assert_eq!((status, &body["replay"]), (200, &json!(true)), "{body}");

    // Refunded in two steps: half, then the rest.
    let halves = s.order("o3").await;
    s.stripe(
        &path,
        &checkout_completed("evt_h", &halves, "pi_h", 3810, "eur"),
    )
    .await;
    let (_, body) = s
        .stripe(&path, &charge_refunded("evt_h1", "pi_h", 3810, 1905))
        .await;
    assert_eq!(body["outcome"], "REFUNDED", "{body}");
    let order = s.read_order(&halves).await;
    assert_eq!(
        (&order["status"], &order["refundedQuantity"]),
        (&json!("PARTIALLY_REFUNDED"), &json!("500"))
    );
    let (_, body) = s
        .stripe(&path, &charge_refunded("evt_h2", "pi_h", 3810, 3810))
        .await;
    assert_eq!(body["outcome"], "REFUNDED", "{body}");
    let order = s.read_order(&halves).await;
    assert_eq!(
        (&order["status"], &order["refundedQuantity"]),
        (&json!("REFUNDED"), &json!("1000"))
    );
    s.app.verify_all().await;
}

#[tokio::test]
async fn stripe_refuses_bad_signatures_and_stale_timestamps() {
    let s = Intake::spawn().await;
    let path = s.set_provider("STRIPE", STRIPE_SECRET, None).await;
    let id = s.order("o1").await;
    let event = checkout_completed("evt_1", &id, "pi_1", 3810, "eur");
    let now = s.app.clock.now().timestamp();

    // Another secret; no header; a malformed one; an altered body.
    let (status, _) = s.stripe_at(&path, &event, "whsec_other", now).await;
    assert_eq!(status, 400);
    let body = serde_json::to_vec(&event).unwrap();
    let (status, answer) = s.post(&path, &[], body.clone()).await;
    assert_eq!(status, 400, "{answer}");
    let (status, _) = s
        .post(
            &path,
            &[("stripe-signature", "t=abc,v1=zz".into())],
            body.clone(),
        )
        .await;
    assert_eq!(status, 400);
    let v1 = hmac_hex(
        STRIPE_SECRET,
        &format!("{now}.{}", String::from_utf8_lossy(&body)),
    );
    let mut altered = body.clone();
    altered.extend_from_slice(b" ");
    let (status, _) = s
        .post(
            &path,
            &[("stripe-signature", format!("t={now},v1={v1}"))],
            altered,
        )
        .await;
    assert_eq!(status, 400);
    // Signed more than 5 minutes ago (by the server's clock), or ahead.
    let (status, answer) = s.stripe_at(&path, &event, STRIPE_SECRET, now - 301).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("5 minutes"),
        "{answer}"
    );
    let (status, _) = s.stripe_at(&path, &event, STRIPE_SECRET, now + 301).await;
    assert_eq!(status, 400);
    // Another tenant's path, or none: 404.
    let wrong = format!("/payments/stripe/{}", "0".repeat(64));
    let (status, _) = s.stripe(&wrong, &event).await;
    assert_eq!(status, 404);
    let (status, _) = s.stripe("/payments/stripe/x", &event).await;
    assert_eq!(status, 404);
    // Signed but not JSON; larger than 1 MiB.
    let junk = b"not json".to_vec();
    let v1 = hmac_hex(STRIPE_SECRET, &format!("{now}.not json"));
    let (status, _) = s
        .post(
            &path,
            &[("stripe-signature", format!("t={now},v1={v1}"))],
            junk,
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = s.post(&path, &[], vec![b' '; 1024 * 1024 + 1]).await;
    assert_eq!(status, 413);
    assert_eq!(s.read_order(&id).await["status"], "PENDING");

    // Within 5 minutes, it is taken.
    let (status, body) = s.stripe_at(&path, &event, STRIPE_SECRET, now - 299).await;
    assert_eq!(
        (status, &body["outcome"]),
        (200, &json!("CONFIRMED")),
        "{body}"
    );
    s.app.verify_all().await;
}

#[tokio::test]
async fn stripe_amount_or_currency_mismatch_flags_and_grants_nothing() {
    let s = Intake::spawn().await;
    let path = s.set_provider("STRIPE", STRIPE_SECRET, None).await;
    let id = s.order("o1").await;
    let (status, body) = s
        .stripe(
            &path,
            &checkout_completed("evt_1", &id, "pi_1", 3800, "eur"),
        )
        .await;
    assert_eq!(
        (status, &body["outcome"]),
        (200, &json!("FLAGGED")),
        "{body}"
    );
    let order = s.read_order(&id).await;
    assert_eq!(order["status"], "PENDING");
    assert!(order["grant"].is_null());
    let issue = order["paymentIssue"].as_str().unwrap();
    assert!(
        issue.contains("38.00 EUR") && issue.contains("38.10 EUR"),
        "{issue}"
    );

    let other = s.order("o2").await;
    let (_, body) = s
        .stripe(
            &path,
            &checkout_completed("evt_2", &other, "pi_2", 3810, "usd"),
        )
        .await;
    assert_eq!(body["outcome"], "FLAGGED", "{body}");
    assert_eq!(s.read_order(&other).await["status"], "PENDING");
    // Paid after it expired: flagged, not granted.
    let late = s.order("o3").await;
    s.app.clock.advance(Duration::hours(25));
    let (_, body) = s
        .stripe(
            &path,
            &checkout_completed("evt_3", &late, "pi_3", 3810, "eur"),
        )
        .await;
    assert_eq!(body["outcome"], "FLAGGED", "{body}");
    let order = s.read_order(&late).await;
    assert_eq!(order["status"], "EXPIRED");
    assert!(
        order["paymentIssue"].as_str().unwrap().contains("EXPIRED"),
        "{order}"
    );
    assert_eq!(s.available().await, "0");
    s.app.verify_all().await;
}

#[tokio::test]
async fn mercadopago_confirms_approved_and_fails_rejected_payments() {
    let s = Intake::spawn().await;
    // Mercado Pago needs the access token.
    let (_, body) = s
        .app
        .gql(
            Some(&s.app.admin_key),
            r#"mutation { setPaymentProvider(input: {provider: MERCADOPAGO, secret: "x"}) { intake { path } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(common::field(&body), "accessToken");
    let path = s
        .set_provider("MERCADOPAGO", MP_SECRET, Some(MP_TOKEN))
        .await;
    assert!(path.starts_with("/payments/mercadopago/"), "{path}");

    let id = s.order("o1").await;
    s.mp_payment("1001", "approved", &id, json!(38.1), "EUR");
    let (status, body) = s.mercadopago(&path, "1001", "req-1", MP_SECRET).await;
    assert_eq!(
        (status, &body["outcome"]),
        (200, &json!("CONFIRMED")),
        "{body}"
    );
    let order = s.read_order(&id).await;
    assert_eq!(
        (&order["status"], &order["gateway"], &order["paymentId"]),
        (&json!("PAID"), &json!("mercadopago"), &json!("1001"))
    );
    // The same notification again, or another about the same status: no-op.
    let (status, body) = s.mercadopago(&path, "1001", "req-1", MP_SECRET).await;
    assert_eq!((status, &body["replay"]), (200, &json!(true)), "{body}");
    let (status, body) = s.mercadopago(&path, "1001", "req-2", MP_SECRET).await;
    assert_eq!((status, &body["replay"]), (200, &json!(true)), "{body}");
    assert_eq!(s.available().await, "1000");

    let rejected = s.order("o2").await;
    s.mp_payment("1002", "rejected", &rejected, json!(38.1), "EUR");
    let (status, body) = s.mercadopago(&path, "1002", "req-3", MP_SECRET).await;
    assert_eq!(
        (status, &body["outcome"]),
        (200, &json!("FAILED")),
        "{body}"
    );
    let order = s.read_order(&rejected).await;
    assert_eq!(order["status"], "FAILED");
    assert!(
        order["failureReason"]
            .as_str()
            .unwrap()
            .contains("rejected")
    );

    // Refunded at Mercado Pago: the credits come back.
    s.mp_payment("1001", "refunded", &id, json!(38.1), "EUR");
    let (status, body) = s.mercadopago(&path, "1001", "req-4", MP_SECRET).await;
    assert_eq!(
        (status, &body["outcome"]),
        (200, &json!("REFUNDED")),
        "{body}"
    );
    assert_eq!(s.read_order(&id).await["status"], "REFUNDED");
    assert_eq!(s.available().await, "0");
    // A payment Mercado Pago doesn't know (its "simulate" button): acknowledged.
    let (status, body) = s.mercadopago(&path, "999", "req-5", MP_SECRET).await;
    assert_eq!(
        (status, &body["outcome"]),
        (200, &json!("IGNORED")),
        "{body}"
    );
    s.app.verify_all().await;
}

#[tokio::test]
async fn mercadopago_refuses_bad_signatures_and_flags_mismatches() {
    let s = Intake::spawn().await;
    let path = s
        .set_provider("MERCADOPAGO", MP_SECRET, Some(MP_TOKEN))
        .await;
    let id = s.order("o1").await;
    s.mp_payment("2001", "approved", &id, json!(38.1), "EUR");

    // Wrong secret; a signature over another payment id; none.
    let (status, _) = s
        .mercadopago(&path, "2001", "req-1", "another-secret")
        .await;
    assert_eq!(status, 400);
    let ts = s.app.clock.now().timestamp();
    let v1 = hmac_hex(MP_SECRET, &format!("id:2002;request-id:req-1;ts:{ts};"));
    let (status, _) = s
        .post(
            &format!("{path}?data.id=2001&type=payment"),
            &[
                ("x-signature", format!("ts={ts},v1={v1}")),
                ("x-request-id", "req-1".into()),
            ],
            br#"{"type":"payment","data":{"id":"2001"}}"#.to_vec(),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = s
        .post(
            &format!("{path}?data.id=2001&type=payment"),
            &[],
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(s.read_order(&id).await["status"], "PENDING");

    // Approved for less than the quote, or in another currency: flagged.
    s.mp_payment("2001", "approved", &id, json!(38), "EUR");
    let (status, body) = s.mercadopago(&path, "2001", "req-2", MP_SECRET).await;
    assert_eq!(
        (status, &body["outcome"]),
        (200, &json!("FLAGGED")),
        "{body}"
    );
    let order = s.read_order(&id).await;
    assert_eq!(order["status"], "PENDING");
    assert!(
        order["paymentIssue"].as_str().unwrap().contains("38 EUR"),
        "{order}"
    );
    let other = s.order("o2").await;
    s.mp_payment("2002", "approved", &other, json!(38.1), "ARS");
    let (_, body) = s.mercadopago(&path, "2002", "req-3", MP_SECRET).await;
    assert_eq!(body["outcome"], "FLAGGED", "{body}");
    assert_eq!(s.available().await, "0");

    // Mercado Pago's API refuses us (here: a revoked access token): 503,
    // so Mercado Pago retries, and nothing is recorded.
    s.mp_payment("2003", "approved", &other, json!(38.1), "EUR");
    s.set_provider("MERCADOPAGO", MP_SECRET, Some("APP_USR-revoked"))
        .await;
    let (status, _) = s.mercadopago(&path, "2003", "req-4", MP_SECRET).await;
    assert_eq!(status, 503);
    s.set_provider("MERCADOPAGO", MP_SECRET, Some(MP_TOKEN))
        .await;
    let (status, body) = s.mercadopago(&path, "2003", "req-4", MP_SECRET).await;
    assert_eq!(
        (status, &body["outcome"]),
        (200, &json!("CONFIRMED")),
        "{body}"
    );
    s.app.verify_all().await;
}
