//! The ledger's writes. Each one: parse the input, resolve the wallet, lock
//! it, replay or refuse a used idempotency key ([`idempotency::replay_or`]:
//! before anything is checked against the present), book what time has
//! done, validate against the present, apply the change, record the key,
//! commit. All or nothing.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use entity::{credit_grant, credit_hold, credit_system, entry_split, ledger_entry, wallet};
use rust_decimal::Decimal;
use sea_orm::DatabaseTransaction;
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect,
    sea_query::{LockBehavior, LockType},
};
use serde_json::Value as Json;
use uuid::Uuid;

use super::{
    Attribution, Category, Entry, EntryType, Error, Grant, Hold, HoldStatus, Split, Wallet,
    WalletRef,
    book::{Links, NewGrant, Refusal, Session},
    burn,
};
use crate::{
    Clock, Db,
    amount::{from_micros, positive_micros, to_micros},
    audit_log, credit_systems, customers,
    error::{Invalid, known},
    idempotency::{self, IdempotencyKey, Request},
};

/// The longest a hold may reserve credits.
pub const HOLD_DURATION_MAX: Duration = Duration::days(90);

fn parse_reason(reason: &str) -> Result<String, Invalid> {
    crate::input::reason("reason", reason)
}

fn parse_metadata(metadata: &Option<Json>) -> Result<Option<Json>, Invalid> {
    crate::input::json_object(
        "metadata",
        metadata.as_ref(),
        crate::input::METADATA_BYTES_MAX,
    )
}

async fn resolve(
    conn: &impl ConnectionTrait,
    tenant_id: Uuid,
    wallet: &WalletRef,
) -> Result<(Uuid, credit_system::Model), Error> {
    let customer = customers::resolve(conn, tenant_id, &wallet.customer).await?;
    let credit_system = credit_systems::resolve(conn, tenant_id, &wallet.credit_system).await?;
    Ok((customer.id, credit_system))
}

fn precision(cs: &credit_system::Model) -> u32 {
    cs.precision.clamp(0, 6) as u32
}

async fn precision_of_wallet(
    conn: &impl ConnectionTrait,
    wallet: &wallet::Model,
) -> Result<u32, Error> {
    let cs = credit_system::Entity::find_by_id(wallet.credit_system_id)
        .one(conn)
        .await?
        .ok_or(Error::NotFound("credit system", "creditSystem"))?;
    Ok(precision(&cs))
}

fn insufficient(requested: i64, available: i64) -> Error {
    Error::InsufficientCredits {
        requested: from_micros(requested),
        available: from_micros(available),
    }
}

pub(super) fn refused(requested: i64, refusal: Refusal) -> Error {
    match refusal {
        Refusal::Insufficient { available } => insufficient(requested, available),
        Refusal::BelowFloor { available, floor } => Error::LowCreditLimit {
            requested: from_micros(requested),
            available: from_micros(available),
            limit: from_micros(floor),
        },
    }
}

// ---------------------------------------------------------------- loading

