//! Spending credits: the hot path (see [`consume`]) and the replays of a
//! spend by its key.

use super::*;

#[derive(Debug, Clone)]
pub struct ConsumeInput {
    pub wallet: WalletRef,
    pub amount: Decimal,
    pub attribution: Attribution,
    pub idempotency_key: String,
}

#[derive(Debug, Clone)]
pub struct ConsumeOutcome {
    /// The USAGE entry (its `balance_after` is the wallet's balance).
    pub entry: Entry,
    /// Which grants it drew from, in spending order.
    pub splits: Vec<Split>,
}

/// Spends credits: soonest-expiring first, all or nothing (or into debt
/// when the wallet allows overage).
///
/// The hot path, in as few statements as the databases allow: the wallet
/// locked with its customer and credit system resolved (one statement),
/// its grants with lapsed holds and the plans' limits (one), and every
/// write with the key's record and the request's audit row (one: the
/// [`Session`]'s write, [`Session::finish_last`]). The key is
/// recorded with the writes rather than looked up first
/// ([`idempotency::replay_after`]): a replay (or any refusal) rolls the
/// attempt back and answers from the key's record, as if looked up first.
pub async fn consume(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    input: &ConsumeInput,
) -> Result<ConsumeOutcome, Error> {
    let key = IdempotencyKey::parse(&input.idempotency_key)?;
    let attribution = input.attribution.parse()?;
    let now = clock.now();
    let txn = db.begin_write().await?;
    let mut session = Session::new(&txn);
    let (book, customer_id, cs) = match session.open_by_ref(tenant_id, &input.wallet, now).await? {
        Some((book, cs)) => {
            let customer_id = CustomerId::from_uuid(book.wallet.customer_id);
            (Some(book), customer_id, cs)
        }
        // Which of the customer, the credit system or the wallet is missing.
        None => {
            let (customer_id, cs) = resolve(&*txn, tenant_id, &input.wallet).await?;
            (None, customer_id, cs)
        }
    };
    let amount = positive_micros(input.amount, precision(&cs), "amount")?;
    let request = Request::new(key, "consume", &(customer_id, cs.id, amount, &attribution));
    let first = async {
        let Some(mut book) = book else {
            return Err(insufficient(amount, 0));
        };
        let allow_debt = book.wallet.allow_overage;
        let floor = book.plan_limits().await?.block;
        let entry = book
            .spend(
                EntryType::Usage,
                amount,
                allow_debt,
                floor,
                Links::default(),
                &attribution,
                Some(request.key().as_str()),
            )
            .map_err(|r| refused(amount, r))?;
        let splits = book.split_models_of(EntryId::from_uuid(entry.id));
        session.record_key(request.record_model(tenant_id, entry.id, now));
        audit_log::note_created(EntryId::from_uuid(entry.id));
        session.finish_last(book).await?;
        Ok(ConsumeOutcome {
            entry: entry.try_into()?,
            splits: splits.into_iter().map(Into::into).collect(),
        })
    }
    .await;
    match first {
        Ok(out) => {
            txn.commit().await?;
            Ok(out)
        }
        Err(refused) => {
            txn.rollback().await?;
            let reader = db.reader();
            idempotency::replay_after(reader, tenant_id, &request, refused, async |entry_id| {
                replay_consume(reader, tenant_id, entry_id).await
            })
            .await
        }
    }
}

/// A retried metered consume ([`crate::entitlements::track_usage`]),
/// answered before the plan is consulted: the plan chose the credit system
/// and the amount, and it may have changed since, so the request is
/// fingerprinted with the original entry's. `None`: the key is new (the
/// consume itself looks it up again under the wallet's lock).
pub async fn replay_usage(
    db: &Db,
    tenant_id: Uuid,
    customer_id: CustomerId,
    attribution: &Attribution,
    idempotency_key: &str,
) -> Result<Option<ConsumeOutcome>, Error> {
    let key = IdempotencyKey::parse(idempotency_key)?;
    let attribution = attribution.parse()?;
    let conn = db.reader();
    let Some(record) = idempotency::find(conn, tenant_id, &key).await? else {
        return Ok(None);
    };
    if record.operation != "consume" {
        return Err(Error::IdempotencyConflict);
    }
    let original = load_entry(conn, tenant_id, EntryId::from_uuid(record.result_id)).await?;
    let wallet = wallet::Entity::find_by_id(original.wallet_id)
        .filter(wallet::Column::TenantId.eq(tenant_id))
        .one(conn)
        .await?
        .ok_or(Error::Missing("wallet", "idempotencyKey"))?;
    let request = Request::new(
        key,
        "consume",
        &(
            customer_id,
            wallet.credit_system_id,
            -original.amount_micros,
            &attribution,
        ),
    );
    idempotency::replay_or::<_, Error>(
        conn,
        tenant_id,
        &request,
        async |entry_id| replay_consume(conn, tenant_id, entry_id).await.map(Some),
        async || Ok(None),
    )
    .await
}

async fn replay_consume(
    conn: &impl ConnectionTrait,
    tenant_id: Uuid,
    entry_id: Uuid,
) -> Result<ConsumeOutcome, Error> {
    let entry = load_entry(conn, tenant_id, EntryId::from_uuid(entry_id)).await?;
    let splits = load_splits(conn, tenant_id, entry_id).await?;
    Ok(ConsumeOutcome {
        entry: entry.try_into()?,
        splits: splits.into_iter().map(Into::into).collect(),
    })
}
