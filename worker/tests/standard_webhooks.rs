//! Deliveries are Standard Webhooks (issue 15, item 7), checked by the
//! specification's reference library rather than by our own code: a real
//! HTTP receiver on 127.0.0.1:0 collects what the worker's real transport
//! sends, and `tests/standard-webhooks/verify.mjs` (npm `standardwebhooks`,
//! installed with `npm ci` on first use) verifies each delivery with a
//! secret, as a receiver would.

use std::{
    io::Write as _,
    path::PathBuf,
    process::{Command, Stdio},
    str::FromStr,
    sync::{Arc, Mutex},
    time::Duration as StdDuration,
};

use axum::{
    Router,
    body::Bytes,
    http::{HeaderMap, StatusCode},
    response::IntoResponse,
    routing::post,
};
use chrono::{Duration, TimeZone, Utc};
use rust_decimal::Decimal;
use serde_json::json;
use service::{
    Clock, FixedClock,
    credit_systems::{self, CreditSystemRef, Kind, NewCreditSystem},
    customers::{self, CustomerRef, NewCustomer},
    ledger::{self, Category, WalletRef},
    notifications::{TargetPolicy, dispatch, webhooks},
    tenants,
    testing::TestDb,
};
use uuid::Uuid;
use worker::transports::HttpTransport;

// ---------------------------------------------------------------- the reference library

fn verifier_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/standard-webhooks")
}

