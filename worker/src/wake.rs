//! Notifications without waiting for the 5-second tick: a committed outbox
//! event wakes the dispatcher at once.
//!
//! - PostgreSQL: [`service::outbox::write`] runs `NOTIFY credits_outbox`
//!   in the writing transaction (delivered at commit); this process
//!   `LISTEN`s on a connection of its own ([`service::listen::postgres`],
//!   reconnecting on loss — after which it runs once anyway, as
//!   notifications may have been lost meanwhile).
//! - SQLite (one process, the embedded worker): the in-process signal of
//!   [`service::outbox::subscribe`].
//!
//! Wake-ups are coalesced ([`DEBOUNCE`]); each drains the outbox, then
//! starts a send run in the background (at most [`SEND_RUNS_MAX`] at once):
//! a run waiting on a slow endpoint's attempts doesn't hold up the next
//! one, which leaves that endpoint alone while its slots are busy. The cron
//! tick stays as the fallback.

use std::{sync::Arc, time::Duration};

use sea_orm::DatabaseBackend;
use service::notifications::webhooks;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::{JobContext, jobs};

/// How long a wake-up waits for more commits before it runs.
pub const DEBOUNCE: Duration = Duration::from_millis(20);
/// Send runs in flight at once from wake-ups. A run outlives its fast
/// deliveries only while it has an attempt in flight (a slow endpoint's),
/// and at most [`webhooks::IN_FLIGHT_MAX`] are in flight: one more run
/// than that is always free for the other endpoints.
pub const SEND_RUNS_MAX: usize = webhooks::IN_FLIGHT_MAX + 1;

/// Runs until `shutdown`.
pub async fn run(ctx: JobContext, shutdown: CancellationToken) {
    let wake = Arc::new(Notify::new());
    let source = match ctx.db.backend() {
        DatabaseBackend::Postgres => tokio::spawn(service::listen::postgres(
            ctx.db.clone(),
            service::outbox::CHANNEL,
            wake.clone(),
        )),
        _ => tokio::spawn(listen_in_process(wake.clone())),
    };
    let send_runs = Arc::new(Semaphore::new(SEND_RUNS_MAX));
    loop {
        tokio::select! {
            () = wake.notified() => {}
            () = shutdown.cancelled() => break,
        }
        tokio::time::sleep(DEBOUNCE).await;
        match jobs::dispatch_all(&ctx).await {
            Ok(n) => tracing::debug!(dispatched = n, "woken: outbox drained"),
            Err(e) => tracing::warn!(error = %e, "woken: dispatch failed"),
        }
        let Ok(permit) = send_runs.clone().acquire_owned().await else {
            break;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            if let Err(e) = jobs::send_all(&ctx).await {
                tracing::warn!(error = %e, "woken: sending failed");
            }
            drop(permit);
        });
    }
    source.abort();
}

async fn listen_in_process(wake: Arc<Notify>) {
    let mut written = service::outbox::subscribe();
    while written.changed().await.is_ok() {
        wake.notify_one();
    }
}
