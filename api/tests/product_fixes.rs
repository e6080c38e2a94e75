//! The small wrong answers of issue 16, item 6, over HTTP on SQLite and
//! PostgreSQL: each answer says what a read right after would say.

mod common;

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::{TestApp, code, field};
use serde_json::{Value, json};
use service::Clock;
use tokio_util::sync::CancellationToken;

/// A clock that moves one second every time it is read, so a request's
/// `now` (taken first) and a write's (taken later) differ, as they do on
/// the wall clock.
#[derive(Debug, Clone)]
struct TickingClock(Arc<Mutex<DateTime<Utc>>>);

impl Clock for TickingClock {
    fn now(&self) -> DateTime<Utc> {
        let mut now = self.0.lock().unwrap();
        *now += Duration::seconds(1);
        *now
    }
}

/// The test app's database served by a second server on a ticking clock.
struct Ticking {
    addr: std::net::SocketAddr,
    shutdown: CancellationToken,
}

impl Ticking {
    async fn spawn(app: &TestApp) -> Self {
        let clock = TickingClock(Arc::new(Mutex::new(
            Utc.with_ymd_and_hms(2026, 1, 31, 12, 0, 0).unwrap(),
        )));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let limits = api::http::HttpLimits::default();
        let router =
            api::server::app_with_limits(app.t.db.clone(), Arc::new(clock), limits.clone());
        tokio::spawn(api::http::serve::serve(
            listener,
            router,
            limits,
            shutdown.clone().cancelled_owned(),
        ));
        Self { addr, shutdown }
    }