/// `npm ci` once per test process, unless CI (or an earlier run) did.
fn install_verifier() {
    static INSTALLED: Mutex<bool> = Mutex::new(false);
    let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    if *installed {
        return;
    }
    let dir = verifier_dir();
    if !dir
        .join("node_modules/standardwebhooks/package.json")
        .exists()
    {
        let status = Command::new("npm")
            .args(["ci", "--silent", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("npm (node 20) is needed to run the Standard Webhooks reference library");
        assert!(status.success(), "npm ci in {} failed", dir.display());
    }
    *installed = true;
}

/// A delivery as the receiver got it.
#[derive(Debug, Clone)]
struct Hit {
    headers: HeaderMap,
    body: String,
}

impl Hit {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// The same delivery with only the `n`th of its signatures.
    fn with_only_signature(&self, n: usize) -> Hit {
        let one = self
            .header("webhook-signature")
            .split(' ')
            .nth(n)
            .expect("that many signatures")
            .to_owned();
        let mut hit = self.clone();
        hit.headers
            .insert("webhook-signature", one.parse().unwrap());
        hit
    }

    fn with_body(&self, body: &str) -> Hit {
        Hit {
            headers: self.headers.clone(),
            body: body.to_owned(),
        }
    }
}

/// What the reference library says of each `(secret, delivery, receiver's
/// clock)`: `"ok"` or `"fail: <why>"`.
fn reference_verify(cases: &[(&str, &Hit, i64)]) -> Vec<String> {
    install_verifier();
    let input: Vec<_> = cases
        .iter()
        .map(|(secret, hit, now)| {
            let headers: serde_json::Map<String, serde_json::Value> = hit
                .headers
                .iter()
                .map(|(name, value)| {
                    (
                        name.as_str().to_owned(),
                        json!(value.to_str().unwrap_or_default()),
                    )
                })
                .collect();
            json!({"secret": secret, "headers": headers, "body": hit.body, "now": now})
        })
        .collect();
    let mut child = Command::new("node")
        .arg("verify.mjs")
        .current_dir(verifier_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node (20) runs the Standard Webhooks reference library");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&input).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "verify.mjs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), cases.len(), "one answer per delivery");
    lines
}

// ---------------------------------------------------------------- the receiver

/// A receiver on 127.0.0.1:0 answering, call by call, from `script` (then
/// 200).
async fn receiver(script: Vec<u16>) -> (String, Arc<Mutex<Vec<Hit>>>) {
    let hits = Arc::new(Mutex::new(Vec::<Hit>::new()));
    let state = hits.clone();
    let script = Arc::new(script);
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let hits = state.clone();
            let script = script.clone();
            async move {
                let n = {
                    let mut h = hits.lock().unwrap();
                    h.push(Hit {
                        headers,
                        body: String::from_utf8(body.to_vec()).unwrap(),
                    });
                    h.len() - 1
                };
                let status = script.get(n).copied().unwrap_or(200);
                (StatusCode::from_u16(status).unwrap(), "answer").into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(axum::serve(listener, app).into_future());
    (format!("http://{addr}/hook"), hits)
}

// ---------------------------------------------------------------- the world

struct World {
    t: TestDb,
    clock: FixedClock,
    tenant: Uuid,
    http: HttpTransport,
    n: std::sync::atomic::AtomicU64,
}

impl World {
    async fn new() -> Self {
        let t = TestDb::new().await;
        let clock = FixedClock::new(Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap());
        let tenant = tenants::create(&t.db, &clock, "acme").await.unwrap().id;
        credit_systems::create(
            &t.db,
            &clock,
            tenant,
            &NewCreditSystem {
                key: "tokens".into(),
                name: "AI tokens".into(),
                description: String::new(),
                unit_singular: "token".into(),
                unit_plural: "tokens".into(),
                precision: 0,
                kind: Kind::Units,
                currency: None,
            },
        )
        .await
        .unwrap();
        customers::create(
            &t.db,
            &clock,
            tenant,
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
        let http =
            HttpTransport::new(StdDuration::from_secs(5), TargetPolicy::AllowPrivate).unwrap();
        Self {
            t,
            clock,
            tenant,
            http,
            n: Default::default(),
        }
    }

    /// Grants credits: one `credits.granted` event, dispatched.
    async fn grant(&self, amount: &str) {
        let n = self.n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ledger::grant(
            &self.t.db,
            &self.clock,
            self.tenant,
            &ledger::GrantInput {
                wallet: WalletRef {
                    customer: CustomerRef::ExternalId("acme".into()),
                    credit_system: CreditSystemRef::Key("tokens".into()),
                },
                amount: Decimal::from_str(amount).unwrap(),
                category: Category::Purchased,
                effective_at: None,
                expires_at: None,
                priority: None,
                cost_basis: None,
                reason: "test".into(),
                metadata: None,
                idempotency_key: format!("k{n}"),
            },
        )
        .await
        .unwrap();
        dispatch(&self.t.db, &self.clock, 100).await.unwrap();
    }

    /// Sends what is due now; how many were attempted.
    async fn deliver(&self) -> u64 {
        webhooks::deliver_due(&self.t.db, &self.clock, &self.http, 100)
            .await
            .unwrap()
            .attempted
    }

    fn now(&self) -> i64 {
        self.clock.now().timestamp()
    }
}

// ---------------------------------------------------------------- tests

/// A well-formed secret no endpoint here has (the specification's example).
const SOME_OTHER_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[tokio::test]
async fn deliveries_verify_with_the_reference_library_across_a_rotation() {
    let w = World::new().await;
    // The first attempt is answered 500: the retry must carry the same id.
    let (url, hits) = receiver(vec![500]).await;
    let created = webhooks::create_endpoint(
        &w.t.db,
        &w.clock,
        TargetPolicy::AllowPrivate,
        w.tenant,
        &url,
        &["credits.granted".into()],
        "ops",
    )
    .await
    .unwrap();
    let old = created.secret.clone();
    assert!(old.starts_with("whsec_"));

    // 1. One secret: a failed attempt and its retry, two minutes apart.
    w.grant("10").await;
    assert_eq!(w.deliver().await, 1);
    let first_at = w.now();
    w.clock.advance(Duration::minutes(2));
    assert_eq!(w.deliver().await, 1);
    let retry_at = w.now();
    let got = hits.lock().unwrap().clone();
    assert_eq!(got.len(), 2);
    let (first, retry) = (&got[0], &got[1]);
    let event: serde_json::Value = serde_json::from_str(&first.body).unwrap();
    // webhook-id is the event id: stable across attempts (receivers
    // deduplicate on it); the timestamp is the attempt's.
    assert_eq!(first.header("webhook-id"), event["id"].as_str().unwrap());
    assert_eq!(retry.header("webhook-id"), first.header("webhook-id"));
    assert_eq!(first.header("webhook-timestamp"), first_at.to_string());
    assert_eq!(retry.header("webhook-timestamp"), retry_at.to_string());
    assert_eq!(first.header("content-type"), "application/json");
    let forged = retry.with_body(&retry.body.replace("\"10\"", "\"1000\""));
    assert_ne!(forged.body, retry.body);
    assert_eq!(
        reference_verify(&[
            (&old, first, first_at),
            (&old, retry, retry_at),
            (SOME_OTHER_SECRET, retry, retry_at),
            (&old, &forged, retry_at),
            // The receiver's clock 6 minutes on: too old.
            (&old, retry, retry_at + 360),
        ]),
        [
            "ok",
            "ok",
            "fail: No matching signature found",
            "fail: No matching signature found",
            "fail: Message timestamp too old"
        ]
    );

    // 2. Rotated: for 24 h every delivery is signed by the new secret and
    // by the one it replaced.
    w.clock.advance(Duration::minutes(1));
    let rotated = webhooks::rotate_secret(&w.t.db, &w.clock, w.tenant, created.endpoint.id)
        .await
        .unwrap();
    let new = rotated.secret;
    let rotated_at = w.clock.now();
    assert_eq!(
        rotated.endpoint.previous_secret_expires_at,
        Some(rotated_at + Duration::hours(24))
    );
    assert_ne!(new, old);
    w.grant("20").await;
    assert_eq!(w.deliver().await, 1);
    let during_at = w.now();
    w.clock.advance(Duration::hours(24) - Duration::seconds(1));
    w.grant("30").await;
    assert_eq!(w.deliver().await, 1);
    let last_second_at = w.now();
    let got = hits.lock().unwrap().clone();
    let (during, last_second) = (&got[2], &got[3]);
    for hit in [during, last_second] {
        let signatures: Vec<&str> = hit.header("webhook-signature").split(' ').collect();
        assert_eq!(signatures.len(), 2, "{signatures:?}");
        assert!(signatures.iter().all(|s| s.starts_with("v1,")));
    }
    assert_eq!(
        reference_verify(&[
            // Both secrets verify the delivery as sent...
            (&new, during, during_at),
            (&old, during, during_at),
            // ...each by its own signature: the new one's first.
            (&new, &during.with_only_signature(0), during_at),
            (&old, &during.with_only_signature(1), during_at),
            (&new, &during.with_only_signature(1), during_at),
            (&old, &during.with_only_signature(0), during_at),
            (SOME_OTHER_SECRET, during, during_at),
            (&new, last_second, last_second_at),
            (&old, last_second, last_second_at),
        ]),
        [
            "ok",
            "ok",
            "ok",
            "ok",
            "fail: No matching signature found",
            "fail: No matching signature found",
            "fail: No matching signature found",
            "ok",
            "ok",
        ]
    );

    // 3. 24 h after the rotation: the new secret alone.
    w.clock.advance(Duration::seconds(1));
    w.grant("40").await;
    assert_eq!(w.deliver().await, 1);
    let after_at = w.now();
    let after = hits.lock().unwrap()[4].clone();
    assert_eq!(after.header("webhook-signature").split(' ').count(), 1);
    assert_eq!(
        reference_verify(&[(&new, &after, after_at), (&old, &after, after_at)]),
        ["ok", "fail: No matching signature found"]
    );

    // 4. A redelivery is the same message: the same webhook-id.
    let page = service::pagination::PageRequest::new(Some(10), None).unwrap();
    let deliveries = webhooks::list_deliveries(&w.t.db, w.tenant, None, None, page)
        .await
        .unwrap()
        .items;
    let oldest = deliveries.last().unwrap();
    webhooks::redeliver(&w.t.db, &w.clock, w.tenant, oldest.id)
        .await
        .unwrap();
    assert_eq!(w.deliver().await, 1);
    let again = hits.lock().unwrap()[5].clone();
    assert_eq!(again.header("webhook-id"), first.header("webhook-id"));
    assert_eq!(again.body, first.body);
    assert_eq!(reference_verify(&[(&new, &again, w.now())]), ["ok"]);
}

/// Secrets made before Standard Webhooks (`whsec_<hex>`, stored in the
/// clear then) keep working: the next start seals them, and the libraries
/// read their hex text as base64, as we do.
#[tokio::test]
async fn an_endpoint_with_an_old_hex_secret_verifies_with_the_reference_library() {
    let w = World::new().await;
    let (url, hits) = receiver(vec![]).await;
    let created = webhooks::create_endpoint(
        &w.t.db,
        &w.clock,
        TargetPolicy::AllowPrivate,
        w.tenant,
        &url,
        &["credits.granted".into()],
        "",
    )
    .await
    .unwrap();
    let hex_secret = format!("whsec_{}", "0123456789abcdef".repeat(4));
    set_raw_secret(&w.t, created.endpoint.id.uuid(), &hex_secret).await;
    let prepared = service::secrets::prepare(&w.t.db, &w.clock).await.unwrap();
    assert_eq!(prepared.sealed_now, 1);
    w.grant("1").await;
    assert_eq!(w.deliver().await, 1);
    let hit = hits.lock().unwrap()[0].clone();
    assert_eq!(
        reference_verify(&[
            (&hex_secret, &hit, w.now()),
            (&created.secret, &hit, w.now())
        ]),
        ["ok", "fail: No matching signature found"]
    );
}

/// Stores a secret as an endpoint made before these changes had it.
async fn set_raw_secret(t: &TestDb, endpoint: Uuid, secret: &str) {
    use sea_orm::{ActiveModelTrait, ActiveValue::Set};
    entity::webhook_endpoint::ActiveModel {
        id: sea_orm::ActiveValue::Unchanged(endpoint),
        secret: Set(secret.to_owned()),
        ..Default::default()
    }
    .update(t.db.writer())
    .await
    .unwrap();
}

/// Secrets sealed at rest (issue 15, item 6): after the database's secrets
/// are re-sealed under a new key, a worker with the new key signs exactly
/// as before (the reference library verifies with the endpoint's secret),
/// and a worker still holding the old key refuses to start.
#[tokio::test]
async fn after_a_secrets_key_rotation_deliveries_still_verify_with_the_reference_library() {
    use service::{
        Db,
        db::DbConfig,
        secrets::{self, Sealer, SecretsKey},
    };
    let w = World::new().await;
    let (url, hits) = receiver(vec![]).await;
    let created = webhooks::create_endpoint(
        &w.t.db,
        &w.clock,
        TargetPolicy::AllowPrivate,
        w.tenant,
        &url,
        &["credits.granted".into()],
        "",
    )
    .await
    .unwrap();
    secrets::prepare(&w.t.db, &w.clock).await.unwrap();
    let new_key = SecretsKey::generate();
    let report = secrets::rotate(&w.t.db, &w.clock, w.t.secrets_key(), &new_key)
        .await
        .unwrap();
    assert_eq!((report.resealed, report.unchanged), (1, 0));
    let db = Db::connect(&DbConfig::new(w.t.url.clone()))
        .await
        .unwrap()
        .with_sealer(Sealer::new(&new_key));
    secrets::prepare(&db, &w.clock).await.unwrap();
    w.grant("5").await;
    let report = webhooks::deliver_due(&db, &w.clock, &w.http, 100)
        .await
        .unwrap();
    assert_eq!(report.delivered, 1);
    let hit = hits.lock().unwrap()[0].clone();
    assert_eq!(
        reference_verify(&[(&created.secret, &hit, w.now())]),
        ["ok"]
    );
    // The old key: the worker stops before running anything.
    let stale = worker::run(
        w.t.db.clone(),
        Arc::new(w.clock.clone()),
        worker::WorkerConfig {
            mail: worker::MailConfig {
                smtp_url: None,
                mail_from: "credits@localhost".into(),
                mail_dir: std::env::temp_dir(),
            },
            webhooks: worker::WebhookConfig::allow_private(),
            job_lease_seconds: 60,
        },
        tokio_util::sync::CancellationToken::new(),
    )
    .await;
    let Err(worker::Error::Secrets(secrets::Error::WrongKey { given, stored })) = stale else {
        panic!("a worker with the old key must not start: {stale:?}");
    };
    assert_eq!((given, stored), (w.t.secrets_key().id(), new_key.id()));
}
