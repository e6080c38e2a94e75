//! WebSockets (`/graphql/ws`) end when their credential does (issue 15,
//! item 1): a revoked key, an expired customer token or a rotated token
//! secret closes every socket opened with it — running subscriptions
//! included — within 5 s (`4401`), and nothing the socket sends runs
//! afterwards. A socket must say `connection_init` in time (`4408`);
//! operations per socket and sockets per credential are bounded.

mod common;

use std::time::{Duration, Instant};

use api::http::sockets::{INIT_WITHIN, SOCKETS_PER_CREDENTIAL, SUBSCRIPTIONS_PER_SOCKET, close};
use common::TestApp;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use service::api_keys::Role;
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest, http::HeaderValue};

/// How soon a socket must be closed after its credential stops being valid.
const CLOSED_WITHIN: Duration = Duration::from_secs(5);

const WATCH: &str = r#"subscription { walletUpdated(customer: {externalId: "client"}, creditSystem: {key: "photos"}) { available } }"#;
const MINT: &str = r#"mutation { createApiKey(input: {role: ADMIN, name: "minted"}) { secret } }"#;

async fn setup(app: &TestApp) {
    let q = r#"mutation {
      createCreditSystem(input: {key: "photos", name: "Photos", unitSingular: "photo", unitPlural: "photos", precision: 0}) { creditSystem { id } }
      c: createCustomer(input: {externalId: "client", name: "Client"}) { customer { id } }
      grantCredits(input: {customer: {externalId: "client"}, creditSystem: {key: "photos"}, amount: "100", category: PURCHASED, reason: "r", idempotencyKey: "g"}) { grant { id } }
    }"#;
    app.ok(&app.admin_key, q, json!({})).await;
}

