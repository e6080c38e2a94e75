//! Notifications keep up with the ledger: a backlog drains in one run,
//! a commit wakes the dispatcher at once (PostgreSQL: LISTEN/NOTIFY;
//! SQLite: in process), a slow endpoint holds up no other, and events no
//! one wants cost no delivery rows. Real HTTP receivers on 127.0.0.1:0.

use std::{
    str::FromStr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{Router, routing::post};
use chrono::{TimeZone, Utc};
use rust_decimal::Decimal;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use service::ids::WalletId;
use service::{
    Clock, FixedClock,
    credit_systems::{self, CreditSystemRef, Kind, NewCreditSystem},
    customers::{self, CustomerRef, NewCustomer},
    ledger::{self, Category, WalletRef},
    notifications::webhooks,
    outbox::{self, EventType},
    tenants,
    testing::TestDb,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use worker::{JobContext, MailConfig, WorkerConfig};

fn config() -> WorkerConfig {
    WorkerConfig {
        mail: MailConfig {
            smtp_url: None,
            mail_from: "credits@localhost".into(),
            mail_dir: std::env::temp_dir().join(format!("credits-mail-{}", std::process::id())),
        },
        webhooks: worker::WebhookConfig::allow_private(),
        job_lease_seconds: 60,
    }
}

struct World {
    t: TestDb,
    clock: Arc<FixedClock>,
    tenant: Uuid,
    wallet_id: Uuid,
    n: std::sync::atomic::AtomicU64,
}

impl World {
    async fn new() -> Self {
        let t = TestDb::new().await;
        let clock = Arc::new(FixedClock::new(
            Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap(),
        ));
        let tenant = tenants::create(&t.db, clock.as_ref(), "acme")
            .await
            .unwrap()
            .id;
        credit_systems::create(
            &t.db,
            clock.as_ref(),
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
            clock.as_ref(),
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
        let mut w = Self {
            t,
            clock,
            tenant,
            wallet_id: Uuid::nil(),
            n: Default::default(),
        };
        w.grant().await;
        w.wallet_id = entity::wallet::Entity::find()
            .one(w.t.db.reader())
            .await
            .unwrap()
            .unwrap()
            .id;
        w
    }

    async fn grant(&self) {
        let key = format!(
            "k{}",
            self.n.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        ledger::grant(
            &self.t.db,
            self.clock.as_ref(),
            self.tenant,
            &ledger::GrantInput {
                wallet: WalletRef {
                    customer: CustomerRef::ExternalId("acme".into()),
                    credit_system: CreditSystemRef::Key("tokens".into()),
                },
                amount: Decimal::from_str("10").unwrap(),
                category: Category::Purchased,
                effective_at: None,
                expires_at: None,
                priority: None,
                cost_basis: None,
                reason: "test".into(),
                metadata: None,
                idempotency_key: key,
            },
        )
        .await
        .unwrap();
    }

    async fn endpoint(&self, url: &str, events: &[&str]) -> service::ids::WebhookEndpointId {
        let events: Vec<String> = events.iter().map(|e| (*e).to_owned()).collect();
        webhooks::create_endpoint(
            &self.t.db,
            self.clock.as_ref(),
            service::notifications::TargetPolicy::AllowPrivate,
            self.tenant,
            url,
            &events,
            "",
        )
        .await
        .unwrap()
        .endpoint
        .id
    }

    fn ctx(&self) -> JobContext {
        JobContext::new(self.t.db.clone(), self.clock.clone(), &config()).unwrap()
    }

    /// Starts the whole worker (cron, queue, wake-ups) on this database.
    fn start_worker(&self) -> CancellationToken {
        let shutdown = CancellationToken::new();
        tokio::spawn(worker::run(
            self.t.db.clone(),
            self.clock.clone(),
            config(),
            shutdown.clone(),
        ));
        shutdown
    }

    async fn undispatched(&self) -> u64 {
        entity::outbox_event::Entity::find()
            .filter(entity::outbox_event::Column::DispatchedAt.is_null())
            .count(self.t.db.reader())
            .await
            .unwrap()
    }

    async fn delivery_rows(&self) -> (u64, u64) {
        let hooks = entity::webhook_delivery::Entity::find()
            .count(self.t.db.reader())
            .await
            .unwrap();
        let mails = entity::email_delivery::Entity::find()
            .count(self.t.db.reader())
            .await
            .unwrap();
        (hooks, mails)
    }

    /// `n` outbox events shaped like a consumption's, written as the
    /// ledger writes them (in chunks, in one transaction), plus
    /// `granted` `credits.granted` ones.
    async fn backlog(&self, consumed: usize, granted: usize) {
        let now = self.clock.now();
        let mut events = Vec::new();
        for i in 0..consumed {
            events.push(outbox::event(
                self.tenant,
                EventType::CreditsConsumed,
                Some(WalletId::from_uuid(self.wallet_id)),
                serde_json::json!({
                    "walletId": self.wallet_id,
                    "amount": "1",
                    "balanceAfter": (100_000 - i).to_string(),
                    "idempotencyKey": format!("c{i}"),
                }),
                now,
            ));
        }
        for i in 0..granted {
            events.push(outbox::event(
                self.tenant,
                EventType::CreditsGranted,
                Some(WalletId::from_uuid(self.wallet_id)),
                serde_json::json!({"walletId": self.wallet_id, "amount": "1", "n": i}),
                now,
            ));
        }
        let txn = self.t.db.begin_write().await.unwrap();
        outbox::write(&txn, events).await.unwrap();
        txn.commit().await.unwrap();
    }
}

/// A receiver that answers 200 after `delay`, recording when each POST
/// arrived.
async fn receiver(delay: Duration) -> (String, Arc<Mutex<Vec<Instant>>>) {
    let hits = Arc::new(Mutex::new(Vec::new()));
    let state = hits.clone();
    let app = Router::new().route(
        "/hook",
        post(move || {
            let hits = state.clone();
            async move {
                hits.lock().unwrap().push(Instant::now());
                tokio::time::sleep(delay).await;
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(axum::serve(listener, app).into_future());
    (format!("http://{addr}/hook"), hits)
}

async fn wait_for(hits: &Mutex<Vec<Instant>>, n: usize, within: Duration) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if hits.lock().unwrap().len() >= n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    hits.lock().unwrap().len() >= n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_of_5000_events_drains_in_one_run_and_unwanted_ones_cost_no_rows() {
    let w = World::new().await;
    let (url, hits) = receiver(Duration::ZERO).await;
    w.endpoint(&url, &["credits.granted"]).await;
    // The first grant's event goes too.
    w.backlog(4_900, 99).await;
    assert_eq!(w.undispatched().await, 5_000);
    let ctx = w.ctx();

    let started = Instant::now();
    let dispatched = worker::jobs::dispatch_all(&ctx).await.unwrap();
    let dispatch_secs = started.elapsed().as_secs_f64();
    assert_eq!(dispatched, 5_000);
    assert_eq!(w.undispatched().await, 0, "one run drains the backlog");
    // Nobody wants credits.consumed (the endpoint names only
    // credits.granted, and no email follows one): no rows for them.
    assert_eq!(w.delivery_rows().await, (100, 0));

    let started = Instant::now();
    let sent = worker::jobs::send_all(&ctx).await.unwrap();
    let send_secs = started.elapsed().as_secs_f64();
    assert_eq!(sent, 100);
    assert_eq!(hits.lock().unwrap().len(), 100);
    eprintln!(
        "{}: dispatched 5000 events in {dispatch_secs:.3} s ({:.0} events/s); sent 100 webhooks in {send_secs:.3} s",
        if w.t.is_postgres() {
            "PostgreSQL"
        } else {
            "SQLite"
        },
        5_000.0 / dispatch_secs
    );
    // A liveness bound, not a benchmark (debug build, shared machine).
    assert!(dispatch_secs < 20.0, "{dispatch_secs} s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_posts_a_committed_event_well_within_the_tick() {
    let w = World::new().await;
    let (url, hits) = receiver(Duration::ZERO).await;
    w.endpoint(&url, &["credits.granted"]).await;
    let shutdown = w.start_worker();
    // Started, caught up (the first grant's event), listening.
    assert!(wait_for(&hits, 1, Duration::from_secs(10)).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut latencies = Vec::new();
    for i in 0..5 {
        w.grant().await;
        let committed = Instant::now();
        assert!(
            wait_for(&hits, 2 + i, Duration::from_secs(5)).await,
            "delivered"
        );
        let at = hits.lock().unwrap()[1 + i];
        latencies.push(at.duration_since(committed));
        // Idle again before the next one.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    shutdown.cancel();
    latencies.sort();
    eprintln!(
        "{}: commit → webhook POST, idle: p50 {:?}, max {:?}",
        if w.t.is_postgres() {
            "PostgreSQL"
        } else {
            "SQLite"
        },
        latencies[2],
        latencies[4]
    );
    // The cron tick is every 5 s: a wake-up comes well before it.
    assert!(latencies[2] < Duration::from_secs(1), "{latencies:?}");
    assert!(latencies[4] < Duration::from_secs(2), "{latencies:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_endpoint_never_delays_a_fast_one() {
    let w = World::new().await;
    let (slow_url, slow) = receiver(Duration::from_secs(30)).await;
    let (fast_url, fast) = receiver(Duration::ZERO).await;
    w.endpoint(&slow_url, &["credits.granted"]).await;
    w.endpoint(&fast_url, &["credits.granted"]).await;
    let shutdown = w.start_worker();
    // The first grant, then more than the slow endpoint's slots hold.
    for _ in 0..9 {
        w.grant().await;
    }
    let started = Instant::now();
    assert!(
        wait_for(&fast, 10, Duration::from_secs(3)).await,
        "the fast endpoint got {} of 10 in {:?}",
        fast.lock().unwrap().len(),
        started.elapsed()
    );
    // The slow one has its slots full, no more.
    assert_eq!(
        slow.lock().unwrap().len(),
        webhooks::IN_FLIGHT_PER_ENDPOINT_MAX
    );
    // While those hang, new events still reach the fast one at once.
    tokio::time::sleep(Duration::from_millis(200)).await;
    w.grant().await;
    let committed = Instant::now();
    assert!(wait_for(&fast, 11, Duration::from_secs(2)).await);
    eprintln!(
        "fast endpoint, slow one hanging: commit → POST {:?}",
        fast.lock().unwrap()[10].duration_since(committed)
    );
    assert_eq!(
        slow.lock().unwrap().len(),
        webhooks::IN_FLIGHT_PER_ENDPOINT_MAX
    );
    shutdown.cancel();
}
