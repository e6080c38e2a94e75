//! The five products this engine serves (DESIGN.md "Products we serve"),
//! each end to end the way its own screens call the API: a real server on
//! port 0 (GraphQL and the payment intakes), a real SMTP listener and a real
//! webhook receiver reached by the worker's own transports, provider
//! notifications signed as Stripe and Mercado Pago sign them (Mercado Pago's
//! API a local fake), on SQLite or PostgreSQL (`TEST_DATABASE_URL`).

mod common;

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration as StdDuration,
};

use api::http::{HttpLimits, throttle::RateLimits};
use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
    routing::{get, post},
};
use chrono::{Datelike, Duration};
use common::TestApp;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use service::{
    Clock,
    notifications::{DrainLimits, TargetPolicy, drain, email, webhooks},
};
use sha2::Sha256;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;
use worker::{
    MailConfig,
    transports::{HttpTransport, LettreMailer},
};

const STRIPE_SECRET: &str = "whsec_stories0000000000000000000000";
const MP_SECRET: &str = "mp-stories-secret-0123456789abcdef";
const MP_TOKEN: &str = "APP_USR-stories";

// ---------------------------------------------------------------- peers

/// The engine with everything around it: the API (with the payment
/// intakes, Mercado Pago's API pointed at a fake), an SMTP server, a
/// webhook receiver, and the worker's transports to reach them.
struct Shop {
    app: TestApp,
    inbox: Arc<Mutex<Vec<String>>>,
    hooks: Arc<Mutex<Vec<Value>>>,
    hook_url: String,
    mercadopago: Arc<Mutex<HashMap<String, Value>>>,
    mailer: LettreMailer,
    http: HttpTransport,
    client: reqwest::Client,
    shutdown: CancellationToken,
}

impl Drop for Shop {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Shop {
    async fn open() -> Self {
        let mut app = TestApp::spawn().await;
        let shutdown = CancellationToken::new();
        let mercadopago: Arc<Mutex<HashMap<String, Value>>> = Arc::default();
        let fake = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake_url = format!("http://{}", fake.local_addr().unwrap());
        let payments = mercadopago.clone();
        let router = Router::new().route(
            "/v1/payments/{id}",
            get(
                move |Path(id): Path<String>, headers: axum::http::HeaderMap| {
                    let payments = payments.clone();
                    async move {
                        let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
                        if auth != Some(&format!("Bearer {MP_TOKEN}")) {
                            return (
                                StatusCode::UNAUTHORIZED,
                                Json(json!({"message": "invalid token"})),
                            );
                        }
                        match payments.lock().unwrap().get(&id) {
                            Some(p) => (StatusCode::OK, Json(p.clone())),
                            None => (StatusCode::NOT_FOUND, Json(json!({"message": "not found"}))),
                        }
                    }
                },
            ),
        );
        tokio::spawn(axum::serve(fake, router).into_future());
        // The API as `api serve` runs it with WEBHOOK_ALLOW_PRIVATE=true and
        // MERCADOPAGO_API_URL (every peer here is on loopback).
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        app.addr = listener.local_addr().unwrap();
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
        let (smtp, inbox) = smtp_server().await;
        let (hook_url, hooks) = receiver().await;
        let mailer = LettreMailer::from_config(&MailConfig {
            smtp_url: Some(format!("smtp://{smtp}")),
            mail_from: "Credits <credits@shop.test>".into(),
            mail_dir: "unused".into(),
        })
        .unwrap();
        let http =
            HttpTransport::new(StdDuration::from_secs(5), TargetPolicy::AllowPrivate).unwrap();
        Self {
            app,
            inbox,
            hooks,
            hook_url,
            mercadopago,
            mailer,
            http,
            client: reqwest::Client::new(),
            shutdown,
        }
    }

    async fn ok(&self, query: &str, variables: Value) -> Value {
        self.app.ok(&self.app.admin_key, query, variables).await
    }

    /// Subscribes the receiver to `events`.
    async fn listen(&self, events: &[&str]) {
        self.ok(
            r#"mutation($url: String!, $events: [String!]!) {
              createWebhookEndpoint(input: {url: $url, events: $events}) { secret }
            }"#,
            json!({"url": self.hook_url, "events": events}),
        )
        .await;
    }

    /// What the worker does after commits: the outbox into deliveries
    /// (twice: the first pass may raise usage alerts the second tells),
    /// then every webhook and email due, over the real transports.
    async fn deliver(&self) {
        let (db, clock) = (&self.app.t.db, &self.app.clock);
        for _ in 0..2 {
            drain(db, clock, DrainLimits::default()).await.unwrap();
        }
        webhooks::deliver_due(db, clock, &self.http, 1_000)
            .await
            .unwrap();
        email::send_due(db, clock, &self.mailer, 1_000)
            .await
            .unwrap();
    }

    /// Bodies received of one event type, oldest first.
    fn hooks_of(&self, kind: &str) -> Vec<Value> {
        self.hooks
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h["type"] == kind)
            .cloned()
            .collect()
    }

    /// Emails received whose text contains `needle`.
    fn mails_with(&self, needle: &str) -> Vec<String> {
        self.inbox
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.contains(needle))
            .cloned()
            .collect()
    }

    async fn post(&self, path: &str, headers: &[(&str, String)], body: String) -> Value {
        let mut req = self
            .client
            .post(self.app.url(path))
            .header("content-type", "application/json")
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        resp.json().await.unwrap()
    }

    /// A Stripe event, signed as Stripe signs it now.
    async fn stripe(&self, path: &str, event: Value) -> Value {
        let body = event.to_string();
        let t = self.app.clock.now().timestamp();
        let v1 = hmac_hex(STRIPE_SECRET, &format!("{t}.{body}"));
        self.post(
            path,
            &[("stripe-signature", format!("t={t},v1={v1}"))],
            body,
        )
        .await
    }

    /// Mercado Pago tells of payment `id` (signed over its manifest); the
    /// engine fetches the payment from the fake API.
    async fn mercadopago(&self, path: &str, id: &str, payment: Value) -> Value {
        self.mercadopago.lock().unwrap().insert(id.into(), payment);
        let ts = self.app.clock.now().timestamp().to_string();
        let request_id = format!("req-{id}");
        let v1 = hmac_hex(
            MP_SECRET,
            &format!("id:{id};request-id:{request_id};ts:{ts};"),
        );
        let body = json!({"action": "payment.updated", "api_version": "v1", "data": {"id": id}, "type": "payment"});
        self.post(
            &format!("{path}?data.id={id}&type=payment"),
            &[
                ("x-signature", format!("ts={ts},v1={v1}")),
                ("x-request-id", request_id),
            ],
            body.to_string(),
        )
        .await
    }
}