async fn token(app: &TestApp, ttl: i64) -> String {
    let q = r#"mutation($ttl: Int!) { createCustomerToken(customer: {externalId: "client"}, ttlSeconds: $ttl) { token } }"#;
    let data = app.ok(&app.admin_key, q, json!({"ttl": ttl})).await;
    data["createCustomerToken"]["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

type Stream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A graphql-transport-ws client.
struct Ws(Stream);

/// How a socket was refused.
#[derive(Debug)]
enum Refused {
    /// At the upgrade, with this HTTP status.
    Http(u16),
    /// At `connection_init`, with this close code.
    Closed(Option<u16>),
}

/// What the server did next.
#[derive(Debug)]
enum Event {
    Message(Value),
    Closed(Option<u16>),
}

impl Ws {
    async fn open(app: &TestApp) -> Ws {
        Ws::open_at(&app.addr.to_string()).await
    }

    async fn open_at(addr: &str) -> Ws {
        Ws::try_open_at(addr).await.unwrap()
    }

    /// `Err(status)` when the upgrade is refused.
    async fn try_open_at(addr: &str) -> Result<Ws, u16> {
        let mut req = format!("ws://{addr}/graphql/ws")
            .into_client_request()
            .unwrap();
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("graphql-transport-ws"),
        );
        match tokio_tungstenite::connect_async(req).await {
            Ok((stream, _)) => Ok(Ws(stream)),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                Err(response.status().as_u16())
            }
            Err(e) => panic!("connect: {e}"),
        }
    }

    async fn try_connect(app: &TestApp, credential: &str) -> Result<Ws, Refused> {
        let mut ws = Ws::try_open_at(&app.addr.to_string())
            .await
            .map_err(Refused::Http)?;
        ws.send(json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {credential}")}}))
            .await;
        match ws.event(Duration::from_secs(10)).await {
            Event::Message(m) if m["type"] == "connection_ack" => Ok(ws),
            Event::Message(m) => panic!("unexpected {m}"),
            Event::Closed(code) => Err(Refused::Closed(code)),
        }
    }

    /// Opens and initialises a socket, as a browser does (the credential
    /// in the init payload); `None` if the server closed it instead.
    async fn connect(app: &TestApp, credential: &str) -> Result<Ws, Option<u16>> {
        Ws::connect_to(&app.addr.to_string(), credential).await
    }

    async fn connect_to(addr: &str, credential: &str) -> Result<Ws, Option<u16>> {
        let mut ws = Ws::open_at(addr).await;
        ws.send(json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {credential}")}}))
            .await;
        match ws.event(Duration::from_secs(10)).await {
            Event::Message(m) if m["type"] == "connection_ack" => Ok(ws),
            Event::Message(m) => panic!("unexpected {m}"),
            Event::Closed(code) => Err(code),
        }
    }

    async fn send(&mut self, v: Value) {
        // A socket the server closed may refuse the write: what matters is
        // what (if anything) comes back.
        let _ = self.0.send(Message::text(v.to_string())).await;
    }

    async fn subscribe(&mut self, id: &str, query: &str) {
        self.send(json!({"id": id, "type": "subscribe", "payload": {"query": query}}))
            .await;
    }

    async fn event(&mut self, within: Duration) -> Event {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.0.next())
                .await
                .unwrap_or_else(|_| panic!("nothing from the server within {within:?}"));
            match msg {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v["type"] != "ping" && v["type"] != "pong" {
                        return Event::Message(v);
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    return Event::Closed(frame.map(|f| u16::from(f.code)));
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Event::Closed(None),
            }
        }
    }

    async fn message(&mut self) -> Value {
        match self.event(Duration::from_secs(10)).await {
            Event::Message(m) => m,
            Event::Closed(code) => panic!("closed ({code:?}) instead of a message"),
        }
    }

    /// Waits for the close, skipping messages; returns its code and how
    /// long it took.
    async fn closed(&mut self, within: Duration) -> (Option<u16>, Duration) {
        let started = Instant::now();
        loop {
            if let Event::Closed(code) = self.event(within).await {
                return (code, started.elapsed());
            }
        }
    }
}

/// A running subscription on a socket of `credential`: its first value
/// has arrived.
async fn watching(app: &TestApp, credential: &str) -> Ws {
    let mut ws = Ws::connect(app, credential).await.unwrap();
    ws.subscribe("w", WATCH).await;
    let first = ws.message().await;
    assert_eq!(first["type"], "next", "{first}");
    assert_eq!(
        first["payload"]["data"]["walletUpdated"]["available"],
        "100"
    );
    ws
}

async fn api_key_id(app: &TestApp, name: &str) -> String {
    let keys = app
        .ok(
            &app.admin_key,
            "{ apiKeys(first: 50) { nodes { id name } } }",
            json!({}),
        )
        .await;
    keys["apiKeys"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("key {name} in {keys}"))
}

/// The finding: a key revoked after its socket opened went on to create a
/// new ADMIN key and grant credits. Now its sockets close at once, running
/// subscriptions and all; another key's socket is untouched.
#[tokio::test]
async fn a_revoked_key_closes_its_sockets() {
    let app = TestApp::spawn().await;
    setup(&app).await;
    let doomed =
        service::api_keys::create(&app.t.db, &app.clock, app.tenant_id, Role::Admin, "doomed")
            .await
            .unwrap()
            .secret;
    let other = app.key(Role::Read).await;
    let mut ws = watching(&app, &doomed).await;
    let mut idle = Ws::connect(&app, &doomed).await.unwrap();
    let mut bystander = watching(&app, &other).await;

    let id = api_key_id(&app, "doomed").await;
    app.ok(
        &app.admin_key,
        "mutation($id: ID!) { revokeApiKey(input: {id: $id}) { apiKey { id } } }",
        json!({"id": id}),
    )
    .await;
    for socket in [&mut ws, &mut idle] {
        let (code, took) = socket.closed(CLOSED_WITHIN).await;
        assert_eq!(code, Some(close::UNAUTHORIZED));
        assert!(took < CLOSED_WITHIN, "closed after {took:?}");
    }
    // Whatever it sends now runs nowhere.
    ws.subscribe("m", MINT).await;
    idle.subscribe("m", MINT).await;
    // The key can't open a new socket either.
    assert_eq!(
        Ws::connect(&app, &doomed).await.err(),
        Some(Some(close::FORBIDDEN))
    );
    let keys = app
        .ok(
            &app.admin_key,
            "{ apiKeys(first: 50) { nodes { name } } }",
            json!({}),
        )
        .await;
    assert!(!keys.to_string().contains("minted"), "{keys}");

    // The other key's subscription still gets updates.
    consume(&app, "c1").await;
    let update = bystander.message().await;
    assert_eq!(
        update["payload"]["data"]["walletUpdated"]["available"],
        "99"
    );
}

#[tokio::test]
async fn an_expired_token_closes_its_socket() {
    let app = TestApp::spawn().await;
    setup(&app).await;
    let t = token(&app, 600).await;
    let mut ws = watching(&app, &t).await;
    let mut fresh = watching(&app, &token(&app, 3_600).await).await;
    app.clock.advance(chrono::Duration::seconds(601));
    let (code, took) = ws.closed(CLOSED_WITHIN).await;
    assert_eq!(code, Some(close::UNAUTHORIZED));
    assert!(took < CLOSED_WITHIN, "closed after {took:?}");
    assert_eq!(
        Ws::connect(&app, &t).await.err(),
        Some(Some(close::FORBIDDEN))
    );
    // A token still valid is left alone: its subscription goes on.
    consume(&app, "c1").await;
    let update = fresh.message().await;
    assert_eq!(
        update["payload"]["data"]["walletUpdated"]["available"],
        "99"
    );
}

async fn consume(app: &TestApp, key: &str) {
    app.ok(
        &app.admin_key,
        r#"mutation($k: String!) { consumeCredits(input: {customer: {externalId: "client"}, creditSystem: {key: "photos"}, amount: "1", idempotencyKey: $k}) { entry { id } } }"#,
        json!({"k": key}),
    )
    .await;
}

#[tokio::test]
async fn rotating_the_token_secret_closes_every_token_socket() {
    let app = TestApp::spawn().await;
    setup(&app).await;
    let mut a = watching(&app, &token(&app, 600).await).await;
    let mut b = watching(&app, &token(&app, 600).await).await;
    let mut key_socket = watching(&app, &app.key(Role::Read).await).await;
    app.ok(
        &app.admin_key,
        "mutation { rotateCustomerTokenSecret }",
        json!({}),
    )
    .await;
    for ws in [&mut a, &mut b] {
        let (code, took) = ws.closed(CLOSED_WITHIN).await;
        assert_eq!(code, Some(close::UNAUTHORIZED));
        assert!(took < CLOSED_WITHIN, "closed after {took:?}");
    }
    key_socket.subscribe("q", "{ viewer { role } }").await;
    assert_eq!(
        key_socket.message().await["payload"]["data"]["viewer"]["role"],
        "READ"
    );
}

#[tokio::test]
async fn a_socket_without_connection_init_is_closed() {
    let app = TestApp::spawn().await;
    let mut ws = Ws::open(&app).await;
    let (code, took) = ws.closed(INIT_WITHIN + Duration::from_secs(5)).await;
    assert_eq!(code, Some(close::INIT_TIMEOUT));
    assert!(took >= INIT_WITHIN - Duration::from_millis(500), "{took:?}");
    // A wrong credential is refused at init.
    assert_eq!(
        Ws::connect(&app, "ck_live_nope").await.err(),
        Some(Some(close::FORBIDDEN))
    );
    // Subscribing before the handshake.
    let mut ws = Ws::open(&app).await;
    ws.subscribe("early", "{ viewer { role } }").await;
    assert_eq!(
        ws.closed(Duration::from_secs(10)).await.0,
        Some(close::UNAUTHORIZED)
    );
}

#[tokio::test]
async fn operations_per_socket_are_bounded() {
    let app = TestApp::spawn().await;
    setup(&app).await;
    let key = app.key(Role::Read).await;
    let mut ws = Ws::connect(&app, &key).await.unwrap();
    for i in 0..SUBSCRIPTIONS_PER_SOCKET {
        ws.subscribe(&i.to_string(), WATCH).await;
        assert_eq!(ws.message().await["type"], "next");
    }
    ws.subscribe("one-too-many", WATCH).await;
    let refused = ws.message().await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["id"], "one-too-many");
    assert_eq!(
        refused["payload"][0]["extensions"]["code"],
        "TOO_MANY_SUBSCRIPTIONS"
    );
    // Completing one makes room; the socket stayed open.
    ws.send(json!({"id": "0", "type": "complete"})).await;
    let done = ws.message().await;
    assert_eq!(
        (done["type"].as_str(), done["id"].as_str()),
        (Some("complete"), Some("0"))
    );
    ws.subscribe("room", WATCH).await;
    let next = ws.message().await;
    assert_eq!(
        (next["type"].as_str(), next["id"].as_str()),
        (Some("next"), Some("room"))
    );
    // Reusing a running id closes the socket, as graphql-ws says.
    ws.subscribe("room", WATCH).await;
    assert_eq!(
        ws.closed(Duration::from_secs(10)).await.0,
        Some(close::DUPLICATE_ID)
    );

    // Queries end by themselves and free their place.
    let mut ws = Ws::connect(&app, &key).await.unwrap();
    for i in 0..SUBSCRIPTIONS_PER_SOCKET * 2 {
        ws.subscribe(&format!("q{i}"), "{ viewer { role } }").await;
        assert_eq!(ws.message().await["type"], "next");
        assert_eq!(ws.message().await["type"], "complete");
    }
}