    async fn ok(&self, key: &str, query: &str) -> Value {
        let body: Value = reqwest::Client::new()
            .post(format!("http://{}/graphql", self.addr))
            .bearer_auth(key)
            .json(&json!({ "query": query }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(body.get("errors").is_none(), "unexpected errors: {body}");
        body["data"].clone()
    }
}

impl Drop for Ticking {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

const PLAN: &str = r#"mutation {
  createCreditSystem(input: {key: "sms", name: "SMS", unitSingular: "SMS", unitPlural: "SMS", precision: 0}) { creditSystem { id } }
  createProduct(input: {key: "sms", name: "SMS gateway"}) { product { id } }
  createPlan(input: {product: {key: "sms"}, key: "sms-basic", name: "SMS Basic", billingInterval: MONTHLY}) { plan { id } }
  attachCreditSystem(input: {plan: {key: "sms-basic"}, creditSystem: {key: "sms"}, included: {amount: "100", resetInterval: MONTHLY}}) { planCredit { id } }
  publishPlan(input: {plan: {key: "sms-basic"}}) { plan { status } }
  a: createCustomer(input: {externalId: "now", name: "now"}) { customer { id } }
  b: createCustomer(input: {externalId: "past", name: "past"}) { customer { id } }
  c: createCustomer(input: {externalId: "later", name: "later"}) { customer { id } }
}"#;

#[tokio::test]
async fn subscribe_answers_the_status_a_read_right_after_gives() {
    let app = TestApp::spawn().await;
    app.ok(&app.admin_key, PLAN, json!({})).await;
    let ticking = Ticking::spawn(&app).await;
    let key = &app.admin_key;

    let sub = |customer: &str, start: &str| {
        format!(
            r#"mutation {{ subscribe(input: {{customer: {{externalId: "{customer}"}}, plan: {{key: "sms-basic"}}, {start} idempotencyKey: "sub-{customer}"}}) {{
                subscription {{ id status startedAt }} }} }}"#
        )
    };
    let read = |id: &str| format!(r#"{{ subscription(id: "{id}") {{ status }} }}"#);

    // Starting now: the request's now is a second before the write's.
    let now = ticking.ok(key, &sub("now", "")).await;
    let now = &now["subscribe"]["subscription"];
    assert_eq!(now["status"], "ACTIVE", "{now}");
    let after = ticking.ok(key, &read(now["id"].as_str().unwrap())).await;
    assert_eq!(after["subscription"]["status"], "ACTIVE");

    // Started in the past.
    let past = ticking
        .ok(key, &sub("past", r#"startAt: "2026-01-01T00:00:00Z","#))
        .await;
    assert_eq!(past["subscribe"]["subscription"]["status"], "ACTIVE");

    // Starting later: scheduled, in the answer and in a read.
    let later = ticking
        .ok(key, &sub("later", r#"startAt: "2026-03-01T00:00:00Z","#))
        .await;
    let later = &later["subscribe"]["subscription"];
    assert_eq!(later["status"], "SCHEDULED");
    let after = ticking.ok(key, &read(later["id"].as_str().unwrap())).await;
    assert_eq!(after["subscription"]["status"], "SCHEDULED");

    // A replay answers as a read would.
    let again = ticking.ok(key, &sub("now", "")).await;
    assert_eq!(again["subscribe"]["subscription"]["status"], "ACTIVE");

    // Cancelling now answers CANCELED, as a read right after does.
    let id = now["id"].as_str().unwrap();
    let canceled = ticking
        .ok(
            key,
            &format!(
                r#"mutation {{ cancelSubscription(input: {{subscription: "{id}"}}) {{ subscription {{ status }} }} }}"#
            ),
        )
        .await;
    assert_eq!(
        canceled["cancelSubscription"]["subscription"]["status"],
        "CANCELED"
    );
    let after = ticking.ok(key, &read(id)).await;
    assert_eq!(after["subscription"]["status"], "CANCELED");
    app.verify_all().await;
}

#[tokio::test]
async fn pay_as_you_go_refuses_a_recurring_price() {
    let app = TestApp::spawn().await;
    let key = &app.admin_key;
    app.ok(key, PLAN, json!({})).await;
    app.ok(
        key,
        r#"mutation {
          createCreditSystem(input: {key: "ai", name: "AI", unitSingular: "token", unitPlural: "tokens", precision: 0}) { creditSystem { id } }
          createPlan(input: {product: {key: "sms"}, key: "payg", name: "PAYG", billingInterval: MONTHLY}) { plan { id } }
          attachCreditSystem(input: {plan: {key: "payg"}, creditSystem: {key: "sms"},
            pricing: {commitment: PAY_AS_YOU_GO, currency: "EUR",
              topUpPrice: {pricingType: VOLUME, model: PER_UNIT, tiers: [{firstUnit: "0", amount: "0.05"}]}}}) { planCredit { id } }
        }"#,
        json!({}),
    )
    .await;
    let credits = r#"{ plan(key: "payg") { credits { id creditSystem { key } pricing { commitment recurringPrice { quantity } } } } }"#;
    let before = app.ok(key, credits, json!({})).await;

    let recurring = r#"recurringPrice: {quantity: "1000", price: {pricingType: VOLUME, model: PER_UNIT, tiers: [{firstUnit: "0", amount: "0.01"}]}}"#;
    let attach = format!(
        r#"mutation {{ attachCreditSystem(input: {{plan: {{key: "payg"}}, creditSystem: {{key: "ai"}},
            pricing: {{commitment: PAY_AS_YOU_GO, currency: "EUR", {recurring}}}}}) {{ planCredit {{ id }} }} }}"#
    );
    let (_, body) = app.gql(Some(key), &attach, json!({})).await;
    assert_eq!(
        (code(&body), field(&body)),
        ("VALIDATION", "pricing.recurringPrice"),
        "{body}"
    );

    let id = before["plan"]["credits"][0]["id"].as_str().unwrap();
    let update = format!(
        r#"mutation {{ updatePlanCredit(input: {{planCredit: "{id}",
            pricing: {{commitment: PAY_AS_YOU_GO, currency: "EUR", {recurring}}}}}) {{ planCredit {{ id }} }} }}"#
    );
    let (_, body) = app.gql(Some(key), &update, json!({})).await;
    assert_eq!(
        (code(&body), field(&body)),
        ("VALIDATION", "pricing.recurringPrice"),
        "{body}"
    );
    // Nothing changed: no AI credit attached, the SMS one as it was.
    assert_eq!(app.ok(key, credits, json!({})).await, before);

    // UPFRONT takes it.
    let upfront = attach.replace("PAY_AS_YOU_GO", "UPFRONT");
    app.ok(key, &upfront, json!({})).await;
}

