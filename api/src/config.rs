//! Configuration from the environment (and the same names as flags), with
//! defaults that make a fresh checkout run.

use std::net::SocketAddr;

use service::db::{DEFAULT_DATABASE_URL, DbConfig, SqliteSynchronous};

#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// `sqlite://file.db?mode=rwc` (embedded) or `postgres://user@host:port/db`.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
    /// Pool size on PostgreSQL; reader pool size on SQLite (writes always
    /// use one connection there).
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS")]
    pub database_max_connections: Option<u32>,
    /// SQLite only: `FULL` (default) fsyncs every commit, so an
    /// acknowledged write survives power loss; `NORMAL` is faster but may
    /// lose the last writes on power loss or an OS crash (see
    /// `service::db::SqliteSynchronous`).
    #[arg(long, env = "SQLITE_SYNCHRONOUS", default_value = "FULL")]
    pub sqlite_synchronous: SqliteSynchronous,
}

impl DatabaseArgs {
    pub fn db_config(&self) -> DbConfig {
        DbConfig {
            url: self.database_url.clone(),
            max_connections: self.database_max_connections,
            sqlite_synchronous: self.sqlite_synchronous,
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
    pub http_limits: HttpLimitArgs,
    #[command(flatten)]
    pub worker_config: worker::WorkerConfig,
}

/// Bounds on connections and requests (see `http::admission`).
#[derive(Debug, Clone, clap::Args)]
pub struct HttpLimitArgs {
    /// Open connections at most; more wait in the accept queue.
    #[arg(long, env = "CONNECTIONS_MAX", default_value_t = 1024)]
    pub connections_max: usize,
    /// Seconds a client has to send a request's headers (and that an idle
    /// keep-alive connection stays open).
    #[arg(long, env = "HEADER_READ_TIMEOUT_SECS", default_value_t = 10)]
    pub header_read_timeout_secs: u64,
    /// Seconds a client has to send a request's body.
    #[arg(long, env = "BODY_READ_TIMEOUT_SECS", default_value_t = 10)]
    pub body_read_timeout_secs: u64,
    /// GraphQL requests executing at once; more wait up to 5 s, then 503.
    #[arg(long, env = "REQUESTS_IN_FLIGHT_MAX", default_value_t = 256)]
    pub requests_in_flight_max: usize,
    /// Seconds one GraphQL request may run before it is stopped (504).
    #[arg(long, env = "REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,
}

impl HttpLimitArgs {
    pub fn limits(&self) -> crate::http::HttpLimits {
        use std::time::Duration;
        crate::http::HttpLimits {
            connections_max: self.connections_max.max(1),
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs.max(1)),
            body_read_timeout: Duration::from_secs(self.body_read_timeout_secs.max(1)),
            requests_in_flight_max: self.requests_in_flight_max.max(1),
            request_timeout: Duration::from_secs(self.request_timeout_secs.max(1)),
            ..Default::default()
        }
    }
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