async fn load_entry(
    conn: &impl ConnectionTrait,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<ledger_entry::Model, Error> {
    ledger_entry::Entity::find_by_id(id)
        .filter(ledger_entry::Column::TenantId.eq(tenant_id))
        .one(conn)
        .await?
        .ok_or(Error::NotFound("entry", "entry"))
}

async fn load_grant(
    conn: &impl ConnectionTrait,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<credit_grant::Model, Error> {
    credit_grant::Entity::find_by_id(id)
        .filter(credit_grant::Column::TenantId.eq(tenant_id))
        .one(conn)
        .await?
        .ok_or(Error::NotFound("grant", "grant"))
}

async fn load_hold(
    conn: &impl ConnectionTrait,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<credit_hold::Model, Error> {
    credit_hold::Entity::find_by_id(id)
        .filter(credit_hold::Column::TenantId.eq(tenant_id))
        .one(conn)
        .await?
        .ok_or(Error::NotFound("hold", "hold"))
}

async fn load_splits(
    conn: &impl ConnectionTrait,
    tenant_id: Uuid,
    entry_id: Uuid,
) -> Result<Vec<entry_split::Model>, Error> {
    Ok(entry_split::Entity::find()
        .filter(entry_split::Column::TenantId.eq(tenant_id))
        .filter(entry_split::Column::EntryId.eq(entry_id))
        .order_by_asc(entry_split::Column::Id)
        .all(conn)
        .await?)
}

async fn grants_of_splits(
    conn: &impl ConnectionTrait,
    tenant_id: Uuid,
    splits: &[entry_split::Model],
) -> Result<Vec<Grant>, Error> {
    let mut grants = Vec::with_capacity(splits.len());
    for s in splits {
        grants.push(load_grant(conn, tenant_id, s.grant_id).await?.try_into()?);
    }
    Ok(grants)
}

// ---------------------------------------------------------------- grant

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
        .open(tenant_id, customer_id, cs.id, now, true)
        .await?
        .ok_or(Error::NotFound("wallet", "customer"))?;
    book.knows_credit_system(&cs);
    let txn = session.for_key(request.key().as_str()).await?;
    idempotency::replay_or::<_, Error>(
        txn,
        tenant_id,
        &request,
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
            let grant = book.grant(grant_id).cloned();
            audit_log::note_created(audit_log::Created::Grant, grant_id);
            let result_id = match &entry {
                Some(entry) => {
                    audit_log::note_created(audit_log::Created::Entry, entry.id);
                    entry.id
                }
                None => grant_id,
            };
            session.record_key(request.record_model(tenant_id, result_id, now));
            session.finish(book).await?;
            Ok(GrantOutcome {
                grant: grant.ok_or(Error::NotFound("grant", "grant"))?.try_into()?,
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
            entry.grant_id.ok_or(Error::NotFound("grant", "grant"))?,
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
        grant: load_grant(conn, tenant_id, grant_id).await?.try_into()?,
        entry: entry.map(TryInto::try_into).transpose()?,
    })
}

// ---------------------------------------------------------------- consume

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
/// write with the key's record (one: the [`Session`]'s write). The key is
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
        Some((book, cs)) => (Some(book), cs.id, cs),
        // Which of the customer, the credit system or the wallet is missing.
        None => {
            let (customer_id, cs) = resolve(&*txn, tenant_id, &input.wallet).await?;
            (None, customer_id, cs)
        }
    };
    let customer_id = match &book {
        Some(book) => book.wallet.customer_id,
        None => customer_id,
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
        let splits = book.split_models_of(entry.id);
        session.record_key(request.record_model(tenant_id, entry.id, now));
        session.finish(book).await?;
        audit_log::note_created(audit_log::Created::Entry, entry.id);
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
    customer_id: Uuid,
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
    let original = load_entry(conn, tenant_id, record.result_id).await?;
    let wallet = wallet::Entity::find_by_id(original.wallet_id)
        .filter(wallet::Column::TenantId.eq(tenant_id))
        .one(conn)
        .await?
        .ok_or(Error::NotFound("wallet", "idempotencyKey"))?;
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
    let entry = load_entry(conn, tenant_id, entry_id).await?;
    let splits = load_splits(conn, tenant_id, entry_id).await?;
    Ok(ConsumeOutcome {
        entry: entry.try_into()?,
        splits: splits.into_iter().map(Into::into).collect(),
    })
}

// ---------------------------------------------------------------- void

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
    grant_id: Uuid,
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
        .open_by_id(tenant_id, grant.wallet_id, now)
        .await?
        .ok_or(Error::NotFound("wallet", "grant"))?;
    let out = idempotency::replay_or::<_, Error>(
        &txn,
        tenant_id,
        &request,
        async |entry_id| {
            Ok(VoidOutcome {
                grant: load_grant(&txn, tenant_id, grant_id).await?.try_into()?,
                entry: load_entry(&txn, tenant_id, entry_id).await?.try_into()?,
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
                .ok_or(Error::NotFound("grant", "grant"))?;
            let grant = book.grant(grant_id).cloned();
            session.record_key(request.record_model(tenant_id, entry.id, now));
            session.finish(book).await?;
            Ok(VoidOutcome {
                grant: grant.ok_or(Error::NotFound("grant", "grant"))?.try_into()?,
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
    grant_id: Uuid,
    amount: i64,
    reason: &str,
    idempotency_key: &str,
) -> Result<(i64, Option<Entry>), Error> {
    let now = clock.now();
    let grant = load_grant(txn, tenant_id, grant_id).await?;
    let mut session = Session::new(txn);
    let mut book = session
        .open_by_id(tenant_id, grant.wallet_id, now)
        .await?
        .ok_or(Error::NotFound("wallet", "grant"))?;
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
                grant_id: Some(grant_id),
                ..Links::default()
            },
            &Attribution {
                description: Some(reason.to_owned()),
                ..Attribution::default()
            },
            Some(idempotency_key),
            &[(grant_id, -taken)],
        ))
    };
    if let Some(e) = &entry {
        audit_log::note_created(audit_log::Created::Entry, e.id);
    }
    session.finish(book).await?;
    Ok((taken, entry.map(Entry::try_from).transpose()?))
}

// ---------------------------------------------------------------- adjust

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
        .open(tenant_id, customer_id, cs.id, now, true)
        .await?
        .ok_or(Error::NotFound("wallet", "customer"))?;
    let replay = async |entry_id| {
        let entry = load_entry(&txn, tenant_id, entry_id).await?;
        let grant = match entry.grant_id {
            Some(id) => Some(load_grant(&txn, tenant_id, id).await?.try_into()?),
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
        let grant = grant_id.and_then(|id| book.grant(id).cloned());
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

// ---------------------------------------------------------------- refund

#[derive(Debug, Clone)]
pub struct RefundInput {
    /// The USAGE entry to refund.
    pub entry_id: Uuid,
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
        .open_by_id(tenant_id, usage.wallet_id, now)
        .await?
        .ok_or(Error::NotFound("wallet", "entry"))?;
    let precision = precision_of_wallet(&txn, &book.wallet).await?;
    let requested = input
        .amount
        .map(|a| positive_micros(a, precision, "amount"))
        .transpose()?;
    let request = Request::new(key, "refund", &(input.entry_id, requested, &reason));
    let replay = async |entry_id| {
        let entry = load_entry(&txn, tenant_id, entry_id).await?;
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
        let sources: Vec<Uuid> = draws.iter().map(|(id, _)| *id).collect();
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
            let source = source.and_then(|id| book.grant(id).cloned());
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
            .filter_map(|(id, _)| book.grant(*id).cloned().map(Grant::try_from))
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

// ---------------------------------------------------------------- holds

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
        .open(tenant_id, customer_id, cs.id, now, false)
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
    let entry = load_entry(conn, tenant_id, entry_id).await?;
    let hold_id = entry.hold_id.ok_or(Error::NotFound("hold", "hold"))?;
    Ok(HoldOutcome {
        hold: load_hold(conn, tenant_id, hold_id).await?.try_into()?,
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
    hold_id: Uuid,
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
    hold_id: Uuid,
    idempotency_key: &str,
) -> Result<HoldOutcome, Error> {
    settle_hold(db, clock, tenant_id, hold_id, None, idempotency_key).await
}

async fn settle_hold(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    hold_id: Uuid,
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
        .open_by_id(tenant_id, hold.wallet_id, now)
        .await?
        .ok_or(Error::NotFound("wallet", "hold"))?;
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
    let limits = super::read::plans_low_credit_limits_of(&txn, &customers, now).await?;
    let settled = locked.len() as u64;
    let mut session = Session::gathering(&txn);
    for cs in credit_systems.values() {
        session.knows_credit_system(cs);
    }
    for w in locked {
        let key = (w.customer_id, w.credit_system_id);
        session.knows_plan_limits(key.0, key.1, limits.get(&key).copied().unwrap_or_default());
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

/// Makes sure the wallet of (customer, credit system) exists, inside the
/// caller's write transaction.
pub(crate) async fn ensure_wallet_in(
    txn: &DatabaseTransaction,
    tenant_id: Uuid,
    customer_id: Uuid,
    credit_system_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    Session::new(txn)
        .open(tenant_id, customer_id, credit_system_id, now, true)
        .await?;
    Ok(())
}

// ---------------------------------------------------------------- wallet options

#[derive(Debug, Clone, Default)]
pub struct WalletOptions {
    pub allow_overage: Option<bool>,
    /// `Some(None)` clears the threshold.
    pub low_balance_threshold: Option<Option<Decimal>>,
    /// The wallet's own usage-% alert thresholds (`Some(Some([]))`: off);
    /// `Some(None)` clears them (the plan's or the default apply).
    pub usage_alert_percents: Option<Option<Vec<Decimal>>>,
}

/// Sets a wallet's options, creating the wallet if it does not exist yet.
/// Setting the same options again changes nothing (naturally idempotent).
pub async fn configure_wallet(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    wallet: &WalletRef,
    options: &WalletOptions,
) -> Result<Wallet, Error> {
    let now = clock.now();
    let txn = db.begin_write().await?;
    let mut session = Session::new(&txn);
    let (customer_id, cs) = resolve(&txn, tenant_id, wallet).await?;
    let threshold = match &options.low_balance_threshold {
        Some(Some(t)) => {
            let micros = to_micros(*t, precision(&cs), "lowBalanceThreshold")?;
            if micros < 0 {
                return Err(Invalid::new("lowBalanceThreshold", "must not be negative").into());
            }
            Some(Some(micros))
        }
        Some(None) => Some(None),
        None => None,
    };
    let usage_alerts = match &options.usage_alert_percents {
        Some(Some(p)) => Some(Some(crate::notifications::usage::to_json(
            &crate::notifications::usage::validate_percents("usageAlertPercents", p)?,
        ))),
        Some(None) => Some(None),
        None => None,
    };
    let book = session
        .open(tenant_id, customer_id, cs.id, now, true)
        .await?
        .ok_or(Error::NotFound("wallet", "customer"))?;
    let mut active = book.wallet.into_active_model();
    if let Some(allow) = options.allow_overage {
        active.allow_overage = Set(allow);
    }
    if let Some(t) = threshold {
        active.low_balance_threshold_micros = Set(t);
    }
    if let Some(p) = usage_alerts {
        active.usage_alert_percents = Set(p);
    }
    active.updated_at = Set(now);
    let updated = active.update(&txn).await?;
    txn.commit().await?;
    Ok(updated.into())
}
