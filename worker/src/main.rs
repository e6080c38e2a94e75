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
    #[command(flatten)]
    worker: worker::WorkerConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
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
    worker::run(
        db,
        std::sync::Arc::new(service::SystemClock),
        cli.worker,
        shutdown,
    )
    .await?;
    Ok(())
}
