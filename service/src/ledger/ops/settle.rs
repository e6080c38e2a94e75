//! What time does to wallets, booked in bulk: the expiry sweep's unit of
//! work.

use super::*;

/// Books what time has done to these wallets (expiries, hold releases) and
/// nothing else, in one transaction: the expiry sweep's unit of work.
/// Wallets another writer holds are skipped (`FOR UPDATE SKIP LOCKED`), so
/// the sweep never waits while holding locks and can't deadlock with a
/// writer that locks wallets in its own order; a skipped wallet is settled
/// by the next pass (reads never wait for it). Returns how many it settled.
pub async fn settle_wallets(db: &Db, clock: &dyn Clock, wallet_ids: &[Uuid]) -> Result<u64, Error> {
    if wallet_ids.is_empty() {
        return Ok(0);
    }
    let txn = db.begin_write().await?;
    let now = clock.now();
    // Every read below answers for the whole chunk in one statement, and
    // a gathering session writes the chunk's books together: a constant
    // number of statements per chunk, not per wallet.
    let locked: Vec<wallet::Model> = wallet::Entity::find()
        .filter(wallet::Column::Id.is_in(wallet_ids.iter().copied()))
        .order_by_asc(wallet::Column::Id)
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .all(&txn)
        .await?;
    if locked.is_empty() {
        txn.rollback().await?;
        return Ok(0);
    }
    let ids: Vec<Uuid> = locked.iter().map(|w| w.id).collect();
    let mut tenants: Vec<Uuid> = locked.iter().map(|w| w.tenant_id).collect();
    tenants.sort();
    tenants.dedup();
    let mut grants: HashMap<Uuid, Vec<credit_grant::Model>> = HashMap::new();
    for g in credit_grant::Entity::find()
        .filter(credit_grant::Column::TenantId.is_in(tenants.iter().copied()))
        .filter(credit_grant::Column::WalletId.is_in(ids.iter().copied()))
        .filter(credit_grant::Column::RemainingMicros.gt(0))
        .all(&txn)
        .await?
    {
        grants.entry(g.wallet_id).or_default().push(g);
    }
    let with_lapsed_holds: HashSet<Uuid> = credit_hold::Entity::find()
        .select_only()
        .column(credit_hold::Column::WalletId)
        .filter(credit_hold::Column::TenantId.is_in(tenants.iter().copied()))
        .filter(credit_hold::Column::WalletId.is_in(ids.iter().copied()))
        .filter(credit_hold::Column::Status.eq(HoldStatus::Active.as_str()))
        .filter(credit_hold::Column::ExpiresAt.lte(now))
        .into_tuple()
        .all(&txn)
        .await?
        .into_iter()
        .collect();
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
    for cs in credit_systems.values() {
        session.knows_credit_system(cs);
    }
    for w in locked {
        let key = (w.customer_id, w.credit_system_id);
        session.knows_plan_limits(
            CustomerId::from_uuid(key.0),
            CreditSystemId::from_uuid(key.1),
            limits.get(&key).copied().unwrap_or_default(),
        );
        let id = w.id;
        let mut book = session.adopt(w, grants.remove(&id).unwrap_or_default(), now)?;
        if with_lapsed_holds.contains(&id) {
            book.settle().await?;
        } else {
            book.book_time();
        }
        session.finish(book).await?;
    }
    session.close().await?;
    txn.commit().await?;
    Ok(settled)
}