#[tokio::test]
async fn sockets_per_credential_are_bounded() {
    let app = TestApp::spawn().await;
    let key = app.key(Role::Read).await;
    let mut open = Vec::new();
    for _ in 0..SOCKETS_PER_CREDENTIAL {
        open.push(Ws::connect(&app, &key).await.unwrap());
    }
    assert_eq!(
        Ws::connect(&app, &key).await.err(),
        Some(Some(close::TOO_MANY))
    );
    // Another credential is not held back by this one.
    let other = app.key(Role::Read).await;
    Ws::connect(&app, &other).await.unwrap();
    // Closing one makes room.
    let mut first = open.remove(0);
    first.0.close(None).await.unwrap();
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match Ws::connect(&app, &key).await {
            Ok(_) => break,
            Err(code) if Instant::now() < deadline => {
                assert_eq!(code, Some(close::TOO_MANY));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(code) => panic!("no room after a socket closed: {code:?}"),
        }
    }
}

/// Another API replica (a separate `api` process on the same PostgreSQL
/// database) closes its sockets when a key is revoked through this one:
/// the revocation travels by `NOTIFY`. SQLite is served by one API
/// process (other processes' changes are found by the periodic re-check),
/// so this runs on PostgreSQL only.
#[tokio::test]
async fn a_revocation_reaches_another_replica() {
    let app = TestApp::spawn().await;
    if !app.t.is_postgres() {
        return;
    }
    setup(&app).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let workdir = tempfile::tempdir().unwrap();
    let mut replica = std::process::Command::new(env!("CARGO_BIN_EXE_api"))
        .current_dir(workdir.path())
        .env("DATABASE_URL", &app.t.url)
        .env("SECRETS_KEY", app.t.secrets_key().to_base64())
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("WORKER", "off")
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the api binary");
    let client = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..400 {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            && r.status() == 200
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "the replica did not become ready");

    let doomed =
        service::api_keys::create(&app.t.db, &app.clock, app.tenant_id, Role::Read, "doomed")
            .await
            .unwrap()
            .secret;
    let mut on_replica = Ws::connect_to(&format!("127.0.0.1:{port}"), &doomed)
        .await
        .unwrap();
    on_replica.subscribe("w", WATCH).await;
    assert_eq!(on_replica.message().await["type"], "next");
    let id = api_key_id(&app, "doomed").await;
    app.ok(
        &app.admin_key,
        "mutation($id: ID!) { revokeApiKey(input: {id: $id}) { apiKey { id } } }",
        json!({"id": id}),
    )
    .await;
    let (code, took) = on_replica.closed(CLOSED_WITHIN).await;
    let _ = replica.kill();
    let _ = replica.wait();
    assert_eq!(code, Some(close::UNAUTHORIZED));
    assert!(took < CLOSED_WITHIN, "closed after {took:?}");
}

