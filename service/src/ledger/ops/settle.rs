//! What time does to wallets, booked in bulk: the expiry sweep's unit of
//! work.

use super::*;

/// Books what time has done to these wallets (expiries, hold releases) and
/// nothing else, in one transaction: the expiry sweep's unit of work.
/// Wallets another writer holds are skipped (`FOR UPDATE SKIP LOCKED`), so
/// the sweep never waits while holding locks and can't deadlock with a
/// writer that locks wallets in its own order; a skipped wallet is settled
/// by the next pass (reads never wait for it). Returns how many it settled.
pub async fn settle_wallets(
    db: &Db,
    clock: &dyn Clock,
    wallet_ids: &[WalletId],
) -> Result<u64, Error> {
    if wallet_ids.is_empty() {
        return Ok(0);
    }
    let txn = db.begin_write().await?;
    let now = clock.now();
    // Every read below answers for the whole chunk in one statement (the
    // grants and lapsed holds in `Session::adopt`), and a gathering session
    // writes the chunk's books together: a constant number of statements
    // per chunk, not per wallet.
    let locked: Vec<wallet::Model> = wallet::Entity::find()
        .filter(wallet::Column::Id.is_in(wallet_ids.iter().map(|id| id.uuid())))
        .order_by_asc(wallet::Column::Id)
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .all(&txn)
        .await?;
    if locked.is_empty() {
        txn.rollback().await?;
        return Ok(0);
    }
    let mut tenants: Vec<Uuid> = locked.iter().map(|w| w.tenant_id).collect();
    tenants.sort();
    tenants.dedup();
    let credit_systems: HashMap<Uuid, credit_system::Model> = credit_system::Entity::find()
        .filter(credit_system::Column::TenantId.is_in(tenants.iter().copied()))
        .filter(credit_system::Column::Id.is_in(locked.iter().map(|w| w.credit_system_id)))
        .all(&txn)
        .await?
        .into_iter()
        .map(|cs| (cs.id, cs))
        .collect();
    let customers: Vec<(Uuid, Uuid)> = locked
        .iter()
        .map(|w| (w.tenant_id, w.customer_id))
        .collect();
    let limits = crate::ledger::read::plans_low_credit_limits_of(&txn, &customers, now).await?;
    let settled = locked.len() as u64;
    let mut session = Session::gathering(&txn);
    session.notify_after_run();
    for cs in credit_systems.values() {
        session.knows_credit_system(cs);
    }
    for w in &locked {
        let key = (w.customer_id, w.credit_system_id);
        session.knows_plan_limits(
            CustomerId::from_uuid(key.0),
            CreditSystemId::from_uuid(key.1),
            limits.get(&key).copied().unwrap_or_default(),
        );
    }
    for mut book in session.adopt(locked, now).await? {
        // Returns lapsed holds first when the wallet has any (read ahead).
        book.settle().await?;
        session.finish(book).await?;
    }
    session.close().await?;
    txn.commit().await?;
    Ok(settled)
}
