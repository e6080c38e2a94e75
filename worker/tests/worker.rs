//! The worker starts on a migrated database, prepares its job tables on the
//! same pool, refuses an unmigrated one, and stops when told. Cron ticks are
//! claimed once across replicas, queued in apalis' storage in the same
//! database, and run by the storage-backed workers.

use std::{str::FromStr, sync::Arc, time::Duration};

use chrono::{DateTime, TimeZone, Utc};
use rust_decimal::Decimal;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, Statement};
use service::{
    Clock, FixedClock,
    credit_systems::{self, CreditSystemRef, Kind, NewCreditSystem},
    customers::{self, CustomerRef, NewCustomer},
    db::{Db, DbConfig},
    jobs::Job,
    ledger::{self, Category, WalletRef},
    tenants,
    testing::TestDb,
};
use tokio_util::sync::CancellationToken;
use worker::{
    MailConfig, WorkerConfig,
    queue::{self, JobTick},
};

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

async fn job_table_exists(t: &TestDb) -> bool {
    let db = t.db.reader();
    let sql = if t.is_postgres() {
        "SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = 'apalis' AND table_name = 'jobs'"
    } else {
        "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'Jobs'"
    };
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap() == 1
}

#[tokio::test]
async fn prepare_refuses_an_unmigrated_database() {
    let t = TestDb::unmigrated().await;
    let err = worker::prepare(&t.db).await.unwrap_err();
    assert!(matches!(err, worker::Error::NotMigrated(_)), "{err}");
    assert!(err.to_string().contains("migration"));
}

#[tokio::test]
async fn prepare_creates_the_job_tables_idempotently() {
    let t = TestDb::new().await;
    assert!(!job_table_exists(&t).await);
    worker::prepare(&t.db).await.unwrap();
    worker::prepare(&t.db).await.unwrap();
    assert!(job_table_exists(&t).await);
}

