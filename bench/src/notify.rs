//! Notifications keep up with the ledger (issue 14): a webhook endpoint
//! subscribed to `credits.consumed`, sustained consume load through the
//! API, and the worker running beside it; then the time until every
//! resulting webhook has reached a local receiver. The drain keeps up when
//! the last webhook arrives soon (< 1 s) after the load ends: a slower
//! drain leaves a backlog that grows with the load. (Events written before
//! the endpoint existed but not yet dispatched are delivered too: the
//! drain rate includes that backlog.)

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde_json::json;
use service::{Db, SystemClock};
use tokio_util::sync::CancellationToken;

use crate::{
    consume::{self, Targets},
    load::Stats,
    server::Api,
};

pub struct Outcome {
    pub load: Stats,
    /// Webhooks received for this run's consumes.
    pub delivered: u64,
    /// From the load's start to the last delivery.
    pub drain_secs: f64,
    /// From the load's end to the last delivery.
    pub tail_secs: f64,
}

impl Outcome {
    pub fn consume_rate(&self) -> f64 {
        self.load.per_sec()
    }

    pub fn drain_rate(&self) -> f64 {
        if self.drain_secs > 0.0 {
            self.delivered as f64 / self.drain_secs
        } else {
            0.0
        }
    }
}

/// Runs the section: `clients` consumers for `duration`, the worker in
/// this process (on PostgreSQL woken by `NOTIFY`; on SQLite, as a separate
/// process, by its 5 s tick).
pub async fn run(
    api: &Api,
    db: &Db,
    targets: &Targets,
    clients: usize,
    duration: Duration,
    mail_dir: &std::path::Path,
) -> anyhow::Result<Outcome> {
    // The receiver counts deliveries.
    let received = Arc::new(AtomicU64::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let counter = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::Relaxed);
                "ok"
            }
        }),
    );
    let receiver = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    api.gql(
        r#"mutation($url: String!) { createWebhookEndpoint(input: {url: $url, events: ["credits.consumed"]}) { endpoint { id } } }"#,
        json!({ "url": format!("http://{addr}/hook") }),
    )
    .await
    .context("register the webhook endpoint")?;
    // Events of earlier sections have no endpoint: dispatched to nothing.
    let stop = CancellationToken::new();
    let config = worker::WorkerConfig {
        mail: worker::MailConfig {
            smtp_url: None,
            mail_from: "bench@localhost".into(),
            mail_dir: mail_dir.to_owned(),
        },
        webhooks: worker::WebhookConfig::allow_private(),
        job_lease_seconds: 60,
    };
    let worker = tokio::spawn(worker::run(
        db.clone(),
        Arc::new(SystemClock),
        config,
        stop.clone(),
    ));
    let started = Instant::now();
    let load = consume::api_run(
        api,
        targets,
        clients,
        targets.wallets.len(),
        duration,
        "notify",
    )
    .await;
    let load_end = Instant::now();
    let want = load.requests - load.errors;
    let deadline = load_end + Duration::from_secs(120);
    while received.load(Ordering::Relaxed) < want {
        if Instant::now() > deadline {
            stop.cancel();
            bail!(
                "{} of {want} webhooks arrived within 120 s of the load's end",
                received.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let done = Instant::now();
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(40), worker).await;
    receiver.abort();
    Ok(Outcome {
        load,
        delivered: received.load(Ordering::Relaxed),
        drain_secs: (done - started).as_secs_f64(),
        tail_secs: (done - load_end).as_secs_f64(),
    })
}
