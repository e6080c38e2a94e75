//! The expiry sweep: books what time has done to wallets nobody is writing
//! to — EXPIRY entries for grants past `expires_at`, RELEASE entries for
//! holds past their deadline, GRANT entries for scheduled grants that
//! became effective — and marks top-up orders unpaid for 24 hours
//! `EXPIRED`. Reads never wait for it (they compute as of now); it keeps
//! the ledger and the outbox (`credits.expired` events) current.
//!
//! Bounded: at most `limit` wallets and `limit` orders per run. Safe to run
//! concurrently: each wallet is settled under its row lock, and settling a
//! settled wallet writes nothing.

use std::time::Instant;

use chrono::Utc;
use entity::{credit_grant, credit_hold, top_up_order};
use futures_util::{StreamExt, stream};
use sea_orm::{
    ColumnTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, sea_query::Expr,
};
use uuid::Uuid;

use crate::{
    Clock, Db,
    allowances::{Pacer, WRITE_PAUSE, WRITE_TARGET},
    amount::from_micros,
    ledger,
    outbox::{self, EventType},
};

/// Wallets settled per transaction: one commit (one WAL flush) per chunk
/// instead of per wallet, while a transaction stays short. On SQLite, the
/// most a transaction settles (sized by time from [`SETTLE_CHUNK_START`]).
const SETTLE_CHUNK: usize = 100;

/// Wallets the first transaction of a sweep settles on SQLite.
const SETTLE_CHUNK_START: usize = 25;

/// How far ahead `credits.expiring_soon` is told.
pub const EXPIRING_SOON_DAYS: i64 = 7;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub wallets: u64,
    pub orders: u64,
    /// Grants told `credits.expiring_soon`.
    pub notices: u64,
}

/// One bounded pass.
pub async fn sweep(db: &Db, clock: &dyn Clock, limit: u64) -> Result<SweepReport, ledger::Error> {
    let now = clock.now();
    let mut wallets: Vec<Uuid> = credit_grant::Entity::find()
        .select_only()
        .column(credit_grant::Column::WalletId)
        .distinct()
        .filter(credit_grant::Column::ExpiresAt.lte(now))
        .filter(credit_grant::Column::RemainingMicros.gt(0))
        .filter(credit_grant::Column::VoidedAt.is_null())
        .limit(limit)
        .into_tuple()
        .all(db.reader())
        .await?;
    // Scheduled grants that became effective: their GRANT entries.
    let scheduled: Vec<Uuid> = credit_grant::Entity::find()
        .select_only()
        .column(credit_grant::Column::WalletId)
        .distinct()
        .filter(credit_grant::Column::Booked.eq(false))
        .filter(credit_grant::Column::EffectiveAt.lte(now))
        .limit(limit)
        .into_tuple()
        .all(db.reader())
        .await?;
    wallets.extend(scheduled);
    let holds: Vec<Uuid> = credit_hold::Entity::find()
        .select_only()
        .column(credit_hold::Column::WalletId)
        .distinct()
        .filter(credit_hold::Column::Status.eq(ledger::HoldStatus::Active.as_str()))
        .filter(credit_hold::Column::ExpiresAt.lte(now))
        .limit(limit)
        .into_tuple()
        .all(db.reader())
        .await?;
    wallets.extend(holds);
    wallets.sort();
    wallets.dedup();
    wallets.truncate(limit as usize);
    let mut report = SweepReport::default();
    if db.parallel_writers() > 1 {
        // PostgreSQL: chunks hold disjoint wallets, so they settle side by
        // side; every chunk runs to its end before the first error is
        // returned.
        // (The futures are built first: a `map` closure in the stream's type
        // trips the compiler's `Send` check in the worker.)
        let chunks: Vec<_> = wallets
            .chunks(SETTLE_CHUNK)
            .map(|chunk| ledger::settle_wallets(db, clock, chunk))
            .collect();
        let settled: Vec<Result<u64, ledger::Error>> = stream::iter(chunks)
            .buffer_unordered(db.parallel_writers())
            .collect()
            .await;
        for wallets in settled {
            report.wallets += wallets?;
        }
    } else {
        // SQLite: one transaction at a time, sized by time, with a pause
        // after each for another process's writer (see `allowances::Pacer`).
        // The time measured includes waiting for the lock: under contention
        // chunks shrink, never grow.
        let mut pacer = Pacer::new(SETTLE_CHUNK_START, SETTLE_CHUNK, WRITE_TARGET);
        let mut rest = &wallets[..];
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(pacer.size().min(rest.len()));
            let started = Instant::now();
            report.wallets += ledger::settle_wallets(db, clock, chunk).await?;
            pacer.record(chunk.len(), started.elapsed());
            rest = tail;
            if !rest.is_empty() {
                tokio::time::sleep(WRITE_PAUSE).await;
            }
        }
    }
    report.orders = expire_orders(db, now, limit).await?;
    report.notices = expiring_soon(db, now, limit).await?;
    Ok(report)
}