#[tokio::test]
async fn balance_parts_add_up_to_available_with_admin_refund_and_transfer_credits() {
    let app = TestApp::spawn().await;
    let key = &app.admin_key;
    let setup = r#"mutation {
      createCreditSystem(input: {key: "pts", name: "Points", unitSingular: "point", unitPlural: "points", precision: 0}) { creditSystem { id } }
      p: createCustomer(input: {externalId: "partner", name: "Partner"}) { customer { id } }
      c: createCustomer(input: {externalId: "client", name: "Client", parent: {externalId: "partner"}}) { customer { id } }
      bought: grantCredits(input: {customer: {externalId: "partner"}, creditSystem: {key: "pts"}, amount: "500", category: PURCHASED, reason: "bulk", idempotencyKey: "g-1"}) { grant { id } }
      allocateCredits(input: {from: {externalId: "partner"}, to: {externalId: "client"}, creditSystem: {key: "pts"}, amount: "200", idempotencyKey: "a-1"}) { grants { category amount } }
      promo: grantCredits(input: {customer: {externalId: "client"}, creditSystem: {key: "pts"}, amount: "100", category: PROMOTIONAL, reason: "welcome", idempotencyKey: "g-2"}) { grant { id } }
      plan: grantCredits(input: {customer: {externalId: "client"}, creditSystem: {key: "pts"}, amount: "60", category: INCLUDED, reason: "allowance", idempotencyKey: "g-3"}) { grant { id } }
      adjustBalance(input: {customer: {externalId: "client"}, creditSystem: {key: "pts"}, amount: "50", reason: "goodwill", idempotencyKey: "adj-1"}) { grant { category } }
    }"#;
    let out = app.ok(key, setup, json!({})).await;
    assert_eq!(out["allocateCredits"]["grants"][0]["category"], "TRANSFER");
    assert_eq!(out["adjustBalance"]["grant"]["category"], "ADMIN");

    // Spend 30 (none expires, so the oldest grant first: the transfer's),
    // refund it (a REFUND grant), and hold 20 until an hour from now.
    let used = app
        .ok(
            key,
            r#"mutation { consumeCredits(input: {customer: {externalId: "client"}, creditSystem: {key: "pts"}, amount: "30", idempotencyKey: "u-1"}) { entry { id } } }"#,
            json!({}),
        )
        .await;
    let entry = used["consumeCredits"]["entry"]["id"].as_str().unwrap();
    app.ok(
        key,
        &format!(
            r#"mutation {{ refundUsage(input: {{entry: "{entry}", reason: "failed job", idempotencyKey: "r-1"}}) {{ grants {{ category amount }} }} }}"#
        ),
        json!({}),
    )
    .await;
    app.ok(
        key,
        r#"mutation { createHold(input: {customer: {externalId: "client"}, creditSystem: {key: "pts"}, amount: "20", expiresAt: "2026-01-31T13:00:00Z", idempotencyKey: "h-1"}) { hold { id } } }"#,
        json!({}),
    )
    .await;

    let read = r#"{ customer(externalId: "client") { wallets { balance {
        available pending debt included purchased promotional admin refund transfer } } } }"#;
    let parts = |b: &Value| -> i64 {
        [
            "included",
            "purchased",
            "promotional",
            "admin",
            "refund",
            "transfer",
        ]
        .iter()
        .map(|k| b[*k].as_str().unwrap().parse::<i64>().unwrap())
        .sum::<i64>()
            - b["debt"].as_str().unwrap().parse::<i64>().unwrap()
    };
    let balance = |data: Value| data["customer"]["wallets"][0]["balance"].clone();

    // The hold reserves 20.
    let b = balance(app.ok(key, read, json!({})).await);
    assert_eq!(b["available"], "390", "{b}");
    assert_eq!(b["pending"], "20", "{b}");
    assert_eq!(parts(&b), 390, "{b}");
    assert_eq!(
        (&b["admin"], &b["refund"], &b["promotional"]),
        (&json!("50"), &json!("30"), &json!("100")),
        "{b}"
    );

    // Past its deadline (before any sweep) the hold's 20 count again, in
    // the part they were drawn from.
    app.clock.advance(Duration::hours(2));
    let b = balance(app.ok(key, read, json!({})).await);
    assert_eq!(b["available"], "410", "{b}");
    assert_eq!(b["pending"], "0", "{b}");
    assert_eq!(parts(&b), 410, "{b}");
    assert_eq!(
        (&b["included"], &b["transfer"], &b["admin"], &b["refund"]),
        (&json!("60"), &json!("170"), &json!("50"), &json!("30")),
        "{b}"
    );
    app.verify_all().await;
}

