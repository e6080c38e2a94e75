//! Voiding a grant: what is left of it leaves the wallet (a VOID entry);
//! taking back part of one (an order's refund).

use super::*;

#[derive(Debug, Clone)]
pub struct VoidOutcome {
    pub grant: Grant,
    /// The VOID entry for what remained (what was spent stays spent).
    pub entry: Entry,
}

/// Removes what remains of one grant.
pub async fn void_grant(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    grant_id: GrantId,
    reason: &str,
    idempotency_key: &str,
) -> Result<VoidOutcome, Error> {
    let key = IdempotencyKey::parse(idempotency_key)?;
    let reason = parse_reason(reason)?;
    let now = clock.now();
    let txn = db.begin_write().await?;
    let mut session = Session::new(&txn);
    let grant = load_grant(&txn, tenant_id, grant_id).await?;
    let request = Request::new(key, "void", &(grant_id, &reason));
    let mut book = session
        .open_by_id(tenant_id, WalletId::from_uuid(grant.wallet_id), now)
        .await?
        .ok_or(Error::Missing("wallet", "grant"))?;
    let out = idempotency::replay_or::<_, Error>(
        &txn,
        tenant_id,
        &request,
        async |entry_id| {
            Ok(VoidOutcome {
                grant: load_grant(&txn, tenant_id, grant_id).await?.try_into()?,
                entry: load_entry(&txn, tenant_id, EntryId::from_uuid(entry_id))
                    .await?
                    .try_into()?,
            })
        },
        async || {
            // Read again under the wallet's lock.
            if load_grant(&txn, tenant_id, grant_id)
                .await?
                .voided_at
                .is_some()
            {
                return Err(Error::Conflict(
                    "this grant is already voided".into(),
                    "grant",
                ));
            }
            book.settle().await?;
            book.load_grants(&[grant_id]).await?;
            let entry = book
                .void(grant_id, &reason, Some(request.key().as_str()))
                .ok_or(Error::Missing("grant", "grant"))?;
            let grant = book.grant(grant_id).cloned();
            session.record_key(request.record_model(tenant_id, entry.id, now));
            session.finish(book).await?;
            Ok(VoidOutcome {
                grant: grant.ok_or(Error::Missing("grant", "grant"))?.try_into()?,
                entry: entry.try_into()?,
            })
        },
    )
    .await?;
    txn.commit().await?;
    Ok(out)
}

/// Takes back up to `amount` of what remains of one grant, inside the
/// caller's write transaction (a top-up order's refund): a VOID entry of
/// what it took, linked to the grant; the grant is voided when nothing of
/// it remains. Never more than remains: what time has done is booked first
/// (an expired grant holds nothing). Returns what it took and its entry
/// (none when nothing remained).
pub(crate) async fn take_back_in(
    txn: &DatabaseTransaction,
    clock: &dyn Clock,
    tenant_id: Uuid,
    grant_id: GrantId,
    amount: i64,
    reason: &str,
    idempotency_key: &str,
) -> Result<(i64, Option<Entry>), Error> {
    let now = clock.now();
    let grant = load_grant(txn, tenant_id, grant_id).await?;
    let mut session = Session::new(txn);
    let mut book = session
        .open_by_id(tenant_id, WalletId::from_uuid(grant.wallet_id), now)
        .await?
        .ok_or(Error::Missing("wallet", "grant"))?;
    book.settle().await?;
    book.load_grants(&[grant_id]).await?;
    let remaining = book
        .grant(grant_id)
        .filter(|g| g.voided_at.is_none())
        .map_or(0, |g| g.remaining_micros);
    let taken = amount.min(remaining).max(0);
    let entry = if taken == 0 {
        None
    } else if taken == remaining {
        book.void(grant_id, reason, Some(idempotency_key))
    } else {
        Some(book.append(
            EntryType::Void,
            -taken,
            Links {
                grant_id: Some(grant_id.uuid()),
                ..Links::default()
            },
            &Attribution {
                description: Some(reason.to_owned()),
                ..Attribution::default()
            },
            Some(idempotency_key),
            &[(grant_id.uuid(), -taken)],
        ))
    };
    if let Some(e) = &entry {
        audit_log::note_created(EntryId::from_uuid(e.id));
    }
    session.finish(book).await?;
    Ok((taken, entry.map(Entry::try_from).transpose()?))
}
