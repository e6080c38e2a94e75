//! Refunding usage: spent credits given back as new REFUND grants.

use super::*;

#[derive(Debug, Clone)]
pub struct RefundInput {
    /// The USAGE entry to refund.
    pub entry_id: EntryId,
    /// Default: all that is left to refund of that entry.
    pub amount: Option<Decimal>,
    pub reason: String,
    pub idempotency_key: String,
}

#[derive(Debug, Clone)]
pub struct RefundOutcome {
    /// The REFUND entry.
    pub entry: Entry,
    /// The REFUND grants it created, each keeping the expiry, priority and
    /// cost basis of the grant the credits were spent from.
    pub grants: Vec<Grant>,
}

/// Gives spent credits back, at most what the entry spent minus earlier
/// refunds. Credits whose original grant has expired since come back and
/// expire at once: a refund never extends a credit's life.
pub async fn refund_usage(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    input: &RefundInput,
) -> Result<RefundOutcome, Error> {
    let key = IdempotencyKey::parse(&input.idempotency_key)?;
    let reason = parse_reason(&input.reason)?;
    let now = clock.now();
    let txn = db.begin_write().await?;
    let mut session = Session::new(&txn);
    let usage = load_entry(&txn, tenant_id, input.entry_id).await?;
    if usage.entry_type != EntryType::Usage.as_str() {
        return Err(Invalid::new("entry", "only USAGE entries can be refunded").into());
    }
    let mut book = session
        .open_by_id(tenant_id, WalletId::from_uuid(usage.wallet_id), now)
        .await?
        .ok_or(Error::Missing("wallet", "entry"))?;
    let precision = precision_of_wallet(&txn, &book.wallet).await?;
    let requested = input
        .amount
        .map(|a| positive_micros(a, precision, "amount"))
        .transpose()?;
    let request = Request::new(key, "refund", &(input.entry_id, requested, &reason));
    let replay = async |entry_id| {
        let entry = load_entry(&txn, tenant_id, EntryId::from_uuid(entry_id)).await?;
        let splits = load_splits(&txn, tenant_id, entry_id).await?;
        Ok(RefundOutcome {
            entry: entry.try_into()?,
            grants: grants_of_splits(&txn, tenant_id, &splits).await?,
        })
    };
    let out = idempotency::replay_or::<_, Error>(&txn, tenant_id, &request, replay, async || {
        let already: i64 = ledger_entry::Entity::find()
            .filter(ledger_entry::Column::TenantId.eq(tenant_id))
            .filter(ledger_entry::Column::RefundOfEntryId.eq(usage.id))
            .all(&txn)
            .await?
            .iter()
            .map(|e| e.amount_micros)
            .sum();
        let refundable = -usage.amount_micros - already;
        if refundable <= 0 {
            return Err(Error::Conflict(
                "this entry is already fully refunded".into(),
                "entry",
            ));
        }
        let amount = requested.unwrap_or(refundable);
        book.check_room(amount)?;
        if amount > refundable {
            return Err(Invalid::new(
                "amount",
                format!(
                    "at most {} of this entry is left to refund",
                    from_micros(refundable)
                ),
            )
            .into());
        }
        book.settle().await?;
        let draws: Vec<(Uuid, i64)> = load_splits(&txn, tenant_id, usage.id)
            .await?
            .into_iter()
            .map(|s| (s.grant_id, -s.amount_micros))
            .collect();
        let sources: Vec<GrantId> = draws
            .iter()
            .map(|(id, _)| GrantId::from_uuid(*id))
            .collect();
        book.load_grants(&sources).await?;
        let mut portions: Vec<(Option<Uuid>, i64)> = burn::refund_portions(&draws, already, amount)
            .into_iter()
            .map(|(id, x)| (Some(id), x))
            .collect();
        // What the usage put into debt has no source grant: it comes back as a
        // never-expiring refund grant (which repays the debt if it is still owed).
        let from_grants: i64 = portions.iter().map(|(_, x)| x).sum();
        if from_grants < amount {
            portions.push((None, amount - from_grants));
        }
        let mut splits = Vec::new();
        for (source, part) in portions {
            let source = source.and_then(|id| book.grant(GrantId::from_uuid(id)).cloned());
            let grant_id = book.insert_grant(NewGrant {
                category: Category::Refund,
                amount: part,
                effective_at: now,
                expires_at: source.as_ref().and_then(|s| s.expires_at),
                priority: source.as_ref().map_or(0, |s| s.priority),
                cost_basis: source.as_ref().and_then(|s| s.cost_basis.clone()),
                reason: reason.clone(),
                metadata: None,
                source_kind: Some("refund".into()),
                source_id: Some(usage.id.to_string()),
            });
            splits.push((grant_id, part));
        }
        let entry = book.append(
            EntryType::Refund,
            amount,
            Links {
                refund_of_entry_id: Some(usage.id),
                ..Links::default()
            },
            &Attribution {
                description: Some(reason),
                ..Attribution::default()
            },
            Some(request.key().as_str()),
            &splits,
        );
        book.book_time();
        let grants: Vec<Grant> = splits
            .iter()
            .filter_map(|(id, _)| {
                book.grant(GrantId::from_uuid(*id))
                    .cloned()
                    .map(Grant::try_from)
            })
            .collect::<Result<_, _>>()?;
        session.record_key(request.record_model(tenant_id, entry.id, now));
        session.finish(book).await?;
        Ok(RefundOutcome {
            entry: entry.try_into()?,
            grants,
        })
    })
    .await?;
    txn.commit().await?;
    Ok(out)
}