#[tokio::test]
async fn invoices_are_listed_newest_first_with_filters_and_cursors() {
    let app = TestApp::spawn().await;
    let key = &app.admin_key;
    app.ok(
        key,
        r#"mutation {
          createCreditSystem(input: {key: "usd", name: "Service credit", unitSingular: "dollar", unitPlural: "dollars", precision: 2, kind: MONETARY, currency: "USD"}) { creditSystem { id } }
          a: createCustomer(input: {externalId: "acme", name: "Acme"}) { customer { id } }
          b: createCustomer(input: {externalId: "bolt", name: "Bolt"}) { customer { id } }
          ga: grantCredits(input: {customer: {externalId: "acme"}, creditSystem: {key: "usd"}, amount: "100", category: PURCHASED, reason: "prepaid", idempotencyKey: "ga"}) { grant { id } }
          gb: grantCredits(input: {customer: {externalId: "bolt"}, creditSystem: {key: "usd"}, amount: "100", category: PURCHASED, reason: "prepaid", idempotencyKey: "gb"}) { grant { id } }
        }"#,
        json!({}),
    )
    .await;
    // Four invoices a day apart: acme 1, bolt 2, acme 3 (voided), acme 4.
    for (n, customer) in [(1, "acme"), (2, "bolt"), (3, "acme"), (4, "acme")] {
        app.ok(
            key,
            &format!(
                r#"mutation {{ applyCreditsToInvoice(customer: {{externalId: "{customer}"}}, invoice: {{externalId: "INV-{n}", currency: "USD", subtotal: "10"}}, idempotencyKey: "inv-{n}") {{ status }} }}"#
            ),
            json!({}),
        )
        .await;
        app.clock.advance(Duration::days(1));
    }
    app.ok(
        key,
        r#"mutation { voidInvoice(externalId: "INV-3") { status } }"#,
        json!({}),
    )
    .await;

    let list = r#"query($first: Int, $after: String, $filter: InvoiceFilter) {
      invoices(first: $first, after: $after, filter: $filter) {
        edges { cursor node { externalId status customer { externalId } } }
        pageInfo { hasNextPage endCursor }
      }
    }"#;
    let ids = |data: &Value| -> Vec<String> {
        data["invoices"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["externalId"].as_str().unwrap().to_owned())
            .collect()
    };
    let read = app.key(service::api_keys::Role::Read).await;
    let all = app.ok(&read, list, json!({})).await;
    assert_eq!(ids(&all), ["INV-4", "INV-3", "INV-2", "INV-1"]);

    // Pages of two, by cursor.
    let first = app.ok(&read, list, json!({"first": 2})).await;
    assert_eq!(ids(&first), ["INV-4", "INV-3"]);
    assert_eq!(first["invoices"]["pageInfo"]["hasNextPage"], true);
    let cursor = first["invoices"]["pageInfo"]["endCursor"].clone();
    let second = app
        .ok(&read, list, json!({"first": 2, "after": cursor}))
        .await;
    assert_eq!(ids(&second), ["INV-2", "INV-1"]);
    assert_eq!(second["invoices"]["pageInfo"]["hasNextPage"], false);

    // Filters: customer, status, date range [from, to).
    let by = |filter: Value| json!({ "filter": filter });
    let acme = app
        .ok(&read, list, by(json!({"customer": {"externalId": "acme"}})))
        .await;
    assert_eq!(ids(&acme), ["INV-4", "INV-3", "INV-1"]);
    let pending = app
        .ok(
            &read,
            list,
            by(json!({"customer": {"externalId": "acme"}, "status": "PENDING"})),
        )
        .await;
    assert_eq!(ids(&pending), ["INV-4", "INV-1"]);
    let voided = app.ok(&read, list, by(json!({"status": "VOIDED"}))).await;
    assert_eq!(ids(&voided), ["INV-3"]);
    let window = app
        .ok(
            &read,
            list,
            by(json!({"from": "2026-02-01T12:00:00Z", "to": "2026-02-02T12:00:00Z"})),
        )
        .await;
    assert_eq!(ids(&window), ["INV-2"]);

    // Bad input names its field; an unknown customer is NOT_FOUND.
    let (_, body) = app
        .gql(
            Some(&read),
            list,
            by(json!({"from": "2026-02-02T00:00:00Z", "to": "2026-02-01T00:00:00Z"})),
        )
        .await;
    assert_eq!((code(&body), field(&body)), ("VALIDATION", "filter.to"));
    let (_, body) = app.gql(Some(&read), list, json!({"first": 201})).await;
    assert_eq!((code(&body), field(&body)), ("VALIDATION", "first"));
    let (_, body) = app
        .gql(
            Some(&read),
            list,
            by(json!({"customer": {"externalId": "nobody"}})),
        )
        .await;
    assert_eq!(code(&body), "NOT_FOUND", "{body}");

    // Another tenant sees none of them.
    let (_, other) = app.other_tenant("other").await;
    assert_eq!(
        ids(&app.ok(&other, list, json!({})).await),
        Vec::<String>::new()
    );

    // A customer token reads no invoice list (as it reads no `invoice`):
    // not even its own customer's.
    let token = app
        .ok(
            key,
            r#"mutation { createCustomerToken(customer: {externalId: "acme"}, ttlSeconds: 60) { token } }"#,
            json!({}),
        )
        .await["createCustomerToken"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, body) = app
        .gql(
            Some(&token),
            list,
            by(json!({"customer": {"externalId": "acme"}})),
        )
        .await;
    assert_eq!(code(&body), "FORBIDDEN", "{body}");
    let (_, body) = app
        .gql(
            Some(&token),
            r#"{ invoice(externalId: "INV-1") { status } }"#,
            json!({}),
        )
        .await;
    assert_eq!(code(&body), "FORBIDDEN", "{body}");
    app.verify_all().await;
}

