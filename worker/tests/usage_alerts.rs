//! Receipts and usage-% alerts against real peers: an SMTP server and an
//! HTTP webhook receiver, both on 127.0.0.1:0 in this test, spoken to by
//! the worker's real transports (lettre, reqwest). The same tests run on
//! SQLite and, with TEST_DATABASE_URL, PostgreSQL.

use std::{
    net::SocketAddr,
    str::FromStr,
    sync::{Arc, Mutex},
    time::Duration as StdDuration,
};

use axum::{Router, body::Bytes, routing::post};
use chrono::{Duration, TimeZone, Utc};
use rust_decimal::Decimal;
use service::{
    Code, DomainError, FixedClock, allowances,
    catalog::{
        self, Allowance, BillingInterval, Commitment, PlanCreditTerms, PlanPricing, Ref, Rollover,
    },
    credit_systems::{self, CreditSystemRef, Kind, NewCreditSystem},
    customers::{self, CustomerRef, NewCustomer},
    ledger::{self, Attribution, WalletRef},
    notifications::{TargetPolicy, dispatch, email, usage, webhooks},
    periods::Interval,
    pricing::{Price, PriceModel, PricingType, Tier},
    purchases, subscriptions, tenants,
    testing::TestDb,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use uuid::Uuid;
use worker::{
    MailConfig,
    transports::{HttpTransport, LettreMailer},
};

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

// ---------------------------------------------------------------- peers

/// One message the SMTP server took: its recipients and its DATA.
#[derive(Debug, Clone)]
struct Mail {
    rcpt: Vec<String>,
    data: String,
}

impl Mail {
    /// The Subject header, unfolded (a long one spans several lines).
    fn subject(&self) -> String {
        let mut lines = self
            .data
            .lines()
            .skip_while(|l| !l.starts_with("Subject: "));
        let mut subject = lines
            .next()
            .and_then(|l| l.strip_prefix("Subject: "))
            .unwrap_or_default()
            .to_owned();
        for l in lines.take_while(|l| l.starts_with([' ', '\t'])) {
            subject.push_str(l);
        }
        subject
    }

    /// The text, with quoted-printable soft line breaks and `=3D` undone.
    fn text(&self) -> String {
        self.data.replace("=\n", "").replace("=3D", "=")
    }
}

/// A small SMTP server: enough of RFC 5321 for a client to deliver mail.
async fn smtp_server() -> (SocketAddr, Arc<Mutex<Vec<Mail>>>) {
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
                        rcpt.push(line[8..].trim().trim_matches(['<', '>']).to_owned());
                        b"250 OK\r\n"
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
                        store.lock().unwrap().push(Mail {
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

/// An HTTP receiver answering 200 and keeping every body.
async fn receiver() -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let hits = Arc::new(Mutex::new(Vec::new()));
    let state = hits.clone();
    let app = Router::new().route(
        "/hook",
        post(move |body: Bytes| {
            let hits = state.clone();
            async move {
                hits.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null));
                "thanks"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(axum::serve(listener, app).into_future());
    (format!("http://{addr}/hook"), hits)
}

// ---------------------------------------------------------------- world

struct World {
    t: TestDb,
    clock: FixedClock,
    tenant: Uuid,
    n: std::sync::atomic::AtomicU64,
    mailer: LettreMailer,
    inbox: Arc<Mutex<Vec<Mail>>>,
    http: HttpTransport,
    hooks: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl World {
    /// A tenant selling "AI tokens" through plan `pro`: 1,000 included a
    /// month, top-ups at 0.80 ARS each plus 21 % tax; `plan_percents` are
    /// the plan credit's usage-alert thresholds. A webhook endpoint takes
    /// usage alerts and payments.
    async fn new(plan_percents: Option<Vec<Decimal>>) -> Self {
        let t = TestDb::new().await;
        let clock = FixedClock::new(Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap());
        let tenant = tenants::create(&t.db, &clock, "acme").await.unwrap().id;
        let (db, c) = (&t.db, &clock);
        credit_systems::create(
            db,
            c,
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
        catalog::create_product(db, c, tenant, "p", "Product", "")
            .await
            .unwrap();
        catalog::create_plan(
            db,
            c,
            tenant,
            &Ref::Key("p".into()),
            "pro",
            "Pro",
            BillingInterval::Monthly,
        )
        .await
        .unwrap();
        catalog::attach_credit_system(
            db,
            c,
            tenant,
            &Ref::Key("pro".into()),
            &CreditSystemRef::Key("tokens".into()),
            &PlanCreditTerms {
                included: Some(Allowance {
                    amount: d("1000"),
                    reset_interval: Interval::Monthly,
                    rollover: Rollover::None,
                }),
                pricing: Some(PlanPricing {
                    commitment: Commitment::PayAsYouGo,
                    top_up_price: Some(Price {
                        pricing_type: PricingType::Volume,
                        model: PriceModel::PerUnit,
                        tiers: vec![Tier {
                            first_unit: d("0"),
                            last_unit: None,
                            amount: d("0.80"),
                            base: None,
                        }],
                        currency: "ARS".into(),
                        tax_rate: d("0.21"),
                    }),
                    recurring: None,
                    min_quantity: None,
                    max_quantity: None,
                    expiration: None,
                    low_credit_limit: None,
                    mandatory_purchase: false,
                    auto_top_up: None,
                }),
                usage_alert_percents: plan_percents,
            },
        )
        .await
        .unwrap();
        catalog::publish_plan(db, c, tenant, &Ref::Key("pro".into()))
            .await
            .unwrap();
        let (url, hooks) = receiver().await;
        webhooks::create_endpoint(
            db,
            c,
            TargetPolicy::AllowPrivate,
            tenant,
            &url,
            &["wallet.usage_threshold_crossed".into(), "topup.paid".into()],
            "ops",
        )
        .await
        .unwrap();
        let (addr, inbox) = smtp_server().await;
        let mailer = LettreMailer::from_config(&MailConfig {
            smtp_url: Some(format!("smtp://{addr}")),
            mail_from: "Credits <credits@test.local>".into(),
            mail_dir: "unused".into(),
        })
        .unwrap();
        let http =
            HttpTransport::new(StdDuration::from_secs(5), TargetPolicy::AllowPrivate).unwrap();
        Self {
            t,
            clock,
            tenant,
            n: Default::default(),
            mailer,
            inbox,
            http,
            hooks,
        }
    }

    fn key(&self) -> String {
        format!(
            "k{}",
            self.n.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        )
    }

    /// A customer (`email` may be none) subscribed to `pro`: its wallet
    /// holds this month's 1,000 tokens.
    async fn customer(&self, external_id: &str, email: Option<&str>) {
        customers::create(
            &self.t.db,
            &self.clock,
            self.tenant,
            &NewCustomer {
                external_id: external_id.into(),
                name: format!("Customer {external_id}"),
                email: email.map(Into::into),
                metadata: None,
                parent: None,
            },
        )
        .await
        .unwrap();
        subscriptions::subscribe(
            &self.t.db,
            &self.clock,
            self.tenant,
            &subscriptions::SubscribeInput {
                customer: CustomerRef::ExternalId(external_id.into()),
                plan: Ref::Key("pro".into()),
                start_at: None,
                idempotency_key: self.key(),
            },
        )
        .await
        .unwrap();
    }

    fn wallet(&self, external_id: &str) -> WalletRef {
        WalletRef {
            customer: CustomerRef::ExternalId(external_id.into()),
            credit_system: CreditSystemRef::Key("tokens".into()),
        }
    }

    async fn consume(&self, external_id: &str, amount: &str) {
        ledger::consume(
            &self.t.db,
            &self.clock,
            self.tenant,
            &ledger::ConsumeInput {
                wallet: self.wallet(external_id),
                amount: d(amount),
                attribution: Attribution::default(),
                idempotency_key: self.key(),
            },
        )
        .await
        .unwrap();
    }

    async fn configure(
        &self,
        external_id: &str,
        percents: Option<Vec<Decimal>>,
    ) -> Result<ledger::Wallet, ledger::Error> {
        ledger::configure_wallet(
            &self.t.db,
            &self.clock,
            self.tenant,
            &self.wallet(external_id),
            &ledger::WalletOptions {
                usage_alert_percents: Some(percents),
                ..Default::default()
            },
        )
        .await
    }

    /// Dispatches until the outbox is empty (a crossing found after one
    /// dispatch is an event for the next), then sends every email and
    /// webhook due; answers the usage alerts that reached the receiver
    /// since the last call, as (customer external id, threshold).
    async fn deliver(&self) -> Vec<(String, String)> {
        let before = self.hooks.lock().unwrap().len();
        for _ in 0..10 {
            if dispatch(&self.t.db, &self.clock, 100).await.unwrap() == 0 {
                break;
            }
        }
        email::send_due(&self.t.db, &self.clock, &self.mailer, 100)
            .await
            .unwrap();
        webhooks::deliver_due(&self.t.db, &self.clock, &self.http, 100)
            .await
            .unwrap();
        self.hooks.lock().unwrap()[before..]
            .iter()
            .filter(|h| h["type"] == "wallet.usage_threshold_crossed")
            .map(|h| {
                (
                    h["data"]["customer"]["externalId"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    h["data"]["threshold"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect()
    }

    fn mails(&self) -> Vec<Mail> {
        self.inbox.lock().unwrap().clone()
    }

    fn usage_mails(&self) -> Vec<Mail> {
        self.mails()
            .into_iter()
            .filter(|m| m.subject().starts_with("You have used"))
            .collect()
    }
}

fn alerts(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(c, t)| (c.to_string(), t.to_string()))
        .collect()
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn a_paid_order_sends_a_receipt_with_order_quantity_tax_total_and_payment() {
    let w = World::new(None).await;
    w.customer("org", Some("billing@org.test")).await;
    w.customer("quiet", None).await;
    w.deliver().await;
    let mut orders = Vec::new();
    for c in ["org", "quiet"] {
        orders.push(
            purchases::purchase(
                &w.t.db,
                &w.clock,
                w.tenant,
                &CustomerRef::ExternalId(c.into()),
                &CreditSystemRef::Key("tokens".into()),
                d("10000"),
                &w.key(),
            )
            .await
            .unwrap(),
        );
    }
    // Pending: no receipt yet.
    w.deliver().await;
    assert!(w.mails().is_empty(), "{:?}", w.mails());
    for (c, order) in ["org", "quiet"].into_iter().zip(&orders) {
        purchases::confirm_payment(
            &w.t.db,
            &w.clock,
            w.tenant,
            order.id,
            "mercadopago",
            &format!("mp-{c}-123"),
            None,
        )
        .await
        .unwrap();
    }
    w.deliver().await;
    // A receipt for the customer with an address; none for the other.
    let mails = w.mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    let m = &mails[0];
    assert_eq!(m.rcpt, vec!["billing@org.test".to_owned()]);
    let order_id = orders[0].id.to_string();
    assert_eq!(
        m.subject(),
        format!("Your receipt for 10000 tokens of AI tokens ({order_id})")
    );
    let text = m.text();
    for line in [
        format!("Order:        {order_id}"),
        "Credits:      10000 tokens of AI tokens".into(),
        "Unit price:   0.80 ARS per token".into(),
        "Subtotal:     8000.00 ARS".into(),
        "Tax:          1680.00 ARS".into(),
        "Total:        9680.00 ARS".into(),
        "Paid with:    mercadopago, payment mp-org-123".into(),
        "Paid at:      2026-03-01 09:00 UTC".into(),
    ] {
        assert!(text.contains(&line), "{line:?} in {text}");
    }
    let kinds: Vec<String> = email::list(
        &w.t.db,
        w.tenant,
        None,
        service::pagination::PageRequest::new(Some(10), None).unwrap(),
    )
    .await
    .unwrap()
    .items
    .into_iter()
    .map(|e| e.kind)
    .collect();
    assert_eq!(kinds, vec!["receipt".to_owned()]);
    // Both payments reached the webhook receiver all the same.
    let paid = w
        .hooks
        .lock()
        .unwrap()
        .iter()
        .filter(|h| h["type"] == "topup.paid")
        .count();
    assert_eq!(paid, 2);
    // Dispatching again sends nothing more.
    w.deliver().await;
    assert_eq!(w.mails().len(), 1);
}

#[tokio::test]
async fn usage_alerts_fire_once_per_threshold_and_rearm_with_a_new_period() {
    let w = World::new(None).await;
    w.customer("acme", Some("ops@acme.test")).await;
    ledger::configure_wallet(
        &w.t.db,
        &w.clock,
        w.tenant,
        &w.wallet("acme"),
        &ledger::WalletOptions {
            allow_overage: Some(true),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(w.deliver().await.is_empty());
    // 740, 760, 800, 950, 1000 used of 1,000.
    let mut told = Vec::new();
    for (amount, want) in [
        ("740", None),
        ("20", Some("75")),
        ("40", None),
        ("150", Some("90")),
        ("50", Some("100")),
    ] {
        w.consume("acme", amount).await;
        let got = w.deliver().await;
        assert_eq!(
            got,
            alerts(&want.map(|t| ("acme", t)).into_iter().collect::<Vec<_>>()),
            "after consuming {amount}"
        );
        told.extend(got);
    }
    assert_eq!(told.len(), 3);
    // More consumption (into overage) tells nothing again.
    w.consume("acme", "5").await;
    w.consume("acme", "5").await;
    assert!(w.deliver().await.is_empty());

    let hooks = w.hooks.lock().unwrap().clone();
    let last = hooks
        .iter()
        .rfind(|h| h["type"] == "wallet.usage_threshold_crossed")
        .unwrap();
    assert_eq!(last["data"]["threshold"], "100");
    assert_eq!(last["data"]["usagePercent"], "100");
    assert_eq!(last["data"]["used"], "1000");
    assert_eq!(last["data"]["granted"], "1000");
    let mails = w.usage_mails();
    let subjects: Vec<String> = mails.iter().map(Mail::subject).collect();
    assert_eq!(
        subjects,
        vec![
            "You have used 75 % of your AI tokens",
            "You have used 90 % of your AI tokens",
            "You have used 100 % of your AI tokens",
        ]
    );
    assert!(
        mails
            .iter()
            .all(|m| m.rcpt == vec!["ops@acme.test".to_owned()])
    );
    assert!(
        mails[1]
            .text()
            .contains("You have used 90 % of your AI tokens: 950 tokens of 1000 tokens (95 %)."),
        "{}",
        mails[1].text()
    );

    // A new period: the last period's grant expires, 1,000 more arrive
    // (the first 10 repay the overage): the alerts re-arm.
    w.clock.advance(Duration::days(31));
    allowances::reset_due(&w.t.db, &w.clock, 100).await.unwrap();
    assert!(w.deliver().await.is_empty());
    w.consume("acme", "700").await; // 710 of 1,000
    assert!(w.deliver().await.is_empty());
    w.consume("acme", "50").await; // 760
    assert_eq!(w.deliver().await, alerts(&[("acme", "75")]));
    assert_eq!(w.usage_mails().len(), 4);
}

#[tokio::test]
async fn a_wallets_own_thresholds_win_over_the_plans_and_an_empty_list_is_off() {
    // The plan says [60]; "fifty" sets [50] for itself, "off" sets [].
    let w = World::new(Some(vec![d("60")])).await;
    for c in ["plan", "fifty", "off"] {
        w.customer(c, Some(&format!("{c}@x.test"))).await;
    }
    let wallet = w.configure("fifty", Some(vec![d("50")])).await.unwrap();
    assert_eq!(wallet.usage_alert_percents().unwrap(), Some(vec![d("50")]));
    let wallet = w.configure("off", Some(vec![])).await.unwrap();
    assert_eq!(wallet.usage_alert_percents().unwrap(), Some(vec![]));
    w.deliver().await;
    for c in ["plan", "fifty", "off"] {
        w.consume(c, "550").await;
    }
    let mut got = w.deliver().await;
    got.sort();
    assert_eq!(got, alerts(&[("fifty", "50")]));
    for c in ["plan", "fifty", "off"] {
        w.consume(c, "450").await; // all of it
    }
    assert_eq!(w.deliver().await, alerts(&[("plan", "60")]));
    assert_eq!(w.usage_mails().len(), 2);
    // Clearing the wallet's own list brings back the plan's.
    let wallet = w.configure("off", None).await.unwrap();
    assert_eq!(wallet.usage_alert_percents().unwrap(), None);
}

/// Two dispatchers evaluating the same wallet at once (each after its own
/// batch) tell a crossing once: the alert state moves conditionally.
#[tokio::test]
async fn two_evaluations_at_once_tell_a_crossing_once() {
    let w = World::new(None).await;
    w.customer("acme", None).await;
    let wallet = w.configure("acme", None).await.unwrap();
    w.consume("acme", "800").await;
    let pair = [(w.tenant, wallet.id.uuid())];
    let (a, b) = tokio::join!(
        usage::evaluate(&w.t.db, &w.clock, &pair),
        usage::evaluate(&w.t.db, &w.clock, &pair)
    );
    assert_eq!(a.unwrap() + b.unwrap(), 1);
    // The dispatcher's own evaluation after the consumption finds it told.
    assert_eq!(w.deliver().await, alerts(&[("acme", "75")]));
    assert_eq!(usage::evaluate(&w.t.db, &w.clock, &pair).await.unwrap(), 0);
}

#[tokio::test]
async fn invalid_thresholds_are_refused_naming_the_field() {
    let w = World::new(None).await;
    w.customer("acme", None).await;
    for (bad, field) in [
        (vec![d("0")], "usageAlertPercents[0]"),
        (vec![d("50"), d("-5")], "usageAlertPercents[1]"),
        (vec![d("1000.5")], "usageAlertPercents[0]"),
        (vec![d("12.345")], "usageAlertPercents[0]"),
        (vec![d("1"); 11], "usageAlertPercents"),
    ] {
        let e = w.configure("acme", Some(bad.clone())).await.unwrap_err();
        assert_eq!(
            (e.code(), e.field()),
            (Code::Validation, Some(field)),
            "{bad:?}"
        );
    }
    // Nothing was stored.
    let wallet = w.configure("acme", None).await.unwrap();
    assert_eq!(wallet.usage_alert_percents().unwrap(), None);
    // The same bounds on a plan credit.
    catalog::create_plan(
        &w.t.db,
        &w.clock,
        w.tenant,
        &Ref::Key("p".into()),
        "draft",
        "Draft",
        BillingInterval::Monthly,
    )
    .await
    .unwrap();
    let e = catalog::attach_credit_system(
        &w.t.db,
        &w.clock,
        w.tenant,
        &Ref::Key("draft".into()),
        &CreditSystemRef::Key("tokens".into()),
        &PlanCreditTerms {
            included: Some(Allowance {
                amount: d("10"),
                reset_interval: Interval::Monthly,
                rollover: Rollover::None,
            }),
            pricing: None,
            usage_alert_percents: Some(vec![d("75"), d("2000")]),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(
        (e.code(), e.field()),
        (Code::Validation, Some("usageAlertPercents[1]"))
    );
}
