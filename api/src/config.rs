//! Configuration from the environment (and the same names as flags), with
//! defaults that make a fresh checkout run.

use std::net::SocketAddr;

use service::db::{DEFAULT_DATABASE_URL, DbConfig, SqliteSynchronous};

use crate::http::throttle::{IpNets, Limit, RateLimits};

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

/// The key webhook and customer-token secrets are sealed with at rest
/// (`service::secrets`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SecretsArgs {
    /// Base64 of 32 random bytes (`openssl rand -base64 32`); prefer the
    /// environment to the flag. Unset: on SQLite, the key file beside the
    /// database (created, mode 0600, on first start); PostgreSQL refuses
    /// to start.
    #[arg(long, env = "SECRETS_KEY", hide_env_values = true)]
    pub secrets_key: Option<String>,
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
    /// Where to serve Prometheus metrics (`GET /metrics`), apart from the
    /// API's port, or `off`. Unset: 127.0.0.1:9464 if free (a separate
    /// `worker` process takes 9465, so the two can share a host).
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<worker::observability::MetricsAddr>,
    /// `human` (default) or `json` (one object per line).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "human")]
    pub log_format: worker::observability::LogFormat,
    /// Browser origins allowed to call the API (CORS), comma-separated,
    /// e.g. `https://app.example.com,http://localhost:5173`; `*` allows
    /// any. Empty (default): no CORS headers, browsers on other origins are
    /// refused by the browser.
    #[arg(long, env = "CORS_ORIGINS", value_delimiter = ',', default_value = "")]
    pub cors_origins: Vec<String>,
    #[command(flatten)]
    pub http_limits: HttpLimitArgs,
    #[command(flatten)]
    pub rate_limits: RateLimitArgs,
    #[command(flatten)]
    pub secrets: SecretsArgs,
    #[command(flatten)]
    pub payments: PaymentArgs,
    #[command(flatten)]
    pub worker_config: worker::WorkerConfig,
}

/// Payment providers (`service::payments`).
#[derive(Debug, Clone, clap::Args)]
pub struct PaymentArgs {
    /// Mercado Pago's API, where notified payments are fetched from
    /// (reached under the webhook target rules: `WEBHOOK_ALLOW_PRIVATE`).
    #[arg(
        long,
        env = "MERCADOPAGO_API_URL",
        default_value = service::payments::MERCADOPAGO_API_URL
    )]
    pub mercadopago_api_url: String,
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

/// Rate limits (see `http::throttle`). Each is `off` or
/// `<count>/<s|min|h>[,burst=<n>]`; every replica keeps its own buckets.
#[derive(Debug, Clone, clap::Args)]
pub struct RateLimitArgs {
    /// Requests per API key.
    #[arg(long, env = "RATE_LIMIT_API_KEY", default_value = "100/s,burst=200")]
    pub rate_limit_api_key: Limit,
    /// Requests per customer, over all of its customer tokens.
    #[arg(
        long,
        env = "RATE_LIMIT_CUSTOMER_TOKEN",
        default_value = "10/s,burst=20"
    )]
    pub rate_limit_customer_token: Limit,
    /// Failed authentications (401) per client address; an address over
    /// it gets 429 even with a valid credential until it recovers.
    #[arg(
        long,
        env = "RATE_LIMIT_AUTH_FAILURES",
        default_value = "10/min,burst=20"
    )]
    pub rate_limit_auth_failures: Limit,
    /// Proxies (addresses or networks, comma-separated: `10.0.0.0/8,::1`)
    /// whose `X-Forwarded-For` names the client address. Empty (default):
    /// the client address is the TCP peer.
    #[arg(long, env = "TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: IpNets,
}

impl RateLimitArgs {
    pub fn limits(&self) -> RateLimits {
        RateLimits {
            api_key: self.rate_limit_api_key,
            customer_token: self.rate_limit_customer_token,
            auth_failures: self.rate_limit_auth_failures,
            trusted_proxies: self.trusted_proxies.0.clone(),
            ..RateLimits::default()
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::http::throttle::Rate;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        rate_limits: RateLimitArgs,
    }

    #[test]
    fn rate_limit_flags() {
        // The flags' defaults are the documented ones.
        let cli = Cli::try_parse_from(["api"]).unwrap();
        assert_eq!(cli.rate_limits.limits(), RateLimits::default());
        let cli = Cli::try_parse_from([
            "api",
            "--rate-limit-api-key=off",
            "--rate-limit-customer-token",
            "5/s",
            "--rate-limit-auth-failures=3/min,burst=6",
            "--trusted-proxies=10.0.0.0/8,::1",
        ])
        .unwrap();
        let limits = cli.rate_limits.limits();
        assert_eq!(limits.api_key, Limit::Off);
        assert_eq!(limits.customer_token, Limit::Rate(Rate::per_second(5, 5)));
        assert_eq!(limits.auth_failures, Limit::Rate(Rate::per_minute(3, 6)));
        assert_eq!(
            limits.trusted_proxies,
            ["10.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()]
        );
        assert!(Cli::try_parse_from(["api", "--rate-limit-api-key=50/day"]).is_err());
        assert!(Cli::try_parse_from(["api", "--trusted-proxies=proxy.local"]).is_err());
        let cli = Cli::try_parse_from(["api", "--trusted-proxies= , "]).unwrap();
        assert!(cli.rate_limits.limits().trusted_proxies.is_empty());
    }
}