#[tokio::test]
async fn plans_have_a_description_set_at_create_and_update() {
    let app = TestApp::spawn().await;
    let key = &app.admin_key;
    let create = r#"mutation($d: String!) {
      createProduct(input: {key: "ai", name: "AI"}) { product { id } }
      createPlan(input: {product: {key: "ai"}, key: "ai-pro", name: "AI Pro", description: $d, billingInterval: MONTHLY}) { plan { key description } }
    }"#;
    let pro = "10,000 tokens a month; top-ups at 0.002 EUR.";
    let out = app.ok(key, create, json!({"d": pro})).await;
    assert_eq!(out["createPlan"]["plan"]["description"], pro);
    // Again with the same fields: the same plan; with another description
    // under the key: CONFLICT.
    app.ok(key, create, json!({"d": pro})).await;
    let (_, body) = app.gql(Some(key), create, json!({"d": "other"})).await;
    assert_eq!((code(&body), field(&body)), ("CONFLICT", "key"), "{body}");
    // Bounded like other texts; nothing is created.
    let long = "x".repeat(1001);
    let other = r#"mutation($d: String!) { createPlan(input: {product: {key: "ai"}, key: "ai-max", name: "AI Max", description: $d, billingInterval: MONTHLY}) { plan { id } } }"#;
    for bad in [long.as_str(), "nul\u{0}"] {
        let (_, body) = app.gql(Some(key), other, json!({"d": bad})).await;
        assert_eq!(
            (code(&body), field(&body)),
            ("VALIDATION", "description"),
            "{body}"
        );
    }
    let (_, body) = app
        .gql(Some(key), r#"{ plan(key: "ai-max") { id } }"#, json!({}))
        .await;
    assert_eq!(code(&body), "NOT_FOUND");
    // Without one: "".
    let plain = app
        .ok(
            key,
            r#"mutation { createPlan(input: {product: {key: "ai"}, key: "ai-lite", name: "AI Lite", billingInterval: MONTHLY}) { plan { description } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(plain["createPlan"]["plan"]["description"], "");

    // Updated after publishing (a description is not a term); the name
    // alone leaves it; "" clears it; a copy keeps it.
    let update = r#"mutation($name: String, $d: String) {
      updatePlan(input: {plan: {key: "ai-pro"}, name: $name, description: $d}) { plan { name description status } }
    }"#;
    app.ok(
        key,
        r#"mutation { publishPlan(input: {plan: {key: "ai-pro"}}) { plan { status } } }"#,
        json!({}),
    )
    .await;
    let out = app
        .ok(key, update, json!({"d": "Now 12,000 tokens."}))
        .await;
    assert_eq!(
        out["updatePlan"]["plan"],
        json!({"name": "AI Pro", "description": "Now 12,000 tokens.", "status": "PUBLISHED"})
    );
    let out = app.ok(key, update, json!({"name": "AI Pro 2"})).await;
    assert_eq!(
        out["updatePlan"]["plan"]["description"],
        "Now 12,000 tokens."
    );
    let copy = app
        .ok(
            key,
            r#"mutation { duplicatePlan(input: {plan: {key: "ai-pro"}, key: "ai-pro-v2", name: "AI Pro v2"}) { plan { description } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        copy["duplicatePlan"]["plan"]["description"],
        "Now 12,000 tokens."
    );
    let (_, body) = app.gql(Some(key), update, json!({"d": long})).await;
    assert_eq!((code(&body), field(&body)), ("VALIDATION", "description"));
    let out = app.ok(key, update, json!({"d": ""})).await;
    assert_eq!(out["updatePlan"]["plan"]["description"], "");
    let read = app
        .ok(
            key,
            r#"{ plan(key: "ai-pro") { name description } }"#,
            json!({}),
        )
        .await;
    assert_eq!(read["plan"], json!({"name": "AI Pro 2", "description": ""}));

    // A plan row written without the column (as before the migration)
    // reads "".
    let db = app.t.db.writer();
    let sql = match db.get_database_backend() {
        sea_orm::DatabaseBackend::Postgres => {
            "INSERT INTO plan (id, tenant_id, product_id, key, name, billing_interval, status, created_at, updated_at) \
             SELECT $1, tenant_id, product_id, 'old', 'Old', 'MONTHLY', 'DRAFT', created_at, updated_at FROM plan WHERE key = 'ai-lite'"
        }
        _ => {
            "INSERT INTO plan (id, tenant_id, product_id, key, name, billing_interval, status, created_at, updated_at) \
             SELECT ?, tenant_id, product_id, 'old', 'Old', 'MONTHLY', 'DRAFT', created_at, updated_at FROM plan WHERE key = 'ai-lite'"
        }
    };
    use sea_orm::ConnectionTrait;
    db.execute_raw(sea_orm::Statement::from_sql_and_values(
        db.get_database_backend(),
        sql,
        [uuid::Uuid::now_v7().into()],
    ))
    .await
    .unwrap();
    let old = app
        .ok(key, r#"{ plan(key: "old") { description } }"#, json!({}))
        .await;
    assert_eq!(old["plan"]["description"], "");
}

/// Everything the process logs, for checking that a failure was logged.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: std::sync::OnceLock<Arc<Mutex<Vec<u8>>>> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || LogSink(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber per process");
        logs
    })
    .clone()
}