fn hmac_hex(secret: &str, message: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(message.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Enough of SMTP for lettre to deliver; keeps each message's text.
async fn smtp_server() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let inbox = Arc::new(Mutex::new(Vec::new()));
    let store = inbox.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let store = store.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 shop.test ESMTP\r\n").await.ok();
                while let Ok(Some(line)) = lines.next_line().await {
                    let upper = line.to_ascii_uppercase();
                    let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                        b"250-shop.test\r\n250 8BITMIME\r\n"
                    } else if upper.starts_with("DATA") {
                        write.write_all(b"354 go ahead\r\n").await.ok();
                        let mut data = String::new();
                        while let Ok(Some(l)) = lines.next_line().await {
                            if l == "." {
                                break;
                            }
                            data.push_str(&l);
                            data.push('\n');
                        }
                        store.lock().unwrap().push(data);
                        b"250 queued\r\n"
                    } else if upper.starts_with("QUIT") {
                        write.write_all(b"221 bye\r\n").await.ok();
                        return;
                    } else {
                        b"250 OK\r\n"
                    };
                    write.write_all(reply).await.ok();
                }
            });
        }
    });
    (addr, inbox)
}

/// A webhook receiver keeping every body it gets (answering 200).
async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let hits = Arc::new(Mutex::new(Vec::new()));
    let state = hits.clone();
    let app = Router::new().route(
        "/hook",
        post(move |State(()): State<()>, body: Bytes| {
            let hits = state.clone();
            async move {
                hits.lock()
                    .unwrap()
                    .push(serde_json::from_slice::<Value>(&body).unwrap());
                StatusCode::OK
            }
        })
        .with_state(()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(axum::serve(listener, app).into_future());
    (format!("http://{addr}/hook"), hits)
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

/// The colour a partner's screen paints a status with.
fn colour(status: &Value) -> &'static str {
    match s(status) {
        "HEALTHY" => "green",
        "WATCH" => "orange",
        "CRITICAL" => "red",
        other => panic!("unknown status {other}"),
    }
}

// ---------------------------------------------------------------- 1

/// Partner photo-booth credits: volume prices in ARS paid through Mercado
/// Pago, a receipt, credits allocated partner → client → events, each
/// event's progress bar coloured, usage-% alerts, the analytics, the CSV.
#[tokio::test]
async fn partner_photo_booth_dashboard() {
    let shop = Shop::open().await;
    shop.listen(&["topup.paid", "wallet.usage_threshold_crossed"])
        .await;
    shop.ok(
        r#"mutation {
          createCreditSystem(input: {key: "photos", name: "Photo credits", unitSingular: "photo", unitPlural: "photos", precision: 0}) { creditSystem { id } }
          createProduct(input: {key: "booths", name: "Photo booths"}) { product { id } }
          createPlan(input: {product: {key: "booths"}, key: "partner", name: "Partner", billingInterval: ANNUALLY}) { plan { id } }
          attachCreditSystem(input: {plan: {key: "partner"}, creditSystem: {key: "photos"},
            pricing: {commitment: UPFRONT, currency: "ARS", minQuantity: "10000",
              topUpPrice: {pricingType: VOLUME, model: PER_UNIT, tiers: [
                {firstUnit: "0", lastUnit: "50000", amount: "0.80"},
                {firstUnit: "50000", lastUnit: "100000", amount: "0.70"},
                {firstUnit: "100000", lastUnit: "250000", amount: "0.65"},
                {firstUnit: "250000", amount: "0.55"}]}}}) { planCredit { id } }
          publishPlan(input: {plan: {key: "partner"}}) { plan { status } }
          partner: createCustomer(input: {externalId: "booths-inc", name: "Booths Inc", email: "billing@booths.test"}) { customer { id } }
          client: createCustomer(input: {externalId: "grand-hotel", name: "Grand Hotel", parent: {externalId: "booths-inc"}}) { customer { id } }
          e1: createCustomer(input: {externalId: "gala", name: "Gala", parent: {externalId: "grand-hotel"}}) { customer { id } }
          e2: createCustomer(input: {externalId: "wedding", name: "Wedding", parent: {externalId: "grand-hotel"}}) { customer { id } }
          e3: createCustomer(input: {externalId: "prom", name: "Prom", parent: {externalId: "grand-hotel"}}) { customer { id } }
          subscribe(input: {customer: {externalId: "booths-inc"}, plan: {key: "partner"}, idempotencyKey: "sub-booths"}) { subscription { status } }
          setPaymentProvider(input: {provider: MERCADOPAGO, secret: "mp-stories-secret-0123456789abcdef", accessToken: "APP_USR-stories"}) { intake { path } }
        }"#,
        json!({}),
    )
    .await;
    // The price list as the partner sees it: 10k for 8,000 ARS (0.80 each),
    // 60k at 0.70.
    let quote = r#"query($q: Credits!) { quoteTopUp(customer: {externalId: "booths-inc"}, creditSystem: {key: "photos"}, quantity: $q) { total unitPrice currency } }"#;
    assert_eq!(
        shop.ok(quote, json!({"q": "10000"})).await["quoteTopUp"],
        json!({"total": "8000.00", "unitPrice": "0.80", "currency": "ARS"})
    );
    assert_eq!(
        shop.ok(quote, json!({"q": "60000"})).await["quoteTopUp"]["total"],
        "42000.00"
    );
    // Buy 10k; Mercado Pago tells us it was approved.
    let order = shop
        .ok(
            r#"mutation { purchaseCredits(input: {customer: {externalId: "booths-inc"}, creditSystem: {key: "photos"}, quantity: "10000", idempotencyKey: "buy-1"}) { order { id } } }"#,
            json!({}),
        )
        .await["purchaseCredits"]["order"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = shop
        .ok("{ paymentProviders { provider path } }", json!({}))
        .await["paymentProviders"][0]["path"]
        .as_str()
        .unwrap()
        .to_owned();
    let answer = shop
        .mercadopago(
            &path,
            "90001",
            json!({"id": 90001, "status": "approved", "status_detail": "accredited",
                   "external_reference": order, "transaction_amount": 8000, "currency_id": "ARS"}),
        )
        .await;
    assert_eq!(answer["outcome"], "CONFIRMED");
    // Budgets down the tree, then guests print at the three events.
    shop.ok(
        r#"mutation {
          c: allocateCredits(input: {from: {externalId: "booths-inc"}, to: {externalId: "grand-hotel"}, creditSystem: {key: "photos"}, amount: "3000", note: "Season", idempotencyKey: "a-c"}) { inEntry { amount } }
          e1: allocateCredits(input: {from: {externalId: "grand-hotel"}, to: {externalId: "gala"}, creditSystem: {key: "photos"}, amount: "1000", note: "Gala", idempotencyKey: "a-1"}) { inEntry { amount } }
          e2: allocateCredits(input: {from: {externalId: "grand-hotel"}, to: {externalId: "wedding"}, creditSystem: {key: "photos"}, amount: "1000", note: "Wedding", idempotencyKey: "a-2"}) { inEntry { amount } }
          e3: allocateCredits(input: {from: {externalId: "grand-hotel"}, to: {externalId: "prom"}, creditSystem: {key: "photos"}, amount: "1000", note: "Prom", idempotencyKey: "a-3"}) { inEntry { amount } }
        }"#,
        json!({}),
    )
    .await;
    let print = r#"mutation($c: String!, $n: Credits!, $style: String!, $k: String!) {
      consumeCredits(input: {customer: {externalId: $c}, creditSystem: {key: "photos"}, amount: $n, feature: "print",
        userRef: "guest", dimensions: {style: $style}, idempotencyKey: $k}) { entry { balanceAfter } } }"#;
    for (event, n, style) in [
        ("gala", "500", "color"),
        ("wedding", "800", "vintage"),
        ("prom", "950", "vintage"),
    ] {
        shop.ok(
            print,
            json!({"c": event, "n": n, "style": style, "k": format!("p-{event}")}),
        )
        .await;
    }
    shop.deliver().await;

    // The partner's dashboard: totals, and each event's bar and colour.
    let dash = shop
        .ok(
            r#"{ customer(externalId: "booths-inc") {
              balanceSummary(creditSystem: {key: "photos"}) { totalPurchased totalAllocated available }
              children(creditSystem: {key: "photos"}, first: 10) { nodes {
                customer { externalId } allocated used remaining usagePercent status
                customer { children(creditSystem: {key: "photos"}, first: 10) { nodes {
                  customer { externalId } allocated used remaining usagePercent status } } } } } } }"#,
            json!({}),
        )
        .await;
    let summary = &dash["customer"]["balanceSummary"];
    assert_eq!(
        (
            s(&summary["totalPurchased"]),
            s(&summary["totalAllocated"]),
            s(&summary["available"])
        ),
        ("10000", "3000", "7000")
    );
    let client = &dash["customer"]["children"]["nodes"][0];
    assert_eq!(
        (
            s(&client["allocated"]),
            s(&client["used"]),
            s(&client["remaining"])
        ),
        ("3000", "2250", "0"),
        "a client's used counts its events'"
    );
    let bars: Vec<(String, String, String, &str)> = client["customer"]["children"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                s(&n["customer"]["externalId"]).to_owned(),
                s(&n["used"]).to_owned(),
                s(&n["remaining"]).to_owned(),
                colour(&n["status"]),
            )
        })
        .collect();
    assert_eq!(
        bars,
        vec![
            ("gala".into(), "500".into(), "500".into(), "green"),
            ("wedding".into(), "800".into(), "200".into(), "orange"),
            ("prom".into(), "950".into(), "50".into(), "red"),
        ]
    );
    // The receipt, by email and webhook, in ids the API takes back.
    let receipts = shop.mails_with(&order);
    assert_eq!(receipts.len(), 1, "{:?}", shop.inbox.lock().unwrap());
    assert!(receipts[0].contains("8000.00"), "{}", receipts[0]);
    assert!(receipts[0].contains("90001"), "{}", receipts[0]);
    let paid = shop.hooks_of("topup.paid");
    assert_eq!(paid.len(), 1);
    assert_eq!(paid[0]["data"]["orderId"], order.as_str());
    assert_eq!(paid[0]["data"]["customer"]["externalId"], "booths-inc");
    let id = s(&paid[0]["data"]["customer"]["id"]).to_owned();
    let found = shop
        .ok(
            "query($id: ID!) { customer(id: $id) { externalId } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(found["customer"]["externalId"], "booths-inc");
    // "Your event has used 75 % / 90 %": once per crossing, per event.
    let alerts: Vec<(String, String)> = shop
        .hooks_of("wallet.usage_threshold_crossed")
        .iter()
        .map(|h| {
            (
                s(&h["data"]["customer"]["externalId"]).to_owned(),
                s(&h["data"]["threshold"]).to_owned(),
            )
        })
        .collect();
    let mut sorted = alerts.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        vec![
            ("prom".into(), "90".into()),
            ("wedding".into(), "75".into())
        ],
        "{alerts:?}"
    );
    shop.ok(
        print,
        json!({"c": "wedding", "n": "10", "style": "color", "k": "p-more"}),
    )
    .await;
    shop.deliver().await;
    assert_eq!(shop.hooks_of("wallet.usage_threshold_crossed").len(), 2);

    // Analytics over the whole tree: most active events and peak hours.
    let from = shop.app.clock.now() - Duration::days(30);
    let to = shop.app.clock.now() + Duration::days(1);
    let analytics = shop
        .ok(
            r#"query($from: DateTime!, $to: DateTime!) {
              mostActive: usageBreakdown(customer: {externalId: "booths-inc"}, includeDescendants: true, creditSystem: {key: "photos"},
                from: $from, to: $to, groupBy: CUSTOMER, first: 2) { key credits }
              styles: usageBreakdown(customer: {externalId: "booths-inc"}, includeDescendants: true, creditSystem: {key: "photos"},
                from: $from, to: $to, groupBy: DIMENSION, dimension: "style") { key credits }
              peak: usageBreakdown(customer: {externalId: "booths-inc"}, includeDescendants: true, creditSystem: {key: "photos"},
                from: $from, to: $to, groupBy: HOUR_OF_DAY) { key credits count } }"#,
            json!({"from": from, "to": to}),
        )
        .await;
    assert_eq!(
        analytics["mostActive"],
        json!([{"key": "prom", "credits": "950"}, {"key": "wedding", "credits": "810"}])
    );
    assert_eq!(
        analytics["styles"],
        json!([{"key": "vintage", "credits": "1750"}, {"key": "color", "credits": "510"}])
    );
    assert_eq!(
        analytics["peak"],
        json!([{"key": "12", "credits": "2260", "count": 4}])
    );
    // The accountant's CSV of the tree: prefixed ids, transfers naming
    // the other side.
    let csv = shop
        .client
        .get(shop.app.url(
            "/exports/entries.csv?customer=booths-inc&includeDescendants=true&creditSystem=photos",
        ))
        .bearer_auth(&shop.app.admin_key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut rows = csv::Reader::from_reader(csv.as_bytes());
    let headers = rows.headers().unwrap().clone();
    let at = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let records: Vec<csv::StringRecord> = rows.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 13, "{csv}");
    assert!(
        records
            .iter()
            .all(|r| r[at("entry_id")].starts_with("ent_"))
    );
    let grant = records.iter().find(|r| &r[at("type")] == "GRANT").unwrap();
    assert_eq!(&grant[at("order_id")], order.as_str());
    shop.app.verify_all().await;
}

