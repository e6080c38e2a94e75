//! The worker: scheduled jobs over the same database as the API, with
//! apalis (its SQLite or PostgreSQL storage) and apalis-cron. Job handlers
//! are thin: the rules they apply live in `service`.
//!
//! Runs as its own binary (`cargo run -p worker`, production) or inside the
//! API process (`WORKER=embedded`, the default with SQLite).

use std::{path::PathBuf, str::FromStr, sync::Arc};

use apalis::prelude::*;
use apalis_cron::{CronScheduler, Tick};
use sea_orm::DatabaseBackend;
use service::{Clock, Db};
use tokio_util::sync::CancellationToken;

/// How the worker sends email. Read now, used by the notification jobs.
#[derive(Debug, Clone, clap::Args)]
pub struct MailConfig {
    /// `smtp://host:port` or `smtps://user:pass@host:port`. Unset: mail is
    /// written as `.eml` files under `--mail-dir`, so no mail server is needed.
    #[arg(long, env = "SMTP_URL")]
    pub smtp_url: Option<String>,
    /// The sender address of every email.
    #[arg(long, env = "MAIL_FROM", default_value = "credits@localhost")]
    pub mail_from: String,
    /// Where `.eml` files go when `SMTP_URL` is unset.
    #[arg(long, env = "MAIL_DIR", default_value = "mail")]
    pub mail_dir: PathBuf,
}

impl MailConfig {
    /// Where mail goes, for the start-up log (never the password).
    pub fn describe(&self) -> String {
        match &self.smtp_url {
            Some(url) => {
                let host = url.rsplit('@').next().unwrap_or(url);
                let host = host.split("://").last().unwrap_or(host);
                format!("SMTP {host}")
            }
            None => format!(".eml files under {}", self.mail_dir.display()),
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct WorkerConfig {
    #[command(flatten)]
    pub mail: MailConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "the database has migrations not applied yet ({0}); start the API once or run `cargo run -p migration -- up`"
    )]
    NotMigrated(String),
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error("job storage setup: {0}")]
    JobStorage(String),
    #[error("worker: {0}")]
    Monitor(String),
}

/// Every scheduled job runs every minute (at second 0); each run is
/// bounded and idempotent, so a missed or doubled tick changes nothing but
/// timing: the next run catches up.
const EVERY_MINUTE: &str = "0 * * * * *";

/// Notifications are dispatched and sent every five seconds.
const EVERY_FIVE_SECONDS: &str = "*/5 * * * * *";
/// Outbox events, webhook attempts and emails one notification run
/// handles at most (each).
pub const NOTIFY_BATCH: u64 = 200;

/// Subscriptions one allowance-reset run handles at most.
pub const RESET_BATCH: u64 = 500;
/// Wallets (and orders) one expiry-sweep run handles at most.
pub const SWEEP_BATCH: u64 = 1_000;

/// What every job handler gets.
#[derive(Clone)]
pub struct JobContext {
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    pub mailer: Arc<transports::LettreMailer>,
    pub http: Arc<transports::HttpTransport>,
}

/// Checks the database is migrated and prepares apalis' job tables on the
/// same pool (idempotent). Unlike `SqliteStorage::setup`, this leaves the
/// connection pragmas (WAL, `synchronous=NORMAL`) as [`Db`] set them.
pub async fn prepare(db: &Db) -> Result<(), Error> {
    let pending = db.pending_migrations().await?;
    if !pending.is_empty() {
        return Err(Error::NotMigrated(pending.join(", ")));
    }
    let migrated = match db.backend() {
        DatabaseBackend::Sqlite => {
            apalis_sqlite::SqliteStorage::<()>::migrations()
                .run(db.writer().get_sqlite_connection_pool())
                .await
        }
        _ => {
            apalis_postgres::PostgresStorage::<()>::migrations()
                .run(db.writer().get_postgres_connection_pool())
                .await
        }
    };
    migrated.map_err(|e| Error::JobStorage(e.to_string()))
}

