//! The API under test: the release binary as a child process (what the
//! numbers are about), or the same router served in this process (the
//! smoke test, and counting SQL statements per request).

use std::{
    path::Path,
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use service::{Clock, Db};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    sync::oneshot,
    task::JoinHandle,
};

/// A running API and the ADMIN key to call it with.
pub struct Api {
    pub url: String,
    pub key: String,
    /// The child's metrics listener (`METRICS_ADDR`), `http://…/metrics`.
    pub metrics_url: Option<String>,
    pub client: reqwest::Client,
    kind: Kind,
}

enum Kind {
    Child(Child),
    InProcess {
        stop: oneshot::Sender<()>,
        task: JoinHandle<()>,
    },
}

pub fn http_client() -> reqwest::Client {
    // reqwest is built without a TLS provider of its own (plain HTTP here).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("HTTP client")
}

impl Api {
    /// Starts `bin` on `database_url` (empty database: it migrates and
    /// prints the bootstrap ADMIN key), with the worker off. Its stdout is
    /// drained for as long as it runs; stderr goes to `log`.
    pub async fn spawn(
        bin: &Path,
        database_url: &str,
        secrets_key: &service::secrets::SecretsKey,
        log: &Path,
    ) -> anyhow::Result<Self> {
        let log_file = std::fs::File::create(log).context("API log file")?;
        // A free port for its metrics listener (never the default 9464: a
        // second API on the host may hold it).
        let metrics_addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let mut child = Command::new(bin)
            .env("METRICS_ADDR", metrics_addr.to_string())
            .env("DATABASE_URL", database_url)
            .env("SECRETS_KEY", secrets_key.to_base64())
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env("WORKER", "off")
            // The notify section's receiver listens on 127.0.0.1.
            .env("WEBHOOK_ALLOW_PRIVATE", "true")
            // Measure the engine, not the per-key rate limit.
            .env("RATE_LIMIT_API_KEY", "off")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let stdout = child.stdout.take().context("API stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut key = None;
        let mut url = None;
        let started = async {
            while let Some(line) = lines.next_line().await? {
                let line = line.trim();
                if key.is_none() && line.starts_with("ck_live_") {
                    key = Some(line.to_owned());
                }
                if let Some(u) = line.strip_prefix("GraphiQL: ") {
                    url = Some(u.trim().to_owned());
                    break;
                }
            }
            anyhow::Ok(())
        };
        tokio::time::timeout(Duration::from_secs(180), started)
            .await
            .context("the API did not start within 180 s")??;
        // Keep draining: a full pipe must never stall the server.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let (Some(key), Some(url)) = (key, url) else {
            bail!(
                "the API printed no ADMIN key and GraphiQL URL (see {})",
                log.display()
            );
        };
        let api = Self {
            url,
            key,
            metrics_url: Some(format!("http://{metrics_addr}/metrics")),
            client: http_client(),
            kind: Kind::Child(child),
        };
        api.wait_ready().await?;
        Ok(api)
    }

    /// Serves `api::server::app` over `db` on a free port in this process.
    pub async fn in_process(db: Db, clock: Arc<dyn Clock>, key: String) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        // The notify section's receiver listens on 127.0.0.1.
        let app = api::server::app_with(
            db,
            clock,
            api::http::HttpLimits::default(),
            service::notifications::TargetPolicy::AllowPrivate,
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        let api = Self {
            url: format!("http://{addr}/graphql"),
            key,
            metrics_url: None,
            client: http_client(),
            kind: Kind::InProcess { stop, task },
        };
        api.wait_ready().await?;
        Ok(api)
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        for _ in 0..100 {
            if self.gql("{ __typename }", json!({})).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("the API at {} does not answer", self.url)
    }

    /// One GraphQL request; an answer with `errors` is an error.
    pub async fn gql(&self, query: &str, variables: Value) -> anyhow::Result<Value> {
        let body = json!({ "query": query, "variables": variables }).to_string();
        let answer: Value = self
            .client
            .post(&self.url)
            .bearer_auth(&self.key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?
            .json()
            .await?;
        if let Some(errors) = answer.get("errors") {
            bail!("GraphQL errors: {errors}");
        }
        Ok(answer["data"].clone())
    }

    /// The buckets of `credits_graphql_request_duration_seconds` for
    /// `operation`, scraped now (`None`: no metrics listener, or it did not
    /// answer).
    pub async fn latency_buckets(&self, operation: &str) -> Option<crate::scrape::Buckets> {
        let url = self.metrics_url.as_ref()?;
        let text = self.client.get(url).send().await.ok()?.text().await.ok()?;
        Some(crate::scrape::buckets(
            &text,
            "credits_graphql_request_duration_seconds",
            &format!("operation=\"{operation}\""),
        ))
    }

    /// The API child's process id (`None`: served in this process).
    pub fn pid(&self) -> Option<u32> {
        match &self.kind {
            Kind::Child(child) => child.id(),
            Kind::InProcess { .. } => None,
        }
    }

    /// CPU time the API child has used so far (user + system, from
    /// `/proc/<pid>/stat`); `None` in process, or off Linux.
    pub fn cpu_time(&self) -> Option<Duration> {
        crate::nested::process_cpu(self.pid()?)
    }

    pub async fn stop(self) {
        match self.kind {
            Kind::Child(mut child) => {
                let _ = child.kill().await;
            }
            Kind::InProcess { stop, task } => {
                let _ = stop.send(());
                let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
            }
        }
    }
}

/// Counts the SQL statements one request costs, on a router served in this
/// process over its own statement-counting pools.
pub struct Counted {
    pub api: Api,
    counter: Arc<AtomicU64>,
}

impl Counted {
    pub async fn start(
        database_url: &str,
        clock: Arc<dyn Clock>,
        key: String,
    ) -> anyhow::Result<Self> {
        let mut db = Db::connect(&service::db::DbConfig::new(database_url)).await?;
        let counter = db.count_statements();
        let api = Api::in_process(db, clock, key).await?;
        Ok(Self { api, counter })
    }

    /// Statements the request ran (it must succeed).
    pub async fn statements(&self, query: &str, variables: Value) -> anyhow::Result<u64> {
        let before = self.counter.load(Ordering::SeqCst);
        self.api.gql(query, variables).await?;
        Ok(self.counter.load(Ordering::SeqCst) - before)
    }
}
