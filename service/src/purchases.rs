//! Buying credits: a quote from the customer's plan, a `PENDING` order,
//! and — once the payment gateway (any, outside the engine) says so — the
//! credits granted in the same transaction that marks the order `PAID`.
//!
//! - Prices come from the plan credit of the customer's oldest active
//!   subscription whose plan sells that credit system (its top-up price).
//! - `confirm_payment` is safe to repeat: confirming a paid order with the
//!   same payment id returns it (one grant); another payment id is a
//!   `CONFLICT`.
//! - Orders not paid within 24 hours are `EXPIRED` (computed when read; the
//!   expiry sweep also writes it down) and can't be confirmed any more: if
//!   money arrives late, refund it at the gateway or create a new order.
//! - Purchased credits are `PURCHASED` grants with cost basis = total ÷
//!   quantity (6 places, half-up) and the plan credit's expiration counted
//!   from the confirmation.
//! - A paid order is refunded by [`refund_order`]: what remains of its
//!   grant comes back (a VOID entry), never more; the money is pro rata.

use chrono::{DateTime, Duration, Utc};
use entity::top_up_order;
use rust_decimal::{Decimal, RoundingStrategy};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder, QuerySelect,
};
use serde::Serialize;
use uuid::Uuid;

use crate::ids::{CreditSystemId, CustomerId, GrantId, OrderId, PlanCreditId, RefundId};
use crate::{
    Clock, Db,
    amount::{from_micros, positive_micros, to_micros},
    catalog::{self, PlanCredit},
    credit_systems::{self, CreditSystemRef},
    customers::{self, CustomerRef},
    error::{Code, DomainError, Invalid, known},
    idempotency::{self, IdempotencyKey, Request, Seen, fingerprint},
    ledger::{self, Category, WalletRef},
    outbox::{self, EventType},
    pagination::{Page, PageRequest},
    pricing::{self, Quote},
    subscription_state::{self, SubscriptionStatus},
};

/// How long a pending order waits for its payment.
pub const ORDER_PAYMENT_WINDOW: Duration = Duration::hours(24);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum OrderStatus {
    Pending,
    Paid,
    Failed,
    Expired,
    /// Paid, then refunded in full (what could be taken back was).
    Refunded,
    /// Paid, then refunded in part: more may still be refunded.
    PartiallyRefunded,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "PENDING",
            OrderStatus::Paid => "PAID",
            OrderStatus::Failed => "FAILED",
            OrderStatus::Expired => "EXPIRED",
            OrderStatus::Refunded => "REFUNDED",
            OrderStatus::PartiallyRefunded => "PARTIALLY_REFUNDED",
        }
    }

    pub const ALL: [OrderStatus; 6] = [
        OrderStatus::Pending,
        OrderStatus::Paid,
        OrderStatus::Failed,
        OrderStatus::Expired,
        OrderStatus::Refunded,
        OrderStatus::PartiallyRefunded,
    ];

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TopUpOrder {
    pub id: OrderId,
    pub customer_id: CustomerId,
    pub credit_system_id: CreditSystemId,
    pub plan_credit_id: PlanCreditId,
    pub quantity: Decimal,
    pub quote: Quote,
    /// As stored; see [`TopUpOrder::status_at`].
    pub status: OrderStatus,
    pub gateway: Option<String>,
    pub payment_id: Option<String>,
    pub paid_at: Option<DateTime<Utc>>,
    pub failure_reason: Option<String>,
    pub grant_id: Option<GrantId>,
    pub automatic: bool,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// Credits taken back by refunds so far.
    pub refunded_quantity: Decimal,
    /// Money refunded so far (see [`refund_order`]).
    pub refunded_amount: Decimal,
    /// Why a provider's payment did not grant (see `crate::payments`).
    pub payment_issue: Option<String>,
}

impl TopUpOrder {
    /// A pending order past its payment window reads `Expired`.
    pub fn status_at(&self, now: DateTime<Utc>) -> OrderStatus {
        match self.status {
            OrderStatus::Pending if self.expires_at <= now => OrderStatus::Expired,
            s => s,
        }
    }
}

impl TryFrom<top_up_order::Model> for TopUpOrder {
    type Error = DbErr;

