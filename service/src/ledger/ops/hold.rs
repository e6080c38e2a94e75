//! Holds: credits reserved now, captured (spent) or released later, or
//! released at their deadline.

use super::*;

#[derive(Debug, Clone)]
pub struct HoldInput {
    pub wallet: WalletRef,
    pub amount: Decimal,
    /// When the hold stops reserving, if not captured or released before.
    pub expires_at: DateTime<Utc>,
    pub attribution: Attribution,
    pub idempotency_key: String,
}

#[derive(Debug, Clone)]
pub struct HoldOutcome {
    pub hold: Hold,
    /// The HOLD, USAGE (capture) or RELEASE entry.
    pub entry: Option<Entry>,
}

/// Reserves credits: they leave `available` and enter `pending` until the
/// hold is captured, released, or reaches `expires_at` (at most 90 days).
/// Holds never go into debt.
pub async fn create_hold(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    input: &HoldInput,
) -> Result<HoldOutcome, Error> {
    let key = IdempotencyKey::parse(&input.idempotency_key)?;
    let attribution = input.attribution.parse()?;
    let now = clock.now();
    let expires_at = crate::input::time("expiresAt", input.expires_at)?;
    let txn = db.begin_write().await?;
    let mut session = Session::new(&txn);
    let (customer_id, cs) = resolve(&txn, tenant_id, &input.wallet).await?;
    let amount = positive_micros(input.amount, precision(&cs), "amount")?;
    let request = Request::new(
        key,
        "hold",
        &(customer_id, cs.id, amount, expires_at, &attribution),
    );
    let book = session
        .open(
            tenant_id,
            customer_id,
            CreditSystemId::from_uuid(cs.id),
            now,
            false,
        )
        .await?;
    let out = idempotency::replay_or::<_, Error>(
        &txn,
        tenant_id,
        &request,
        async |entry_id| replay_hold(&txn, tenant_id, entry_id).await,
        async || {
            if expires_at <= now || expires_at > now + HOLD_DURATION_MAX {
                return Err(
                    Invalid::new("expiresAt", "must be after now and within 90 days").into(),
                );
            }
            let Some(mut book) = book else {
                return Err(insufficient(amount, 0));
            };
            book.settle().await?;
            book.knows_credit_system(&cs);
            let floor = book.plan_limits().await?.block;
            let (hold, entry) = book
                .reserve(
                    amount,
                    expires_at,
                    floor,
                    &attribution,
                    Some(request.key().as_str()),
                    None,
                )
                .await?
                .map_err(|r| refused(amount, r))?;
            session.record_key(request.record_model(tenant_id, entry.id, now));
            session.finish(book).await?;
            Ok(HoldOutcome {
                hold: hold.try_into()?,
                entry: Some(entry.try_into()?),
            })
        },
    )
    .await?;
    txn.commit().await?;
    Ok(out)
}

async fn replay_hold(
    conn: &impl ConnectionTrait,
    tenant_id: Uuid,
    entry_id: Uuid,
) -> Result<HoldOutcome, Error> {
    let entry = load_entry(conn, tenant_id, EntryId::from_uuid(entry_id)).await?;
    let hold_id = entry.hold_id.ok_or(Error::Missing("hold", "hold"))?;
    Ok(HoldOutcome {
        hold: load_hold(conn, tenant_id, HoldId::from_uuid(hold_id))
            .await?
            .try_into()?,
        entry: Some(entry.try_into()?),
    })
}

/// Settles a hold for `amount` (≤ held): that much becomes a USAGE entry
/// drawn from the same grants, the rest returns. A hold past its deadline
/// can no longer be captured (`CONFLICT`).
pub async fn capture_hold(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    hold_id: HoldId,
    amount: Decimal,
    idempotency_key: &str,
) -> Result<HoldOutcome, Error> {
    settle_hold(db, clock, tenant_id, hold_id, Some(amount), idempotency_key).await
}

/// Returns all of a hold's credits. Releasing a released hold returns it
/// as it is.
pub async fn release_hold(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    hold_id: HoldId,
    idempotency_key: &str,
) -> Result<HoldOutcome, Error> {
    settle_hold(db, clock, tenant_id, hold_id, None, idempotency_key).await
}

async fn settle_hold(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    hold_id: HoldId,
    capture: Option<Decimal>,
    idempotency_key: &str,
) -> Result<HoldOutcome, Error> {
    let key = IdempotencyKey::parse(idempotency_key)?;
    let operation = if capture.is_some() {
        "capture"
    } else {
        "release"
    };
    let now = clock.now();
    let txn = db.begin_write().await?;
    let mut session = Session::new(&txn);
    let hold = load_hold(&txn, tenant_id, hold_id).await?;
    let pays_invoice = hold.invoice_id.is_some();
    let mut book = session
        .open_by_id(tenant_id, WalletId::from_uuid(hold.wallet_id), now)
        .await?
        .ok_or(Error::Missing("wallet", "hold"))?;
    let captured = match capture {
        Some(a) => {
            let precision = precision_of_wallet(&txn, &book.wallet).await?;
            Some(positive_micros(a, precision, "amount")?)
        }
        None => None,
    };
    let request = Request::new(key, operation, &(hold_id, captured));
    let replay = async |entry_id| replay_hold(&txn, tenant_id, entry_id).await;
    let out = idempotency::replay_or::<_, Error>(&txn, tenant_id, &request, replay, async || {
        if pays_invoice {
            return Err(Error::Conflict(
                "this hold pays an invoice: finalizeInvoice or voidInvoice settles it".into(),
                "hold",
            ));
        }
        book.settle().await?;
        // Settling may just have released it at its deadline.
        let hold = load_hold(&txn, tenant_id, hold_id).await?;
        let status = known(
            HoldStatus::parse(&hold.status),
            "credit_hold",
            "status",
            hold.id,
            &hold.status,
        )?;
        match (status, captured) {
            (HoldStatus::Active, _) => {}
            (HoldStatus::Released, None) => {
                session.finish(book).await?;
                return Ok(HoldOutcome {
                    hold: hold.try_into()?,
                    entry: None,
                });
            }
            (status, _) => {
                return Err(Error::Conflict(
                    format!("this hold is {} already", status.as_str()),
                    "hold",
                ));
            }
        }
        if let Some(c) = captured
            && c > hold.amount_micros
        {
            return Err(Invalid::new(
                "amount",
                format!(
                    "can't capture more than the {} held",
                    from_micros(hold.amount_micros)
                ),
            )
            .into());
        }
        let (hold, entry) = book
            .return_hold(hold, captured, Some(request.key().as_str()))
            .await?;
        session.record_key(request.record_model(tenant_id, entry.id, now));
        session.finish(book).await?;
        Ok(HoldOutcome {
            hold: hold.try_into()?,
            entry: Some(entry.try_into()?),
        })
    })
    .await?;
    txn.commit().await?;
    Ok(out)
}