// ---------------------------------------------------------------- 2

/// Pay-as-you-go organisation credits: one balance, admins buy at least
/// 1,000 at a shown price per credit through Stripe, a 4-month summary
/// with the current month marked, usage per event and per user, and a
/// purchase history telling purchases, trial and admin grants and refunds
/// apart.
#[tokio::test]
async fn organisation_credits_summary_and_purchase_history() {
    let shop = Shop::open().await;
    shop.listen(&["topup.paid", "topup.refunded"]).await;
    shop.ok(
        r#"mutation {
          createCreditSystem(input: {key: "credits", name: "Credits", unitSingular: "credit", unitPlural: "credits", precision: 0}) { creditSystem { id } }
          createProduct(input: {key: "org", name: "Organisation"}) { product { id } }
          createPlan(input: {product: {key: "org"}, key: "payg", name: "Pay as you go", billingInterval: MONTHLY}) { plan { id } }
          attachCreditSystem(input: {plan: {key: "payg"}, creditSystem: {key: "credits"},
            pricing: {commitment: PAY_AS_YOU_GO, currency: "EUR", taxRate: "0.27", minQuantity: "1000",
              topUpPrice: {pricingType: VOLUME, model: PER_UNIT, tiers: [{firstUnit: "0", amount: "0.03"}]}}}) { planCredit { id } }
          publishPlan(input: {plan: {key: "payg"}}) { plan { status } }
          createCustomer(input: {externalId: "org-7", name: "Org 7", email: "admins@org7.test"}) { customer { id } }
          subscribe(input: {customer: {externalId: "org-7"}, plan: {key: "payg"}, idempotencyKey: "sub-org-7"}) { subscription { status } }
          setPaymentProvider(input: {provider: STRIPE, secret: "whsec_stories0000000000000000000000"}) { intake { path } }
          trial: grantCredits(input: {customer: {externalId: "org-7"}, creditSystem: {key: "credits"}, amount: "100", category: PROMOTIONAL,
            reason: "Free trial", idempotencyKey: "trial-org-7"}) { entry { balanceAfter } }
        }"#,
        json!({}),
    )
    .await;
    let path =
        shop.ok("{ paymentProviders { path } }", json!({})).await["paymentProviders"][0]["path"]
            .as_str()
            .unwrap()
            .to_owned();
    // Below the minimum: refused, naming the field.
    let (_, body) = shop
        .app
        .gql(
            Some(&shop.app.admin_key),
            r#"mutation { purchaseCredits(input: {customer: {externalId: "org-7"}, creditSystem: {key: "credits"}, quantity: "500", idempotencyKey: "small"}) { order { id } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(common::code(&body), "VALIDATION", "{body}");
    assert_eq!(common::field(&body), "quantity", "{body}");
    // Four months of use, a purchase paid through Stripe in the second.
    let buy = r#"mutation($k: String!) { purchaseCredits(input: {customer: {externalId: "org-7"}, creditSystem: {key: "credits"}, quantity: "1000", idempotencyKey: $k}) {
      order { id quote { unitPrice subtotal tax total currency } } } }"#;
    let use_ = r#"mutation($n: Credits!, $e: String!, $u: String, $k: String!) { consumeCredits(input: {customer: {externalId: "org-7"}, creditSystem: {key: "credits"},
      amount: $n, eventRef: $e, userRef: $u, idempotencyKey: $k}) { entry { balanceAfter } } }"#;
    let mut orders = Vec::new();
    // From 2026-02-01: February to May, one step a month.
    shop.app.clock.advance(Duration::days(1));
    for (month, step) in [28, 31, 30, 0].into_iter().enumerate() {
        if month == 1 {
            let order =
                shop.ok(buy, json!({"k": "buy-1"})).await["purchaseCredits"]["order"].clone();
            assert_eq!(
                order["quote"],
                json!({"unitPrice": "0.03", "subtotal": "30.00", "tax": "8.10", "total": "38.10", "currency": "EUR"})
            );
            let id = s(&order["id"]).to_owned();
            let answer = shop
                .stripe(
                    &path,
                    json!({"id": "evt_org7_1", "object": "event", "type": "checkout.session.completed",
                      "data": {"object": {"id": "cs_org7_1", "object": "checkout.session", "amount_total": 3810, "currency": "eur",
                        "payment_intent": "pi_org7_1", "payment_status": "paid", "status": "complete", "metadata": {"order_id": id}}}}),
                )
                .await;
            assert_eq!(answer["outcome"], "CONFIRMED");
            orders.push(id);
        }
        for (i, (event, user)) in [("report", Some("ana")), ("sync", None)].iter().enumerate() {
            shop.ok(
                use_,
                json!({"n": (10 * (month + 1)).to_string(), "e": event, "u": user, "k": format!("u-{month}-{i}")}),
            )
            .await;
        }
        shop.app.clock.advance(Duration::days(step));
    }
    // An admin grant and a refund of the purchase's 100 unused credits.
    shop.ok(
        r#"mutation($o: ID!) {
          adjustBalance(input: {customer: {externalId: "org-7"}, creditSystem: {key: "credits"}, amount: "50", reason: "Goodwill", idempotencyKey: "adm-1"}) { entry { type } }
          refundTopUpOrder(input: {order: $o, quantity: "100", reason: "Asked for it", idempotencyKey: "rf-1"}) { order { status refundedQuantity } }
        }"#,
        json!({"o": orders[0]}),
    )
    .await;
    shop.deliver().await;

    let screen = shop
        .ok(
            r#"{
              usageSummary(customer: {externalId: "org-7"}, creditSystem: {key: "credits"}, months: 4) { month credits count isCurrent }
              customer(externalId: "org-7") { wallet(creditSystem: {key: "credits"}) {
                balance { available purchased promotional admin }
                history: grants(first: 10) { nodes { category amount reason order { id gateway paymentId status } } }
              } } }"#,
            json!({}),
        )
        .await;
    let months: Vec<(String, String, i64, bool)> = screen["usageSummary"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                s(&m["month"]).to_owned(),
                s(&m["credits"]).to_owned(),
                m["count"].as_i64().unwrap(),
                m["isCurrent"].as_bool().unwrap(),
            )
        })
        .collect();
    let now = shop.app.clock.now();
    assert_eq!(months.len(), 4, "{months:?}");
    assert_eq!(
        months
            .iter()
            .map(|m| (m.1.as_str(), m.2, m.3))
            .collect::<Vec<_>>(),
        vec![
            ("20", 2, false),
            ("40", 2, false),
            ("60", 2, false),
            ("80", 2, true)
        ],
        "{months:?}"
    );
    assert!(
        months[3]
            .0
            .starts_with(&format!("{}-{:02}", now.year(), now.month()))
    );
    // 100 trial + 1000 bought − 200 used − 100 refunded + 50 admin.
    assert_eq!(
        screen["customer"]["wallet"]["balance"],
        json!({"available": "850", "purchased": "800", "promotional": "0", "admin": "50"})
    );
    let history = screen["customer"]["wallet"]["history"]["nodes"]
        .as_array()
        .unwrap();
    let purchase = history
        .iter()
        .find(|g| g["category"] == "PURCHASED")
        .unwrap();
    assert_eq!(
        purchase["order"],
        json!({"id": orders[0], "gateway": "stripe", "paymentId": "pi_org7_1", "status": "PARTIALLY_REFUNDED"})
    );
    let mut kinds: Vec<&str> = history.iter().map(|g| s(&g["category"])).collect();
    kinds.sort();
    assert_eq!(kinds, vec!["ADMIN", "PROMOTIONAL", "PURCHASED"]);
    // Usage per event and per user ("system" when no user is named).
    let from = now - Duration::days(120);
    let per = shop
        .ok(
            r#"query($from: DateTime!, $to: DateTime!) {
              events: usageBreakdown(customer: {externalId: "org-7"}, from: $from, to: $to, groupBy: EVENT_REF) { key credits count }
              users: usageBreakdown(customer: {externalId: "org-7"}, from: $from, to: $to, groupBy: USER_REF) { key credits } }"#,
            json!({"from": from, "to": now + Duration::days(1)}),
        )
        .await;
    assert_eq!(
        per["events"],
        json!([{"key": "report", "credits": "100", "count": 4}, {"key": "sync", "credits": "100", "count": 4}])
    );
    assert_eq!(per["users"].as_array().unwrap().len(), 2, "{per}");
    // The receipt shows the tax; topup.paid and topup.refunded reached the
    // receiver with the order's id as the API writes it.
    let receipt = shop.mails_with(&orders[0]);
    assert_eq!(receipt.len(), 1);
    assert!(
        receipt[0].contains("8.10")
            && receipt[0].contains("38.10")
            && receipt[0].contains("pi_org7_1")
    );
    assert_eq!(
        shop.hooks_of("topup.paid")[0]["data"]["orderId"],
        orders[0].as_str()
    );
    assert_eq!(shop.hooks_of("topup.refunded").len(), 1);
    shop.app.verify_all().await;
}

