//! The worker: scheduled jobs over the same database as the API, with
//! apalis-cron for the schedules and apalis' SQL storage (`apalis-sqlite` /
//! `apalis-postgres`, in the same database, on the same pool) as the job
//! queue: cron tick → claim in `job_tick` → one [`queue::JobTick`] in the
//! job's queue → a storage worker on any replica runs it (see [`run`]). Job
//! handlers are thin: the rules they apply live in `service`.
//!
//! Runs as its own binary (`cargo run -p worker`, production) or inside the
//! API process (`WORKER=embedded`, the default with SQLite).

use std::{path::PathBuf, str::FromStr, sync::Arc, time::Duration};

use apalis::prelude::*;
use apalis_cron::{CronScheduler, Tick};
use sea_orm::DatabaseBackend;
use service::{Clock, Db, jobs::Job};
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
    #[command(flatten)]
    pub webhooks: WebhookConfig,
    /// Seconds a worker vouches for a job run it is running (renewed every
    /// sixth of it); a run whose worker died is `ABANDONED` once it runs
    /// out, and its work is taken up by the next run (at least 1).
    #[arg(long, env = "JOB_LEASE_SECONDS", default_value_t = 60)]
    pub job_lease_seconds: u64,
}

impl WorkerConfig {
    pub fn lease(&self) -> service::jobs::Lease {
        service::jobs::Lease::new(Duration::from_secs(self.job_lease_seconds))
    }
}

#[derive(Debug, Clone, Default, clap::Args)]
pub struct WebhookConfig {
    /// Development and tests only: `true` lets webhooks go to private,
    /// loopback and link-local addresses and local names, over plain
    /// http:// too. Default `false`: public addresses over HTTPS only,
    /// checked at registration and at every delivery.
    #[arg(
        long,
        env = "WEBHOOK_ALLOW_PRIVATE",
        default_value_t = false,
        action = clap::ArgAction::Set
    )]
    pub webhook_allow_private: bool,
}

impl WebhookConfig {
    /// Development: private targets allowed.
    pub fn allow_private() -> Self {
        Self {
            webhook_allow_private: true,
        }
    }

    pub fn targets(&self) -> service::notifications::TargetPolicy {
        service::notifications::TargetPolicy::from_allow_private(self.webhook_allow_private)
    }
}

#[cfg(test)]
mod webhook_config_tests {
    use clap::Parser;

    use super::WebhookConfig;
    use service::notifications::TargetPolicy;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        webhooks: WebhookConfig,
    }

    #[test]
    fn private_targets_are_refused_unless_set() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).unwrap().webhooks.targets();
        // Only when the process environment does not set it.
        if std::env::var_os("WEBHOOK_ALLOW_PRIVATE").is_none() {
            assert_eq!(parse(&["x"]), TargetPolicy::PublicOnly);
        }
        assert_eq!(
            parse(&["x", "--webhook-allow-private", "true"]),
            TargetPolicy::AllowPrivate
        );
        assert_eq!(
            parse(&["x", "--webhook-allow-private", "false"]),
            TargetPolicy::PublicOnly
        );
    }
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
    #[error("secrets at rest: {0}")]
    Secrets(#[from] service::secrets::Error),
    #[error("worker: {0}")]
    Monitor(String),
}

/// Every scheduled job runs every minute (at second 0); each run is
/// bounded and idempotent, so a missed or doubled tick changes nothing but
/// timing: the next run catches up.
const EVERY_MINUTE: &str = "0 * * * * *";

/// Notifications are dispatched and sent every five seconds.
const EVERY_FIVE_SECONDS: &str = "*/5 * * * * *";
/// Emails one notification run sends at most.
pub const NOTIFY_BATCH: u64 = 200;
/// Webhook deliveries one delivery round claims at most.
pub const DELIVER_BATCH: u64 = 1_000;
/// Delivery rounds one notification run makes at most (and it starts no
/// round after [`DELIVER_TIME_MAX`]).
pub const DELIVER_ROUNDS_MAX: u32 = 20;
pub const DELIVER_TIME_MAX: Duration = Duration::from_secs(10);

/// Subscriptions one allowance-reset run handles at most.
pub const RESET_BATCH: u64 = 500;
/// Wallets (and orders) one expiry-sweep run handles at most.
pub const SWEEP_BATCH: u64 = 1_000;

