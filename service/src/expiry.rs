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

use std::{collections::HashSet, time::Instant};

use chrono::Utc;
use entity::{credit_grant, top_up_order};
use futures_util::{StreamExt, stream};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::Expr,
};
use uuid::Uuid;

use crate::{
    Clock, Db,
    allowances::{Pacer, WRITE_PAUSE, WRITE_TARGET},
    amount::from_micros,
    db::statement,
    ids::WalletId,
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
    let wallets = due_wallets(db, now, limit).await?;
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
        // The chunks' events, told to other processes once (see
        // `Session::notify_after_run`).
        if !settled.is_empty() {
            crate::outbox::notify(db).await?;
        }
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

/// Wallets with something due, at most `limit`: a grant expired with
/// credits left, a scheduled grant that became effective, a hold past its
/// deadline — found in one statement, each kind by its own index, soonest
/// due first, at most `limit` rows of each. Rows, not distinct wallets: a
/// `DISTINCT … LIMIT` can't stop early (it gathers every due row before
/// the first answer, which made each run's find as slow as the backlog is
/// long); each wallet found is settled whole, so a run still books at
/// least as many due grants as it found rows.
///
/// The predicates are written out, not bound: SQLite uses a partial index
/// only when the query names the index's terms (`credit_grant_live_expiry`,
/// `credit_grant_scheduled`).
async fn due_wallets(
    db: &Db,
    now: chrono::DateTime<Utc>,
    limit: u64,
) -> Result<Vec<WalletId>, DbErr> {
    let conn = db.reader();
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let sql = format!(
        "SELECT wallet_id FROM (SELECT wallet_id FROM credit_grant \
           WHERE expires_at <= ? AND remaining_micros > 0 AND voided_at IS NULL \
           ORDER BY expires_at LIMIT ?) expired \
         UNION ALL SELECT wallet_id FROM (SELECT wallet_id FROM credit_grant \
           WHERE booked = false AND effective_at <= ? \
           ORDER BY effective_at LIMIT ?) scheduled \
         UNION ALL SELECT wallet_id FROM (SELECT wallet_id FROM credit_hold \
           WHERE status = '{}' AND expires_at <= ? \
           ORDER BY expires_at LIMIT ?) lapsed",
        ledger::HoldStatus::Active.as_str()
    );
    let values = vec![
        now.into(),
        limit.into(),
        now.into(),
        limit.into(),
        now.into(),
        limit.into(),
    ];
    let mut seen = HashSet::new();
    let mut wallets = Vec::new();
    for row in conn
        .query_all_raw(statement(conn.get_database_backend(), &sql, values))
        .await?
    {
        let id: Uuid = row.try_get("", "wallet_id")?;
        if seen.insert(id) {
            wallets.push(WalletId::from_uuid(id));
        }
    }
    // Soonest due first, then in id order: chunks lock in one order.
    wallets.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    wallets.sort();
    Ok(wallets)
}

/// `credits.expiring_soon`, once per grant, for live grants with credits
/// left that expire within [`EXPIRING_SOON_DAYS`].
async fn expiring_soon(db: &Db, now: chrono::DateTime<Utc>, limit: u64) -> Result<u64, DbErr> {
    let until = now + chrono::Duration::days(EXPIRING_SOON_DAYS);
    let grants = credit_grant::Entity::find()
        .filter(credit_grant::Column::ExpiresAt.gt(now))
        .filter(credit_grant::Column::ExpiresAt.lte(until))
        // Written out for the partial index (see `due_wallets`).
        .filter(Expr::cust("remaining_micros > 0 AND voided_at IS NULL"))
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
                Some(WalletId::from_uuid(g.wallet_id)),
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

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};
    use entity::ledger_entry;
    use rust_decimal::Decimal;

    use super::*;
    use crate::{
        FixedClock,
        credit_systems::{self, CreditSystemRef},
        customers::{self, CustomerRef},
        ledger::{Category, GrantInput, WalletRef, audit},
        tenants,
        testing::{self, TestDb},
    };

    /// A run settles at most `limit` wallets, those due soonest — not
    /// those with the smallest ids — and the next run settles the rest.
    #[tokio::test]
    async fn a_run_settles_at_most_limit_wallets_soonest_due_first() {
        let t = TestDb::new().await;
        let clock = FixedClock::new(Utc.with_ymd_and_hms(2026, 1, 31, 12, 0, 0).unwrap());
        let tenant = tenants::create(&t.db, &clock, "acme-corp").await.unwrap();
        let cs = credit_systems::create(&t.db, &clock, tenant.id, &testing::tokens(0))
            .await
            .unwrap();
        // The first wallet (the smallest id) expires last.
        let mut grants = Vec::new();
        for (i, hours) in [3, 1, 2].into_iter().enumerate() {
            let customer = customers::create(
                &t.db,
                &clock,
                tenant.id,
                &testing::customer(&format!("c{i}")),
            )
            .await
            .unwrap();
            let input = GrantInput {
                wallet: WalletRef {
                    customer: CustomerRef::Id(customer.id),
                    credit_system: CreditSystemRef::Id(cs.id),
                },
                amount: Decimal::from(10),
                category: Category::Promotional,
                effective_at: None,
                expires_at: Some(clock.now() + Duration::hours(hours)),
                priority: None,
                cost_basis: None,
                reason: "test".into(),
                metadata: None,
                idempotency_key: format!("g{i}"),
            };
            grants.push(
                ledger::grant(&t.db, &clock, tenant.id, &input)
                    .await
                    .unwrap()
                    .grant,
            );
        }
        clock.advance(Duration::hours(4));
        let expired = || async {
            let mut ids: Vec<Uuid> = ledger_entry::Entity::find()
                .filter(ledger_entry::Column::TenantId.eq(tenant.id))
                .filter(ledger_entry::Column::EntryType.eq("EXPIRY"))
                .all(t.db.reader())
                .await
                .unwrap()
                .into_iter()
                .filter_map(|e| e.grant_id)
                .collect();
            ids.sort();
            ids
        };
        assert_eq!(sweep(&t.db, &clock, 2).await.unwrap().wallets, 2);
        let mut soonest = vec![grants[1].id, grants[2].id];
        soonest.sort();
        assert_eq!(expired().await, soonest);
        assert_eq!(sweep(&t.db, &clock, 2).await.unwrap().wallets, 1);
        assert_eq!(expired().await.len(), 3);
        assert_eq!(sweep(&t.db, &clock, 2).await.unwrap().wallets, 0);
        for g in &grants {
            let problems = audit::verify_wallet(t.db.reader(), tenant.id, g.wallet_id)
                .await
                .unwrap();
            assert!(problems.is_empty(), "{problems:#?}");
        }
    }
}
