//! Durable by default (issue 14): every SQLite connection runs
//! `synchronous=FULL` — the writer (which apalis' job storage shares) and
//! every reader — after the migrations, after the worker prepared its job
//! tables and while it runs (apalis' own `SqliteStorage::setup` would have
//! set `OFF`); an operator's `NORMAL` reaches all of them too.

use std::{sync::Arc, time::Duration};

use sea_orm::sqlx::{self, Sqlite, SqlitePool, pool::PoolConnection};
use service::{
    db::{Db, DbConfig, SqliteSynchronous},
    testing::TestDb,
};
use tokio_util::sync::CancellationToken;
use worker::{MailConfig, WorkerConfig};

/// `PRAGMA synchronous` of every connection of a pool: all of them are
/// held at once, so each is a different one.
async fn synchronous_of_pool(pool: &SqlitePool) -> Vec<i64> {
    let size = pool.options().get_max_connections();
    let mut held: Vec<PoolConnection<Sqlite>> = Vec::new();
    for _ in 0..size {
        held.push(pool.acquire().await.unwrap());
    }
    let mut values = Vec::new();
    for conn in &mut held {
        let value: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut **conn)
            .await
            .unwrap();
        values.push(value);
    }
    values
}

/// Asserts every connection, writer and readers, runs `expected`.
async fn assert_synchronous(db: &Db, expected: SqliteSynchronous, when: &str) {
    let writer = synchronous_of_pool(db.writer().get_sqlite_connection_pool()).await;
    let readers = synchronous_of_pool(db.reader().get_sqlite_connection_pool()).await;
    assert_eq!(writer, [expected.pragma_value()], "{when}: the writer");
    assert!(readers.len() > 1, "{when}: several readers");
    assert!(
        readers.iter().all(|v| *v == expected.pragma_value()),
        "{when}: the readers run {readers:?}, not {expected}"
    );
}

#[tokio::test]
async fn sqlite_connections_run_synchronous_full_by_default() {
    let t = TestDb::new().await;
    if t.is_postgres() {
        return;
    }
    assert_synchronous(&t.db, SqliteSynchronous::Full, "after the migrations").await;

    worker::prepare(&t.db).await.unwrap();
    assert_synchronous(&t.db, SqliteSynchronous::Full, "after the job queue setup").await;

    // The whole worker for a moment: cron, queue pushes, storage workers.
    let shutdown = CancellationToken::new();
    let config = WorkerConfig {
        mail: MailConfig {
            smtp_url: None,
            mail_from: "credits@localhost".into(),
            mail_dir: std::env::temp_dir().join(format!("credits-mail-{}", std::process::id())),
        },
        webhooks: worker::WebhookConfig::allow_private(),
        job_lease_seconds: 60,
    };
    let running = tokio::spawn(worker::run(
        t.db.clone(),
        Arc::new(service::SystemClock),
        config,
        shutdown.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the worker stops")
        .unwrap()
        .unwrap();
    assert_synchronous(&t.db, SqliteSynchronous::Full, "after the worker ran").await;

    // The operator's opt-out, on a second handle to the same file.
    let normal = Db::connect(&DbConfig {
        sqlite_synchronous: SqliteSynchronous::Normal,
        ..DbConfig::new(t.url.clone())
    })
    .await
    .unwrap();
    assert_synchronous(&normal, SqliteSynchronous::Normal, "opted out").await;
    normal.close().await.unwrap();
}

#[test]
fn sqlite_synchronous_setting_parses() {
    assert_eq!(SqliteSynchronous::default(), SqliteSynchronous::Full);
    assert_eq!("full".parse(), Ok(SqliteSynchronous::Full));
    assert_eq!("NORMAL".parse(), Ok(SqliteSynchronous::Normal));
    assert!("OFF".parse::<SqliteSynchronous>().is_err());
    assert_eq!(SqliteSynchronous::Normal.to_string(), "NORMAL");
}
