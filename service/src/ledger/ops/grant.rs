//! Granting credits: a new grant, booked now or scheduled; a grant effective
//! now repays overage debt first.

use super::*;

#[derive(Debug, Clone)]
pub struct GrantInput {
    pub wallet: WalletRef,
    pub amount: Decimal,
    pub category: Category,
    /// Default: now.
    pub effective_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Lower is spent first among grants expiring together. Default 0.
    pub priority: Option<i32>,
    /// Price paid per credit.
    pub cost_basis: Option<Decimal>,
    pub reason: String,
    pub metadata: Option<Json>,
    pub idempotency_key: String,
}

#[derive(Debug, Clone)]
pub struct GrantOutcome {
    pub grant: Grant,
    /// Its GRANT entry; `None` while the grant is scheduled (effective in
    /// the future): the entry is booked when it becomes spendable.
    pub entry: Option<Entry>,
}

/// Grants credits to a wallet (created on first use). A grant effective
/// now repays any overage debt first.
pub async fn grant(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    input: &GrantInput,
) -> Result<GrantOutcome, Error> {
    let txn = db.begin_write().await?;
    let made = Made {
        source: None,
        catch_up: false,
    };
    let out = grant_in(&mut Session::new(&txn), clock, tenant_id, input, made).await?;
    txn.commit().await?;
    Ok(out)
}

/// What made a grant that a job or an order makes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Made<'a> {
    /// `("order", id)`, `("allowance", id)`, …
    pub source: Option<(&'a str, String)>,
    /// A scheduled job may grant a period already over: the grant is booked
    /// and expires at once, so the ledger tells what each missed period held.
    pub catch_up: bool,
}

/// [`grant`] inside the caller's session (committed by the caller). A
/// gathering session ([`Session::gathering`]: the allowance reset) gathers
/// the grant's writes and its key with the rest of its chunk, and gives it
/// the credit system and plan limits it loaded for the chunk.
pub(crate) async fn grant_in(
    session: &mut Session<'_>,
    clock: &dyn Clock,
    tenant_id: Uuid,
    input: &GrantInput,
    made: Made<'_>,
) -> Result<GrantOutcome, Error> {
    let Made { source, catch_up } = made;
    let key = IdempotencyKey::parse(&input.idempotency_key)?;
    let reason = parse_reason(&input.reason)?;
    let metadata = parse_metadata(&input.metadata)?;
    if input.category == Category::Transfer {
        return Err(Invalid::new("category", "TRANSFER grants come only from allocations").into());
    }
    if input.cost_basis.is_some_and(|c| c < Decimal::ZERO) {
        return Err(Invalid::new("costBasis", "must not be negative").into());
    }
    let now = clock.now();
    let given_effective_at = crate::input::time_opt("effectiveAt", input.effective_at)?;
    let expires_at = crate::input::time_opt("expiresAt", input.expires_at)?;
    let bad_expiry = || Invalid::new("expiresAt", "must be after now and after effectiveAt");
    // An expiry before the given start is wrong on any day; one before now
    // is checked against the present, after the key (a replay wins).
    if let (Some(e), Some(start)) = (expires_at, given_effective_at)
        && e <= start
    {
        return Err(bad_expiry().into());
    }
    let effective_at = given_effective_at.unwrap_or(now);
    // A batch job told the session the credit system it loaded.
    let known = match &input.wallet {
        WalletRef {
            customer: customers::CustomerRef::Id(customer_id),
            credit_system: credit_systems::CreditSystemRef::Id(cs_id),
        } => session
            .credit_system(*cs_id)
            .map(|cs| (*customer_id, cs.clone())),
        _ => None,
    };
    let (customer_id, cs) = match known {
        Some(known) => known,
        None => resolve(session.outside_ledger(), tenant_id, &input.wallet).await?,
    };
    let amount = positive_micros(input.amount, precision(&cs), "amount")?;
    let priority = input.priority.unwrap_or(0);
    let request = Request::new(
        key,
        "grant",
        &(
            customer_id,
            cs.id,
            amount,
            input.category,
            input.effective_at,
            expires_at,
            priority,
            input.cost_basis,
            &reason,
            &metadata,
        ),
    );
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
    book.knows_credit_system(&cs);
    let seen = session.check_key(tenant_id, &request).await?;
    let txn = session.outside_ledger();
    idempotency::answer::<_, Error>(
        seen,
        // Its key was written with its rows: they are in the database.
        async |entry_id| replay_grant(txn, tenant_id, entry_id).await,
        async || {
            if let Some(e) = expires_at
                && (e <= effective_at || (e <= now && !catch_up))
            {
                return Err(bad_expiry().into());
            }
            book.settle().await?;
            let new = NewGrant {
                category: input.category,
                amount,
                effective_at,
                expires_at,
                priority,
                cost_basis: input.cost_basis.map(|c| c.normalize().to_string()),
                reason,
                metadata,
                source_kind: source.as_ref().map(|(kind, _)| (*kind).to_owned()),
                source_id: source.map(|(_, id)| id),
            };
            // Effective later: scheduled, its entry booked when it is
            // spendable; the key then names the grant (see `replay_grant`).
            let (grant_id, entry) = if effective_at > now {
                book.check_room(book.scheduled_total() + amount)?;
                (book.schedule_grant(new), None)
            } else {
                book.check_room(amount)?;
                let (grant_id, entry) = book
                    .add_grant(new, EntryType::Grant, Some(request.key().as_str()))
                    .await?;
                (grant_id, Some(entry))
            };
            let grant = book.grant(GrantId::from_uuid(grant_id)).cloned();
            audit_log::note_created(GrantId::from_uuid(grant_id));
            let result_id = match &entry {
                Some(entry) => {
                    audit_log::note_created(EntryId::from_uuid(entry.id));
                    entry.id
                }
                None => grant_id,
            };
            session.record_key(request.record_model(tenant_id, result_id, now));
            session.finish(book).await?;
            Ok(GrantOutcome {
                grant: grant.ok_or(Error::Missing("grant", "grant"))?.try_into()?,
                entry: entry.map(TryInto::try_into).transpose()?,
            })
        },
    )
    .await
}

/// A grant's key names its GRANT entry, or, for a grant that was
/// scheduled, the grant itself (whose entry may have been booked since).
async fn replay_grant(
    conn: &impl ConnectionTrait,
    tenant_id: Uuid,
    result_id: Uuid,
) -> Result<GrantOutcome, Error> {
    let entry = ledger_entry::Entity::find_by_id(result_id)
        .filter(ledger_entry::Column::TenantId.eq(tenant_id))
        .one(conn)
        .await?;
    let (grant_id, entry) = match entry {
        Some(entry) => (
            entry.grant_id.ok_or(Error::Missing("grant", "grant"))?,
            Some(entry),
        ),
        None => (
            result_id,
            ledger_entry::Entity::find()
                .filter(ledger_entry::Column::TenantId.eq(tenant_id))
                .filter(ledger_entry::Column::GrantId.eq(result_id))
                .filter(ledger_entry::Column::EntryType.eq(EntryType::Grant.as_str()))
                .one(conn)
                .await?,
        ),
    };
    Ok(GrantOutcome {
        grant: load_grant(conn, tenant_id, GrantId::from_uuid(grant_id))
            .await?
            .try_into()?,
        entry: entry.map(TryInto::try_into).transpose()?,
    })
}
