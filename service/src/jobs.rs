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

impl From<job_run::Model> for JobRun {
    fn from(m: job_run::Model) -> Self {
        Self {
            id: m.id,
            job: m.job,
            started_at: m.started_at,
            finished_at: m.finished_at,
            status: m.status,
            processed: m.processed,
            error: m.error,
        }
    }
}

/// Runs `work` as one recorded run of `job`: `processed` is what it
/// returns; a failure is recorded with its message and returned.
pub async fn record<E, F>(db: &Db, clock: &dyn Clock, job: Job, work: F) -> Result<u64, E>
where
    E: std::fmt::Display + From<DbErr>,
    F: Future<Output = Result<u64, E>>,
{
    let run = job_run::ActiveModel {
        id: Set(Uuid::now_v7()),
        job: Set(job.as_str().to_owned()),
        started_at: Set(clock.now()),
        finished_at: Set(None),
        status: Set("RUNNING".into()),
        processed: Set(0),
        error: Set(None),
    }
    .insert(db.writer())
    .await?;
    let result = work.await;
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

/// The latest runs of a job, newest first.
pub async fn recent(db: &Db, job: Job, limit: u64) -> Result<Vec<JobRun>, Error> {
    Ok(job_run::Entity::find()
        .filter(job_run::Column::Job.eq(job.as_str()))
        .order_by_desc(job_run::Column::StartedAt)
        .limit(limit)
        .all(db.reader())
        .await?
        .into_iter()
        .map(Into::into)
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
        .map(Into::into))
}

/// Totals per job for the metrics endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStats {
    pub job: Job,
    pub succeeded: i64,
    pub failed: i64,
    pub last_duration_ms: Option<i64>,
    pub last_success_at: Option<DateTime<Utc>>,
}

pub async fn stats(db: &Db) -> Result<Vec<JobStats>, Error> {
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
        let last = recent(db, job, 1).await?.into_iter().next();
        let last_duration_ms = last
            .as_ref()
            .and_then(|r| r.finished_at.map(|f| (f - r.started_at).num_milliseconds()));
        out.push(JobStats {
            job,
            succeeded: i64::try_from(succeeded).unwrap_or(i64::MAX),
            failed: i64::try_from(failed).unwrap_or(i64::MAX),
            last_duration_ms,
            last_success_at: last_success(db, job).await?.map(|r| r.started_at),
        });
    }
    Ok(out)
}
