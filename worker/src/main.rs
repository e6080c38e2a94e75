//! `cargo run -p worker`: the scheduled jobs, as a process of their own
//! (production: run the API with `WORKER=off` and one or more of these).

use clap::Parser;
use service::{
    db::{DEFAULT_DATABASE_URL, Db, DbConfig, SqliteSynchronous},
    secrets,
};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(name = "worker", about = "Runs the credits engine's scheduled jobs")]
struct Cli {
    /// `sqlite://…` or `postgres://…`; must be migrated (the API migrates on start).
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    database_url: String,
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS")]
    database_max_connections: Option<u32>,
    /// SQLite only: `FULL` (default) fsyncs every commit; `NORMAL` may lose
    /// the last writes on power loss (see `service::db::SqliteSynchronous`).
    #[arg(long, env = "SQLITE_SYNCHRONOUS", default_value = "FULL")]
    sqlite_synchronous: SqliteSynchronous,
    /// The key webhook and customer-token secrets are sealed with: base64
    /// of 32 random bytes, the API's (`SECRETS_KEY`). Unset: on SQLite,
    /// the key file beside the database; PostgreSQL refuses to start.
    #[arg(long, env = "SECRETS_KEY", hide_env_values = true)]
    secrets_key: Option<String>,
    /// Where to serve Prometheus metrics (`GET /metrics`), or `off`. Not
    /// the API's 9464, so an API with an embedded worker and a worker of
    /// its own can share a host.
    /// Unset: 127.0.0.1:9465 if free.
    #[arg(long, env = "METRICS_ADDR")]
    metrics_addr: Option<worker::observability::MetricsAddr>,
    /// `human` (default) or `json` (one object per line).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "human")]
    log_format: worker::observability::LogFormat,
    #[command(flatten)]
    worker: worker::WorkerConfig,
}

/// The worker's metrics address unless `METRICS_ADDR` says otherwise (the
/// API's is 9464, so the two can share a host).
const METRICS_ADDR_DEFAULT: std::net::SocketAddr = std::net::SocketAddr::V4(
    std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 9465),
);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _telemetry = worker::observability::init("credits-worker", cli.log_format)?;
    let key = secrets::resolve_key(&cli.database_url, cli.secrets_key.as_deref(), true)?;
    worker::announce_secrets_key(&key);
    let db = Db::connect(&DbConfig {
        url: cli.database_url,
        max_connections: cli.database_max_connections,
        sqlite_synchronous: cli.sqlite_synchronous,
    })
    .await?
    .with_sealer(secrets::Sealer::new(&key.key));
    let shutdown = CancellationToken::new();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            worker::shutdown_signal().await;
            shutdown.cancel();
        }
    });
    let clock: std::sync::Arc<dyn service::Clock> = std::sync::Arc::new(service::SystemClock);
    worker::observability::serve_metrics_as_configured(
        cli.metrics_addr,
        METRICS_ADDR_DEFAULT,
        db.clone(),
        clock.clone(),
        shutdown.clone(),
    )
    .await?;
    worker::run(db, clock, cli.worker, shutdown).await?;
    Ok(())
}