/// Operations over a socket take from their credential's rate limit as
/// HTTP requests do; failed authentications at `connection_init` count
/// against the client's address.
#[tokio::test]
async fn sockets_are_rate_limited() {
    use api::http::throttle::{Limit, Rate, RateLimits};
    let mut app = TestApp::spawn().await;
    app.restart_with_rate_limits(RateLimits {
        api_key: Limit::Rate(Rate::per_minute(1, 3)),
        auth_failures: Limit::Rate(Rate::per_minute(1, 2)),
        ..RateLimits::default()
    })
    .await;
    let key = app.key(Role::Read).await;
    let mut ws = Ws::connect(&app, &key).await.unwrap();
    for i in 0..3 {
        ws.subscribe(&format!("q{i}"), "{ viewer { role } }").await;
        assert_eq!(ws.message().await["type"], "next");
        assert_eq!(ws.message().await["type"], "complete");
    }
    ws.subscribe("over", "{ viewer { role } }").await;
    let refused = ws.message().await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["id"], "over");
    let ext = &refused["payload"][0]["extensions"];
    assert_eq!(ext["code"], "RATE_LIMITED");
    assert_eq!(ext["policy"], "api-key");
    assert!(ext["retryAfterSecs"].as_u64().unwrap() >= 1, "{refused}");
    // The same key over HTTP shares the bucket.
    let (status, _) = app.gql(Some(&key), "{ viewer { role } }", json!({})).await;
    assert_eq!(status, 429);

    // Wrong credentials: refused at init (4403) for the address's burst of
    // two failures; past it the address is refused at the upgrade (HTTP
    // 429), even with a valid credential.
    let mut forbidden = 0;
    let status = loop {
        match Ws::try_connect(&app, "ck_live_wrong").await {
            Err(Refused::Closed(code)) => {
                assert_eq!(code, Some(close::FORBIDDEN));
                forbidden += 1;
                assert!(forbidden <= 3, "never throttled");
            }
            Err(Refused::Http(status)) => break status,
            Ok(_) => panic!("a wrong credential was accepted"),
        }
    };
    assert_eq!(status, 429);
    assert!(forbidden >= 2, "the burst: {forbidden}");
    assert!(matches!(
        Ws::try_connect(&app, &app.admin_key).await.err(),
        Some(Refused::Http(429))
    ));
}