/// How long a stopping worker waits for running jobs before it exits
/// anyway (a job cut off is taken up again by another replica's storage
/// worker once this one's heartbeat is stale).
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// Says where the process's secrets key comes from (never the key): a
/// line on stdout when the key file was just created (whoever started the
/// engine must know to back it up), a log line always.
pub fn announce_secrets_key(resolved: &service::secrets::ResolvedKey) {
    use service::secrets::KeyOrigin;
    let key_id = resolved.key.id();
    match &resolved.origin {
        KeyOrigin::Env => tracing::info!(%key_id, "secrets key from SECRETS_KEY"),
        KeyOrigin::Generated => {
            tracing::info!(%key_id, "secrets key made for this in-memory database")
        }
        KeyOrigin::File { path, created } => {
            if *created {
                use std::io::Write as _;
                // Like the bootstrap key: a closed stdout must not kill us.
                let _ = writeln!(
                    std::io::stdout().lock(),
                    "Created the secrets key file {} (mode 0600): webhook and customer-token secrets are sealed with it. Back it up with the database; without it they can't be read.\n",
                    path.display()
                );
            }
            tracing::info!(%key_id, path = %path.display(), created, "secrets key from the key file");
        }
    }
}

/// The cron schedule of each job.
pub fn schedule(job: Job) -> &'static str {
    match job {
        Job::AllowanceReset | Job::ExpirySweep => EVERY_MINUTE,
        Job::Notifications => EVERY_FIVE_SECONDS,
    }
}

/// What every job handler gets.
#[derive(Clone)]
pub struct JobContext {
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    pub mailer: Arc<transports::LettreMailer>,
    pub http: Arc<transports::HttpTransport>,
    /// Webhook attempts in flight, shared by every delivery run here.
    pub in_flight: Arc<service::notifications::webhooks::InFlight>,
    /// How long this worker vouches for a run (`JOB_LEASE_SECONDS`).
    pub lease: service::jobs::Lease,
}

impl JobContext {
    /// The database, the clock and the mail and webhook transports.
    pub fn new(db: Db, clock: Arc<dyn Clock>, config: &WorkerConfig) -> Result<Self, Error> {
        let mailer = transports::LettreMailer::from_config(&config.mail).map_err(Error::Monitor)?;
        if config.webhooks.webhook_allow_private {
            tracing::warn!(
                "WEBHOOK_ALLOW_PRIVATE=true: webhooks may go to private addresses (development only)"
            );
        }
        let http =
            transports::HttpTransport::new(transports::WEBHOOK_TIMEOUT, config.webhooks.targets())
                .map_err(Error::Monitor)?;
        Ok(Self {
            db,
            clock,
            mailer: Arc::new(mailer),
            http: Arc::new(http),
            in_flight: Arc::default(),
            lease: config.lease(),
        })
    }
}

/// Checks the database is migrated and prepares apalis' job tables on the
/// same pool (idempotent). Unlike `SqliteStorage::setup` (which sets
/// `synchronous=OFF` on whichever connection it gets), this leaves the
/// connection pragmas (WAL, `synchronous` as configured, `FULL` by default)
/// as [`Db`] set them.
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

