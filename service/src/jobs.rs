//! A record of every scheduled job run (what the `jobs` query and the
//! metrics endpoint show). Jobs are the operator's: runs carry no tenant
//! data.

use std::future::Future;

use chrono::{DateTime, Utc};
use entity::job_run;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DbErr, EntityTrait, IntoActiveModel,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use crate::{
    Clock, Db,
    error::{Code, DomainError},
};

/// Reading job runs failed (the database).
#[derive(Debug, thiserror::Error)]
#[error("database error")]
pub struct Error(#[from] DbErr);

impl DomainError for Error {
    fn code(&self) -> Code {
        Code::Internal
    }
}

/// The scheduled jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Job {
    AllowanceReset,
    ExpirySweep,
    /// Outbox dispatch, webhook deliveries and emails.
    Notifications,
}

impl Job {
    pub const ALL: [Job; 3] = [Job::AllowanceReset, Job::ExpirySweep, Job::Notifications];

    pub fn as_str(self) -> &'static str {
        match self {
            Job::AllowanceReset => "allowance_reset",
            Job::ExpirySweep => "expiry_sweep",
            Job::Notifications => "notifications",
        }
    }
}

/// How long job runs are kept.
const RUNS_KEPT_DAYS: i64 = 14;

/// How long a worker vouches for a run it is running: a `RUNNING` run
/// whose lease ran out lost its worker (killed, crashed, cut off from the
/// database) and is `ABANDONED`. Its work is not lost — every job is
/// idempotent per period and catches up on what is due, so the next run
/// does what it left undone, exactly once. The worker renews the lease
/// every sixth of it ([`Lease::heartbeat`]) and stores it with the run
/// (`lease_until`), so every reader agrees on it whatever the worker's
/// setting (`JOB_LEASE`, default [`Lease::DEFAULT`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease(chrono::Duration);

impl Lease {
    /// One minute: a heartbeat every 10 s.
    pub const DEFAULT: Lease = Lease(chrono::Duration::seconds(60));
    /// The shortest lease (a heartbeat every ~170 ms): shorter ones would
    /// abandon runs that are only slow to commit a beat.
    pub const MIN: Lease = Lease(chrono::Duration::seconds(1));

    /// A lease of `d`, at least [`Lease::MIN`].
    pub fn new(d: std::time::Duration) -> Self {
        let d = chrono::Duration::from_std(d).unwrap_or(Self::DEFAULT.0);
        Lease(d.max(Self::MIN.0))
    }

    pub fn duration(self) -> chrono::Duration {
        self.0
    }

    /// How often a running run renews its lease.
    pub fn heartbeat(self) -> std::time::Duration {
        (self.0 / 6)
            .to_std()
            .unwrap_or(std::time::Duration::from_secs(1))
    }
}

