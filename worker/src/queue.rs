//! The job queue: apalis' SQL storage (`apalis-sqlite` / `apalis-postgres`)
//! in the application's own database, on the application's own writer pool.
//!
//! A cron tick that a replica wins (see [`crate::jobs::enqueue`]) becomes one
//! [`JobTick`] in the job's queue; a storage-backed apalis worker on any
//! replica takes it and runs the job. Queues are named explicitly
//! ([`queue_name`]), never after a Rust type path, so renaming a type never
//! orphans queued ticks.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use apalis::prelude::*;
use apalis_postgres::PostgresStorage;
use apalis_sqlite::SqliteStorage;
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseBackend, DbErr, Statement};
use serde::{Deserialize, Serialize};
use service::{Db, jobs::Job};

/// How often a storage worker looks for queued ticks (a tick pushed by
/// another replica is picked up within this; apalis' own wake-up would be
/// its 30 s heartbeat).
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Wakes a storage worker every `interval` to look for queued ticks: use
/// with `.poll_with_strategy(PollEvery::new(POLL_INTERVAL))`.
///
/// Not apalis' `poll_with_interval`: its `IntervalStrategy` (1.0.0) replaces
/// a fired timer with a new one that it does not poll, so the new timer has
/// no waker. When the fire coincides with an in-flight fetch coming back
/// empty (the storage then waits for a wake without arming anything
/// itself), the worker sleeps until its next heartbeat, 30 s later — seen
/// here as queued ticks left `Pending` for half a minute. This strategy
/// polls the re-armed timer at once, so a wake is always pending.
#[derive(Debug)]
pub struct PollEvery {
    interval: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl PollEvery {
    /// Needs a Tokio runtime (it makes a Tokio timer).
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            timer: Box::pin(tokio::time::sleep(interval)),
        }
    }
}

impl PollStrategy for PollEvery {
    fn poll_drive(&mut self, cx: &mut Context<'_>, _: &PollSnapshot) -> Poll<Option<()>> {
        if self.timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.timer
            .as_mut()
            .reset(tokio::time::Instant::now() + self.interval);
        // Register this task's waker with the re-armed timer now.
        let _ = self.timer.as_mut().poll(cx);
        Poll::Ready(Some(()))
    }
}

/// Finished queue entries (and workers gone, holding none) are kept this
/// long for inspection, then pruned.
pub const KEEP_FINISHED: chrono::TimeDelta = chrono::TimeDelta::days(1);

/// The apalis queue (`job_type` in its jobs table) of each job.
pub fn queue_name(job: Job) -> &'static str {
    match job {
        Job::AllowanceReset => "credits.allowance-reset",
        Job::ExpirySweep => "credits.expiry-sweep",
        Job::Notifications => "credits.notifications",
    }
}

/// One cron tick of one job: what the queue carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobTick {
    /// [`Job::as_str`]: `allowance_reset`, `expiry_sweep`, `notifications`.
    pub job: String,
    /// The cron tick this run is for.
    pub tick_at: DateTime<Utc>,
}

impl JobTick {
    pub fn new(job: Job, tick_at: DateTime<Utc>) -> Self {
        Self {
            job: job.as_str().to_owned(),
            tick_at,
        }
    }

    /// The job to run, if this build knows it.
    pub fn job(&self) -> Option<Job> {
        Job::ALL.into_iter().find(|j| j.as_str() == self.job)
    }

    /// The apalis idempotency key: `<job>@<unix seconds>`. apalis keeps it
    /// unique per queue (SQLite ignores a second push, PostgreSQL refuses
    /// it), a second line behind the `job_tick` claim.
    pub fn idempotency_key(&self) -> String {
        format!("{}@{}", self.job, self.tick_at.timestamp())
    }
}

/// The SQLite storage configuration of a job's queue: fetch one tick at a
/// time, so queued ticks spread over replicas instead of being buffered by
/// one.
pub fn sqlite_config(job: Job) -> apalis_sqlite::Config {
    apalis_sqlite::Config::default()
        .queue(queue_name(job))
        .batch_size(1)
}

/// The PostgreSQL storage configuration of a job's queue (as SQLite's).
pub fn postgres_config(job: Job) -> apalis_postgres::Config {
    apalis_postgres::Config::default()
        .queue(queue_name(job))
        .batch_size(1)
}

