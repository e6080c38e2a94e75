//! Notifications against real peers: an SMTP server and an HTTP receiver,
//! both listening on 127.0.0.1:0 in this test, spoken to by the worker's
//! real transports (lettre, reqwest).

use std::{
    net::SocketAddr,
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
use base64::{Engine as _, engine::general_purpose::STANDARD};
use chrono::{Duration, TimeZone, Utc};
use hmac::{Hmac, KeyInit, Mac};
use rust_decimal::Decimal;
use service::{
    Clock, FixedClock,
    credit_systems::{self, CreditSystemRef, Kind, NewCreditSystem},
    customers::{self, CustomerRef, NewCustomer},
    ledger::{self, Attribution, Category, WalletRef},
    notifications::{TargetPolicy, dispatch, email, webhooks},
    tenants,
    testing::TestDb,
};
use sha2::Sha256;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use uuid::Uuid;
use worker::{
    MailConfig,
    transports::{HttpTransport, LettreMailer},
};

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

struct World {
    t: TestDb,
    clock: FixedClock,
    tenant: Uuid,
    n: std::sync::atomic::AtomicU64,
}

impl World {
    async fn new(email: &str) -> Self {
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
                email: Some(email.into()),
                metadata: None,
                parent: None,
            },
        )
        .await
        .unwrap();
        Self {
            t,
            clock,
            tenant,
            n: Default::default(),
        }
    }

    fn wallet(&self) -> WalletRef {
        WalletRef {
            customer: CustomerRef::ExternalId("acme".into()),
            credit_system: CreditSystemRef::Key("tokens".into()),
        }
    }

    fn key(&self) -> String {
        format!(
            "k{}",
            self.n.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        )
    }

    async fn grant(&self, amount: &str) {
        ledger::grant(
            &self.t.db,
            &self.clock,
            self.tenant,
            &ledger::GrantInput {
                wallet: self.wallet(),
                amount: d(amount),
                category: Category::Purchased,
                effective_at: None,
                expires_at: None,
                priority: None,
                cost_basis: None,
                reason: "test".into(),
                metadata: None,
                idempotency_key: self.key(),
            },
        )
        .await
        .unwrap();
    }

    async fn consume(&self, amount: &str) {
        ledger::consume(
            &self.t.db,
            &self.clock,
            self.tenant,
            &ledger::ConsumeInput {
                wallet: self.wallet(),
                amount: d(amount),
                attribution: Attribution::default(),
                idempotency_key: self.key(),
            },
        )
        .await
        .unwrap();
    }
}

// ---------------------------------------------------------------- SMTP

#[derive(Debug, Clone)]
struct Received {
    rcpt: Vec<String>,
    data: String,
}

/// A small SMTP server: enough of RFC 5321 for a client to deliver mail.
/// Recipients containing "bounce" are refused with 550 (permanent).
async fn smtp_server() -> (SocketAddr, Arc<Mutex<Vec<Received>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let inbox = Arc::new(Mutex::new(Vec::new()));
    let store = inbox.clone();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let store = store.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 test.local ESMTP\r\n").await.ok();
                let mut rcpt = Vec::new();
                while let Ok(Some(line)) = lines.next_line().await {
                    let upper = line.to_ascii_uppercase();
                    let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                        b"250-test.local\r\n250 8BITMIME\r\n"
                    } else if upper.starts_with("MAIL FROM")
                        || upper.starts_with("RSET")
                        || upper.starts_with("NOOP")
                    {
                        b"250 OK\r\n"
                    } else if upper.starts_with("RCPT TO") {
                        if line.contains("bounce") {
                            b"550 5.1.1 no such user\r\n"
                        } else {
                            rcpt.push(line[8..].trim().trim_matches(['<', '>']).to_owned());
                            b"250 OK\r\n"
                        }
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
                        store.lock().unwrap().push(Received {
                            rcpt: std::mem::take(&mut rcpt),
                            data,
                        });
                        b"250 queued\r\n"
                    } else if upper.starts_with("QUIT") {
                        write.write_all(b"221 bye\r\n").await.ok();
                        return;
                    } else {
                        b"502 not implemented\r\n"
                    };
                    if write.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, inbox)
}