struct LogSink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The row id behind an API id (`ord_0193…`).
fn row_id(id: &str) -> uuid::Uuid {
    uuid::Uuid::parse_str(id.split_once('_').unwrap().1).unwrap()
}

/// Writes `column = value` into one row, behind the API's back; returns
/// what was there.
async fn overwrite(
    app: &TestApp,
    table: &str,
    column: &str,
    id: uuid::Uuid,
    value: &str,
) -> String {
    use sea_orm::ConnectionTrait;
    let db = app.t.db.writer();
    let backend = db.get_database_backend();
    let (p1, p2) = match backend {
        sea_orm::DatabaseBackend::Postgres => ("$1", "$2"),
        _ => ("?", "?"),
    };
    let statement = |sql: String, values: Vec<sea_orm::Value>| {
        sea_orm::Statement::from_sql_and_values(backend, sql, values)
    };
    let old: String = db
        .query_one_raw(statement(
            format!("SELECT {column} AS v FROM {table} WHERE id = {p1}"),
            vec![id.into()],
        ))
        .await
        .unwrap()
        .expect("the row exists")
        .try_get("", "v")
        .unwrap();
    let done = db
        .execute_raw(statement(
            format!("UPDATE {table} SET {column} = {p1} WHERE id = {p2}"),
            vec![value.into(), id.into()],
        ))
        .await
        .unwrap();
    assert_eq!(done.rows_affected(), 1);
    old
}

