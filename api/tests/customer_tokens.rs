//! Browser access: a customer token reads its customer (and descendants
//! if it includes them) and nothing else, stops at expiry or rotation; and
//! `walletUpdated` pushes balances over a real WebSocket (graphql-ws).

mod common;

use std::time::Duration;

use common::{TestApp, code};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use service::api_keys::Role;
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest, http::HeaderValue};

const TOKEN: &str = r#"mutation($c: String!, $ttl: Int!, $d: Boolean!) {
  createCustomerToken(customer: {externalId: $c}, ttlSeconds: $ttl, includeDescendants: $d) { token expiresAt includeDescendants customer { externalId } }
}"#;
const READ: &str = r#"query($c: String!) { customer(externalId: $c) { externalId wallet(creditSystem: {key: "photos"}) { balance { available } entries(first: 5) { nodes { type amount } } } } }"#;

async fn setup(app: &TestApp) {
    let q = r#"mutation {
      createCreditSystem(input: {key: "photos", name: "Photos", unitSingular: "photo", unitPlural: "photos", precision: 0}) { creditSystem { id } }
      p: createCustomer(input: {externalId: "partner", name: "Partner"}) { customer { id } }
      c: createCustomer(input: {externalId: "client", name: "Client", parent: {externalId: "partner"}}) { customer { id } }
      e: createCustomer(input: {externalId: "event", name: "Event", parent: {externalId: "client"}}) { customer { id } }
      o: createCustomer(input: {externalId: "other", name: "Other", parent: {externalId: "partner"}}) { customer { id } }
      grantCredits(input: {customer: {externalId: "client"}, creditSystem: {key: "photos"}, amount: "100", category: PURCHASED, reason: "r", idempotencyKey: "g"}) { grant { id } }
    }"#;
    app.ok(&app.admin_key, q, json!({})).await;
}

