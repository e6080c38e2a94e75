//! Configuration from the environment (and the same names as flags), with
//! defaults that make a fresh checkout run.

use std::net::SocketAddr;

use service::db::{DEFAULT_DATABASE_URL, DbConfig};

#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// `sqlite://file.db?mode=rwc` (embedded) or `postgres://user@host:port/db`.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
    /// Pool size on PostgreSQL; reader pool size on SQLite (writes always
    /// use one connection there).
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS")]
    pub database_max_connections: Option<u32>,
}

impl DatabaseArgs {
    pub fn db_config(&self) -> DbConfig {
        DbConfig {
            url: self.database_url.clone(),
            max_connections: self.database_max_connections,
        }
    }

    pub fn is_sqlite(&self) -> bool {
        self.database_url.starts_with("sqlite:")
    }
}

/// Whether the API process also runs the scheduled jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WorkerMode {
    /// `embedded` with SQLite, `off` with PostgreSQL.
    Auto,
    /// Run the worker inside this process.
    Embedded,
    /// Don't: a separate `worker` process runs the jobs.
    Off,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8000")]
    pub listen_addr: SocketAddr,
    #[arg(long, env = "WORKER", value_enum, default_value = "auto")]
    pub worker: WorkerMode,
    /// Browser origins allowed to call the API (CORS), comma-separated,
    /// e.g. `https://app.example.com,http://localhost:5173`; `*` allows
    /// any. Empty (default): no CORS headers, browsers on other origins are
    /// refused by the browser.
    #[arg(long, env = "CORS_ORIGINS", value_delimiter = ',', default_value = "")]
    pub cors_origins: Vec<String>,
    #[command(flatten)]
    pub worker_config: worker::WorkerConfig,
}

impl ServeArgs {
    pub fn runs_worker(&self) -> bool {
        match self.worker {
            WorkerMode::Auto => self.database.is_sqlite(),
            WorkerMode::Embedded => true,
            WorkerMode::Off => false,
        }
    }
}
