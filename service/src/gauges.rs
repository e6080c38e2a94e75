//! The gauges read from the database at scrape time (the outbox backlog,
//! the pools' connections, the jobs' runs), under the names
//! [`crate::metrics`] defines. Apart from `metrics` because they read
//! through [`Db`], which records its writes in `metrics`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, FromQueryResult, QueryFilter, QuerySelect,
    sea_query::{Expr, Func},
};

use crate::{
    Db, jobs,
    metrics::{
        DB_POOL_CONNECTIONS, JOB_LAST_DURATION, JOB_LAST_SUCCESS, JOB_RUNS,
        OUTBOX_OLDEST_PENDING_AGE, OUTBOX_PENDING,
    },
};

#[derive(Debug, FromQueryResult)]
struct OutboxBacklog {
    pending: i64,
    oldest: Option<DateTime<Utc>>,
}

/// The outbox backlog: how many events wait for dispatch and since when
/// the oldest does (one COUNT/MIN over the `dispatched_at IS NULL` index).
pub async fn outbox_backlog(
    conn: &DatabaseConnection,
) -> Result<(u64, Option<DateTime<Utc>>), DbErr> {
    use entity::outbox_event::{Column, Entity};
    let row = Entity::find()
        .select_only()
        .column_as(Expr::from(Func::count(Expr::col(Column::Id))), "pending")
        .column_as(
            Expr::from(Func::min(Expr::col(Column::CreatedAt))),
            "oldest",
        )
        .filter(Column::DispatchedAt.is_null())
        .into_model::<OutboxBacklog>()
        .one(conn)
        .await?;
    Ok(row.map_or((0, None), |r| {
        (u64::try_from(r.pending).unwrap_or(0), r.oldest)
    }))
}

/// Sets the gauges read from the database at scrape time: the outbox
/// backlog, the pools' connections and the jobs' runs. A failed read
/// leaves its gauges as they were and is returned.
pub async fn refresh(db: &Db, now: DateTime<Utc>) -> Result<(), DbErr> {
    pool_gauges(db);
    let (pending, oldest) = outbox_backlog(db.reader()).await?;
    metrics::gauge!(OUTBOX_PENDING).set(pending as f64);
    let age_ms = oldest.map_or(0, |at| (now - at).num_milliseconds().max(0));
    metrics::gauge!(OUTBOX_OLDEST_PENDING_AGE)
        .set(Duration::from_millis(age_ms as u64).as_secs_f64());
    let stats = jobs::stats(db, now)
        .await
        .map_err(|e| DbErr::Custom(format!("job runs: {e}")))?;
    for s in &stats {
        let job = s.job.as_str();
        for (status, n) in [
            ("succeeded", s.succeeded),
            ("failed", s.failed),
            ("abandoned", s.abandoned),
        ] {
            metrics::counter!(JOB_RUNS, "job" => job, "status" => status)
                .absolute(u64::try_from(n).unwrap_or(0));
        }
        if let Some(ms) = s.last_duration_ms {
            metrics::gauge!(JOB_LAST_DURATION, "job" => job)
                .set(Duration::from_millis(u64::try_from(ms).unwrap_or(0)).as_secs_f64());
        }
        if let Some(at) = s.last_success_at {
            metrics::gauge!(JOB_LAST_SUCCESS, "job" => job).set(at.timestamp() as f64);
        }
    }
    Ok(())
}

/// The pools' connections, idle and in use: SQLite's `read` and `write`
/// pools, PostgreSQL's one `main` pool.
fn pool_gauges(db: &Db) {
    use sea_orm::DatabaseBackend;
    let mut pools = Vec::with_capacity(2);
    match db.backend() {
        DatabaseBackend::Sqlite => {
            for (name, conn) in [("read", db.reader()), ("write", db.writer())] {
                let p = conn.get_sqlite_connection_pool();
                pools.push((name, p.size(), p.num_idle()));
            }
        }
        DatabaseBackend::Postgres => {
            let p = db.writer().get_postgres_connection_pool();
            pools.push(("main", p.size(), p.num_idle()));
        }
        _ => {}
    }
    for (pool, size, idle) in pools {
        let idle = u32::try_from(idle).unwrap_or(u32::MAX).min(size);
        metrics::gauge!(DB_POOL_CONNECTIONS, "pool" => pool, "state" => "idle").set(idle);
        metrics::gauge!(DB_POOL_CONNECTIONS, "pool" => pool, "state" => "in_use").set(size - idle);
    }
}