/// `credits.expiring_soon`, once per grant, for live grants with credits
/// left that expire within [`EXPIRING_SOON_DAYS`].
async fn expiring_soon(db: &Db, now: chrono::DateTime<Utc>, limit: u64) -> Result<u64, DbErr> {
    let until = now + chrono::Duration::days(EXPIRING_SOON_DAYS);
    let grants = credit_grant::Entity::find()
        .filter(credit_grant::Column::ExpiresAt.gt(now))
        .filter(credit_grant::Column::ExpiresAt.lte(until))
        .filter(credit_grant::Column::RemainingMicros.gt(0))
        .filter(credit_grant::Column::VoidedAt.is_null())
        .filter(credit_grant::Column::EffectiveAt.lte(now))
        .filter(credit_grant::Column::ExpiryNotifiedAt.is_null())
        .order_by_asc(credit_grant::Column::ExpiresAt)
        .limit(limit)
        .all(db.reader())
        .await?;
    if grants.is_empty() {
        return Ok(0);
    }
    let txn = db.begin_write().await?;
    let ids: Vec<Uuid> = grants.iter().map(|g| g.id).collect();
    // Only those still unmarked (another sweeper may have told them).
    let marked = credit_grant::Entity::update_many()
        .col_expr(credit_grant::Column::ExpiryNotifiedAt, Expr::value(now))
        .filter(credit_grant::Column::Id.is_in(ids.clone()))
        .filter(credit_grant::Column::ExpiryNotifiedAt.is_null())
        .exec(&txn)
        .await?;
    if marked.rows_affected != ids.len() as u64 {
        // Raced with another sweeper: let it tell them; try again next run.
        txn.rollback().await?;
        return Ok(0);
    }
    let wallets: std::collections::HashMap<Uuid, entity::wallet::Model> =
        entity::wallet::Entity::find()
            .filter(entity::wallet::Column::Id.is_in(grants.iter().map(|g| g.wallet_id)))
            .all(&txn)
            .await?
            .into_iter()
            .map(|w| (w.id, w))
            .collect();
    let events = grants
        .iter()
        .map(|g| {
            let w = wallets.get(&g.wallet_id);
            outbox::event(
                g.tenant_id,
                EventType::CreditsExpiringSoon,
                Some(g.wallet_id),
                serde_json::json!({
                    "walletId": g.wallet_id,
                    "customerId": w.map(|w| w.customer_id),
                    "creditSystemId": w.map(|w| w.credit_system_id),
                    "grantId": g.id,
                    "remaining": from_micros(g.remaining_micros).to_string(),
                    "expiresAt": g.expires_at,
                }),
                now,
            )
        })
        .collect();
    outbox::write(&txn, events).await?;
    txn.commit().await?;
    Ok(grants.len() as u64)
}

async fn expire_orders(db: &Db, now: chrono::DateTime<Utc>, limit: u64) -> Result<u64, DbErr> {
    let ids: Vec<Uuid> = top_up_order::Entity::find()
        .select_only()
        .column(top_up_order::Column::Id)
        .filter(top_up_order::Column::Status.eq("PENDING"))
        .filter(top_up_order::Column::ExpiresAt.lte(now))
        .limit(limit)
        .into_tuple()
        .all(db.reader())
        .await?;
    if ids.is_empty() {
        return Ok(0);
    }
    let txn = db.begin_write().await?;
    let updated = top_up_order::Entity::update_many()
        .col_expr(top_up_order::Column::Status, Expr::value("EXPIRED"))
        .col_expr(top_up_order::Column::UpdatedAt, Expr::value(now))
        .filter(top_up_order::Column::Id.is_in(ids))
        // Paid or failed meanwhile: leave it.
        .filter(top_up_order::Column::Status.eq("PENDING"))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(updated.rows_affected)
}
