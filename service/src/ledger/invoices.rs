//! Invoices paid with credits. The tenant's billing system asks to apply a
//! customer's money-valued credits to an invoice; the credits are **held**
//! (they leave `available`, show in `pending`) until the invoice is
//! finalized (the holds are captured as `INVOICE` entries) or voided (the
//! holds are released).
//!
//! Rules:
//! - Only `MONETARY` credit systems in the invoice's currency pay; across
//!   several such wallets the credits expiring soonest go first (then the
//!   usual spending order: priority, age). Debt and the plans' low-credit
//!   limits are not considered: an invoice takes what is available, never
//!   more, and what it can't cover stays due.
//! - One application per invoice id (per tenant): a retry with the same
//!   idempotency key returns the original; another key is `CONFLICT`.
//! - No wallet in the currency, or nothing available: nothing is applied,
//!   the whole subtotal stays due and `note` says why. Such an invoice still
//!   counts as applied (finalize/void work on it and change nothing).
//! - Held credits wait at most 90 days (the hold limit): past
//!   `holds_until` they return to the wallet and finalizing is `CONFLICT`.
//! - Invoice holds are settled only through their invoice; `captureHold` /
//!   `releaseHold` on them is `CONFLICT`.

use chrono::{DateTime, Utc};
use entity::{credit_hold, credit_system, invoice, wallet};
use rust_decimal::Decimal;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction, DbErr,
    EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, SqlErr,
};
use serde::Serialize;
use uuid::Uuid;

use super::{
    Attribution, Error, HoldStatus,
    book::{Book, Session},
    burn::{self, Block},
    ops::HOLD_DURATION_MAX,
};
use crate::{
    Clock, Db,
    amount::from_micros,
    credit_systems::Kind,
    customers::{self, CustomerRef},
    error::{Invalid, known},
    idempotency::{self, IdempotencyKey},
    ids::{CustomerId, InvoiceId, WalletId},
    pagination::{Page, PageRequest},
    pricing::minor_units,
};

const OPERATION: &str = "invoice.apply";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvoiceStatus {
    /// Credits are held for it.
    Pending,
    /// The held credits were spent (INVOICE entries).
    Finalized,
    /// The held credits went back.
    Voided,
}

impl InvoiceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceStatus::Pending => "PENDING",
            InvoiceStatus::Finalized => "FINALIZED",
            InvoiceStatus::Voided => "VOIDED",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "PENDING" => Some(InvoiceStatus::Pending),
            "FINALIZED" => Some(InvoiceStatus::Finalized),
            "VOIDED" => Some(InvoiceStatus::Voided),
            _ => None,
        }
    }

    /// A stored invoice's status; an unknown one fails (see [`known`]).
    fn of(m: &invoice::Model) -> Result<Self, DbErr> {
        known(Self::parse(&m.status), "invoice", "status", m.id, &m.status)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoice {
    pub id: Uuid,
    pub customer_id: CustomerId,
    pub external_id: String,
    pub currency: String,
    pub subtotal: Decimal,
    pub credit_applied: Decimal,
    /// `subtotal − credit_applied`: what the customer still pays.
    pub total_due: Decimal,
    pub note: Option<String>,
    pub status: InvoiceStatus,
    pub holds_until: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub settled_at: Option<DateTime<Utc>>,
}

impl TryFrom<invoice::Model> for Invoice {
    type Error = DbErr;

    fn try_from(m: invoice::Model) -> Result<Self, DbErr> {
        let status = InvoiceStatus::of(&m)?;
        Ok(Invoice {
            id: m.id,
            customer_id: CustomerId::from_uuid(m.customer_id),
            external_id: m.external_id,
            currency: m.currency,
            subtotal: from_micros(m.subtotal_micros),
            credit_applied: from_micros(m.credit_applied_micros),
            total_due: from_micros(m.subtotal_micros - m.credit_applied_micros),
            note: m.note,
            status,
            holds_until: m.holds_until,
            created_at: m.created_at,
            settled_at: m.settled_at,
        })
    }
}

#[derive(Debug, Clone)]
pub struct ApplyInput {
    pub customer: CustomerRef,
    pub external_id: String,
    pub currency: String,
    pub subtotal: Decimal,
    pub idempotency_key: String,
}

/// Validated input (its fingerprint is the key's request hash).
#[derive(Serialize)]
struct Application {
    customer_id: Uuid,
    external_id: String,
    currency: String,
    subtotal: i64,
}

fn parse_external_id(s: &str, field: &str) -> Result<String, Invalid> {
    crate::input::key(field, s)
}

fn parse_currency(s: &str) -> Result<String, Invalid> {
    if s.len() != 3 || !s.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(Invalid::new(
            "invoice.currency",
            "must be a 3-letter ISO 4217 code such as EUR",
        ));
    }
    Ok(s.to_ascii_uppercase())
}