fn mailer(addr: SocketAddr) -> LettreMailer {
    LettreMailer::from_config(&MailConfig {
        smtp_url: Some(format!("smtp://{addr}")),
        mail_from: "Credits <credits@test.local>".into(),
        mail_dir: "unused".into(),
    })
    .unwrap()
}

#[tokio::test]
async fn low_balance_email_goes_once_per_crossing_over_real_smtp() {
    let w = World::new("billing@acme.test").await;
    ledger::configure_wallet(
        &w.t.db,
        &w.clock,
        w.tenant,
        &w.wallet(),
        &ledger::WalletOptions {
            allow_overage: None,
            low_balance_threshold: Some(Some(d("100"))),
            // Usage-% alerts (on by default) are another test's subject.
            usage_alert_percents: Some(Some(vec![])),
        },
    )
    .await
    .unwrap();
    w.grant("150").await;
    for amount in ["20", "40", "10", "10"] {
        w.consume(amount).await; // 130, 90 (crosses), 80, 70
    }
    w.grant("100").await; // 170: back above, re-armed
    w.consume("80").await; // 90: crosses again
    w.consume("90").await; // 0: depleted
    let (addr, inbox) = smtp_server().await;
    let mailer = mailer(addr);
    dispatch(&w.t.db, &w.clock, 100).await.unwrap();
    let report = email::send_due(&w.t.db, &w.clock, &mailer, 100)
        .await
        .unwrap();
    assert_eq!(report.sent, 3);
    // Nothing more to send, however often it runs.
    assert_eq!(dispatch(&w.t.db, &w.clock, 100).await.unwrap(), 0);
    assert_eq!(
        email::send_due(&w.t.db, &w.clock, &mailer, 100)
            .await
            .unwrap()
            .sent,
        0
    );

    let mails = inbox.lock().unwrap().clone();
    assert_eq!(mails.len(), 3);
    for m in &mails {
        assert_eq!(m.rcpt, vec!["billing@acme.test".to_owned()]);
    }
    let subject = |m: &Received| {
        m.data
            .lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(
        subject(&mails[0]),
        "Low balance: 90 tokens left in AI tokens"
    );
    assert_eq!(
        subject(&mails[1]),
        "Low balance: 90 tokens left in AI tokens"
    );
    assert_eq!(subject(&mails[2]), "Your tokens are used up");
    // The body is quoted-printable: undo its soft line breaks.
    let body = mails[0].data.replace("=\n", "");
    assert!(
        body.contains("below your alert level of 100 tokens"),
        "{body}"
    );

    let listed = email::list(
        &w.t.db,
        w.tenant,
        Some("SENT"),
        service::pagination::PageRequest::new(Some(10), None).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(listed.items.len(), 3);
}

#[tokio::test]
async fn a_refused_address_is_not_retried() {
    let w = World::new("bounce@acme.test").await;
    w.grant("10").await;
    w.consume("10").await; // depleted
    let (addr, inbox) = smtp_server().await;
    let mailer = mailer(addr);
    dispatch(&w.t.db, &w.clock, 100).await.unwrap();
    let report = email::send_due(&w.t.db, &w.clock, &mailer, 100)
        .await
        .unwrap();
    assert_eq!((report.sent, report.failed), (0, 1));
    w.clock.advance(Duration::days(2));
    let report = email::send_due(&w.t.db, &w.clock, &mailer, 100)
        .await
        .unwrap();
    assert_eq!((report.sent, report.failed, report.retrying), (0, 0, 0));
    assert!(inbox.lock().unwrap().is_empty());
    let failed = email::list(
        &w.t.db,
        w.tenant,
        Some("FAILED"),
        service::pagination::PageRequest::new(Some(10), None).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(failed.items.len(), 1);
    assert!(
        failed.items[0]
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("550")
    );
}

// ---------------------------------------------------------------- webhooks

#[derive(Debug, Clone)]
struct Hit {
    headers: HeaderMap,
    body: String,
}

/// An HTTP receiver answering, call by call, from `script` (then 200).
/// `"timeout"` sleeps past the client's timeout.
async fn receiver(script: Vec<&'static str>) -> (String, Arc<Mutex<Vec<Hit>>>) {
    let hits = Arc::new(Mutex::new(Vec::<Hit>::new()));
    let script = Arc::new(script);
    let state = hits.clone();
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
                        body: String::from_utf8_lossy(&body).into_owned(),
                    });
                    h.len() - 1
                };
                match script.get(n).copied().unwrap_or("200") {
                    "500" => (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
                    "400" => (StatusCode::BAD_REQUEST, "bad").into_response(),
                    "429" => (
                        StatusCode::TOO_MANY_REQUESTS,
                        [("Retry-After", "7200")],
                        "slow down",
                    )
                        .into_response(),
                    "timeout" => {
                        tokio::time::sleep(StdDuration::from_secs(3)).await;
                        (StatusCode::OK, "late").into_response()
                    }
                    _ => (StatusCode::OK, "thanks").into_response(),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(axum::serve(listener, app).into_future());
    (format!("http://{addr}/hook"), hits)
}

/// What a receiver does with the documented (Standard Webhooks) headers,
/// computed here without the engine's code: HMAC-SHA256 over
/// "<webhook-id>.<webhook-timestamp>.<raw body>" under the base64 key after
/// `whsec_`, compared to one of the `v1,<base64>` signatures.
/// (`tests/standard_webhooks.rs` checks the same with the reference library.)
fn receiver_accepts(secret: &str, hit: &Hit, now: i64) -> bool {
    let header = |name: &str| {
        hit.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (id, ts) = (header("webhook-id"), header("webhook-timestamp"));
    let Ok(ts_num) = ts.parse::<i64>() else {
        return false;
    };
    if id.is_empty() || (now - ts_num).abs() > 300 {
        return false;
    }
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.{}", hit.body).as_bytes());
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    header("webhook-signature")
        .split(' ')
        .any(|given| given == expected)
}

#[tokio::test]
async fn webhooks_retry_500_timeout_and_429_then_deliver_signed() {
    let w = World::new("billing@acme.test").await;
    let (url, hits) = receiver(vec!["500", "timeout", "429"]).await;
    let endpoint = webhooks::create_endpoint(
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
    w.grant("10").await;
    w.consume("1").await; // credits.consumed: not subscribed
    let http =
        HttpTransport::new(StdDuration::from_millis(500), TargetPolicy::AllowPrivate).unwrap();
    dispatch(&w.t.db, &w.clock, 100).await.unwrap();
    let mut statuses = Vec::new();
    for (advance, _) in [(0, "500"), (2, "timeout"), (10, "429"), (180, "200")] {
        w.clock.advance(Duration::minutes(advance));
        let report = webhooks::deliver_due(&w.t.db, &w.clock, &http, 100)
            .await
            .unwrap();
        assert_eq!(report.attempted, 1, "one attempt due after +{advance} min");
        statuses.push(report.delivered);
        // Not due again until its next attempt.
        assert_eq!(
            webhooks::deliver_due(&w.t.db, &w.clock, &http, 100)
                .await
                .unwrap()
                .attempted,
            0
        );
    }
    assert_eq!(statuses, vec![0, 0, 0, 1]);
    let hits = hits.lock().unwrap().clone();
    assert_eq!(hits.len(), 4);
    let body: serde_json::Value = serde_json::from_str(&hits[3].body).unwrap();
    assert_eq!(body["type"], "credits.granted");
    assert_eq!(body["data"]["amount"], "10");
    assert_eq!(
        body["tenant"],
        service::ids::encode(service::ids::Kind::Tenant, w.tenant)
    );
    assert_eq!(body["data"]["customer"]["externalId"], "acme");
    assert_eq!(body["data"]["creditSystem"]["key"], "tokens");
    // Every attempt carries the same event id, and the last one verifies.
    let ids: Vec<_> = hits
        .iter()
        .map(|h| h.headers["webhook-id"].clone())
        .collect();
    assert!(ids.windows(2).all(|p| p[0] == p[1]));
    assert!(receiver_accepts(
        &endpoint.secret,
        &hits[3],
        w.clock.now().timestamp()
    ));
    assert!(!receiver_accepts(
        "whsec_d3Jvbmc=",
        &hits[3],
        w.clock.now().timestamp()
    ));

    let page = service::pagination::PageRequest::new(Some(10), None).unwrap();
    let deliveries =
        webhooks::list_deliveries(&w.t.db, w.tenant, Some(endpoint.endpoint.id), None, page)
            .await
            .unwrap();
    assert_eq!(deliveries.items.len(), 1);
    assert_eq!(deliveries.items[0].status, "DELIVERED");
    let attempts = webhooks::attempts_of(&w.t.db, w.tenant, &[deliveries.items[0].id])
        .await
        .unwrap();
    let logged: Vec<_> = attempts
        .iter()
        .map(|(_, a)| (a.status_code, a.error.clone()))
        .collect();
    assert_eq!(
        logged,
        vec![
            (Some(500), None),
            (None, Some("timeout".into())),
            (Some(429), None),
            (Some(200), None)
        ]
    );
    assert_eq!(attempts[3].1.response_snippet, "thanks");
}

/// SSRF at delivery (issue 15, item 2): a name accepted at registration
/// (it did not resolve then) that resolves to 127.0.0.1 at delivery time
/// is refused on the address the transport would connect to; the receiver
/// gets nothing and the attempt says why without an address. With the
/// development setting the same kind of target is delivered.
#[tokio::test]
async fn a_name_resolving_to_loopback_at_delivery_is_refused_unless_private_is_allowed() {
    let w = World::new("billing@acme.test").await;
    let (url, hits) = receiver(vec![]).await;
    let port = url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches("/hook")
        .to_owned();
    let name = "hooks.rebind.test";
    let hosts = vec![(name.to_owned(), "127.0.0.1".parse().unwrap())];
    // Registered under the default policy: the name does not resolve yet.
    let endpoint = webhooks::create_endpoint(
        &w.t.db,
        &w.clock,
        TargetPolicy::PublicOnly,
        w.tenant,
        &format!("https://{name}:{port}/hook"),
        &["credits.granted".into()],
        "",
    )
    .await
    .unwrap();
    w.grant("1").await;
    dispatch(&w.t.db, &w.clock, 100).await.unwrap();
    let public = HttpTransport::with_hosts(
        StdDuration::from_secs(2),
        TargetPolicy::PublicOnly,
        hosts.clone(),
    )
    .unwrap();
    let report = webhooks::deliver_due(&w.t.db, &w.clock, &public, 100)
        .await
        .unwrap();
    assert_eq!((report.attempted, report.delivered), (1, 0));
    assert!(
        hits.lock().unwrap().is_empty(),
        "nothing reached the receiver"
    );
    let page = service::pagination::PageRequest::new(Some(10), None).unwrap();
    let deliveries =
        webhooks::list_deliveries(&w.t.db, w.tenant, Some(endpoint.endpoint.id), None, page)
            .await
            .unwrap();
    let attempts = webhooks::attempts_of(&w.t.db, w.tenant, &[deliveries.items[0].id])
        .await
        .unwrap();
    let error = attempts[0].1.error.clone().unwrap();
    assert_eq!(error, "refused: the target is not a public address");

    // The development setting: the same name over http:// is delivered.
    let (url, hits) = receiver(vec![]).await;
    let port = url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches("/hook")
        .to_owned();
    let dev_url = format!("http://{name}:{port}/hook");
    assert!(
        webhooks::update_endpoint(
            &w.t.db,
            &w.clock,
            TargetPolicy::PublicOnly,
            w.tenant,
            endpoint.endpoint.id,
            &webhooks::EndpointPatch {
                url: Some(dev_url.clone()),
                ..Default::default()
            },
        )
        .await
        .is_err(),
        "http:// refused by default"
    );
    webhooks::update_endpoint(
        &w.t.db,
        &w.clock,
        TargetPolicy::AllowPrivate,
        w.tenant,
        endpoint.endpoint.id,
        &webhooks::EndpointPatch {
            url: Some(dev_url),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let dev =
        HttpTransport::with_hosts(StdDuration::from_secs(2), TargetPolicy::AllowPrivate, hosts)
            .unwrap();
    w.clock.advance(Duration::days(1));
    let report = webhooks::deliver_due(&w.t.db, &w.clock, &dev, 100)
        .await
        .unwrap();
    assert_eq!((report.attempted, report.delivered), (1, 1));
    assert_eq!(hits.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_400_stops_retries_and_repeated_failures_disable_the_endpoint() {
    let w = World::new("billing@acme.test").await;
    tenants::set_admin_email(&w.t.db, w.tenant, Some("admin@acme.test"))
        .await
        .unwrap();
    let (url, hits) = receiver(vec!["400", "400", "400"]).await;
    let endpoint = webhooks::create_endpoint(
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
    let http = HttpTransport::new(StdDuration::from_secs(2), TargetPolicy::AllowPrivate).unwrap();
    for _ in 0..webhooks::DISABLE_AFTER {
        w.grant("1").await;
    }
    dispatch(&w.t.db, &w.clock, 100).await.unwrap();
    let report = webhooks::deliver_due(&w.t.db, &w.clock, &http, 100)
        .await
        .unwrap();
    assert_eq!((report.attempted, report.failed), (3, 3));
    w.clock.advance(Duration::days(3));
    assert_eq!(
        webhooks::deliver_due(&w.t.db, &w.clock, &http, 100)
            .await
            .unwrap()
            .attempted,
        0,
        "no retry after 400"
    );
    assert_eq!(hits.lock().unwrap().len(), 3);
    let page = service::pagination::PageRequest::new(Some(10), None).unwrap();
    let endpoints = webhooks::list_endpoints(&w.t.db, w.tenant, page)
        .await
        .unwrap();
    assert!(
        !endpoints.items[0].enabled,
        "disabled after {} failures",
        webhooks::DISABLE_AFTER
    );
    // The admin was told, and new events no longer go to it.
    let mails = email::list(&w.t.db, w.tenant, None, page).await.unwrap();
    assert!(
        mails
            .items
            .iter()
            .any(|m| m.kind == "endpoint_disabled" && m.to == "admin@acme.test")
    );
    w.grant("1").await;
    dispatch(&w.t.db, &w.clock, 100).await.unwrap();
    assert_eq!(
        webhooks::deliver_due(&w.t.db, &w.clock, &http, 100)
            .await
            .unwrap()
            .attempted,
        0
    );
    // Re-enabled and redelivered: it goes out again.
    webhooks::update_endpoint(
        &w.t.db,
        &w.clock,
        TargetPolicy::AllowPrivate,
        w.tenant,
        endpoint.endpoint.id,
        &webhooks::EndpointPatch {
            enabled: Some(true),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let first = webhooks::list_deliveries(&w.t.db, w.tenant, None, None, page)
        .await
        .unwrap()
        .items;
    webhooks::redeliver(&w.t.db, &w.clock, w.tenant, first.last().unwrap().id)
        .await
        .unwrap();
    let report = webhooks::deliver_due(&w.t.db, &w.clock, &http, 100)
        .await
        .unwrap();
    assert_eq!((report.attempted, report.delivered), (1, 1));
}

#[tokio::test]
async fn the_credit_systems_default_threshold_applies_without_a_wallet_setting() {
    let w = World::new("billing@acme.test").await;
    credit_systems::update(
        &w.t.db,
        &w.clock,
        w.tenant,
        &CreditSystemRef::Key("tokens".into()),
        &credit_systems::CreditSystemPatch {
            low_balance_threshold: Some(Some(d("50"))),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    w.grant("100").await;
    w.consume("60").await;
    let (addr, inbox) = smtp_server().await;
    dispatch(&w.t.db, &w.clock, 100).await.unwrap();
    email::send_due(&w.t.db, &w.clock, &mailer(addr), 100)
        .await
        .unwrap();
    let mails = inbox.lock().unwrap().clone();
    assert_eq!(mails.len(), 1);
    assert!(
        mails[0]
            .data
            .contains("Subject: Low balance: 40 tokens left in AI tokens"),
        "{}",
        mails[0].data
    );
}