/// Runs every job until `shutdown` is cancelled, then stops gracefully.
///
/// How a job runs:
/// 1. At start, [`jobs::run_all`] runs each job once, directly, to catch up
///    at once after downtime rather than at the next tick.
/// 2. Per job, an apalis-cron worker ([`CronScheduler`], in memory: every
///    replica fires every tick) claims each tick in `job_tick`
///    ([`service::jobs::claim_tick`], committed); the one replica that wins
///    pushes a [`queue::JobTick`] into the job's apalis queue
///    ([`queue::queue_name`]) in the same database, on the same pool.
/// 3. Per job, a storage-backed apalis worker (`SqliteStorage` /
///    `PostgresStorage`, polling every [`queue::POLL_INTERVAL`] with
///    [`queue::PollEvery`]) on any
///    replica takes the tick and runs the job ([`jobs::run_tick`]),
///    recording the run for the `jobs` query and the metrics.
///
/// On `shutdown` the workers stop taking ticks; a tick taken but not
/// started goes back to its queue, running jobs get [`SHUTDOWN_TIMEOUT`] to
/// finish. A worker whose storage fails (the database went away) is
/// restarted under a new name.
pub async fn run(
    db: Db,
    clock: Arc<dyn Clock>,
    config: WorkerConfig,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    prepare(&db).await?;
    // The key opens the database's secrets (or this replica stops here);
    // plaintext left from before sealing is sealed.
    service::secrets::prepare(&db, clock.as_ref()).await?;
    let ctx = JobContext::new(db, clock, &config)?;
    tracing::info!(mail = %config.mail.describe(), "worker started");
    // Listening first: a start-up run waiting on a slow endpoint holds up
    // no wake-up.
    let wake = tokio::spawn(wake::run(ctx.clone(), shutdown.clone()));
    jobs::run_all(&ctx).await;
    let mut monitor = Monitor::new();
    for job in Job::ALL {
        let schedule =
            cron::Schedule::from_str(schedule(job)).map_err(|e| Error::Monitor(e.to_string()))?;
        let ctx = ctx.clone();
        monitor = monitor.register(move |_restarts| {
            WorkerBuilder::new(format!("{}-cron", queue::queue_name(job)))
                .backend(CronScheduler::new(schedule.clone()))
                .data(ctx.clone())
                .data(job)
                .build(jobs::on_cron_tick)
        });
    }
    // Worker names are unique per process (and per restart): apalis
    // refuses to register a name that is alive elsewhere.
    let instance = format!("{}-{}", std::process::id(), uuid::Uuid::now_v7().simple());
    // The two storages are different types: one registration per backend.
    macro_rules! register_storage_workers {
        ($storage:path) => {
            for job in Job::ALL {
                let (ctx, instance) = (ctx.clone(), instance.clone());
                monitor = monitor.register(move |restarts| {
                    WorkerBuilder::new(format!("{}@{instance}#{restarts}", queue::queue_name(job)))
                        .backend(
                            $storage(&ctx.db, job)
                                .poll_with_strategy(queue::PollEvery::new(queue::POLL_INTERVAL)),
                        )
                        .data(ctx.clone())
                        .concurrency(1)
                        .build(jobs::run_tick)
                });
            }
        };
    }
    match ctx.db.backend() {
        DatabaseBackend::Sqlite => register_storage_workers!(queue::sqlite_storage),
        _ => register_storage_workers!(queue::postgres_storage),
    }
    monitor
        .should_restart(|worker, error| {
            if worker.is_shutting_down() {
                return false;
            }
            tracing::warn!(worker = worker.name(), %error, "job worker failed; restarting it");
            true
        })
        .shutdown_timeout(SHUTDOWN_TIMEOUT)
        .run_with_signal(async move {
            shutdown.cancelled().await;
            Ok(())
        })
        .await
        .map_err(|e| Error::Monitor(e.to_string()))?;
    wake.abort();
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

pub mod observability;
pub mod queue;
pub mod transports;
pub mod wake;

pub mod jobs {
    use chrono::{DateTime, Utc};
    use service::jobs::record;

    use super::*;
    use crate::queue::{self, JobTick};

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

    /// [`notify_once`], recorded when it did something (it runs every 5 s).
    pub async fn notify(ctx: &JobContext) -> Result<u64, service::notifications::Error> {
        let clock = ctx.clock.as_ref();
        service::jobs::record_if_busy(&ctx.db, clock, Job::Notifications, async {
            let dispatched = dispatch_all(ctx).await?;
            Ok(dispatched + send_all(ctx).await?)
        })
        .await
    }

    /// Drains the outbox into deliveries (bounded: see
    /// [`service::notifications::DrainLimits`]); returns how many events.
    pub async fn dispatch_all(ctx: &JobContext) -> Result<u64, service::notifications::Error> {
        use service::notifications::{DrainLimits, drain};
        drain(&ctx.db, ctx.clock.as_ref(), DrainLimits::default()).await
    }

    /// One attempt of every due webhook (rounds of [`DELIVER_BATCH`],
    /// concurrent within the process' caps, at most [`DELIVER_ROUNDS_MAX`]
    /// rounds or [`DELIVER_TIME_MAX`]) and of up to [`NOTIFY_BATCH`] due
    /// emails; returns how many attempts.
    pub async fn send_all(ctx: &JobContext) -> Result<u64, service::notifications::Error> {
        use service::notifications::{email, webhooks};
        let clock = ctx.clock.as_ref();
        let started = std::time::Instant::now();
        let mut attempted = 0;
        for _ in 0..DELIVER_ROUNDS_MAX {
            let report = webhooks::deliver_due_with(
                &ctx.db,
                clock,
                ctx.http.as_ref(),
                &ctx.in_flight,
                DELIVER_BATCH,
                webhooks::RUN_BUDGET,
            )
            .await?;
            attempted += report.attempted;
            if report.attempted < DELIVER_BATCH || started.elapsed() >= DELIVER_TIME_MAX {
                break;
            }
        }
        let mails = email::send_due(&ctx.db, clock, ctx.mailer.as_ref(), NOTIFY_BATCH).await?;
        Ok(attempted + mails.sent + mails.failed + mails.retrying)
    }

    /// Dispatch and send once, unrecorded: what a wake-up does.
    pub async fn notify_once(ctx: &JobContext) -> Result<u64, service::notifications::Error> {
        Ok(dispatch_all(ctx).await? + send_all(ctx).await?)
    }

    async fn reset(ctx: &JobContext) -> Result<u64, service::subscriptions::Error> {
        record(
            &ctx.db,
            ctx.clock.as_ref(),
            Job::AllowanceReset,
            ctx.lease,
            async {
                let report =
                    service::allowances::reset_due(&ctx.db, ctx.clock.as_ref(), RESET_BATCH)
                        .await?;
                Ok(report.subscriptions)
            },
        )
        .await
    }

    async fn sweep(ctx: &JobContext) -> Result<u64, service::ledger::Error> {
        record(
            &ctx.db,
            ctx.clock.as_ref(),
            Job::ExpirySweep,
            ctx.lease,
            async {
                let report =
                    service::expiry::sweep(&ctx.db, ctx.clock.as_ref(), SWEEP_BATCH).await?;
                Ok(report.wallets + report.orders)
            },
        )
        .await
    }

    /// Claims `tick_at` of `job` for this replica and, if this replica is
    /// the first, queues it; `true` when it queued it.
    ///
    /// The claim ([`service::jobs::claim_tick`]) is what makes N replicas'
    /// cron streams — each firing every tick — queue each tick once:
    /// apalis' storages only deduplicate by idempotency key, which
    /// PostgreSQL enforces by refusing the second push (an error, not a
    /// no-op). The claim is committed before the push, outside any
    /// transaction; a crash between the two loses that one tick, which the
    /// job's next tick makes up for (every job catches up on whatever is
    /// due).
    ///
    /// At the top of each hour the winner also prunes the job's queue
    /// entries finished more than [`queue::KEEP_FINISHED`] ago.
    pub async fn enqueue(
        db: &Db,
        clock: &dyn Clock,
        job: Job,
        tick_at: DateTime<Utc>,
    ) -> Result<bool, BoxDynError> {
        if !service::jobs::claim_tick(db, clock, job, tick_at).await? {
            return Ok(false);
        }
        queue::push(db, &JobTick::new(job, tick_at)).await?;
        if tick_at.timestamp() % 3600 == 0 {
            match queue::prune(db, job, tick_at - queue::KEEP_FINISHED).await {
                Ok(n) => tracing::debug!(job = job.as_str(), pruned = n, "job queue pruned"),
                Err(e) => {
                    tracing::warn!(job = job.as_str(), error = %e, "pruning the job queue failed")
                }
            }
        }
        Ok(true)
    }

    /// The cron worker's handler: [`enqueue`] the tick.
    pub async fn on_cron_tick(
        tick: Tick,
        ctx: Data<JobContext>,
        job: Data<Job>,
    ) -> Result<bool, BoxDynError> {
        let at = DateTime::from_timestamp(i64::try_from(tick.get_timestamp())?, 0)
            .ok_or("tick out of range")?;
        match enqueue(&ctx.db, ctx.clock.as_ref(), *job, at).await {
            Ok(queued) => {
                tracing::trace!(job = job.as_str(), tick = %at, queued, "cron tick");
                Ok(queued)
            }
            Err(e) => {
                tracing::error!(job = job.as_str(), tick = %at, error = %e, "queueing a tick failed");
                Err(e)
            }
        }
    }

    /// The storage worker's handler: runs the queued tick's job, recorded
    /// as one run; returns what it handled (kept as the queue entry's
    /// result).
    pub async fn run_tick(tick: JobTick, ctx: Data<JobContext>) -> Result<u64, BoxDynError> {
        let job = tick
            .job()
            .ok_or_else(|| format!("unknown job {:?}", tick.job))?;
        let handled: Result<u64, BoxDynError> = match job {
            Job::AllowanceReset => reset(&ctx).await.map_err(Into::into),
            Job::ExpirySweep => sweep(&ctx).await.map_err(Into::into),
            Job::Notifications => notify(&ctx).await.map_err(Into::into),
        };
        match &handled {
            Ok(n) => {
                tracing::debug!(job = job.as_str(), tick = %tick.tick_at, handled = n, "job ran")
            }
            Err(e) => {
                tracing::error!(job = job.as_str(), tick = %tick.tick_at, error = %e, "job failed")
            }
        }
        handled
    }
}
