//! Notifications without waiting for the 5-second tick: a committed outbox
//! event wakes the dispatcher at once.
//!
//! - PostgreSQL: [`service::outbox::write`] runs `NOTIFY credits_outbox`
//!   in the writing transaction (delivered at commit); this process
//!   `LISTEN`s on a connection of its own ([`PgListener`], reconnecting on
//!   loss — after which it runs once anyway, as notifications may have been
//!   lost meanwhile).
//! - SQLite (one process, the embedded worker): the in-process signal of
//!   [`service::outbox::subscribe`].
//!
//! Wake-ups are coalesced ([`DEBOUNCE`]); each drains the outbox, then
//! starts a send run in the background (at most [`SEND_RUNS_MAX`] at once):
//! a run waiting on a slow endpoint's attempts doesn't hold up the next
//! one, which leaves that endpoint alone while its slots are busy. The cron
//! tick stays as the fallback.

use std::{sync::Arc, time::Duration};

use sea_orm::{
    DatabaseBackend,
    sqlx::postgres::{PgListener, PgPoolOptions},
};
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
/// How long to wait before listening again after an error.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Runs until `shutdown`.
pub async fn run(ctx: JobContext, shutdown: CancellationToken) {
    let wake = Arc::new(Notify::new());
    let source = match ctx.db.backend() {
        DatabaseBackend::Postgres => tokio::spawn(listen_postgres(ctx.clone(), wake.clone())),
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

async fn listen_postgres(ctx: JobContext, wake: Arc<Notify>) {
    // A connection of its own, outside the shared pool.
    let options = ctx
        .db
        .writer()
        .get_postgres_connection_pool()
        .connect_options();
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with((*options).clone());
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "LISTEN: cannot connect; retrying");
                tokio::time::sleep(RETRY_AFTER).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(service::outbox::CHANNEL).await {
            tracing::warn!(error = %e, "LISTEN failed; retrying");
            tokio::time::sleep(RETRY_AFTER).await;
            continue;
        }
        // Whatever was written while not listening.
        wake.notify_one();
        loop {
            match listener.try_recv().await {
                Ok(Some(_)) => wake.notify_one(),
                Ok(None) => {
                    // Connection lost; the next call reconnects and
                    // re-listens. Notifications may have been missed.
                    tracing::warn!("LISTEN connection lost; reconnecting");
                    wake.notify_one();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "LISTEN failed; reconnecting");
                    tokio::time::sleep(RETRY_AFTER).await;
                    break;
                }
            }
        }
    }
}