/// Runs every job until `shutdown` is cancelled, then lets in-flight jobs
/// finish. Each job also runs once at start, to catch up at once after
/// downtime rather than at the next tick.
pub async fn run(
    db: Db,
    clock: Arc<dyn Clock>,
    config: WorkerConfig,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    prepare(&db).await?;
    let mailer = transports::LettreMailer::from_config(&config.mail).map_err(Error::Monitor)?;
    let http =
        transports::HttpTransport::new(transports::WEBHOOK_TIMEOUT).map_err(Error::Monitor)?;
    tracing::info!(mail = %config.mail.describe(), "worker started");
    let ctx = JobContext {
        db,
        clock,
        mailer: Arc::new(mailer),
        http: Arc::new(http),
    };
    jobs::run_all(&ctx).await;
    let schedule =
        cron::Schedule::from_str(EVERY_MINUTE).map_err(|e| Error::Monitor(e.to_string()))?;
    let notify_schedule =
        cron::Schedule::from_str(EVERY_FIVE_SECONDS).map_err(|e| Error::Monitor(e.to_string()))?;
    let (reset_ctx, sweep_ctx, notify_ctx) = (ctx.clone(), ctx.clone(), ctx.clone());
    let (reset_schedule, sweep_schedule) = (schedule.clone(), schedule);
    Monitor::new()
        .register(move |_restarts| {
            WorkerBuilder::new("allowance-reset")
                .backend(CronScheduler::new(reset_schedule.clone()))
                .data(reset_ctx.clone())
                .build(jobs::allowance_reset)
        })
        .register(move |_restarts| {
            WorkerBuilder::new("expiry-sweep")
                .backend(CronScheduler::new(sweep_schedule.clone()))
                .data(sweep_ctx.clone())
                .build(jobs::expiry_sweep)
        })
        .register(move |_restarts| {
            WorkerBuilder::new("notifications")
                .backend(CronScheduler::new(notify_schedule.clone()))
                .data(notify_ctx.clone())
                .build(jobs::notifications)
        })
        .shutdown_timeout(std::time::Duration::from_secs(30))
        .run_with_signal(async move {
            shutdown.cancelled().await;
            Ok(())
        })
        .await
        .map_err(|e| Error::Monitor(e.to_string()))?;
    tracing::info!("worker stopped");
    Ok(())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM: what both binaries stop on.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            ctrl_c.await.ok();
            return;
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.ok();
}

pub mod transports;

pub mod jobs {
    use service::jobs::{Job, record};

    use super::*;

    /// One run of every job, in order.
    pub async fn run_all(ctx: &JobContext) {
        if let Err(e) = reset(ctx).await {
            tracing::error!(error = %e, "allowance reset failed");
        }
        if let Err(e) = sweep(ctx).await {
            tracing::error!(error = %e, "expiry sweep failed");
        }
        if let Err(e) = notify(ctx).await {
            tracing::error!(error = %e, "notifications failed");
        }
    }

    /// Outbox → deliveries, then one attempt of every due webhook and
    /// email. Recorded only when it did something (it runs every 5 s).
    pub async fn notify(ctx: &JobContext) -> Result<u64, service::notifications::webhooks::Error> {
        use service::notifications::{dispatch, email, webhooks};
        let clock = ctx.clock.as_ref();
        service::jobs::record_if_busy(&ctx.db, clock, Job::Notifications, async {
            let dispatched = dispatch(&ctx.db, clock, NOTIFY_BATCH).await?;
            let hooks =
                webhooks::deliver_due(&ctx.db, clock, ctx.http.as_ref(), NOTIFY_BATCH).await?;
            let mails = email::send_due(&ctx.db, clock, ctx.mailer.as_ref(), NOTIFY_BATCH).await?;
            Ok(dispatched + hooks.attempted + mails.sent + mails.failed + mails.retrying)
        })
        .await
    }

    pub async fn notifications(tick: Tick, ctx: Data<JobContext>) -> Result<(), BoxDynError> {
        if !claim(&ctx, Job::Notifications, &tick).await? {
            return Ok(());
        }
        notify(&ctx).await?;
        Ok(())
    }

    async fn reset(ctx: &JobContext) -> Result<u64, service::subscriptions::Error> {
        record(&ctx.db, ctx.clock.as_ref(), Job::AllowanceReset, async {
            let report =
                service::allowances::reset_due(&ctx.db, ctx.clock.as_ref(), RESET_BATCH).await?;
            Ok(report.subscriptions)
        })
        .await
    }

    async fn sweep(ctx: &JobContext) -> Result<u64, service::ledger::Error> {
        record(&ctx.db, ctx.clock.as_ref(), Job::ExpirySweep, async {
            let report = service::expiry::sweep(&ctx.db, ctx.clock.as_ref(), SWEEP_BATCH).await?;
            Ok(report.wallets + report.orders)
        })
        .await
    }

    /// Whether this replica runs this tick (the first to claim it does).
    async fn claim(ctx: &JobContext, job: Job, tick: &Tick) -> Result<bool, BoxDynError> {
        let at = chrono::DateTime::from_timestamp(i64::try_from(tick.get_timestamp())?, 0)
            .ok_or("tick out of range")?;
        Ok(service::jobs::claim_tick(&ctx.db, ctx.clock.as_ref(), job, at).await?)
    }

    pub async fn allowance_reset(tick: Tick, ctx: Data<JobContext>) -> Result<(), BoxDynError> {
        if !claim(&ctx, Job::AllowanceReset, &tick).await? {
            return Ok(());
        }
        let n = reset(&ctx).await?;
        tracing::debug!(
            tick = tick.get_timestamp(),
            subscriptions = n,
            "allowance reset"
        );
        Ok(())
    }

    pub async fn expiry_sweep(tick: Tick, ctx: Data<JobContext>) -> Result<(), BoxDynError> {
        if !claim(&ctx, Job::ExpirySweep, &tick).await? {
            return Ok(());
        }
        let n = sweep(&ctx).await?;
        tracing::debug!(tick = tick.get_timestamp(), handled = n, "expiry sweep");
        Ok(())
    }
}