/// The SQLite storage of a job's queue, on the application's writer pool.
pub fn sqlite_storage(db: &Db, job: Job) -> SqliteStorage<JobTick> {
    SqliteStorage::new(db.writer().get_sqlite_connection_pool()).with_config(sqlite_config(job))
}

/// The PostgreSQL storage of a job's queue, on the application's pool.
pub fn postgres_storage(db: &Db, job: Job) -> PostgresStorage<JobTick> {
    PostgresStorage::new(db.writer().get_postgres_connection_pool())
        .with_config(postgres_config(job))
}

/// Queues one tick of its job. Uses the storage's pool, so never call it
/// inside an open SeaORM transaction (on SQLite's single writer connection
/// it would wait for itself).
///
/// `max_attempts` is 1: a failed run is recorded (in `job_run` and as
/// `Failed` in the queue) and not retried by apalis — the job's next tick
/// is the retry, since every job catches up on whatever is due.
pub async fn push(db: &Db, tick: &JobTick) -> Result<(), BoxDynError> {
    let job = tick
        .job()
        .ok_or_else(|| format!("unknown job {:?}", tick.job))?;
    let task = TaskBuilder::new(tick.clone())
        .max_attempts(1)
        .idempotency_key(tick.idempotency_key())
        .build();
    match db.backend() {
        DatabaseBackend::Sqlite => sqlite_storage(db, job).push_task(task).await?,
        _ => postgres_storage(db, job).push_task(task).await?,
    }
    Ok(())
}

/// Deletes a job's queue entries that finished before `before` (done,
/// killed, or failed for good), then that queue's workers not seen since
/// `before` that no entry refers to. Returns the entries deleted.
pub async fn prune(db: &Db, job: Job, before: DateTime<Utc>) -> Result<u64, DbErr> {
    let conn = db.writer();
    let backend = conn.get_database_backend();
    let queue = queue_name(job);
    let (jobs_sql, workers_sql, cutoff) = match backend {
        DatabaseBackend::Sqlite => (
            "DELETE FROM Jobs WHERE job_type = ? AND done_at < ? \
             AND (status IN ('Done', 'Killed') OR (status = 'Failed' AND attempts >= max_attempts))",
            "DELETE FROM Workers WHERE worker_type = ? AND last_seen < ? \
             AND NOT EXISTS (SELECT 1 FROM Jobs WHERE Jobs.lock_by = Workers.id)",
            sea_orm::Value::from(before.timestamp()),
        ),
        _ => (
            "DELETE FROM apalis.jobs WHERE job_type = $1 AND done_at < $2 \
             AND (status IN ('Done', 'Killed') OR (status = 'Failed' AND attempts >= max_attempts))",
            "DELETE FROM apalis.workers w WHERE w.worker_type = $1 AND w.last_seen < $2 \
             AND NOT EXISTS (SELECT 1 FROM apalis.jobs j WHERE j.lock_by = w.id)",
            sea_orm::Value::from(before),
        ),
    };
    let deleted = conn
        .execute_raw(Statement::from_sql_and_values(
            backend,
            jobs_sql,
            [queue.into(), cutoff.clone()],
        ))
        .await?
        .rows_affected();
    conn.execute_raw(Statement::from_sql_and_values(
        backend,
        workers_sql,
        [queue.into(), cutoff],
    ))
    .await?;
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
        task::{Wake, Waker},
    };

    use super::*;

    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// After each fire a wake is already armed: the worker is woken again
    /// without anything else polling it (apalis' `IntervalStrategy` fails
    /// this from the second round on).
    #[tokio::test]
    async fn poll_every_always_keeps_a_wake_armed() {
        let wakes = Arc::new(Wakes::default());
        let waker = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let snapshot = PollSnapshot::default();
        let mut strategy = PollEvery::new(Duration::from_millis(20));
        assert!(strategy.poll_drive(&mut cx, &snapshot).is_pending());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        for round in 1..=3 {
            while wakes.0.load(Ordering::SeqCst) < round {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no wake in round {round}"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            // Woken: the timer fired. Polled once, it re-arms itself.
            assert!(strategy.poll_drive(&mut cx, &snapshot).is_ready());
        }
    }
}
