//! Waking a process when another one commits something it should act on
//! at once: PostgreSQL `LISTEN` on a connection of its own (outside the
//! shared pool), reconnecting when it is lost. Used by the worker (outbox
//! events: [`crate::outbox::CHANNEL`]) and the API (credentials revoked:
//! [`crate::revocations::CHANNEL`]).

use std::{sync::Arc, time::Duration};

use sea_orm::sqlx::postgres::{PgListener, PgPoolOptions};
use tokio::sync::Notify;

use crate::Db;

/// How long to wait before listening again after an error.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Calls `wake.notify_one()` for each notification on `channel`, and once
/// after every (re)connection — notifications sent while not listening are
/// lost, so a listener must look for itself then. Runs until aborted.
/// PostgreSQL only: on SQLite it returns at once.
pub async fn postgres(db: Db, channel: &'static str, wake: Arc<Notify>) {
    if db.backend() != sea_orm::DatabaseBackend::Postgres {
        return;
    }
    let options = db.writer().get_postgres_connection_pool().connect_options();
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with((*options).clone());
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, channel, "LISTEN: cannot connect; retrying");
                tokio::time::sleep(RETRY_AFTER).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(channel).await {
            tracing::warn!(error = %e, channel, "LISTEN failed; retrying");
            tokio::time::sleep(RETRY_AFTER).await;
            continue;
        }
        // Whatever was notified while not listening.
        wake.notify_one();
        loop {
            match listener.try_recv().await {
                Ok(Some(_)) => wake.notify_one(),
                Ok(None) => {
                    // Connection lost; the next call reconnects and
                    // re-listens. Notifications may have been missed.
                    tracing::warn!(channel, "LISTEN connection lost; reconnecting");
                    wake.notify_one();
                }
                Err(e) => {
                    tracing::warn!(error = %e, channel, "LISTEN failed; reconnecting");
                    tokio::time::sleep(RETRY_AFTER).await;
                    break;
                }
            }
        }
    }
}