impl Default for Lease {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Until when a run's worker vouches for it. Runs from before leases were
/// stored fall back to their last heartbeat plus the default lease.
fn lease_until(m: &job_run::Model) -> DateTime<Utc> {
    m.lease_until
        .unwrap_or_else(|| m.heartbeat_at.unwrap_or(m.started_at) + Lease::DEFAULT.0)
}

/// A run's status, with a `RUNNING` run whose lease ran out shown as what
/// it is.
fn status_at(m: &job_run::Model, now: DateTime<Utc>) -> String {
    if m.status == "RUNNING" && lease_until(m) < now {
        "ABANDONED".into()
    } else {
        m.status.clone()
    }
}

/// Marks a job's runs whose lease ran out `ABANDONED`.
async fn abandon_stale(db: &Db, clock: &dyn Clock, job: Job) -> Result<u64, DbErr> {
    use sea_orm::sea_query::Expr;
    let now = clock.now();
    let legacy_stale = now - Lease::DEFAULT.0;
    let res = job_run::Entity::update_many()
        .col_expr(job_run::Column::Status, Expr::value("ABANDONED"))
        .col_expr(
            job_run::Column::Error,
            Expr::value("its worker stopped while it ran; the next run did what it left undone"),
        )
        .col_expr(job_run::Column::FinishedAt, Expr::value(Some(now)))
        .filter(job_run::Column::Job.eq(job.as_str()))
        .filter(job_run::Column::Status.eq("RUNNING"))
        .filter(
            sea_orm::Condition::any()
                .add(job_run::Column::LeaseUntil.lt(now))
                .add(
                    sea_orm::Condition::all()
                        .add(job_run::Column::LeaseUntil.is_null())
                        .add(
                            sea_orm::Condition::any()
                                .add(job_run::Column::HeartbeatAt.lt(legacy_stale))
                                .add(
                                    sea_orm::Condition::all()
                                        .add(job_run::Column::HeartbeatAt.is_null())
                                        .add(job_run::Column::StartedAt.lt(legacy_stale)),
                                ),
                        ),
                ),
        )
        .exec(db.writer())
        .await?;
    Ok(res.rows_affected)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRun {
    pub id: Uuid,
    pub job: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub status: String,
    pub processed: i64,
    pub error: Option<String>,
}

impl JobRun {
    fn at(m: job_run::Model, now: DateTime<Utc>) -> Self {
        Self {
            status: status_at(&m, now),
            id: m.id,
            job: m.job,
            started_at: m.started_at,
            finished_at: m.finished_at,
            processed: m.processed,
            error: m.error,
        }
    }
}

/// Runs `work` as one recorded run of `job`: `processed` is what it
/// returns; a failure is recorded with its message and returned. While
/// it runs it renews its `lease` ([`Lease::heartbeat`]); earlier runs of
/// the job whose lease ran out are marked `ABANDONED` first.
#[tracing::instrument(name = "job.run", skip_all, fields(job = job.as_str()))]
pub async fn record<E, F>(
    db: &Db,
    clock: &dyn Clock,
    job: Job,
    lease: Lease,
    work: F,
) -> Result<u64, E>
where
    E: std::fmt::Display + From<DbErr>,
    F: Future<Output = Result<u64, E>>,
{
    let abandoned = abandon_stale(db, clock, job).await?;
    if abandoned > 0 {
        tracing::warn!(
            job = job.as_str(),
            abandoned,
            "runs whose worker died were abandoned"
        );
    }
    let now = clock.now();
    let run = job_run::ActiveModel {
        id: Set(Uuid::now_v7()),
        job: Set(job.as_str().to_owned()),
        started_at: Set(now),
        finished_at: Set(None),
        status: Set("RUNNING".into()),
        processed: Set(0),
        error: Set(None),
        heartbeat_at: Set(Some(now)),
        lease_until: Set(Some(now + lease.duration())),
    }
    .insert(db.writer())
    .await?;
    let beat = async {
        let mut every = tokio::time::interval(lease.heartbeat());
        every.tick().await;
        loop {
            every.tick().await;
            let now = clock.now();
            let beat = job_run::ActiveModel {
                id: Set(run.id),
                heartbeat_at: Set(Some(now)),
                lease_until: Set(Some(now + lease.duration())),
                ..Default::default()
            };
            if let Err(e) = beat.update(db.writer()).await {
                tracing::warn!(job = job.as_str(), error = %e, "job heartbeat failed");
            }
        }
    };
    let result = tokio::select! {
        result = work => result,
        () = beat => unreachable!("the heartbeat loop never ends"),
    };
    let mut active = run.into_active_model();
    active.finished_at = Set(Some(clock.now()));
    match &result {
        Ok(n) => {
            active.status = Set("SUCCEEDED".into());
            active.processed = Set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
        Err(e) => {
            active.status = Set("FAILED".into());
            active.error = Set(Some(e.to_string()));
        }
    }
    active.update(db.writer()).await?;
    forget_old(db, clock, job).await?;
    result
}

/// Claims a cron tick for this worker replica: `true` for the first
/// replica to claim (job, tick), `false` for every other. With N replicas
/// each firing their own schedule, each tick runs once. (Missed ticks are
/// not replayed: every job catches up on whatever is due when it runs.)
pub async fn claim_tick(
    db: &Db,
    clock: &dyn Clock,
    job: Job,
    tick_at: DateTime<Utc>,
) -> Result<bool, DbErr> {
    use entity::job_tick;
    use sea_orm::sea_query::OnConflict;
    let inserted = job_tick::Entity::insert(job_tick::ActiveModel {
        job: Set(job.as_str().to_owned()),
        tick_at: Set(tick_at),
        claimed_at: Set(clock.now()),
    })
    .on_conflict(
        OnConflict::columns([job_tick::Column::Job, job_tick::Column::TickAt])
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(db.writer())
    .await?;
    if inserted == 1 {
        job_tick::Entity::delete_many()
            .filter(job_tick::Column::Job.eq(job.as_str()))
            .filter(job_tick::Column::TickAt.lt(tick_at - chrono::Duration::days(1)))
            .exec(db.writer())
            .await?;
    }
    Ok(inserted == 1)
}

/// Like [`record`], for a job that runs every few seconds: a run that
/// handled nothing and succeeded leaves no record.
/// (Its span is at debug level: it runs every few seconds, mostly idle.)
#[tracing::instrument(name = "job.run", level = "debug", skip_all, fields(job = job.as_str()))]
pub async fn record_if_busy<E, F>(db: &Db, clock: &dyn Clock, job: Job, work: F) -> Result<u64, E>
where
    E: std::fmt::Display + From<DbErr>,
    F: Future<Output = Result<u64, E>>,
{
    let started_at = clock.now();
    let result = work.await;
    if matches!(result, Ok(0)) {
        return result;
    }
    job_run::ActiveModel {
        id: Set(Uuid::now_v7()),
        job: Set(job.as_str().to_owned()),
        started_at: Set(started_at),
        finished_at: Set(Some(clock.now())),
        status: Set(if result.is_ok() {
            "SUCCEEDED"
        } else {
            "FAILED"
        }
        .into()),
        processed: Set(result
            .as_ref()
            .map_or(0, |n| i64::try_from(*n).unwrap_or(i64::MAX))),
        error: Set(result.as_ref().err().map(ToString::to_string)),
        heartbeat_at: Set(None),
        lease_until: Set(None),
    }
    .insert(db.writer())
    .await?;
    forget_old(db, clock, job).await?;
    result
}

/// Drops a job's runs older than [`RUNS_KEPT_DAYS`].
async fn forget_old(db: &Db, clock: &dyn Clock, job: Job) -> Result<(), DbErr> {
    job_run::Entity::delete_many()
        .filter(job_run::Column::Job.eq(job.as_str()))
        .filter(job_run::Column::StartedAt.lt(clock.now() - chrono::Duration::days(RUNS_KEPT_DAYS)))
        .exec(db.writer())
        .await?;
    Ok(())
}

/// The latest runs of a job as of `now`, newest first.
pub async fn recent(
    db: &Db,
    job: Job,
    limit: u64,
    now: DateTime<Utc>,
) -> Result<Vec<JobRun>, Error> {
    Ok(job_run::Entity::find()
        .filter(job_run::Column::Job.eq(job.as_str()))
        .order_by_desc(job_run::Column::StartedAt)
        .limit(limit)
        .all(db.reader())
        .await?
        .into_iter()
        .map(|m| JobRun::at(m, now))
        .collect())
}

/// The last successful run of a job.
pub async fn last_success(db: &Db, job: Job) -> Result<Option<JobRun>, Error> {
    Ok(job_run::Entity::find()
        .filter(job_run::Column::Job.eq(job.as_str()))
        .filter(job_run::Column::Status.eq("SUCCEEDED"))
        .order_by_desc(job_run::Column::StartedAt)
        .one(db.reader())
        .await?
        .map(|m| JobRun::at(m, Utc::now())))
}

/// Totals per job for the metrics endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStats {
    pub job: Job,
    pub succeeded: i64,
    pub failed: i64,
    pub abandoned: i64,
    pub last_duration_ms: Option<i64>,
    pub last_success_at: Option<DateTime<Utc>>,
}

pub async fn stats(db: &Db, now: DateTime<Utc>) -> Result<Vec<JobStats>, Error> {
    let mut out = Vec::new();
    for job in Job::ALL {
        let count = |status: &'static str| {
            job_run::Entity::find()
                .filter(job_run::Column::Job.eq(job.as_str()))
                .filter(job_run::Column::Status.eq(status))
                .count(db.reader())
        };
        let succeeded = count("SUCCEEDED").await?;
        let failed = count("FAILED").await?;
        let abandoned = count("ABANDONED").await?;
        let last = recent(db, job, 1, now).await?.into_iter().next();
        let last_duration_ms = last
            .as_ref()
            .and_then(|r| r.finished_at.map(|f| (f - r.started_at).num_milliseconds()));
        out.push(JobStats {
            job,
            succeeded: i64::try_from(succeeded).unwrap_or(i64::MAX),
            failed: i64::try_from(failed).unwrap_or(i64::MAX),
            abandoned: i64::try_from(abandoned).unwrap_or(i64::MAX),
            last_duration_ms,
            last_success_at: last_success(db, job).await?.map(|r| r.started_at),
        });
    }
    Ok(out)
}
