//! The outbox: events written in the same database transaction as the
//! change that caused them, so a rolled-back change tells no one and a
//! committed one is never lost. The worker turns them into emails and
//! webhook deliveries after commit.
//!
//! # Wake-ups
//! Writing events also wakes the dispatcher, so a committed change is told
//! within a second rather than at the next 5-second tick:
//! - on PostgreSQL, [`write`] runs `NOTIFY credits_outbox` ([`CHANNEL`]) in
//!   the writing transaction: PostgreSQL delivers it at commit (never on
//!   rollback, and once per transaction however many writes it made), to
//!   every worker process `LISTEN`ing;
//! - in this process, [`write`] bumps a counter that [`subscribe`]rs see
//!   change. On SQLite every write goes through the one writer connection,
//!   so a dispatcher woken before the commit waits for the writer and then
//!   reads the committed events.

use chrono::{DateTime, Utc};
use entity::outbox_event;
use std::sync::LazyLock;

use sea_orm::{ActiveValue::Set, ConnectionTrait, DatabaseBackend, DbErr};
use serde::Serialize;
use uuid::Uuid;

use crate::ids::WalletId;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum EventType {
    CreditsGranted,
    CreditsConsumed,
    CreditsExpired,
    CreditsExpiringSoon,
    GrantVoided,
    WalletBalanceLow,
    WalletBalanceDepleted,
    WalletBalanceRecovered,
    TopupPaid,
    TopupFailed,
    TopupRequested,
    TopupRefunded,
    AllowanceReset,
    UsageThresholdCrossed,
}

impl EventType {
    pub const ALL: [EventType; 14] = [
        EventType::CreditsGranted,
        EventType::CreditsConsumed,
        EventType::CreditsExpired,
        EventType::CreditsExpiringSoon,
        EventType::GrantVoided,
        EventType::WalletBalanceLow,
        EventType::WalletBalanceDepleted,
        EventType::WalletBalanceRecovered,
        EventType::TopupPaid,
        EventType::TopupFailed,
        EventType::TopupRequested,
        EventType::TopupRefunded,
        EventType::AllowanceReset,
        EventType::UsageThresholdCrossed,
    ];

    /// The name webhooks carry (`credits.granted`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::CreditsGranted => "credits.granted",
            EventType::CreditsConsumed => "credits.consumed",
            EventType::CreditsExpired => "credits.expired",
            EventType::CreditsExpiringSoon => "credits.expiring_soon",
            EventType::GrantVoided => "grant.voided",
            EventType::WalletBalanceLow => "wallet.balance_low",
            EventType::WalletBalanceDepleted => "wallet.balance_depleted",
            EventType::WalletBalanceRecovered => "wallet.balance_recovered",
            EventType::TopupPaid => "topup.paid",
            EventType::TopupFailed => "topup.failed",
            EventType::TopupRequested => "topup.requested",
            EventType::TopupRefunded => "topup.refunded",
            EventType::AllowanceReset => "allowance.reset",
            EventType::UsageThresholdCrossed => "wallet.usage_threshold_crossed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// An event row to insert with the change that caused it.
pub fn event(
    tenant_id: Uuid,
    event_type: EventType,
    wallet_id: Option<WalletId>,
    payload: serde_json::Value,
    at: DateTime<Utc>,
) -> outbox_event::ActiveModel {
    outbox_event::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(tenant_id),
        event_type: Set(event_type.as_str().to_owned()),
        wallet_id: Set(wallet_id.map(WalletId::uuid)),
        payload: Set(payload),
        created_at: Set(at),
        dispatched_at: Set(None),
    }
}

/// The PostgreSQL notification channel [`write`] notifies.
pub const CHANNEL: &str = "credits_outbox";

/// Counts [`write`]s in this process (see [`subscribe`]).
static WRITTEN: LazyLock<tokio::sync::watch::Sender<u64>> =
    LazyLock::new(|| tokio::sync::watch::Sender::new(0));

/// Changes after each [`write`] of events in this process; a dispatcher
/// waits on it (`changed()`), so no write between two waits is missed.
pub fn subscribe() -> tokio::sync::watch::Receiver<u64> {
    WRITTEN.subscribe()
}

/// Inserts events (none is fine), in chunks, and wakes the dispatcher
/// (see the module docs).
pub async fn write(
    conn: &impl ConnectionTrait,
    events: Vec<outbox_event::ActiveModel>,
) -> Result<(), DbErr> {
    if events.is_empty() {
        return Ok(());
    }
    crate::db::insert_chunked(conn, events).await?;
    if conn.get_database_backend() == DatabaseBackend::Postgres {
        conn.execute_unprepared(&format!("NOTIFY {CHANNEL}"))
            .await?;
    }
    written();
    Ok(())
}

/// Wakes the outbox's listeners in other processes (PostgreSQL's NOTIFY,
/// in a transaction of its own): for a batch job whose chunks wrote events
/// without notifying ([`crate::ledger::Session::notify_after_run`]).
/// SQLite has no listeners to wake: other processes poll.
pub async fn notify(db: &crate::Db) -> Result<(), DbErr> {
    if db.backend() == DatabaseBackend::Postgres {
        db.writer()
            .execute_unprepared(&format!("NOTIFY {CHANNEL}"))
            .await?;
    }
    Ok(())
}

/// Tells this process's dispatcher that events were written (by [`write`],
/// or by a statement that inserted them and notified [`CHANNEL`] itself).
pub(crate) fn written() {
    WRITTEN.send_modify(|n| *n = n.wrapping_add(1));
}