// ---------------------------------------------------------------- 3

/// SMS, email and AI credits for a booking platform: three balances, a
/// Starter plan whose monthly SMS and email allocations reset, AI credits
/// valued in HUF bought in a custom amount between a minimum and a maximum
/// with VAT on top, a low-balance email at the tenant's threshold once per
/// crossing, and the history with date filters.
#[tokio::test]
async fn booking_platform_three_balances_reset_monthly() {
    let shop = Shop::open().await;
    shop.ok(
        r#"mutation {
          sms: createCreditSystem(input: {key: "sms", name: "SMS", unitSingular: "SMS", unitPlural: "SMS", precision: 0}) { creditSystem { id } }
          email: createCreditSystem(input: {key: "email", name: "Email sends", unitSingular: "email", unitPlural: "emails", precision: 0}) { creditSystem { id } }
          ai: createCreditSystem(input: {key: "ai", name: "AI credit", unitSingular: "HUF", unitPlural: "HUF", precision: 2, kind: MONETARY, currency: "HUF"}) { creditSystem { id } }
          updateCreditSystem(input: {creditSystem: {key: "sms"}, lowBalanceThreshold: "20"}) { creditSystem { lowBalanceThreshold } }
          createProduct(input: {key: "booking", name: "Booking"}) { product { id } }
          createPlan(input: {product: {key: "booking"}, key: "starter", name: "Starter", billingInterval: MONTHLY}) { plan { id } }
          a: attachCreditSystem(input: {plan: {key: "starter"}, creditSystem: {key: "sms"}, included: {amount: "100", resetInterval: MONTHLY}}) { planCredit { id } }
          b: attachCreditSystem(input: {plan: {key: "starter"}, creditSystem: {key: "email"}, included: {amount: "1000", resetInterval: MONTHLY}}) { planCredit { id } }
          c: attachCreditSystem(input: {plan: {key: "starter"}, creditSystem: {key: "ai"},
            pricing: {commitment: PAY_AS_YOU_GO, currency: "HUF", taxRate: "0.27", minQuantity: "1000", maxQuantity: "100000",
              topUpPrice: {pricingType: VOLUME, model: PER_UNIT, tiers: [{firstUnit: "0", amount: "1"}]}}}) { planCredit { id } }
          publishPlan(input: {plan: {key: "starter"}}) { plan { status } }
          createCustomer(input: {externalId: "salon-9", name: "Salon 9", email: "owner@salon9.test"}) { customer { id } }
          subscribe(input: {customer: {externalId: "salon-9"}, plan: {key: "starter"}, idempotencyKey: "sub-salon-9"}) { subscription { status } }
        }"#,
        json!({}),
    )
    .await;
    // AI credits: any amount from 1,000 to 100,000 HUF, 27 % VAT on top.
    let buy = r#"mutation($q: Credits!, $k: String!) { purchaseCredits(input: {customer: {externalId: "salon-9"}, creditSystem: {key: "ai"}, quantity: $q, idempotencyKey: $k}) {
      order { id quote { subtotal tax total currency } } } }"#;
    for (q, k) in [("999", "too-small"), ("100001", "too-big")] {
        let (_, body) = shop
            .app
            .gql(Some(&shop.app.admin_key), buy, json!({"q": q, "k": k}))
            .await;
        assert_eq!(
            (common::code(&body), common::field(&body)),
            ("VALIDATION", "quantity"),
            "{body}"
        );
    }
    let order =
        shop.ok(buy, json!({"q": "2500", "k": "ai-1"})).await["purchaseCredits"]["order"].clone();
    assert_eq!(
        order["quote"],
        json!({"subtotal": "2500.00", "tax": "675.00", "total": "3175.00", "currency": "HUF"})
    );
    // Barion has no intake: the backend confirms what its gateway said.
    shop.ok(
        r#"mutation($o: ID!) { confirmTopUpPayment(input: {order: $o, gateway: "barion", paymentId: "barion-77"}) { order { status } } }"#,
        json!({"o": order["id"]}),
    )
    .await;
    // A long SMS costs 3, a bulk email one per recipient, an AI reply 12.5 HUF.
    let spend = r#"mutation($cs: String!, $n: Credits!, $f: String!, $k: String!) { consumeCredits(input: {customer: {externalId: "salon-9"},
      creditSystem: {key: $cs}, amount: $n, feature: $f, idempotencyKey: $k}) { entry { balanceAfter } } }"#;
    let first_month = shop.app.clock.now();
    for (i, (cs, n, f)) in [
        ("sms", "78", "sms.long"),
        ("sms", "3", "sms.long"),
        ("email", "250", "email.bulk"),
        ("ai", "12.5", "ai.reply"),
    ]
    .into_iter()
    .enumerate()
    {
        shop.ok(
            spend,
            json!({"cs": cs, "n": n, "f": f, "k": format!("m1-{i}")}),
        )
        .await;
    }
    shop.deliver().await;
    // 19 SMS left, under 20: one email, not one per message.
    assert_eq!(
        shop.mails_with("Low balance").len(),
        1,
        "{:?}",
        shop.inbox.lock().unwrap()
    );
    shop.ok(
        spend,
        json!({"cs": "sms", "n": "3", "f": "sms.long", "k": "m1-more"}),
    )
    .await;
    shop.deliver().await;
    assert_eq!(shop.mails_with("Low balance").len(), 1);

    // A month on: the allocations reset (what was left expires), the AI
    // credits stay, and the alert is armed again.
    shop.app.clock.advance(Duration::days(29));
    service::allowances::reset_due(&shop.app.t.db, &shop.app.clock, 100)
        .await
        .unwrap();
    let second_month = shop.app.clock.now();
    shop.ok(
        spend,
        json!({"cs": "sms", "n": "90", "f": "sms.long", "k": "m2-0"}),
    )
    .await;
    shop.deliver().await;
    assert_eq!(shop.mails_with("Low balance").len(), 2);

    let screen = shop
        .ok(
            r#"query($since: DateTime!) { customer(externalId: "salon-9") {
              wallets { creditSystem { key unitPlural } balance { available included purchased } }
              sms: wallet(creditSystem: {key: "sms"}) {
                thisMonth: entries(first: 10, filter: {from: $since}) { nodes { type amount balanceAfter } } }
              ai: wallet(creditSystem: {key: "ai"}) {
                purchases: entries(first: 10, filter: {types: [GRANT]}) { nodes { amount balanceAfter } } } } }"#,
            json!({"since": first_month + Duration::days(1)}),
        )
        .await;
    let c = &screen["customer"];
    let mut balances: Vec<(String, String, String, String)> = c["wallets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                s(&w["creditSystem"]["key"]).to_owned(),
                s(&w["balance"]["available"]).to_owned(),
                s(&w["balance"]["included"]).to_owned(),
                s(&w["balance"]["purchased"]).to_owned(),
            )
        })
        .collect();
    balances.sort();
    assert_eq!(
        balances,
        vec![
            ("ai".into(), "2487.5".into(), "0".into(), "2487.5".into()),
            ("email".into(), "1000".into(), "1000".into(), "0".into()),
            ("sms".into(), "10".into(), "10".into(), "0".into()),
        ]
    );
    let this_month: Vec<(String, String, String)> = c["sms"]["thisMonth"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                s(&e["type"]).to_owned(),
                s(&e["amount"]).to_owned(),
                s(&e["balanceAfter"]).to_owned(),
            )
        })
        .collect();
    assert_eq!(
        this_month,
        vec![
            ("USAGE".into(), "-90".into(), "10".into()),
            ("GRANT".into(), "100".into(), "100".into()),
            ("EXPIRY".into(), "-16".into(), "0".into()),
        ],
        "newest first, only since the first month"
    );
    assert_eq!(
        c["ai"]["purchases"]["nodes"],
        json!([{"amount": "2500", "balanceAfter": "2500"}])
    );
    assert!(first_month < second_month);
    shop.app.verify_all().await;
}