    fn try_from(m: top_up_order::Model) -> Result<Self, DbErr> {
        let quote: Quote = serde_json::from_value(m.quote)
            .map_err(|e| DbErr::Custom(format!("order {} has an unreadable quote: {e}", m.id)))?;
        Ok(Self {
            id: OrderId::from_uuid(m.id),
            customer_id: CustomerId::from_uuid(m.customer_id),
            credit_system_id: CreditSystemId::from_uuid(m.credit_system_id),
            plan_credit_id: PlanCreditId::from_uuid(m.plan_credit_id),
            quantity: from_micros(m.quantity_micros),
            quote,
            status: known(
                OrderStatus::parse(&m.status),
                "top_up_order",
                "status",
                m.id,
                &m.status,
            )?,
            gateway: m.gateway,
            payment_id: m.payment_id,
            paid_at: m.paid_at,
            failure_reason: m.failure_reason,
            grant_id: m.grant_id.map(GrantId::from_uuid),
            automatic: m.automatic,
            expires_at: m.expires_at,
            created_at: m.created_at,
            refunded_quantity: from_micros(m.refunded_quantity_micros),
            refunded_amount: money_of(m.refunded_amount_micros, &m.currency),
            payment_issue: m.payment_issue,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error(transparent)]
    Customer(#[from] customers::Error),
    #[error(transparent)]
    CreditSystem(#[from] credit_systems::Error),
    #[error(transparent)]
    Subscription(#[from] subscription_state::Error),
    #[error(transparent)]
    Ledger(#[from] ledger::Error),
    #[error("no top-up order with this id")]
    NotFound,
    #[error("{0}")]
    Conflict(String, &'static str),
    #[error("this idempotency key was used for a different request")]
    IdempotencyConflict,
    #[error("database error")]
    Db(#[from] DbErr),
}

impl From<crate::idempotency::Conflict> for Error {
    fn from(_: crate::idempotency::Conflict) -> Self {
        Error::IdempotencyConflict
    }
}

impl DomainError for Error {
    fn code(&self) -> Code {
        match self {
            Error::Invalid(_) => Code::Validation,
            Error::Customer(e) => e.code(),
            Error::CreditSystem(e) => e.code(),
            Error::Subscription(e) => e.code(),
            Error::Ledger(e) => e.code(),
            Error::NotFound => Code::NotFound,
            Error::Conflict(..) => Code::Conflict,
            Error::IdempotencyConflict => Code::IdempotencyConflict,
            Error::Db(_) => Code::Internal,
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            Error::Invalid(e) => Some(&e.field),
            Error::Customer(e) => e.field(),
            Error::CreditSystem(e) => e.field(),
            Error::Subscription(e) => e.field(),
            Error::Ledger(e) => e.field(),
            Error::NotFound => Some("order"),
            Error::Conflict(_, f) => Some(f),
            Error::IdempotencyConflict => Some("idempotencyKey"),
            Error::Db(_) => None,
        }
    }
}

/// The plan credit that sells this credit system to this customer now.
pub(crate) async fn selling_plan_credit(
    db: &Db,
    tenant_id: Uuid,
    customer_id: CustomerId,
    credit_system_id: CreditSystemId,
    now: DateTime<Utc>,
) -> Result<Option<PlanCredit>, Error> {
    let subs = subscription_state::of_customers(db, tenant_id, &[customer_id])
        .await?
        .remove(&customer_id)
        .unwrap_or_default();
    for sub in subs
        .iter()
        .filter(|s| s.status_at(now) == SubscriptionStatus::Active)
    {
        let found = catalog::plan_credits_of(db.reader(), tenant_id, &[sub.plan_id])
            .await?
            .into_iter()
            .find(|pc| {
                pc.credit_system_id == credit_system_id
                    && pc
                        .pricing
                        .as_ref()
                        .is_some_and(|p| p.top_up_price.is_some())
            });
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

pub(crate) struct Priced {
    customer_id: Uuid,
    credit_system_id: Uuid,
    plan_credit: PlanCredit,
    quantity_micros: i64,
    quote: Quote,
}

/// What a purchase names, resolved; the quantity checked against the
/// credit system's precision. None of it changes over time.
struct Named {
    customer_id: Uuid,
    credit_system: entity::credit_system::Model,
    quantity: Decimal,
    quantity_micros: i64,
}

async fn name(
    db: &Db,
    tenant_id: Uuid,
    customer: &CustomerRef,
    credit_system: &CreditSystemRef,
    quantity: Decimal,
) -> Result<Named, Error> {
    let customer = customers::resolve(db.reader(), tenant_id, customer).await?;
    let cs = credit_systems::resolve(db.reader(), tenant_id, credit_system).await?;
    let quantity_micros = positive_micros(quantity, cs.precision.clamp(0, 6) as u32, "quantity")?;
    Ok(Named {
        customer_id: customer.id,
        credit_system: cs,
        quantity,
        quantity_micros,
    })
}

pub(crate) async fn price(
    db: &Db,
    now: DateTime<Utc>,
    tenant_id: Uuid,
    customer: &CustomerRef,
    credit_system: &CreditSystemRef,
    quantity: Decimal,
) -> Result<Priced, Error> {
    let named = name(db, tenant_id, customer, credit_system, quantity).await?;
    price_named(db, now, tenant_id, named).await
}

/// The quote of the customer's plan now.
async fn price_named(
    db: &Db,
    now: DateTime<Utc>,
    tenant_id: Uuid,
    named: Named,
) -> Result<Priced, Error> {
    let Named {
        customer_id,
        credit_system: cs,
        quantity,
        quantity_micros,
    } = named;
    let plan_credit = selling_plan_credit(
        db,
        tenant_id,
        CustomerId::from_uuid(customer_id),
        CreditSystemId::from_uuid(cs.id),
        now,
    )
    .await?
    .ok_or_else(|| {
        Invalid::new(
            "creditSystem",
            format!("no active plan of this customer sells {:?} top-ups", cs.key),
        )
    })?;
    let pricing = plan_credit
        .pricing
        .as_ref()
        .ok_or_else(|| Invalid::new("creditSystem", "no pricing"))?;
    let top_up = pricing
        .top_up_price
        .as_ref()
        .ok_or_else(|| Invalid::new("creditSystem", "no top-up price"))?;
    let quote = quote_within(pricing, top_up, quantity)?;
    Ok(Priced {
        customer_id,
        credit_system_id: cs.id,
        plan_credit,
        quantity_micros,
        quote,
    })
}

/// The plan credit's bounds on one purchase, then the top-up price's
/// quote: what a customer's quote and a draft's preview share.
fn quote_within(
    pricing: &catalog::PlanPricing,
    top_up: &pricing::Price,
    quantity: Decimal,
) -> Result<Quote, Invalid> {
    if let Some(min) = pricing.min_quantity
        && quantity < min
    {
        return Err(Invalid::new(
            "quantity",
            format!("the plan sells at least {min} per purchase"),
        ));
    }
    if let Some(max) = pricing.max_quantity
        && quantity > max
    {
        return Err(Invalid::new(
            "quantity",
            format!("the plan sells at most {max} per purchase"),
        ));
    }
    pricing::quote(top_up, quantity)
}

/// The most tiers a previewed price may have ([`quote_pricing`]).
pub const PREVIEW_TIERS_MAX: usize = 100;

/// What `quantity` credits of `credit_system` would cost under `pricing`,
/// a plan credit's pricing that need not be saved anywhere (the console's
/// price editor previews a draft with it). The same arithmetic and the
/// same purchase bounds as [`quote_top_up`]; the quantity is checked
/// against the credit system's precision. No side effects.
///
/// Refusals name the input's field: `quantity`, `pricing.topUpPrice`
/// (none given, or more than [`PREVIEW_TIERS_MAX`] tiers),
/// `pricing.topUpPrice.tiers[1]`, `pricing.maxQuantity`, ….
pub async fn quote_pricing(
    db: &Db,
    tenant_id: Uuid,
    credit_system: &CreditSystemRef,
    pricing: &catalog::PlanPricing,
    quantity: Decimal,
) -> Result<Quote, Error> {
    let cs = credit_systems::resolve(db.reader(), tenant_id, credit_system).await?;
    let precision = cs.precision.clamp(0, 6) as u32;
    positive_micros(quantity, precision, "quantity")?;
    let top_up = pricing.top_up_price.as_ref().ok_or_else(|| {
        Invalid::new(
            "pricing.topUpPrice",
            "a quote needs a top-up price to preview",
        )
    })?;
    if top_up.tiers.len() > PREVIEW_TIERS_MAX {
        return Err(Invalid::new(
            "pricing.topUpPrice",
            format!(
                "at most {PREVIEW_TIERS_MAX} tiers, not {}",
                top_up.tiers.len()
            ),
        )
        .into());
    }
    for (bound, field) in [
        (pricing.min_quantity, "pricing.minQuantity"),
        (pricing.max_quantity, "pricing.maxQuantity"),
    ] {
        if let Some(q) = bound {
            positive_micros(q, precision, field)?;
        }
    }
    if let (Some(min), Some(max)) = (pricing.min_quantity, pricing.max_quantity)
        && min > max
    {
        return Err(Invalid::new("pricing.maxQuantity", "must not be below minQuantity").into());
    }
    quote_within(pricing, top_up, quantity).map_err(|e| {
        if e.field == "quantity" {
            e.into()
        } else {
            Invalid::new(format!("pricing.topUpPrice.{}", e.field), e.message).into()
        }
    })
}

/// What `quantity` credits would cost this customer now. No side effects.
pub async fn quote_top_up(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    customer: &CustomerRef,
    credit_system: &CreditSystemRef,
    quantity: Decimal,
) -> Result<Quote, Error> {
    Ok(price(
        db,
        clock.now(),
        tenant_id,
        customer,
        credit_system,
        quantity,
    )
    .await?
    .quote)
}

/// Creates a `PENDING` order at the current quote. A replay returns the
/// original order (as it is now), whatever the plan says today.
pub async fn purchase(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    customer: &CustomerRef,
    credit_system: &CreditSystemRef,
    quantity: Decimal,
    idempotency_key: &str,
) -> Result<TopUpOrder, Error> {
    let key = IdempotencyKey::parse(idempotency_key)?;
    let now = clock.now();
    let named = name(db, tenant_id, customer, credit_system, quantity).await?;
    let request = Request::new(
        key,
        "purchase",
        &(
            named.customer_id,
            named.credit_system.id,
            named.quantity_micros,
        ),
    );
    let txn = db.begin_write().await?;
    let out = idempotency::replay_or::<_, Error>(
        &txn,
        tenant_id,
        &request,
        async |id| load(&txn, tenant_id, id).await,
        async || {
            let priced = price_named(db, now, tenant_id, named).await?;
            let model = new_order(tenant_id, &priced, false, now)?
                .insert(&txn)
                .await?;
            if !request
                .record(&txn, clock, tenant_id, OrderId::from_uuid(model.id))
                .await?
            {
                return Err(Error::IdempotencyConflict);
            }
            Ok(model.try_into()?)
        },
    )
    .await;
    match out {
        Ok(order) => {
            txn.commit().await?;
            Ok(order)
        }
        Err(Error::IdempotencyConflict) => {
            // A concurrent request with this key may have committed first:
            // answer as a retry of it would be answered.
            txn.rollback().await?;
            let conn = db.reader();
            idempotency::replay_or::<_, Error>(
                conn,
                tenant_id,
                &request,
                async |id| load(conn, tenant_id, id).await,
                async || Err(Error::IdempotencyConflict),
            )
            .await
        }
        Err(e) => Err(e),
    }
}

/// A `PENDING` order at a quote, waiting [`ORDER_PAYMENT_WINDOW`] for its
/// payment. Money is stored as micro-units of the currency.
pub(crate) fn new_order(
    tenant_id: Uuid,
    priced: &Priced,
    automatic: bool,
    now: DateTime<Utc>,
) -> Result<top_up_order::ActiveModel, Error> {
    let money = |d: Decimal| to_micros(d, 6, "quantity");
    Ok(top_up_order::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(tenant_id),
        customer_id: Set(priced.customer_id),
        credit_system_id: Set(priced.credit_system_id),
        plan_credit_id: Set(priced.plan_credit.id.uuid()),
        quantity_micros: Set(priced.quantity_micros),
        currency: Set(priced.quote.currency.clone()),
        subtotal_micros: Set(money(priced.quote.subtotal)?),
        tax_micros: Set(money(priced.quote.tax)?),
        total_micros: Set(money(priced.quote.total)?),
        quote: Set(serde_json::to_value(&priced.quote).map_err(|e| DbErr::Custom(e.to_string()))?),
        status: Set(OrderStatus::Pending.as_str().to_owned()),
        gateway: Set(None),
        payment_id: Set(None),
        paid_at: Set(None),
        failure_reason: Set(None),
        grant_id: Set(None),
        automatic: Set(automatic),
        expires_at: Set(now + ORDER_PAYMENT_WINDOW),
        created_at: Set(now),
        updated_at: Set(now),
        refunded_quantity_micros: Set(0),
        refunded_amount_micros: Set(0),
        payment_issue: Set(None),
    })
}

async fn load(conn: &impl ConnectionTrait, tenant_id: Uuid, id: Uuid) -> Result<TopUpOrder, Error> {
    Ok(top_up_order::Entity::find_by_id(id)
        .filter(top_up_order::Column::TenantId.eq(tenant_id))
        .one(conn)
        .await?
        .ok_or(Error::NotFound)?
        .try_into()?)
}

pub async fn get(db: &Db, tenant_id: Uuid, id: OrderId) -> Result<TopUpOrder, Error> {
    load(db.reader(), tenant_id, id.uuid()).await
}

fn parse_ref(value: &str, field: &str) -> Result<String, Invalid> {
    crate::input::key(field, value)
}

/// The gateway says the order is paid: mark it `PAID` and grant the credits,
/// in one transaction.
pub async fn confirm_payment(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    order_id: OrderId,
    gateway: &str,
    payment_id: &str,
    paid_at: Option<DateTime<Utc>>,
) -> Result<TopUpOrder, Error> {
    let gateway = parse_ref(gateway, "gateway")?;
    let payment_id = parse_ref(payment_id, "paymentId")?;
    let now = clock.now();
    let paid_at = crate::input::time_opt("paidAt", paid_at)?.unwrap_or(now);
    if paid_at > now {
        return Err(Invalid::new("paidAt", "can't be in the future").into());
    }
    let txn = db.begin_write().await?;
    let order = top_up_order::Entity::find_by_id(order_id.uuid())
        .filter(top_up_order::Column::TenantId.eq(tenant_id))
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or(Error::NotFound)?;
    let view = TopUpOrder::try_from(order.clone())?;
    match view.status_at(now) {
        OrderStatus::Pending => {}
        OrderStatus::Paid if view.payment_id.as_deref() == Some(payment_id.as_str()) => {
            return Ok(view);
        }
        OrderStatus::Paid => {
            return Err(Error::Conflict(
                "this order was paid by another payment".into(),
                "paymentId",
            ));
        }
        status => {
            return Err(Error::Conflict(
                format!("this order is {} and can't be paid", status.as_str()),
                "order",
            ));
        }
    }
    let pc = catalog::plan_credit(db, tenant_id, PlanCreditId::from_uuid(order.plan_credit_id))
        .await
        .map_err(|e| Error::Conflict(e.to_string(), "order"))?;
    let expiration = pc.pricing.as_ref().and_then(|p| p.expiration);
    let quantity = from_micros(order.quantity_micros);
    let cost_basis = (view.quote.total / quantity)
        .round_dp_with_strategy(6, RoundingStrategy::MidpointAwayFromZero);
    let grant = ledger::grant_in(
        &mut ledger::Session::new(&txn),
        clock,
        tenant_id,
        &ledger::GrantInput {
            wallet: WalletRef {
                customer: CustomerRef::Id(CustomerId::from_uuid(order.customer_id)),
                credit_system: CreditSystemRef::Id(CreditSystemId::from_uuid(
                    order.credit_system_id,
                )),
            },
            amount: quantity,
            category: Category::Purchased,
            effective_at: None,
            expires_at: expiration.map(|e| e.after(now)),
            priority: None,
            cost_basis: Some(cost_basis),
            reason: format!(
                "top-up order {}",
                crate::ids::encode(crate::ids::Kind::Order, order.id)
            ),
            metadata: Some(serde_json::json!({
                "orderId": order.id.simple().to_string(),
                "gateway": gateway,
                "paymentId": payment_id,
            })),
            idempotency_key: format!("order:{}", order.id.simple()),
        },
        ledger::Made {
            source: Some(("order", order.id.simple().to_string())),
            catch_up: false,
        },
    )
    .await?;
    let mut active = order.into_active_model();
    active.status = Set(OrderStatus::Paid.as_str().to_owned());
    active.gateway = Set(Some(gateway));
    active.payment_id = Set(Some(payment_id));
    active.paid_at = Set(Some(paid_at));
    active.grant_id = Set(Some(grant.grant.id.uuid()));
    active.updated_at = Set(now);
    let order = active.update(&txn).await?;
    outbox::write(&txn, vec![order_event(&order, EventType::TopupPaid, now)]).await?;
    txn.commit().await?;
    Ok(order.try_into()?)
}

pub(crate) fn order_event(
    order: &top_up_order::Model,
    kind: EventType,
    now: DateTime<Utc>,
) -> entity::outbox_event::ActiveModel {
    outbox::event(
        order.tenant_id,
        kind,
        None,
        serde_json::json!({
            "orderId": order.id,
            "customerId": order.customer_id,
            "creditSystemId": order.credit_system_id,
            "quantity": from_micros(order.quantity_micros).to_string(),
            "total": from_micros(order.total_micros).to_string(),
            "currency": order.currency,
            "status": order.status,
            "gateway": order.gateway,
            "paymentId": order.payment_id,
            "failureReason": order.failure_reason,
        }),
        now,
    )
}

/// The gateway says the payment failed. Failing a failed order again
/// returns it; a paid or expired order can't fail.
pub async fn fail_payment(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    order_id: OrderId,
    reason: &str,
) -> Result<TopUpOrder, Error> {
    let reason = crate::input::reason("reason", reason)?;
    let now = clock.now();
    let txn = db.begin_write().await?;
    let order = top_up_order::Entity::find_by_id(order_id.uuid())
        .filter(top_up_order::Column::TenantId.eq(tenant_id))
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or(Error::NotFound)?;
    let view = TopUpOrder::try_from(order.clone())?;
    match view.status_at(now) {
        OrderStatus::Pending => {}
        OrderStatus::Failed => return Ok(view),
        status => {
            return Err(Error::Conflict(
                format!("this order is {} and can't fail", status.as_str()),
                "order",
            ));
        }
    }
    let mut active = order.into_active_model();
    active.status = Set(OrderStatus::Failed.as_str().to_owned());
    active.failure_reason = Set(Some(reason));
    active.updated_at = Set(now);
    let order = active.update(&txn).await?;
    outbox::write(&txn, vec![order_event(&order, EventType::TopupFailed, now)]).await?;
    txn.commit().await?;
    Ok(order.try_into()?)
}

/// One refund of a top-up order.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderRefund {
    pub id: Uuid,
    pub order_id: Uuid,
    /// Credits this refund asked for.
    pub quantity: Decimal,
    /// Credits taken back from the order's grant.
    pub refunded: Decimal,
    /// Credits asked for that could not be taken back: spent, expired or
    /// voided already.
    pub not_refundable: Decimal,
    /// Money this refund stands for, in the order's currency (0 for an
    /// order without a price).
    pub amount: Decimal,
    pub currency: String,
    pub reason: String,
    /// The VOID entry that took the credits back; none when nothing could be.
    pub entry_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

impl From<entity::top_up_refund::Model> for OrderRefund {
    fn from(m: entity::top_up_refund::Model) -> Self {
        Self {
            id: m.id,
            order_id: m.order_id,
            quantity: from_micros(m.requested_micros),
            refunded: from_micros(m.refunded_micros),
            not_refundable: from_micros(m.not_refundable_micros),
            amount: money_of(m.amount_micros, &m.currency),
            currency: m.currency,
            reason: m.reason,
            entry_id: m.entry_id,
            created_at: m.created_at,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RefundOutcome {
    /// The order as it is now.
    pub order: TopUpOrder,
    pub refund: OrderRefund,
}

/// Stored money, shown with the currency's minor units (`38.10`).
fn money_of(micros: i64, currency: &str) -> Decimal {
    let mut money = from_micros(micros);
    money.rescale(pricing::minor_units(currency).max(money.scale()));
    money
}

/// The money of `taken` credits of an order: `total × taken ÷ quantity`,
/// rounded half-up to the currency's minor units.
fn pro_rata(total: Decimal, quantity: Decimal, taken: Decimal, currency: &str) -> Decimal {
    if quantity.is_zero() {
        return Decimal::ZERO;
    }
    let minor = pricing::minor_units(currency);
    let mut money = (total * taken / quantity)
        .round_dp_with_strategy(minor, RoundingStrategy::MidpointAwayFromZero);
    money.rescale(minor);
    money
}

/// Refunds a paid order: takes back up to `quantity` (default: all that is
/// left to refund of the order) of what remains of its grant — never more
/// than remains; what was spent (or expired) says `not_refundable` — as a
/// VOID entry in one transaction, and marks the order `REFUNDED` once
/// refunds have asked for its whole quantity, else `PARTIALLY_REFUNDED`.
/// Emits `topup.refunded`.
///
/// **Money.** The money refunded so far is always `total × credits taken
/// back so far ÷ quantity`, rounded half-up to the currency's minor units;
/// each refund's `amount` is what that adds (so the refunds of an order
/// add up to its total exactly when all of its credits come back).
///
/// A replay (same key, same order, quantity and reason) returns the
/// original refund and the order as it is now.
pub async fn refund_order(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    order_id: OrderId,
    quantity: Option<Decimal>,
    reason: &str,
    idempotency_key: &str,
) -> Result<RefundOutcome, Error> {
    let key = IdempotencyKey::parse(idempotency_key)?;
    let reason = crate::input::reason("reason", reason)?;
    let found = load(db.reader(), tenant_id, order_id.uuid()).await?;
    let cs = credit_systems::resolve(
        db.reader(),
        tenant_id,
        &CreditSystemRef::Id(found.credit_system_id),
    )
    .await?;
    let requested = quantity
        .map(|q| positive_micros(q, cs.precision.clamp(0, 6) as u32, "quantity"))
        .transpose()?;
    let request = Request::new(key, "refundOrder", &(order_id, requested, &reason));
    let now = clock.now();
    let txn = db.begin_write().await?;
    let order = top_up_order::Entity::find_by_id(order_id.uuid())
        .filter(top_up_order::Column::TenantId.eq(tenant_id))
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or(Error::NotFound)?;
    let replay = async |refund_id: Uuid| {
        let refund = entity::top_up_refund::Entity::find_by_id(refund_id)
            .filter(entity::top_up_refund::Column::TenantId.eq(tenant_id))
            .one(&txn)
            .await?
            .ok_or(Error::NotFound)?;
        Ok(RefundOutcome {
            order: TopUpOrder::try_from(order.clone())?,
            refund: refund.into(),
        })
    };
    let out = idempotency::replay_or::<_, Error>(&txn, tenant_id, &request, replay, async || {
        let view = TopUpOrder::try_from(order.clone())?;
        match view.status_at(now) {
            OrderStatus::Paid | OrderStatus::PartiallyRefunded => {}
            status => {
                return Err(Error::Conflict(
                    format!("this order is {} and can't be refunded", status.as_str()),
                    "order",
                ));
            }
        }
        let grant_id = order
            .grant_id
            .map(GrantId::from_uuid)
            .ok_or_else(|| Error::Conflict("this order has no grant to refund".into(), "order"))?;
        let earlier = entity::top_up_refund::Entity::find()
            .filter(entity::top_up_refund::Column::TenantId.eq(tenant_id))
            .filter(entity::top_up_refund::Column::OrderId.eq(order_id))
            .all(&txn)
            .await?;
        let asked: i64 = earlier.iter().map(|r| r.requested_micros).sum();
        let left = order.quantity_micros - asked;
        if left <= 0 {
            return Err(Error::Conflict(
                "this order is refunded already".into(),
                "order",
            ));
        }
        let requested = requested.unwrap_or(left);
        if requested > left {
            return Err(Invalid::new(
                "quantity",
                format!(
                    "at most {} of this order is left to refund",
                    from_micros(left)
                ),
            )
            .into());
        }
        let (taken, entry) = ledger::take_back_in(
            &txn,
            clock,
            tenant_id,
            grant_id,
            requested,
            &reason,
            request.key().as_str(),
        )
        .await?;
        let taken_so_far = order.refunded_quantity_micros + taken;
        let money_so_far = pro_rata(
            from_micros(order.total_micros),
            from_micros(order.quantity_micros),
            from_micros(taken_so_far),
            &order.currency,
        );
        let money_so_far_micros = to_micros(money_so_far, 6, "quantity")?;
        let refund = entity::top_up_refund::ActiveModel {
            id: Set(Uuid::now_v7()),
            tenant_id: Set(tenant_id),
            order_id: Set(order_id.uuid()),
            requested_micros: Set(requested),
            refunded_micros: Set(taken),
            not_refundable_micros: Set(requested - taken),
            amount_micros: Set(money_so_far_micros - order.refunded_amount_micros),
            currency: Set(order.currency.clone()),
            reason: Set(reason.clone()),
            entry_id: Set(entry.as_ref().map(|e| e.id.uuid())),
            created_at: Set(now),
        }
        .insert(&txn)
        .await?;
        let status = if asked + requested >= order.quantity_micros {
            OrderStatus::Refunded
        } else {
            OrderStatus::PartiallyRefunded
        };
        let mut active = order.clone().into_active_model();
        active.status = Set(status.as_str().to_owned());
        active.refunded_quantity_micros = Set(taken_so_far);
        active.refunded_amount_micros = Set(money_so_far_micros);
        active.updated_at = Set(now);
        let updated = active.update(&txn).await?;
        let mut event = order_event(&updated, EventType::TopupRefunded, now);
        if let sea_orm::ActiveValue::Set(serde_json::Value::Object(payload)) = &mut event.payload {
            payload.insert(
                "refund".into(),
                serde_json::json!({
                    "id": refund.id,
                    "quantity": from_micros(refund.requested_micros).to_string(),
                    "refunded": from_micros(refund.refunded_micros).to_string(),
                    "notRefundable": from_micros(refund.not_refundable_micros).to_string(),
                    "amount": money_of(refund.amount_micros, &refund.currency).to_string(),
                    "currency": refund.currency,
                    "reason": refund.reason,
                    "entryId": refund.entry_id,
                }),
            );
        }
        outbox::write(&txn, vec![event]).await?;
        if !request
            .record(&txn, clock, tenant_id, RefundId::from_uuid(refund.id))
            .await?
        {
            return Err(Error::IdempotencyConflict);
        }
        Ok(RefundOutcome {
            order: updated.try_into()?,
            refund: refund.into(),
        })
    })
    .await?;
    txn.commit().await?;
    Ok(out)
}

/// Refunds an order so that its refunds ask, in all, for `refunded ÷ paid`
/// (`share`) of its quantity (rounded down to the credit system's precision): how a
/// payment provider's (cumulative) refunded amount becomes credits. `None`
/// when the refunds already ask for that much. Like [`refund_order`]
/// otherwise (same key, same answer).
pub async fn refund_share(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    order_id: OrderId,
    share: (Decimal, Decimal),
    reason: &str,
    idempotency_key: &str,
) -> Result<Option<RefundOutcome>, Error> {
    let (refunded, paid) = share;
    if paid <= Decimal::ZERO || refunded <= Decimal::ZERO {
        return Ok(None);
    }
    let order = load(db.reader(), tenant_id, order_id.uuid()).await?;
    let cs = credit_systems::resolve(
        db.reader(),
        tenant_id,
        &CreditSystemRef::Id(order.credit_system_id),
    )
    .await?;
    let share = if refunded >= paid {
        order.quantity
    } else {
        (order.quantity * refunded / paid)
            .round_dp_with_strategy(cs.precision.clamp(0, 6) as u32, RoundingStrategy::ToZero)
    };
    let asked: i64 = entity::top_up_refund::Entity::find()
        .filter(entity::top_up_refund::Column::TenantId.eq(tenant_id))
        .filter(entity::top_up_refund::Column::OrderId.eq(order_id))
        .all(db.reader())
        .await?
        .iter()
        .map(|r| r.requested_micros)
        .sum();
    let quantity = share - from_micros(asked);
    if quantity <= Decimal::ZERO {
        return Ok(None);
    }
    refund_order(
        db,
        clock,
        tenant_id,
        order_id,
        Some(quantity),
        reason,
        idempotency_key,
    )
    .await
    .map(Some)
}

/// Marks an order as needing a person: a provider reported a payment for
/// it that was not granted (amount or currency not the quote's, or the
/// order could no longer be paid). Nothing else changes.
pub async fn flag_payment(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    order_id: OrderId,
    issue: &str,
) -> Result<TopUpOrder, Error> {
    let now = clock.now();
    let issue: String = issue.chars().take(1000).collect();
    let txn = db.begin_write().await?;
    let order = top_up_order::Entity::find_by_id(order_id.uuid())
        .filter(top_up_order::Column::TenantId.eq(tenant_id))
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or(Error::NotFound)?;
    let mut active = order.into_active_model();
    active.payment_issue = Set(Some(issue));
    active.updated_at = Set(now);
    let order = active.update(&txn).await?;
    txn.commit().await?;
    Ok(order.try_into()?)
}

/// A customer's orders, newest first, optionally of one status (as of now).
pub async fn list(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    customer: Option<&CustomerRef>,
    status: Option<OrderStatus>,
    page: PageRequest,
) -> Result<Page<TopUpOrder>, Error> {
    let now = clock.now();
    let mut q = top_up_order::Entity::find().filter(top_up_order::Column::TenantId.eq(tenant_id));
    if let Some(c) = customer {
        let c = customers::resolve(db.reader(), tenant_id, c).await?;
        q = q.filter(top_up_order::Column::CustomerId.eq(c.id));
    }
    q = match status {
        None => q,
        Some(OrderStatus::Pending) => q
            .filter(top_up_order::Column::Status.eq("PENDING"))
            .filter(top_up_order::Column::ExpiresAt.gt(now)),
        Some(OrderStatus::Expired) => q.filter(
            sea_orm::Condition::any()
                .add(top_up_order::Column::Status.eq("EXPIRED"))
                .add(
                    sea_orm::Condition::all()
                        .add(top_up_order::Column::Status.eq("PENDING"))
                        .add(top_up_order::Column::ExpiresAt.lte(now)),
                ),
        ),
        Some(s) => q.filter(top_up_order::Column::Status.eq(s.as_str())),
    };
    if let Some(after) = page.after {
        q = q.filter(top_up_order::Column::Id.lt(after));
    }
    let rows = q
        .order_by_desc(top_up_order::Column::Id)
        .limit(page.fetch_limit())
        .all(db.reader())
        .await?;
    let items = rows
        .into_iter()
        .map(TopUpOrder::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(page.finish(items))
}

/// A plan credit's recurring price, for the billing period starting at
/// `period_start`: a `PENDING` automatic order for its quantity and
/// `topup.requested`, for the tenant's backend to charge; once confirmed,
/// the credits are granted like any purchase. Exactly once per
/// (subscription, plan credit, period start). Nothing without a recurring
/// price. Missed periods are not billed after the fact: only the current
/// one is ordered.
pub(crate) async fn recurring_order_in(
    txn: &sea_orm::DatabaseTransaction,
    clock: &dyn Clock,
    sub: &entity::subscription::Model,
    pc: &PlanCredit,
    period_start: DateTime<Utc>,
) -> Result<Option<Uuid>, crate::subscription_state::Error> {
    let Some(recurring) = pc.pricing.as_ref().and_then(|p| p.recurring.as_ref()) else {
        return Ok(None);
    };
    let key = IdempotencyKey::parse(&format!(
        "recurring:{}:{}:{}",
        sub.id.simple(),
        pc.id.uuid().simple(),
        period_start.timestamp_micros()
    ))?;
    let hash = fingerprint(&(sub.id, pc.id, period_start));
    if let Seen::Replay(_) | Seen::Conflict =
        idempotency::check(txn, sub.tenant_id, &key, "recurring", &hash).await?
    {
        return Ok(None);
    }
    let quote = pricing::quote(&recurring.price, recurring.quantity)?;
    let priced = Priced {
        customer_id: sub.customer_id,
        credit_system_id: pc.credit_system_id.uuid(),
        plan_credit: pc.clone(),
        quantity_micros: to_micros(recurring.quantity, 6, "quantity")?,
        quote,
    };
    let now = clock.now();
    let order = new_order(sub.tenant_id, &priced, true, now)
        .map_err(|e| crate::subscription_state::Error::Conflict(e.to_string(), "plan"))?
        .insert(txn)
        .await?;
    outbox::write(
        txn,
        vec![order_event(&order, EventType::TopupRequested, now)],
    )
    .await?;
    // The subscription's row lock serializes this; a key recorded meanwhile
    // means something else wrote it, and this order must not stand.
    if !idempotency::record(
        txn,
        clock,
        sub.tenant_id,
        &key,
        "recurring",
        &hash,
        OrderId::from_uuid(order.id),
    )
    .await?
    {
        return Err(crate::subscription_state::Error::IdempotencyConflict);
    }
    Ok(Some(order.id))
}

/// Orders by id, for batched reads.
pub async fn by_ids(db: &Db, tenant_id: Uuid, ids: &[OrderId]) -> Result<Vec<TopUpOrder>, DbErr> {
    top_up_order::Entity::find()
        .filter(top_up_order::Column::TenantId.eq(tenant_id))
        .filter(top_up_order::Column::Id.is_in(ids.iter().copied()))
        .all(db.reader())
        .await?
        .into_iter()
        .map(TopUpOrder::try_from)
        .collect()
}
