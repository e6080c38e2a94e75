//! An ADMIN's correction, up (a never-expiring grant) or down (spent like
//! usage).

use super::*;

#[derive(Debug, Clone)]
pub struct AdjustInput {
    pub wallet: WalletRef,
    /// Signed, not zero.
    pub amount: Decimal,
    pub reason: String,
    pub idempotency_key: String,
}

#[derive(Debug, Clone)]
pub struct AdjustOutcome {
    pub entry: Entry,
    /// The never-expiring ADMIN grant an upward adjustment creates.
    pub grant: Option<Grant>,
}

/// An ADMIN's correction as an ADJUSTMENT entry: up creates a
/// never-expiring `ADMIN` grant; down spends like usage (into debt only if
/// the wallet allows overage).
pub async fn adjust(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    input: &AdjustInput,
) -> Result<AdjustOutcome, Error> {
    let key = IdempotencyKey::parse(&input.idempotency_key)?;
    let reason = parse_reason(&input.reason)?;
    let now = clock.now();
    let txn = db.begin_write().await?;
    let mut session = Session::new(&txn);
    let (customer_id, cs) = resolve(&txn, tenant_id, &input.wallet).await?;
    let amount = to_micros(input.amount, precision(&cs), "amount")?;
    if amount == 0 {
        return Err(Invalid::new("amount", "must not be 0").into());
    }
    let request = Request::new(key, "adjust", &(customer_id, cs.id, amount, &reason));
    let mut book = session
        .open(
            tenant_id,
            customer_id,
            CreditSystemId::from_uuid(cs.id),
            now,
            true,
        )
        .await?
        .ok_or(Error::Missing("wallet", "customer"))?;
    let replay = async |entry_id| {
        let entry = load_entry(&txn, tenant_id, EntryId::from_uuid(entry_id)).await?;
        let grant = match entry.grant_id {
            Some(id) => Some(
                load_grant(&txn, tenant_id, GrantId::from_uuid(id))
                    .await?
                    .try_into()?,
            ),
            None => None,
        };
        Ok(AdjustOutcome {
            entry: entry.try_into()?,
            grant,
        })
    };
    let out = idempotency::replay_or::<_, Error>(&txn, tenant_id, &request, replay, async || {
        book.settle().await?;
        book.check_room(amount)?;
        let (entry, grant_id) = if amount > 0 {
            let (grant_id, entry) = book
                .add_grant(
                    NewGrant {
                        category: Category::Admin,
                        amount,
                        effective_at: now,
                        expires_at: None,
                        priority: 0,
                        cost_basis: None,
                        reason,
                        metadata: None,
                        source_kind: Some("adjustment".into()),
                        source_id: None,
                    },
                    EntryType::Adjustment,
                    Some(request.key().as_str()),
                )
                .await?;
            (entry, Some(grant_id))
        } else {
            let allow_debt = book.wallet.allow_overage;
            let attribution = Attribution {
                description: Some(reason),
                ..Attribution::default()
            };
            let entry = book
                .spend(
                    EntryType::Adjustment,
                    -amount,
                    allow_debt,
                    None,
                    Links::default(),
                    &attribution,
                    Some(request.key().as_str()),
                )
                .map_err(|r| refused(-amount, r))?;
            (entry, None)
        };
        let grant = grant_id.and_then(|id| book.grant(GrantId::from_uuid(id)).cloned());
        session.record_key(request.record_model(tenant_id, entry.id, now));
        session.finish(book).await?;
        Ok(AdjustOutcome {
            entry: entry.try_into()?,
            grant: grant.map(Grant::try_from).transpose()?,
        })
    })
    .await?;
    txn.commit().await?;
    Ok(out)
}