// ---------------------------------------------------------------- 4

/// Credit grants on a billing platform: money-valued grants with an expiry
/// and a reason, applied to invoices soonest-expiring first (pending while
/// the invoice is open, the rest charged to the card), "expiring in 30
/// days", voiding with a reason, a report across customers, and webhooks
/// when credits are granted and when a balance is depleted.
#[tokio::test]
async fn billing_platform_credit_grants_pay_invoices() {
    let shop = Shop::open().await;
    shop.listen(&["credits.granted", "wallet.balance_depleted", "grant.voided"])
        .await;
    let now = shop.app.clock.now();
    shop.ok(
        r#"mutation($in20: DateTime!, $in90: DateTime!) {
          createCreditSystem(input: {key: "usd", name: "Account credit", unitSingular: "USD", unitPlural: "USD", precision: 2, kind: MONETARY, currency: "USD"}) { creditSystem { id } }
          acme: createCustomer(input: {externalId: "acme", name: "Acme"}) { customer { id } }
          globex: createCustomer(input: {externalId: "globex", name: "Globex"}) { customer { id } }
          g1: grantCredits(input: {customer: {externalId: "acme"}, creditSystem: {key: "usd"}, amount: "20.00", category: PROMOTIONAL, expiresAt: $in20, reason: "Onboarding", idempotencyKey: "g1"}) { grant { id } }
          g2: grantCredits(input: {customer: {externalId: "acme"}, creditSystem: {key: "usd"}, amount: "50.00", category: PROMOTIONAL, expiresAt: $in90, reason: "Sales promotion", idempotencyKey: "g2"}) { grant { id } }
          g3: grantCredits(input: {customer: {externalId: "acme"}, creditSystem: {key: "usd"}, amount: "30.00", category: ADMIN, reason: "Service credit", idempotencyKey: "g3"}) { grant { id } }
          g4: grantCredits(input: {customer: {externalId: "globex"}, creditSystem: {key: "usd"}, amount: "15.00", category: PROMOTIONAL, reason: "Welcome", idempotencyKey: "g4"}) { grant { id } }
        }"#,
        json!({"in20": now + Duration::days(20), "in90": now + Duration::days(90)}),
    )
    .await;
    let balance = r#"{ customer(externalId: "acme") { wallet(creditSystem: {key: "usd"}) {
      balance { available pending expiringSoon(days: 30) }
      grants(first: 10) { nodes { id amount remaining reason expiresAt } } } } }"#;
    let b = shop.ok(balance, json!({})).await;
    assert_eq!(
        b["customer"]["wallet"]["balance"],
        json!({"available": "100", "pending": "0", "expiringSoon": "20"})
    );
    // An open invoice holds credits, soonest-expiring first.
    let apply = r#"mutation($id: String!, $sub: Decimal!, $c: String!) {
      applyCreditsToInvoice(customer: {externalId: $c}, invoice: {externalId: $id, currency: "USD", subtotal: $sub}, idempotencyKey: $id) {
        creditApplied totalDue status note } }"#;
    let inv = shop
        .ok(apply, json!({"id": "INV-1", "sub": "45.50", "c": "acme"}))
        .await;
    assert_eq!(
        (
            s(&inv["applyCreditsToInvoice"]["creditApplied"]),
            s(&inv["applyCreditsToInvoice"]["totalDue"])
        ),
        ("45.5", "0")
    );
    let b = shop.ok(balance, json!({})).await;
    assert_eq!(
        b["customer"]["wallet"]["balance"],
        json!({"available": "54.5", "pending": "45.5", "expiringSoon": "0"})
    );
    shop.ok(
        r#"mutation { finalizeInvoice(externalId: "INV-1") { status } }"#,
        json!({}),
    )
    .await;
    // The service credit was a mistake: void it, saying why.
    let grants = b["customer"]["wallet"]["grants"]["nodes"]
        .as_array()
        .unwrap()
        .clone();
    let service_credit = grants
        .iter()
        .find(|g| g["reason"] == "Service credit")
        .unwrap();
    shop.ok(
        r#"mutation($g: ID!) { voidGrant(input: {grant: $g, reason: "Issued in error", idempotencyKey: "void-g3"}) { entry { amount description } } }"#,
        json!({"g": service_credit["id"]}),
    )
    .await;
    // The next invoice takes what is left; the card pays the rest.
    let inv = shop
        .ok(apply, json!({"id": "INV-2", "sub": "40.00", "c": "acme"}))
        .await["applyCreditsToInvoice"]
        .clone();
    assert_eq!(
        (s(&inv["creditApplied"]), s(&inv["totalDue"])),
        ("24.5", "15.5")
    );
    assert!(!s(&inv["note"]).is_empty());
    shop.ok(
        r#"mutation { finalizeInvoice(externalId: "INV-2") { status } }"#,
        json!({}),
    )
    .await;
    shop.ok(
        apply,
        json!({"id": "INV-G1", "sub": "10.00", "c": "globex"}),
    )
    .await;
    shop.ok(
        r#"mutation { finalizeInvoice(externalId: "INV-G1") { status } }"#,
        json!({}),
    )
    .await;
    shop.deliver().await;

    // Credits applied to invoices, across customers.
    let report = shop
        .ok(
            r#"query($from: DateTime!, $to: DateTime!) { usageBreakdown(creditSystem: {key: "usd"}, from: $from, to: $to, groupBy: CUSTOMER, types: [INVOICE]) { key credits count } }"#,
            json!({"from": now - Duration::days(1), "to": now + Duration::days(1)}),
        )
        .await;
    let rows: Vec<(&str, &str)> = report["usageBreakdown"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (s(&r["key"]), s(&r["credits"])))
        .collect();
    assert_eq!(rows, vec![("acme", "70"), ("globex", "10")]);
    // Webhooks: every grant, the void, and acme's balance reaching zero,
    // each naming the customer and credit system as the API does.
    let granted = shop.hooks_of("credits.granted");
    assert_eq!(granted.len(), 4);
    assert!(
        granted
            .iter()
            .all(|h| h["data"]["creditSystem"]["key"] == "usd")
    );
    let voided = shop.hooks_of("grant.voided");
    assert_eq!(voided.len(), 1);
    assert_eq!(voided[0]["data"]["grantId"], service_credit["id"]);
    let depleted = shop.hooks_of("wallet.balance_depleted");
    assert_eq!(depleted.len(), 1);
    assert_eq!(depleted[0]["data"]["customer"]["externalId"], "acme");
    shop.app.verify_all().await;
}