fn parse_subtotal(value: Decimal, currency: &str) -> Result<i64, Invalid> {
    let field = "invoice.subtotal";
    let minor = minor_units(currency);
    if value.normalize().scale() > minor {
        return Err(Invalid::new(
            field,
            format!("{value} has more decimal places than {currency}'s {minor}"),
        ));
    }
    crate::amount::positive_micros(value, 6, field)
}

/// Applies the customer's credits in the invoice's currency, up to its
/// subtotal, and holds them until [`finalize`] or [`void`].
pub async fn apply_credits(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    input: &ApplyInput,
) -> Result<Invoice, Error> {
    let key = IdempotencyKey::parse(&input.idempotency_key)?;
    let external_id = parse_external_id(&input.external_id, "invoice.externalId")?;
    let currency = parse_currency(&input.currency)?;
    let subtotal = parse_subtotal(input.subtotal, &currency)?;
    // A concurrent first application of the same invoice loses the race on
    // the unique (tenant, external id) index; the second try sees the
    // winner and answers as a replay or a conflict.
    let mut tries = 0;
    loop {
        tries += 1;
        match try_apply(
            db,
            clock,
            tenant_id,
            input,
            &key,
            &external_id,
            &currency,
            subtotal,
        )
        .await
        {
            Err(Error::Db(e))
                if tries < 2
                    && matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) =>
            {
                continue;
            }
            other => return other,
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn try_apply(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    input: &ApplyInput,
    key: &IdempotencyKey,
    external_id: &str,
    currency: &str,
    subtotal: i64,
) -> Result<Invoice, Error> {
    let now = clock.now();
    let txn = db.begin_write().await?;
    let customer = customers::resolve(&txn, tenant_id, &input.customer).await?;
    let application = Application {
        customer_id: customer.id,
        external_id: external_id.to_owned(),
        currency: currency.to_owned(),
        subtotal,
    };
    let request = idempotency::Request::new(key.clone(), OPERATION, &application);
    // The unique (tenant, external id) index serializes first applications
    // of one invoice; no wallet lock is needed before the lookup.
    let out = idempotency::replay_or::<_, Error>(
        &txn,
        tenant_id,
        &request,
        async |id| Ok(load(&txn, tenant_id, id).await?.try_into()?),
        async || apply_first(&txn, clock, tenant_id, &request, &application, now).await,
    )
    .await?;
    txn.commit().await?;
    Ok(out)
}

/// A first application (a new key), validated against the present.
async fn apply_first(
    txn: &DatabaseTransaction,
    clock: &dyn Clock,
    tenant_id: Uuid,
    request: &idempotency::Request,
    application: &Application,
    now: DateTime<Utc>,
) -> Result<Invoice, Error> {
    let (customer_id, external_id, currency, subtotal) = (
        application.customer_id,
        application.external_id.as_str(),
        application.currency.as_str(),
        application.subtotal,
    );
    if find(txn, tenant_id, external_id).await?.is_some() {
        return Err(Error::Conflict(
            format!(
                "credits were applied to invoice {external_id:?} already (one application per invoice)"
            ),
            "invoice.externalId",
        ));
    }

    // The customer's wallets of MONETARY systems, and which are in this
    // currency; locked in id order so two invoices never deadlock.
    let systems: Vec<credit_system::Model> = credit_system::Entity::find()
        .filter(credit_system::Column::TenantId.eq(tenant_id))
        .filter(credit_system::Column::Kind.eq(Kind::Monetary.as_str()))
        .all(txn)
        .await?;
    let wallets: Vec<wallet::Model> = wallet::Entity::find()
        .filter(wallet::Column::TenantId.eq(tenant_id))
        .filter(wallet::Column::CustomerId.eq(customer_id))
        .filter(wallet::Column::CreditSystemId.is_in(systems.iter().map(|s| s.id)))
        .order_by_asc(wallet::Column::Id)
        .all(txn)
        .await?;
    let currency_of = |w: &wallet::Model| {
        systems
            .iter()
            .find(|s| s.id == w.credit_system_id)
            .and_then(|s| s.currency.clone())
            .unwrap_or_default()
    };
    let mut session = Session::new(txn);
    let mut books = Vec::new();
    let mut units = Vec::new();
    for w in wallets.iter().filter(|w| currency_of(w) == currency) {
        if let Some(mut book) = session
            .open_by_id(tenant_id, WalletId::from_uuid(w.id), now)
            .await?
        {
            book.settle().await?;
            let precision = systems
                .iter()
                .find(|s| s.id == w.credit_system_id)
                .map_or(6, |s| s.precision.clamp(0, 6) as u32);
            units.push(10_i64.pow(6 - precision));
            books.push(book);
        }
    }

    let shares = shares(&books, &units, subtotal, now);
    let applied: i64 = shares.iter().sum();
    let invoice_id = InvoiceId::new_v7();
    let holds_until = now + HOLD_DURATION_MAX;
    let attribution = Attribution {
        description: Some(format!("invoice {external_id}")),
        ..Attribution::default()
    };
    for (book, &share) in books.iter_mut().zip(&shares) {
        if share == 0 {
            continue;
        }
        book.reserve(
            share,
            holds_until,
            None,
            &attribution,
            None,
            Some(invoice_id),
        )
        .await?
        .map_err(|r| super::ops::refused(share, r))?;
    }
    let note = (applied < subtotal).then(|| {
        let others: Vec<String> = {
            let mut c: Vec<String> = wallets.iter().map(currency_of).collect();
            c.sort();
            c.dedup();
            c.retain(|c| c != currency);
            c
        };
        if books.is_empty() && others.is_empty() {
            format!("the customer has no {currency} credits")
        } else if books.is_empty() {
            format!(
                "the customer has no {currency} credits (it has credits in {}); currencies are never converted",
                others.join(", ")
            )
        } else if applied == 0 {
            format!("the customer's {currency} credits are used up")
        } else {
            format!(
                "the customer had only {} {currency} of credits available",
                from_micros(applied)
            )
        }
    });
    let model = invoice::ActiveModel {
        id: Set(invoice_id.uuid()),
        tenant_id: Set(tenant_id),
        customer_id: Set(customer_id),
        external_id: Set(external_id.to_owned()),
        currency: Set(currency.to_owned()),
        subtotal_micros: Set(subtotal),
        credit_applied_micros: Set(applied),
        note: Set(note),
        status: Set(InvoiceStatus::Pending.as_str().to_owned()),
        holds_until: Set(holds_until),
        created_at: Set(now),
        settled_at: Set(None),
    }
    .insert(txn)
    .await?;
    if !request.record(txn, clock, tenant_id, invoice_id).await? {
        return Err(Error::IdempotencyConflict);
    }
    for book in books {
        session.finish(book).await?;
    }
    Ok(model.try_into()?)
}

/// Pure: how much each wallet pays of `amount`, taking live blocks across
/// all of them in spending order (soonest expiry first), never more than a
/// wallet's available balance, in whole units of its precision.
fn shares(books: &[Book<'_>], units: &[i64], amount: i64, now: DateTime<Utc>) -> Vec<i64> {
    let mut blocks: Vec<(usize, Block)> = books
        .iter()
        .enumerate()
        .flat_map(|(i, b)| b.blocks().into_iter().map(move |block| (i, block)))
        .filter(|(_, b)| b.is_live(now))
        .collect();
    blocks.sort_by(|(_, a), (_, b)| burn::spend_order(a, b));
    let mut caps: Vec<i64> = books.iter().map(|b| b.available().max(0)).collect();
    let mut shares = vec![0; books.len()];
    let mut left = amount;
    for (i, block) in blocks {
        let take = left.min(block.remaining).min(caps[i]);
        let take = take - take % units[i];
        shares[i] += take;
        caps[i] -= take;
        left -= take;
        if left == 0 {
            break;
        }
    }
    shares
}

async fn find(
    conn: &impl ConnectionTrait,
    tenant_id: Uuid,
    external_id: &str,
) -> Result<Option<invoice::Model>, Error> {
    Ok(invoice::Entity::find()
        .filter(invoice::Column::TenantId.eq(tenant_id))
        .filter(invoice::Column::ExternalId.eq(external_id))
        .one(conn)
        .await?)
}

async fn load(
    conn: &impl ConnectionTrait,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<invoice::Model, Error> {
    invoice::Entity::find_by_id(id)
        .filter(invoice::Column::TenantId.eq(tenant_id))
        .one(conn)
        .await?
        .ok_or(Error::Missing("invoice", "invoice"))
}

/// An invoice by its external id.
pub async fn get(db: &Db, tenant_id: Uuid, external_id: &str) -> Result<Option<Invoice>, Error> {
    let external_id = parse_external_id(external_id, "externalId")?;
    Ok(find(db.reader(), tenant_id, &external_id)
        .await?
        .map(Invoice::try_from)
        .transpose()?)
}

/// Which invoices [`list`] returns; every condition given must hold.
#[derive(Debug, Clone, Default)]
pub struct InvoiceFilter {
    pub customer: Option<CustomerRef>,
    pub status: Option<InvoiceStatus>,
    /// Applied at or after this instant…
    pub from: Option<DateTime<Utc>>,
    /// …and before this one.
    pub to: Option<DateTime<Utc>>,
}

/// The tenant's invoices, newest first (by when credits were applied).
pub async fn list(
    db: &Db,
    tenant_id: Uuid,
    filter: &InvoiceFilter,
    page: PageRequest,
) -> Result<Page<Invoice>, Error> {
    let from = crate::input::time_opt("filter.from", filter.from)?;
    let to = crate::input::time_opt("filter.to", filter.to)?;
    if let (Some(from), Some(to)) = (from, to)
        && from >= to
    {
        return Err(Invalid::new("filter.to", "must be after `from`").into());
    }
    let conn = db.reader();
    let mut q = invoice::Entity::find().filter(invoice::Column::TenantId.eq(tenant_id));
    if let Some(c) = &filter.customer {
        let c = customers::resolve(conn, tenant_id, c).await?;
        q = q.filter(invoice::Column::CustomerId.eq(c.id));
    }
    if let Some(status) = filter.status {
        q = q.filter(invoice::Column::Status.eq(status.as_str()));
    }
    if let Some(from) = from {
        q = q.filter(invoice::Column::CreatedAt.gte(from));
    }
    if let Some(to) = to {
        q = q.filter(invoice::Column::CreatedAt.lt(to));
    }
    if let Some(after) = page.after {
        q = q.filter(invoice::Column::Id.lt(after));
    }
    let rows = q
        .order_by_desc(invoice::Column::Id)
        .limit(page.fetch_limit())
        .all(conn)
        .await?;
    let items = rows
        .into_iter()
        .map(Invoice::try_from)
        .collect::<Result<_, _>>()?;
    Ok(page.finish(items))
}

/// Spends the held credits (INVOICE entries). Finalizing a finalized
/// invoice returns it; a voided one, or one whose holds lapsed, is
/// `CONFLICT`.
pub async fn finalize(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    external_id: &str,
) -> Result<Invoice, Error> {
    settle(db, clock, tenant_id, external_id, InvoiceStatus::Finalized).await
}

/// Returns the held credits. Voiding a voided invoice returns it; a
/// finalized one is `CONFLICT`.
pub async fn void(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    external_id: &str,
) -> Result<Invoice, Error> {
    settle(db, clock, tenant_id, external_id, InvoiceStatus::Voided).await
}

async fn settle(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    external_id: &str,
    to: InvoiceStatus,
) -> Result<Invoice, Error> {
    let external_id = parse_external_id(external_id, "externalId")?;
    let now = clock.now();
    let txn = db.begin_write().await?;
    let invoice = find(&txn, tenant_id, &external_id)
        .await?
        .ok_or(Error::Missing("invoice", "externalId"))?;
    match InvoiceStatus::of(&invoice)? {
        InvoiceStatus::Pending => {}
        s if s == to => return Ok(invoice.try_into()?),
        s => {
            return Err(Error::Conflict(
                format!("invoice {external_id:?} is {} already", s.as_str()),
                "externalId",
            ));
        }
    }
    if to == InvoiceStatus::Finalized
        && invoice.credit_applied_micros > 0
        && now >= invoice.holds_until
    {
        return Err(Error::Conflict(
            format!(
                "the credits held for invoice {external_id:?} went back to the wallet at {}; void it and apply credits to a new invoice id",
                invoice.holds_until.to_rfc3339()
            ),
            "externalId",
        ));
    }
    settle_holds(
        &txn,
        tenant_id,
        invoice.id,
        now,
        to == InvoiceStatus::Finalized,
    )
    .await?;
    let mut active = invoice.into_active_model();
    active.status = Set(to.as_str().to_owned());
    active.settled_at = Set(Some(now));
    let invoice = active.update(&txn).await?;
    txn.commit().await?;
    Ok(invoice.try_into()?)
}

/// Captures (all of) or releases the invoice's active holds, wallet by
/// wallet in id order.
async fn settle_holds(
    txn: &DatabaseTransaction,
    tenant_id: Uuid,
    invoice_id: Uuid,
    now: DateTime<Utc>,
    capture: bool,
) -> Result<(), Error> {
    let holds = credit_hold::Entity::find()
        .filter(credit_hold::Column::TenantId.eq(tenant_id))
        .filter(credit_hold::Column::InvoiceId.eq(invoice_id))
        .order_by_asc(credit_hold::Column::WalletId)
        .all(txn)
        .await?;
    let mut session = Session::new(txn);
    for hold in holds {
        let mut book = session
            .open_by_id(tenant_id, WalletId::from_uuid(hold.wallet_id), now)
            .await?
            .ok_or(Error::Missing("wallet", "externalId"))?;
        // Settling releases a hold past its deadline; what is left active
        // is settled here.
        book.settle().await?;
        let hold = credit_hold::Entity::find_by_id(hold.id)
            .one(txn)
            .await?
            .ok_or(Error::Missing("hold", "externalId"))?;
        let status = known(
            HoldStatus::parse(&hold.status),
            "credit_hold",
            "status",
            hold.id,
            &hold.status,
        )?;
        if status == HoldStatus::Active {
            let amount = hold.amount_micros;
            book.return_hold(hold, capture.then_some(amount), None)
                .await?;
        }
        session.finish(book).await?;
    }
    Ok(())
}