#[tokio::test]
async fn a_stored_value_no_version_writes_is_internal_and_logged_never_a_default() {
    let logs = captured_logs();
    let app = TestApp::spawn().await;
    let key = &app.admin_key;
    let setup = r#"mutation {
      createCreditSystem(input: {key: "sms", name: "SMS", unitSingular: "SMS", unitPlural: "SMS", precision: 0}) { creditSystem { id } }
      usd: createCreditSystem(input: {key: "usd", name: "Service credit", unitSingular: "dollar", unitPlural: "dollars", precision: 2, kind: MONETARY, currency: "USD"}) { creditSystem { id } }
      createProduct(input: {key: "sms", name: "SMS gateway"}) { product { id } }
      createPlan(input: {product: {key: "sms"}, key: "sms-basic", name: "SMS Basic", billingInterval: MONTHLY}) { plan { id } }
      attachCreditSystem(input: {plan: {key: "sms-basic"}, creditSystem: {key: "sms"}, included: {amount: "100", resetInterval: MONTHLY},
        pricing: {commitment: PAY_AS_YOU_GO, currency: "EUR", topUpPrice: {pricingType: VOLUME, model: PER_UNIT, tiers: [{firstUnit: "0", amount: "0.05"}]}}}) { planCredit { id } }
      publishPlan(input: {plan: {key: "sms-basic"}}) { plan { status } }
      createCustomer(input: {externalId: "acme", name: "Acme"}) { customer { id } }
      subscribe(input: {customer: {externalId: "acme"}, plan: {key: "sms-basic"}, idempotencyKey: "s-1"}) { subscription { id } }
      purchaseCredits(input: {customer: {externalId: "acme"}, creditSystem: {key: "sms"}, quantity: "500", idempotencyKey: "o-1"}) { order { id status } }
      consumeCredits(input: {customer: {externalId: "acme"}, creditSystem: {key: "sms"}, amount: "3", idempotencyKey: "u-1"}) { entry { id splits { grant { id } } } }
      createHold(input: {customer: {externalId: "acme"}, creditSystem: {key: "sms"}, amount: "5", expiresAt: "2026-02-01T00:00:00Z", idempotencyKey: "h-1"}) { hold { id } }
      grantCredits(input: {customer: {externalId: "acme"}, creditSystem: {key: "usd"}, amount: "50", category: PURCHASED, reason: "prepaid", idempotencyKey: "g-usd"}) { grant { id } }
      applyCreditsToInvoice(customer: {externalId: "acme"}, invoice: {externalId: "INV-1", currency: "USD", subtotal: "10"}, idempotencyKey: "i-1") { status }
    }"#;
    let out = app.ok(key, setup, json!({})).await;
    assert_eq!(out["purchaseCredits"]["order"]["status"], "PENDING");
    let order = out["purchaseCredits"]["order"]["id"].as_str().unwrap();
    let entry = out["consumeCredits"]["entry"]["id"].as_str().unwrap();
    let grant = out["consumeCredits"]["entry"]["splits"][0]["grant"]["id"]
        .as_str()
        .unwrap();
    let hold = out["createHold"]["hold"]["id"].as_str().unwrap();
    let plan = out["createPlan"]["plan"]["id"].as_str().unwrap();
    let usd = out["usd"]["creditSystem"]["id"].as_str().unwrap();
    let invoice = app
        .ok(key, r#"{ invoice(externalId: "INV-1") { id } }"#, json!({}))
        .await["invoice"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // (table, column, row, a read through the API that meets it)
    let cases: Vec<(&str, &str, &str, String)> = vec![
        (
            "top_up_order",
            "status",
            order,
            format!(r#"{{ topUpOrder(id: "{order}") {{ status }} }}"#),
        ),
        (
            "ledger_entry",
            "entry_type",
            entry,
            format!(r#"{{ entry(id: "{entry}") {{ type }} }}"#),
        ),
        (
            "credit_grant",
            "category",
            grant,
            r#"{ customer(externalId: "acme") { wallet(creditSystem: {key: "sms"}) { balance { available } } } }"#.into(),
        ),
        (
            "credit_hold",
            "status",
            hold,
            format!(r#"{{ hold(id: "{hold}") {{ status }} }}"#),
        ),
        (
            "plan",
            "status",
            plan,
            r#"{ plan(key: "sms-basic") { status } }"#.into(),
        ),
        (
            "plan",
            "billing_interval",
            plan,
            r#"{ customer(externalId: "acme") { subscriptions { status } } }"#.into(),
        ),
        (
            "credit_system",
            "kind",
            usd,
            r#"{ creditSystem(key: "usd") { kind } }"#.into(),
        ),
        (
            "invoice",
            "status",
            &invoice,
            r#"{ invoices { edges { node { status } } } }"#.into(),
        ),
    ];
    for (table, column, id, query) in cases {
        let id = row_id(id);
        let before = app.gql(Some(key), &query, json!({})).await.1;
        assert!(before.get("errors").is_none(), "{table}: {before}");
        let old = overwrite(&app, table, column, id, "BOGUS").await;
        let (_, body) = app.gql(Some(key), &query, json!({})).await;
        assert_eq!(code(&body), "INTERNAL", "{table}.{column}: {body}");
        assert_eq!(body["errors"][0]["message"], "internal error", "{body}");
        assert!(
            !body.to_string().contains("BOGUS"),
            "no database detail reaches the client: {body}"
        );
        let logged = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
        let line = logged
            .lines()
            .find(|l| {
                l.contains("stored value not recognised")
                    && l.contains(&id.to_string())
                    && l.contains(&format!("column=\"{column}\""))
            })
            .unwrap_or_else(|| panic!("no log line for {table} {id}:\n{logged}"));
        assert!(
            line.contains(table) && line.contains(column) && line.contains("BOGUS"),
            "{line}"
        );
        // Put back, the same read answers again.
        overwrite(&app, table, column, id, &old).await;
        let again = app.gql(Some(key), &query, json!({})).await.1;
        assert_eq!(again, before, "{table}.{column} restored");
    }

    // A key whose stored role is unknown fails as a broken invariant, not
    // as a key that is not there.
    let read = app.key(service::api_keys::Role::Read).await;
    let read_id = app.ok(&read, "{ viewer { apiKeyId } }", json!({})).await["viewer"]["apiKeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    overwrite(&app, "api_key", "role", row_id(&read_id), "BOGUS").await;
    let err = service::api_keys::authenticate(&app.t.db, &read)
        .await
        .unwrap_err();
    assert_eq!(
        service::DomainError::code(&err),
        service::Code::Internal,
        "{err}"
    );
}
