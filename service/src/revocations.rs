//! Telling every process that a credential stopped being valid: an API key
//! revoked, a tenant's customer-token secret rotated. Processes holding
//! long-lived connections (the API's WebSockets) re-check their
//! credentials when told, instead of at their next slow poll.
//!
//! [`announce`] runs after the change has committed (a listener that
//! re-checks at once must see it): `NOTIFY credits_credentials` on
//! PostgreSQL reaches every API replica ([`crate::listen::postgres`]); the
//! in-process signal ([`subscribe`]) reaches this one (the only one that
//! can write an SQLite file's credentials while serving it). A change
//! whose announcement is lost (a crash right after the commit) is found
//! by the listeners' periodic re-check.

use std::sync::LazyLock;

use sea_orm::{ConnectionTrait, DatabaseBackend};

use crate::Db;

/// The PostgreSQL notification channel [`announce`] notifies.
pub const CHANNEL: &str = "credits_credentials";

static CHANGED: LazyLock<tokio::sync::watch::Sender<u64>> =
    LazyLock::new(|| tokio::sync::watch::Sender::new(0));

/// Changes after each [`announce`] in this process.
pub fn subscribe() -> tokio::sync::watch::Receiver<u64> {
    CHANGED.subscribe()
}

/// Says that a credential changed. Best effort: a failed `NOTIFY` is
/// logged, not returned (the change itself has committed).
pub async fn announce(db: &Db) {
    CHANGED.send_modify(|n| *n = n.wrapping_add(1));
    if db.backend() == DatabaseBackend::Postgres
        && let Err(e) = db
            .writer()
            .execute_unprepared(&format!("NOTIFY {CHANNEL}"))
            .await
    {
        tracing::warn!(error = %e, "NOTIFY {CHANNEL} failed; listeners find the change at their next re-check");
    }
}