async fn token(app: &TestApp, customer: &str, ttl: i64, descendants: bool) -> String {
    let write = app.key(Role::Write).await;
    let data = app
        .ok(
            &write,
            TOKEN,
            json!({"c": customer, "ttl": ttl, "d": descendants}),
        )
        .await;
    data["createCustomerToken"]["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_customer_token_reads_its_customer_and_nothing_else() {
    let app = TestApp::spawn().await;
    setup(&app).await;
    let t = token(&app, "client", 600, false).await;
    assert!(t.starts_with("ct_"));
    let data = app.ok(&t, READ, json!({"c": "client"})).await;
    assert_eq!(data["customer"]["externalId"], "client");
    assert_eq!(data["customer"]["wallet"]["balance"]["available"], "100");
    // Another customer, its parent, its children, other queries, every
    // mutation, the CSV export: refused.
    for (query, vars) in [
        (READ, json!({"c": "other"})),
        (READ, json!({"c": "event"})),
        (
            r#"{ customer(externalId: "client") { parent { externalId } } }"#,
            json!({}),
        ),
        (
            r#"{ customer(externalId: "client") { children(creditSystem: {key: "photos"}) { nodes { usagePercent } } } }"#,
            json!({}),
        ),
        (r#"{ customers(first: 5) { nodes { id } } }"#, json!({})),
        (r#"{ viewer { role } }"#, json!({})),
        (r#"{ creditSystems { nodes { key } } }"#, json!({})),
        (
            r#"mutation { consumeCredits(input: {customer: {externalId: "client"}, creditSystem: {key: "photos"}, amount: "1", idempotencyKey: "x"}) { entry { id } } }"#,
            json!({}),
        ),
        (
            r#"mutation { createCustomerToken(customer: {externalId: "client"}, ttlSeconds: 60) { token } }"#,
            json!({}),
        ),
    ] {
        let (status, body) = app.gql(Some(&t), query, vars).await;
        assert_eq!(status, 200);
        assert_eq!(code(&body), "FORBIDDEN", "{query}: {body}");
    }
    let csv = reqwest::Client::new()
        .get(app.url("/exports/entries.csv"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status().as_u16(), 403);
    // Nothing was consumed.
    let data = app.ok(&app.admin_key, READ, json!({"c": "client"})).await;
    assert_eq!(data["customer"]["wallet"]["balance"]["available"], "100");

    // With descendants: the event below it too, still not the sibling.
    let t = token(&app, "client", 600, true).await;
    let data = app.ok(&t, READ, json!({"c": "event"})).await;
    assert_eq!(data["customer"]["externalId"], "event");
    let data = app
        .ok(
            &t,
            r#"{ customer(externalId: "client") { children(creditSystem: {key: "photos"}) { nodes { customer { externalId } } } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        data["customer"]["children"]["nodes"],
        json!([{"customer": {"externalId": "event"}}])
    );
    let (_, body) = app.gql(Some(&t), READ, json!({"c": "other"})).await;
    assert_eq!(code(&body), "FORBIDDEN");
    let (_, body) = app.gql(Some(&t), READ, json!({"c": "partner"})).await;
    assert_eq!(code(&body), "FORBIDDEN");
}

#[tokio::test]
async fn tokens_stop_at_expiry_and_rotation_and_are_checked() {
    let app = TestApp::spawn().await;
    setup(&app).await;
    let t = token(&app, "client", 60, false).await;
    app.ok(&t, READ, json!({"c": "client"})).await;
    app.clock.advance(chrono::Duration::seconds(61));
    let (status, body) = app.gql(Some(&t), READ, json!({"c": "client"})).await;
    assert_eq!(status, 401, "{body}");

    let t = token(&app, "client", 600, false).await;
    app.ok(&t, READ, json!({"c": "client"})).await;
    // A tampered token (another customer in the payload) is refused.
    let (payload, sig) = t.trim_start_matches("ct_").split_once('.').unwrap();
    let forged = format!("ct_{}x.{sig}", &payload[..payload.len() - 1]);
    let (status, _) = app.gql(Some(&forged), READ, json!({"c": "client"})).await;
    assert_eq!(status, 401);
    // Rotation: ADMIN only; afterwards the old token is dead, a new one works.
    let (_, body) = app
        .gql(
            Some(&app.key(Role::Write).await),
            "mutation { rotateCustomerTokenSecret }",
            json!({}),
        )
        .await;
    assert_eq!(code(&body), "FORBIDDEN");
    app.ok(
        &app.admin_key,
        "mutation { rotateCustomerTokenSecret }",
        json!({}),
    )
    .await;
    let (status, _) = app.gql(Some(&t), READ, json!({"c": "client"})).await;
    assert_eq!(status, 401);
    let t = token(&app, "client", 600, false).await;
    app.ok(&t, READ, json!({"c": "client"})).await;
    // Bad input: ttl out of range, unknown customer.
    let write = app.key(Role::Write).await;
    for (vars, c) in [
        (
            json!({"c": "client", "ttl": 86401, "d": false}),
            "VALIDATION",
        ),
        (json!({"c": "client", "ttl": 0, "d": false}), "VALIDATION"),
        (json!({"c": "nobody", "ttl": 60, "d": false}), "NOT_FOUND"),
    ] {
        let (_, body) = app.gql(Some(&write), TOKEN, vars).await;
        assert_eq!(code(&body), c, "{body}");
    }
    // Other tenants' tokens don't read this tenant's customers.
    let (_, other_admin) = app.other_tenant("other").await;
    app.ok(
        &other_admin,
        r#"mutation { createCustomer(input: {externalId: "client", name: "Theirs"}) { customer { id } } }"#,
        json!({}),
    )
    .await;
    let theirs = app
        .ok(
            &other_admin,
            TOKEN,
            json!({"c": "client", "ttl": 60, "d": false}),
        )
        .await["createCustomerToken"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let data = app
        .ok(
            &theirs,
            r#"{ customer(externalId: "client") { name wallets { id } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(data["customer"], json!({"name": "Theirs", "wallets": []}));
}

/// A graphql-ws client on `/graphql/ws`.
struct Ws(
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
);

impl Ws {
    async fn connect(app: &TestApp, credential: &str) -> Ws {
        let mut req = format!("ws://{}/graphql/ws", app.addr)
            .into_client_request()
            .unwrap();
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("graphql-transport-ws"),
        );
        let (stream, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        let mut ws = Ws(stream);
        // As a browser does: the credential in the init payload.
        ws.send(json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {credential}")}}))
            .await;
        assert_eq!(ws.next().await["type"], "connection_ack");
        ws
    }

    async fn send(&mut self, v: Value) {
        self.0.send(Message::text(v.to_string())).await.unwrap();
    }

    async fn next(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), self.0.next())
                .await
                .expect("a message within 10 s")
                .expect("the socket open")
                .unwrap();
            if let Message::Text(t) = msg {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] != "ping" && v["type"] != "pong" {
                    return v;
                }
            }
        }
    }
}

const WATCH: &str = r#"subscription { walletUpdated(customer: {externalId: "client"}, creditSystem: {key: "photos"}) { customerId available pending total } }"#;

#[tokio::test]
async fn wallet_updates_arrive_over_a_websocket_after_each_commit() {
    let app = TestApp::spawn().await;
    setup(&app).await;
    let t = token(&app, "client", 600, false).await;
    let mut ws = Ws::connect(&app, &t).await;
    ws.send(json!({"id": "1", "type": "subscribe", "payload": {"query": WATCH}}))
        .await;
    // First the balance as it is.
    let first = ws.next().await;
    assert_eq!(first["type"], "next", "{first}");
    assert_eq!(
        first["payload"]["data"]["walletUpdated"]["available"], "100",
        "{first}"
    );
    // A backend consumes over HTTP; the browser hears of it.
    let write = app.key(Role::Write).await;
    app.ok(
        &write,
        r#"mutation { consumeCredits(input: {customer: {externalId: "client"}, creditSystem: {key: "photos"}, amount: "30", idempotencyKey: "c1"}) { entry { id } } }"#,
        json!({}),
    )
    .await;
    let update = ws.next().await;
    assert_eq!(
        update["payload"]["data"]["walletUpdated"],
        json!({"customerId": first["payload"]["data"]["walletUpdated"]["customerId"], "available": "70", "pending": "0", "total": "70"})
    );
    // A hold moves credits to pending.
    app.ok(
        &write,
        r#"mutation { createHold(input: {customer: {externalId: "client"}, creditSystem: {key: "photos"}, amount: "20", expiresAt: "2026-02-01T00:00:00Z", idempotencyKey: "h1"}) { hold { id } } }"#,
        json!({}),
    )
    .await;
    let update = ws.next().await;
    assert_eq!(
        update["payload"]["data"]["walletUpdated"]["available"],
        "50"
    );
    assert_eq!(update["payload"]["data"]["walletUpdated"]["pending"], "20");
    // Another customer's change is not sent here; the next message is ours.
    app.ok(
        &app.admin_key,
        r#"mutation { grantCredits(input: {customer: {externalId: "other"}, creditSystem: {key: "photos"}, amount: "5", category: ADMIN, reason: "r", idempotencyKey: "g-other"}) { grant { id } } }"#,
        json!({}),
    )
    .await;
    app.ok(
        &write,
        r#"mutation { consumeCredits(input: {customer: {externalId: "client"}, creditSystem: {key: "photos"}, amount: "1", idempotencyKey: "c2"}) { entry { id } } }"#,
        json!({}),
    )
    .await;
    let update = ws.next().await;
    assert_eq!(
        update["payload"]["data"]["walletUpdated"]["available"],
        "49"
    );
}

#[tokio::test]
async fn subscriptions_are_authenticated_and_scoped() {
    let app = TestApp::spawn().await;
    setup(&app).await;
    // A token for another customer can't watch this one.
    let t = token(&app, "other", 600, false).await;
    let mut ws = Ws::connect(&app, &t).await;
    ws.send(json!({"id": "1", "type": "subscribe", "payload": {"query": WATCH}}))
        .await;
    let msg = ws.next().await;
    assert_eq!(msg["type"], "next", "{msg}");
    assert_eq!(msg["payload"]["data"], Value::Null);
    assert_eq!(
        msg["payload"]["errors"][0]["extensions"]["code"],
        "FORBIDDEN"
    );
    // An API key can watch any customer of its tenant.
    let mut ws = Ws::connect(&app, &app.key(Role::Read).await).await;
    ws.send(json!({"id": "1", "type": "subscribe", "payload": {"query": WATCH}}))
        .await;
    assert_eq!(ws.next().await["type"], "next");
    // No credential: the connection is refused at init.
    let mut req = format!("ws://{}/graphql/ws", app.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    let (stream, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let mut ws = Ws(stream);
    ws.send(json!({"type": "connection_init", "payload": {}}))
        .await;
    let closed = tokio::time::timeout(Duration::from_secs(10), ws.0.next())
        .await
        .unwrap();
    assert!(
        matches!(closed, Some(Ok(Message::Close(_))) | None | Some(Err(_))),
        "{closed:?}"
    );
}