#[tokio::test]
async fn run_stops_cleanly_when_cancelled() {
    let t = TestDb::new().await;
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(worker::run(
        t.db.clone(),
        std::sync::Arc::new(service::SystemClock),
        config(),
        shutdown.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!running.is_finished(), "the worker runs until told to stop");
    shutdown.cancel();
    let result = tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("stops within the shutdown timeout")
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
    // It ran every job once at start, and recorded the runs (notifications
    // are recorded only when they handle something).
    for job in [
        service::jobs::Job::AllowanceReset,
        service::jobs::Job::ExpirySweep,
    ] {
        let last = service::jobs::last_success(&t.db, job).await.unwrap();
        assert!(last.is_some(), "{job:?} ran");
    }
}

#[test]
fn mail_description_never_shows_a_password() {
    let mut mail = config().mail;
    mail.mail_dir = "mail".into();
    assert_eq!(mail.describe(), ".eml files under mail");
    mail.smtp_url = Some("smtps://user:secret@mail.example.com:465".into());
    assert_eq!(mail.describe(), "SMTP mail.example.com:465");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn each_cron_tick_is_claimed_by_one_replica() {
    use chrono::TimeZone;
    use service::jobs::{Job, claim_tick};
    let t = TestDb::new().await;
    let clock = service::SystemClock;
    let tick = chrono::Utc.with_ymd_and_hms(2026, 11, 22, 3, 0, 0).unwrap();
    // Three replicas fire the same tick at once.
    let claim = || claim_tick(&t.db, &clock, Job::AllowanceReset, tick);
    let (a, b, c) = tokio::join!(claim(), claim(), claim());
    let claims = [a.unwrap(), b.unwrap(), c.unwrap()];
    assert_eq!(claims.iter().filter(|c| **c).count(), 1, "{claims:?}");
    // Another job's same tick, and the next tick, are separate.
    assert!(
        claim_tick(&t.db, &clock, Job::ExpirySweep, tick)
            .await
            .unwrap()
    );
    let next = tick + chrono::Duration::minutes(1);
    assert!(
        claim_tick(&t.db, &clock, Job::AllowanceReset, next)
            .await
            .unwrap()
    );
}

/// `(idempotency key, status)` of every entry of a job's apalis queue.
async fn queue_entries(db: &Db, job: Job) -> Vec<(String, String)> {
    let conn = db.reader();
    let backend = conn.get_database_backend();
    let sql = match backend {
        sea_orm::DatabaseBackend::Sqlite => {
            "SELECT idempotency_key AS k, status AS s FROM Jobs WHERE job_type = ? ORDER BY id"
        }
        _ => {
            "SELECT idempotency_key AS k, status AS s FROM apalis.jobs WHERE job_type = $1 ORDER BY id"
        }
    };
    conn.query_all_raw(Statement::from_sql_and_values(
        backend,
        sql,
        [queue::queue_name(job).into()],
    ))
    .await
    .unwrap()
    .into_iter()
    .map(|row| {
        (
            row.try_get::<String>("", "k").unwrap(),
            row.try_get::<String>("", "s").unwrap(),
        )
    })
    .collect()
}

/// Polls `check` until it returns `Some`, for at most `limit`.
async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn start(
    db: &Db,
    clock: Arc<dyn Clock>,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<Result<(), worker::Error>>,
) {
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(worker::run(db.clone(), clock, config(), shutdown.clone()));
    (shutdown, running)
}

async fn stop(
    shutdown: CancellationToken,
    running: tokio::task::JoinHandle<Result<(), worker::Error>>,
) {
    shutdown.cancel();
    let result = tokio::time::timeout(worker::SHUTDOWN_TIMEOUT + Duration::from_secs(5), running)
        .await
        .expect("stops within the shutdown timeout")
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_tick_is_run_by_the_storage_worker() {
    let t = TestDb::new().await;
    let t0 = Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap();
    let clock = FixedClock::new(t0);
    // A wallet holding 5 tokens that expire an hour from now.
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
    let granted = ledger::grant(
        &t.db,
        &clock,
        tenant,
        &ledger::GrantInput {
            wallet: WalletRef {
                customer: CustomerRef::ExternalId("acme".into()),
                credit_system: CreditSystemRef::Key("tokens".into()),
            },
            amount: Decimal::from_str("5").unwrap(),
            category: Category::Promotional,
            effective_at: None,
            expires_at: Some(t0 + chrono::Duration::hours(1)),
            priority: None,
            cost_basis: None,
            reason: "test".into(),
            metadata: None,
            idempotency_key: "g1".into(),
        },
    )
    .await
    .unwrap();
    let expiries = || async {
        entity::ledger_entry::Entity::find()
            .filter(entity::ledger_entry::Column::GrantId.eq(granted.grant.id))
            .filter(entity::ledger_entry::Column::EntryType.eq("EXPIRY"))
            .count(t.db.reader())
            .await
            .unwrap()
    };

    let (shutdown, running) = start(&t.db, Arc::new(clock.clone()));
    // The start-up run swept (nothing was due yet).
    eventually(Duration::from_secs(30), "the start-up sweep", || async {
        service::jobs::last_success(&t.db, Job::ExpirySweep)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(expiries().await, 0);

    // Two hours later a tick of the sweep is claimed and queued...
    clock.advance(chrono::Duration::hours(2));
    let tick = JobTick::new(Job::ExpirySweep, t0 + chrono::Duration::hours(2));
    let queued = worker::jobs::enqueue(&t.db, &clock, Job::ExpirySweep, tick.tick_at)
        .await
        .unwrap();
    assert!(queued, "the first claim of a tick queues it");
    // ...a storage worker takes it, runs the sweep, and marks it done.
    let status = eventually(Duration::from_secs(30), "the queued tick done", || async {
        queue_entries(&t.db, Job::ExpirySweep)
            .await
            .into_iter()
            .find(|(key, _)| *key == tick.idempotency_key())
            .map(|(_, status)| status)
            .filter(|status| matches!(status.as_str(), "Done" | "Failed" | "Killed"))
    })
    .await;
    assert_eq!(status, "Done");
    assert_eq!(expiries().await, 1, "the sweep expired the grant, once");
    let runs = service::jobs::recent(&t.db, Job::ExpirySweep, 10, chrono::Utc::now())
        .await
        .unwrap();
    assert!(runs.len() >= 2, "start-up + the queued tick: {runs:?}");
    assert!(runs.iter().all(|r| r.status == "SUCCEEDED"), "{runs:?}");
    stop(shutdown, running).await;

    // Finished entries are pruned once old enough.
    let pruned = queue::prune(
        &t.db,
        Job::ExpirySweep,
        Utc::now() + chrono::Duration::days(1),
    )
    .await
    .unwrap();
    assert!(pruned >= 1);
    assert!(
        !queue_entries(&t.db, Job::ExpirySweep)
            .await
            .iter()
            .any(|(key, _)| *key == tick.idempotency_key())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_ticks_go_through_job_tick_and_the_queue() {
    let t = TestDb::new().await;
    worker::prepare(&t.db).await.unwrap();
    let (shutdown, running) = start(&t.db, Arc::new(service::SystemClock));
    // Notifications tick every 5 s: wait for one to be queued and done.
    let key = eventually(
        Duration::from_secs(30),
        "a notifications tick done",
        || async {
            queue_entries(&t.db, Job::Notifications)
                .await
                .into_iter()
                .find(|(_, status)| status == "Done")
                .map(|(key, _)| key)
        },
    )
    .await;
    stop(shutdown, running).await;
    // It is a tick this replica claimed in `job_tick`.
    let secs: i64 = key
        .strip_prefix("notifications@")
        .expect("the key names the job")
        .parse()
        .unwrap();
    let tick_at: DateTime<Utc> = DateTime::from_timestamp(secs, 0).unwrap();
    assert_eq!(secs % 5, 0, "on the 5 s schedule");
    let claimed = entity::job_tick::Entity::find()
        .filter(entity::job_tick::Column::Job.eq("notifications"))
        .filter(entity::job_tick::Column::TickAt.eq(tick_at))
        .count(t.db.reader())
        .await
        .unwrap();
    assert_eq!(claimed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn two_replicas_queue_a_tick_once() {
    let t = TestDb::new().await;
    worker::prepare(&t.db).await.unwrap();
    // A second replica: its own pools on the same database.
    let other = Db::connect(&DbConfig::new(t.url.clone())).await.unwrap();
    let clock = service::SystemClock;
    let tick = Utc.with_ymd_and_hms(2026, 11, 22, 3, 0, 0).unwrap();
    let (a, b) = tokio::join!(
        worker::jobs::enqueue(&t.db, &clock, Job::AllowanceReset, tick),
        worker::jobs::enqueue(&other, &clock, Job::AllowanceReset, tick),
    );
    let queued = [a.unwrap(), b.unwrap()];
    assert_eq!(queued.iter().filter(|q| **q).count(), 1, "{queued:?}");
    let key = JobTick::new(Job::AllowanceReset, tick).idempotency_key();
    assert_eq!(
        queue_entries(&t.db, Job::AllowanceReset).await,
        vec![(key.clone(), "Pending".to_owned())]
    );
    // Each replica firing it again changes nothing.
    for db in [&t.db, &other] {
        assert!(
            !worker::jobs::enqueue(db, &clock, Job::AllowanceReset, tick)
                .await
                .unwrap()
        );
    }
    // apalis alone would not make a second push a no-op everywhere: its
    // idempotency key is ignored on SQLite but refused (an error) on
    // PostgreSQL. Hence the claim in `job_tick` first.
    let again = queue::push(&t.db, &JobTick::new(Job::AllowanceReset, tick)).await;
    assert_eq!(again.is_err(), t.is_postgres(), "{again:?}");
    assert_eq!(
        queue_entries(&t.db, Job::AllowanceReset).await,
        vec![(key, "Pending".to_owned())]
    );
    // Another job's same tick is a separate entry in its own queue.
    assert!(
        worker::jobs::enqueue(&t.db, &clock, Job::ExpirySweep, tick)
            .await
            .unwrap()
    );
    assert_eq!(queue_entries(&t.db, Job::ExpirySweep).await.len(), 1);
}
