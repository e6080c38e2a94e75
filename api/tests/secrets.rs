//! Secrets sealed at rest (issue 15, item 6): no webhook or customer-token
//! secret can be read from a copy of the database; `api secrets rotate`
//! re-seals them under a new key without breaking a webhook signature or
//! a customer token issued before; a wrong key stops the start, loudly.

mod common;

use std::{
    process::{Command, Output},
    time::Duration as StdDuration,
};

use base64::{
    Engine as _,
    engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD},
};
use chrono::Utc;
use common::TestApp;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ConnectionTrait, EntityTrait, Statement};
use serde_json::json;
use service::{
    Clock, Db, FixedClock,
    api_keys::Role,
    customer_tokens,
    customers::{self, CustomerRef, NewCustomer},
    db::DbConfig,
    notifications::{TargetPolicy, webhooks},
    secrets::{self, Sealer, SecretsKey, Slot},
    tenants,
    testing::TestDb,
};
use uuid::Uuid;

// ---------------------------------------------------------------- the dump

/// Every byte the database holds, as a copy of it would: on SQLite the
/// database file, its write-ahead log and its index; on PostgreSQL
/// `pg_dump` (without it on this machine: every textual column of every
/// table, apalis' included).
async fn dump(t: &TestDb) -> Vec<u8> {
    if !t.is_postgres() {
        let file = t
            .url
            .trim_start_matches("sqlite://")
            .split('?')
            .next()
            .unwrap()
            .to_owned();
        let mut bytes = Vec::new();
        for suffix in ["", "-wal", "-shm", "-journal"] {
            if let Ok(b) = std::fs::read(format!("{file}{suffix}")) {
                bytes.extend(b);
            }
        }
        assert!(bytes.len() > 10_000, "read the database file");
        return bytes;
    }
    match Command::new("pg_dump")
        .args(["--no-owner", "--dbname", &t.url])
        .output()
    {
        Ok(out) if out.status.success() => return out.stdout,
        Ok(out) => eprintln!("pg_dump failed: {}", String::from_utf8_lossy(&out.stderr)),
        Err(e) => eprintln!("no pg_dump ({e}): selecting every textual column"),
    }
    let conn = t.db.reader();
    let columns = conn
        .query_all_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT table_schema, table_name, column_name FROM information_schema.columns \
             WHERE table_schema NOT IN ('pg_catalog', 'information_schema') \
             AND data_type IN ('text', 'character varying', 'character', 'json', 'jsonb', 'bytea')",
        ))
        .await
        .unwrap();
    let mut bytes = Vec::new();
    for c in columns {
        let (schema, table, column): (String, String, String) = (
            c.try_get("", "table_schema").unwrap(),
            c.try_get("", "table_name").unwrap(),
            c.try_get("", "column_name").unwrap(),
        );
        let rows = conn
            .query_all_raw(Statement::from_string(
                conn.get_database_backend(),
                format!(r#"SELECT "{column}"::text AS v FROM "{schema}"."{table}""#),
            ))
            .await
            .unwrap();
        for r in rows {
            if let Ok(Some(v)) = r.try_get::<Option<String>>("", "v") {
                bytes.extend(v.into_bytes());
                bytes.push(b'\n');
            }
        }
    }
    bytes
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The ways a secret could be written down: as given, base64 and hex of
/// its text, and its key bytes raw, in base64 and in hex (`whsec_<base64>`
/// webhook secrets; hex customer-token secrets; a payment provider's
/// secrets are text only).
fn forms(secret: &str) -> Vec<Vec<u8>> {
    let mut forms: Vec<Vec<u8>> = vec![
        secret.as_bytes().to_vec(),
        STANDARD.encode(secret).into_bytes(),
        URL_SAFE_NO_PAD.encode(secret).into_bytes(),
        hex(secret.as_bytes()).into_bytes(),
    ];
    let is_hex = secret.len().is_multiple_of(2) && secret.bytes().all(|b| b.is_ascii_hexdigit());
    let key = match secret.strip_prefix("whsec_") {
        Some(b64) => {
            forms.push(b64.as_bytes().to_vec());
            STANDARD.decode(b64).unwrap()
        }
        None if !is_hex => return forms,
        None => (0..secret.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&secret[i..i + 2], 16).unwrap())
            .collect(),
    };
    assert!(key.len() >= 32, "{secret}");
    forms.extend([
        STANDARD.encode(&key).into_bytes(),
        URL_SAFE.encode(&key).into_bytes(),
        URL_SAFE_NO_PAD.encode(&key).into_bytes(),
        hex(&key).into_bytes(),
        hex(&key).to_uppercase().into_bytes(),
        key,
    ]);
    forms
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Fails if any form of any secret is in the dump.
fn assert_none_in(dump: &[u8], secrets: &[String]) {
    assert!(
        contains(dump, b"sealed:v1:"),
        "the dump holds sealed values"
    );
    for secret in secrets {
        for form in forms(secret) {
            assert!(
                !contains(dump, &form),
                "a form of secret {secret} is in the database: {:?}",
                String::from_utf8_lossy(&form)
            );
        }
    }
}

/// A tenant's customer-token secret, opened (the test knows the key).
async fn token_secret(db: &Db, tenant_id: Uuid) -> String {
    let sealed = entity::tenant::Entity::find_by_id(tenant_id)
        .one(db.reader())
        .await
        .unwrap()
        .unwrap()
        .customer_token_secret
        .unwrap();
    assert!(secrets::is_sealed(&sealed), "{sealed}");
    db.sealer()
        .unwrap()
        .open(Slot::CustomerTokenSecret { tenant_id }, &sealed)
        .unwrap()
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn no_secret_created_is_in_a_dump_of_the_database() {
    let app = TestApp::spawn().await;
    let mut created: Vec<String> = Vec::new();
    let create = r#"mutation($url: String!) { createWebhookEndpoint(input: {url: $url, events: ["credits.granted"]}) { endpoint { id } secret } }"#;
    let mut ids = Vec::new();
    for url in [
        "https://hooks.example.com/credits",
        "https://hooks.example.com/other",
    ] {
        let data = app.ok(&app.admin_key, create, json!({"url": url})).await;
        created.push(
            data["createWebhookEndpoint"]["secret"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
        ids.push(data["createWebhookEndpoint"]["endpoint"]["id"].clone());
    }
    // Rotated: the new secret, and the old one kept 24 h beside it.
    let rotate = r#"mutation($id: ID!) { rotateWebhookSecret(input: {endpoint: $id}) { secret } }"#;
    let data = app.ok(&app.admin_key, rotate, json!({"id": ids[0]})).await;
    created.push(
        data["rotateWebhookSecret"]["secret"]
            .as_str()
            .unwrap()
            .to_owned(),
    );

    // Customer tokens: the tenant's secret is made on first use, then
    // rotated; another tenant has its own.
    let customer = r#"mutation { createCustomer(input: {externalId: "acme", name: "Acme"}) { customer { id } } }"#;
    let token = r#"mutation { createCustomerToken(customer: {externalId: "acme"}, ttlSeconds: 600) { token } }"#;
    let (other_tenant, other_admin) = app.other_tenant("other").await;
    for (tenant_id, admin) in [
        (app.tenant_id, app.admin_key.clone()),
        (other_tenant, other_admin),
    ] {
        app.ok(&admin, customer, json!({})).await;
        app.ok(&admin, token, json!({})).await;
        created.push(token_secret(&app.t.db, tenant_id).await);
    }
    app.ok(
        &app.admin_key,
        "mutation { rotateCustomerTokenSecret }",
        json!({}),
    )
    .await;
    let write = app.key(Role::Write).await;
    let issued = app.ok(&write, token, json!({})).await;
    created.push(token_secret(&app.t.db, app.tenant_id).await);
    // The token issued under the rotated secret works.
    let t = issued["createCustomerToken"]["token"].as_str().unwrap();
    app.ok(
        t,
        r#"{ customer(externalId: "acme") { externalId } }"#,
        json!({}),
    )
    .await;

    // A payment provider's secrets (Mercado Pago: signing secret and API
    // access token), set over GraphQL.
    let provider = r#"mutation($s: String!, $t: String!) { setPaymentProvider(input: {provider: MERCADOPAGO, secret: $s, accessToken: $t}) { intake { path } } }"#;
    let (mp_secret, mp_token) = (
        "mp-signing-secret-5f0c9e21d4".to_owned(),
        "APP_USR-7781-access-token-c0ffee".to_owned(),
    );
    app.ok(
        &app.admin_key,
        provider,
        json!({"s": mp_secret, "t": mp_token}),
    )
    .await;
    created.push(mp_secret);
    created.push(mp_token);

    assert_eq!(created.len(), 8);
    let all: std::collections::HashSet<_> = created.iter().collect();
    assert_eq!(all.len(), 8, "eight different secrets");
    let dump = dump(&app.t).await;
    assert!(
        contains(&dump, b"hooks.example.com/other"),
        "the dump has the rows"
    );
    assert_none_in(&dump, &created);
}

/// Runs the `api` binary with `env` (and no key from this process).
fn api(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_api"));
    command
        .args(args)
        .env_remove("SECRETS_KEY")
        .env_remove("SECRETS_KEY_NEW")
        .env("RUST_LOG", "warn")
        .env("RUST_BACKTRACE", "0");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("run the api binary")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A tenant with a customer token and a webhook endpoint (rotated once,
/// so both secret columns are filled) on a local receiver.
struct Seeded {
    tenant_id: Uuid,
    token: String,
    endpoint_id: Uuid,
    old_secret: String,
    secret: String,
}

async fn seed(t: &TestDb, clock: &FixedClock, receiver: &str) -> Seeded {
    let tenant_id = tenants::create(&t.db, clock, "acme").await.unwrap().id;
    customers::create(
        &t.db,
        clock,
        tenant_id,
        &NewCustomer {
            external_id: "acme".into(),
            name: "Acme".into(),
            email: None,
            metadata: None,
            parent: None,
        },
    )
    .await
    .unwrap();
    let token = customer_tokens::issue(
        &t.db,
        clock,
        tenant_id,
        &CustomerRef::ExternalId("acme".into()),
        3_600,
        false,
    )
    .await
    .unwrap()
    .token;
    let created = webhooks::create_endpoint(
        &t.db,
        clock,
        TargetPolicy::AllowPrivate,
        tenant_id,
        receiver,
        &["topup.requested".into()],
        "",
    )
    .await
    .unwrap();
    let rotated = webhooks::rotate_secret(&t.db, clock, tenant_id, created.endpoint.id)
        .await
        .unwrap();
    Seeded {
        tenant_id,
        token,
        endpoint_id: created.endpoint.id.uuid(),
        old_secret: created.secret,
        secret: rotated.secret,
    }
}

/// The same database with another key.
async fn with_key(t: &TestDb, key: &SecretsKey) -> Db {
    Db::connect(&DbConfig::new(t.url.clone()))
        .await
        .unwrap()
        .with_sealer(Sealer::new(key))
}

/// A receiver on 127.0.0.1:0 keeping each delivery's headers and body.
async fn receiver() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<(axum::http::HeaderMap, String)>>>,
) {
    let hits = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let state = hits.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let hits = state.clone();
                async move {
                    hits.lock()
                        .unwrap()
                        .push((headers, String::from_utf8(body.to_vec()).unwrap()));
                    "ok"
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(axum::serve(listener, app).into_future());
    (format!("http://{addr}/hook"), hits)
}

/// Sends the seeded endpoint one delivery (written directly: no event
/// needed); how many were delivered.
async fn deliver_one(db: &Db, clock: &FixedClock, seeded: &Seeded) -> u64 {
    use entity::webhook_delivery;
    let now = clock.now();
    webhook_delivery::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(seeded.tenant_id),
        endpoint_id: Set(seeded.endpoint_id),
        event_id: Set(Uuid::now_v7()),
        event_type: Set("topup.requested".into()),
        body: Set(r#"{"id":"x","type":"topup.requested"}"#.into()),
        status: Set("PENDING".into()),
        attempts: Set(0),
        next_attempt_at: Set(now),
        lease_until: Set(None),
        last_status_code: Set(None),
        created_at: Set(now),
        finished_at: Set(None),
    }
    .insert(db.writer())
    .await
    .unwrap();
    let http = worker::transports::HttpTransport::new(
        StdDuration::from_secs(5),
        TargetPolicy::AllowPrivate,
    )
    .unwrap();
    webhooks::deliver_due(db, clock, &http, 10)
        .await
        .unwrap()
        .delivered
}

#[tokio::test]
async fn secrets_rotate_reseals_everything_and_keeps_tokens_and_signatures_working() {
    common::install_tls_provider();
    let t = TestDb::new().await;
    let clock = FixedClock::new(Utc::now());
    let (url, hits) = receiver().await;
    let seeded = seed(&t, &clock, &url).await;
    // A payment provider's secrets too (Mercado Pago: secret and token).
    service::payments::set_provider(
        &t.db,
        &clock,
        seeded.tenant_id,
        service::payments::Provider::MercadoPago,
        "mp-webhook-secret-0123456789",
        Some("APP_USR-mp-access-token-0123456789"),
    )
    .await
    .unwrap();
    secrets::prepare(&t.db, &clock).await.unwrap();
    let old = t.secrets_key().clone();
    let new = SecretsKey::generate();
    let keys = [
        ("DATABASE_URL", t.url.clone()),
        ("SECRETS_KEY", old.to_base64()),
        ("SECRETS_KEY_NEW", new.to_base64()),
    ];

    // Token secret, endpoint secret, previous secret, the intake's secret
    // and access token: five values.
    let out = api(&["secrets", "rotate"], &keys);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("Re-sealed 5 secret(s) of 1 tenant(s)"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains(&new.id()) && !text(&out).contains(&new.to_base64()));
    // Again: nothing left to do.
    let out = api(&["secrets", "rotate"], &keys);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("Re-sealed 0 secret(s) of 1 tenant(s)")
            && text(&out).contains("(5 already were)"),
        "{}",
        text(&out)
    );

    // The old key no longer starts; the new one does.
    let stale = with_key(&t, &old).await;
    assert!(matches!(
        secrets::prepare(&stale, &clock).await,
        Err(secrets::Error::WrongKey { .. })
    ));
    let db = with_key(&t, &new).await;
    secrets::prepare(&db, &clock).await.unwrap();
    // A token issued before the rotation still authenticates.
    let principal = customer_tokens::authenticate(&db, &clock, &seeded.token)
        .await
        .unwrap();
    assert_eq!(principal.tenant_id, seeded.tenant_id);
    // Deliveries are signed with both webhook secrets, as before.
    assert_eq!(deliver_one(&db, &clock, &seeded).await, 1);
    let (headers, body) = hits.lock().unwrap()[0].clone();
    let header = |n: &str| headers[n].to_str().unwrap().to_owned();
    for secret in [&seeded.secret, &seeded.old_secret] {
        let received = webhooks::Received {
            msg_id: &header("webhook-id"),
            timestamp: &header("webhook-timestamp"),
            signatures: &header("webhook-signature"),
            body: &body,
        };
        assert!(webhooks::verify(secret, &received, clock.now()));
    }
    // The intake's secrets open under the new key, each in its slot.
    let sealer = db.sealer().unwrap();
    let intake = entity::payment_intake::Entity::find()
        .one(db.reader())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(secrets::key_id_of(&intake.secret), Some(new.id().as_str()));
    assert_eq!(
        sealer
            .open(
                secrets::Slot::PaymentSecret {
                    intake_id: intake.id
                },
                &intake.secret
            )
            .unwrap(),
        "mp-webhook-secret-0123456789"
    );
    assert_eq!(
        sealer
            .open(
                secrets::Slot::PaymentAccessToken {
                    intake_id: intake.id
                },
                intake.access_token.as_deref().unwrap()
            )
            .unwrap(),
        "APP_USR-mp-access-token-0123456789"
    );
    // And what the rotation wrote is no more readable than before.
    let secret = token_secret(&db, seeded.tenant_id).await;
    assert_none_in(
        &dump(&t).await,
        &[secret, seeded.secret.clone(), seeded.old_secret.clone()],
    );
}

/// SQLite without SECRETS_KEY: the key file is rotated in place (the new
/// key waits in `<file>.new` until every secret is re-sealed).
#[tokio::test]
async fn secrets_rotate_replaces_the_key_file_beside_sqlite() {
    let t = TestDb::new().await;
    if t.is_postgres() {
        return;
    }
    let clock = FixedClock::new(Utc::now());
    let seeded = seed(&t, &clock, "http://127.0.0.1:9/hook").await;
    secrets::prepare(&t.db, &clock).await.unwrap();
    let path = secrets::key_file_for(&t.url).unwrap();
    let out = api(&["secrets", "rotate"], &[("DATABASE_URL", t.url.clone())]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("now holds the new key"),
        "{}",
        text(&out)
    );
    let new = secrets::read_key_file(&path).unwrap();
    assert_ne!(&new, t.secrets_key());
    let mut pending = path.clone().into_os_string();
    pending.push(".new");
    assert!(!std::path::Path::new(&pending).exists());
    let db = with_key(&t, &new).await;
    secrets::prepare(&db, &clock).await.unwrap();
    customer_tokens::authenticate(&db, &clock, &seeded.token)
        .await
        .unwrap();
}

/// A key that does not open the database's secrets, a malformed key, and
/// PostgreSQL without a key: `api serve` stops at once and says why.
#[tokio::test]
async fn a_wrong_or_missing_key_stops_the_start_loudly() {
    let t = TestDb::new().await;
    let clock = FixedClock::new(Utc::now());
    seed(&t, &clock, "http://127.0.0.1:9/hook").await;
    secrets::prepare(&t.db, &clock).await.unwrap();
    let serve = |env: &[(&str, String)]| {
        let mut env = env.to_vec();
        env.extend([
            ("LISTEN_ADDR", "127.0.0.1:0".to_owned()),
            ("WORKER", "off".to_owned()),
        ]);
        let out = api(&["serve"], &env);
        (out.status.success(), text(&out))
    };
    let wrong = SecretsKey::generate();
    let (ok, said) = serve(&[
        ("DATABASE_URL", t.url.clone()),
        ("SECRETS_KEY", wrong.to_base64()),
    ]);
    assert!(!ok, "{said}");
    assert!(
        said.contains(&format!(
            "the secrets key (key id {}) is not the key this database's secrets are sealed with (key id {})",
            wrong.id(),
            t.secrets_key().id()
        )),
        "{said}"
    );
    let (ok, said) = serve(&[
        ("DATABASE_URL", t.url.clone()),
        ("SECRETS_KEY", "c2hvcnQ=".into()),
    ]);
    assert!(!ok && said.contains("SECRETS_KEY must be the base64 of 32 random bytes"));
    // Refused before connecting: no server needed at that address.
    let (ok, said) = serve(&[("DATABASE_URL", "postgres://nobody@127.0.0.1:9/x".into())]);
    assert!(
        !ok && said.contains("PostgreSQL needs SECRETS_KEY"),
        "{said}"
    );
    // (The right key starts: tests/binary.rs.)
}

/// Rows from before sealing (plaintext, no prefix) are sealed by the
/// first start with a key; tokens and signatures made with them still
/// work; on SQLite the plaintext no longer lingers in the file.
#[tokio::test]
async fn plaintext_secrets_from_before_are_sealed_at_start() {
    common::install_tls_provider();
    let t = TestDb::new().await;
    let clock = FixedClock::new(Utc::now());
    let (url, hits) = receiver().await;
    let seeded = seed(&t, &clock, &url).await;
    // As an older version stored them: in the clear, a hex webhook secret.
    let token_plain = token_secret(&t.db, seeded.tenant_id).await;
    let webhook_plain = format!("whsec_{}", hex(&[7u8; 32]));
    entity::tenant::ActiveModel {
        id: sea_orm::ActiveValue::Unchanged(seeded.tenant_id),
        customer_token_secret: Set(Some(token_plain.clone())),
        ..Default::default()
    }
    .update(t.db.writer())
    .await
    .unwrap();
    entity::webhook_endpoint::ActiveModel {
        id: sea_orm::ActiveValue::Unchanged(seeded.endpoint_id),
        secret: Set(webhook_plain.clone()),
        previous_secret: Set(None),
        previous_secret_expires_at: Set(None),
        ..Default::default()
    }
    .update(t.db.writer())
    .await
    .unwrap();
    // Unsealed, they can't be used...
    assert!(
        customer_tokens::authenticate(&t.db, &clock, &seeded.token)
            .await
            .is_err()
    );
    // ...until the start seals them.
    let prepared = secrets::prepare(&t.db, &clock).await.unwrap();
    assert_eq!(prepared.sealed_now, 2);
    assert_eq!(secrets::prepare(&t.db, &clock).await.unwrap().sealed_now, 0);
    customer_tokens::authenticate(&t.db, &clock, &seeded.token)
        .await
        .unwrap();
    assert_eq!(token_secret(&t.db, seeded.tenant_id).await, token_plain);
    assert_eq!(deliver_one(&t.db, &clock, &seeded).await, 1);
    let (headers, body) = hits.lock().unwrap()[0].clone();
    let header = |n: &str| headers[n].to_str().unwrap().to_owned();
    let received = webhooks::Received {
        msg_id: &header("webhook-id"),
        timestamp: &header("webhook-timestamp"),
        signatures: &header("webhook-signature"),
        body: &body,
    };
    assert!(webhooks::verify(&webhook_plain, &received, clock.now()));
    assert_none_in(&dump(&t).await, &[token_plain, webhook_plain]);
}