// ---------------------------------------------------------------- 5

/// Credit systems attached to plans: a plan with an included monthly
/// allowance and graduated top-up tiers (tax, minimum and maximum, expiry,
/// a low-credit limit that blocks), feature costs in credits, and a wallet
/// of included + purchased + promotional credits spent soonest-expiring
/// first.
#[tokio::test]
async fn plan_with_tiers_allowance_and_feature_costs() {
    let shop = Shop::open().await;
    shop.ok(
        r#"mutation {
          createCreditSystem(input: {key: "tokens", name: "AI tokens", unitSingular: "token", unitPlural: "tokens", precision: 0}) { creditSystem { id } }
          image: createFeature(input: {key: "image.generate", name: "Image", unit: "image"}) { feature { id } }
          chat: createFeature(input: {key: "chat.message", name: "Chat message", unit: "message"}) { feature { id } }
          createProduct(input: {key: "studio", name: "Studio"}) { product { id } }
          createPlan(input: {product: {key: "studio"}, key: "creator", name: "Creator", description: "500 tokens a month, more when you need them", billingInterval: MONTHLY}) { plan { id } }
        }"#,
        json!({}),
    )
    .await;
    // Recurring prices are for upfront commitments only.
    let (_, body) = shop
        .app
        .gql(
            Some(&shop.app.admin_key),
            r#"mutation { attachCreditSystem(input: {plan: {key: "creator"}, creditSystem: {key: "tokens"},
              pricing: {commitment: PAY_AS_YOU_GO, currency: "EUR",
                recurringPrice: {quantity: "1000", price: {pricingType: VOLUME, model: FLAT, tiers: [{firstUnit: "0", amount: "9"}]}}}}) { planCredit { id } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(common::code(&body), "VALIDATION", "{body}");
    shop.ok(
        r#"mutation {
          attachCreditSystem(input: {plan: {key: "creator"}, creditSystem: {key: "tokens"},
            included: {amount: "500", resetInterval: MONTHLY},
            pricing: {commitment: UPFRONT, currency: "EUR", taxRate: "0.21", minQuantity: "100", maxQuantity: "20000", expiration: "P6M",
              lowCreditLimit: "50", lowCreditAction: BLOCK,
              topUpPrice: {pricingType: GRADUATED, model: PER_UNIT, tiers: [
                {firstUnit: "0", lastUnit: "1000", amount: "0.010"},
                {firstUnit: "1000", lastUnit: "5000", amount: "0.008"},
                {firstUnit: "5000", amount: "0.005"}]}}}) { planCredit { id } }
          img: setEntitlement(input: {plan: {key: "creator"}, feature: {key: "image.generate"}, creditSystem: {key: "tokens"}, creditCost: "4"}) { entitlement { creditCost } }
          msg: setEntitlement(input: {plan: {key: "creator"}, feature: {key: "chat.message"}, creditSystem: {key: "tokens"}, creditCost: "1"}) { entitlement { creditCost } }
          publishPlan(input: {plan: {key: "creator"}}) { plan { status description } }
          createCustomer(input: {externalId: "maria", name: "Maria", email: "maria@studio.test"}) { customer { id } }
        }"#,
        json!({}),
    )
    .await;
    let sub = shop
        .ok(
            r#"mutation { subscribe(input: {customer: {externalId: "maria"}, plan: {key: "creator"}, idempotencyKey: "sub-maria"}) {
              subscription { status } grants { category amount } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        sub["subscribe"],
        json!({"subscription": {"status": "ACTIVE"}, "grants": [{"category": "INCLUDED", "amount": "500"}]})
    );
    // The price editor's preview: 3,000 tokens = 1,000 × 0.010 + 2,000 ×
    // 0.008 = 26.00, 21 % VAT.
    let quote = shop
        .ok(
            r#"{ quoteTopUp(customer: {externalId: "maria"}, creditSystem: {key: "tokens"}, quantity: "3000") {
              subtotal tax total currency lines { tier quantity amount } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        quote["quoteTopUp"],
        json!({"subtotal": "26.00", "tax": "5.46", "total": "31.46", "currency": "EUR",
               "lines": [{"tier": 0, "quantity": "1000", "amount": "10.00"}, {"tier": 1, "quantity": "2000", "amount": "16.00"}]})
    );
    let order = shop
        .ok(
            r#"mutation { purchaseCredits(input: {customer: {externalId: "maria"}, creditSystem: {key: "tokens"}, quantity: "3000", idempotencyKey: "buy-maria"}) { order { id } } }"#,
            json!({}),
        )
        .await["purchaseCredits"]["order"]["id"]
        .clone();
    shop.ok(
        r#"mutation($o: ID!) { confirmTopUpPayment(input: {order: $o, gateway: "stripe", paymentId: "pi_maria"}) { order { status } } }"#,
        json!({"o": order}),
    )
    .await;
    shop.ok(
        r#"mutation($at: DateTime!) { grantCredits(input: {customer: {externalId: "maria"}, creditSystem: {key: "tokens"}, amount: "100",
          category: PROMOTIONAL, expiresAt: $at, reason: "Welcome week", idempotencyKey: "promo-maria"}) { grant { id } } }"#,
        json!({"at": shop.app.clock.now() + Duration::days(7)}),
    )
    .await;
    // Features cost credits: 10 images × 4 + 30 messages × 1 = 70 tokens,
    // from the promotion first (it expires soonest).
    let used = shop
        .ok(
            r#"mutation {
              img: trackUsage(input: {customer: {externalId: "maria"}, feature: {key: "image.generate"}, quantity: "10", eventRef: "batch-1", idempotencyKey: "u1"}) { entry { amount } }
              msg: trackUsage(input: {customer: {externalId: "maria"}, feature: {key: "chat.message"}, quantity: "30", eventRef: "chat-1", idempotencyKey: "u2"}) { entry { amount } }
            }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        (
            s(&used["img"]["entry"]["amount"]),
            s(&used["msg"]["entry"]["amount"])
        ),
        ("-40", "-30")
    );
    let wallet = r#"{ customer(externalId: "maria") { wallet(creditSystem: {key: "tokens"}) {
      balance { available included purchased promotional } } }
      checkEntitlement(customer: {externalId: "maria"}, feature: {key: "image.generate"}, quantity: "5") { allowed creditCost available } }"#;
    let screen = shop.ok(wallet, json!({})).await;
    assert_eq!(
        screen["customer"]["wallet"]["balance"],
        json!({"available": "3530", "included": "500", "purchased": "3000", "promotional": "30"})
    );
    assert_eq!(
        screen["checkEntitlement"],
        json!({"allowed": true, "creditCost": "20", "available": "3530"})
    );
    // The low-credit limit blocks what would take the wallet under 50.
    let (_, body) = shop
        .app
        .gql(
            Some(&shop.app.admin_key),
            r#"mutation { consumeCredits(input: {customer: {externalId: "maria"}, creditSystem: {key: "tokens"}, amount: "3481", idempotencyKey: "too-much"}) { entry { amount } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(common::code(&body), "LOW_CREDIT_LIMIT", "{body}");
    shop.ok(
        r#"mutation { consumeCredits(input: {customer: {externalId: "maria"}, creditSystem: {key: "tokens"}, amount: "3480", idempotencyKey: "just-enough"}) { entry { balanceAfter } } }"#,
        json!({}),
    )
    .await;
    let screen = shop.ok(wallet, json!({})).await;
    assert_eq!(
        screen["customer"]["wallet"]["balance"],
        json!({"available": "50", "included": "0", "purchased": "50", "promotional": "0"}),
        "soonest-expiring first: the promotion, the month's allowance, then the purchase"
    );
    assert_eq!(screen["checkEntitlement"]["allowed"], false);
    shop.app.verify_all().await;
}
