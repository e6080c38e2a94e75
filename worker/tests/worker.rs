//! The worker starts on a migrated database, prepares its job tables on the
//! same pool, refuses an unmigrated one, and stops when told.

use std::time::Duration;

use sea_orm::{ConnectionTrait, Statement};
use service::testing::TestDb;
use tokio_util::sync::CancellationToken;
use worker::{MailConfig, WorkerConfig};

fn config() -> WorkerConfig {
    WorkerConfig {
        mail: MailConfig {
            smtp_url: None,
            mail_from: "credits@localhost".into(),
            mail_dir: std::env::temp_dir().join(format!("credits-mail-{}", std::process::id())),
        },
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
