//! A subscription as the rest of the domain reads it: the record, its status
//! and billing period at an instant, the subscriptions of customers, and
//! the error of the writes a subscription drives (subscribing, allowance
//! resets, recurring orders).
//!
//! Subscribing ([`crate::subscriptions`]) grants allowances and places
//! recurring orders; allowances and purchases read subscriptions and fail
//! with this error. Keeping these here, below all three, is what stops
//! them using each other in a circle. The public names are
//! `subscriptions::…` (re-exported there).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use entity::subscription;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder};
use serde::Serialize;
use uuid::Uuid;

use crate::{
    Db,
    catalog::{self, BillingInterval, Ref},
    customers,
    error::{Code, DomainError, Invalid},
    ids::{CustomerId, PlanId, SubscriptionId},
    ledger, periods,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SubscriptionStatus {
    /// Starts in the future.
    Scheduled,
    Active,
    Canceled,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub id: SubscriptionId,
    pub customer_id: CustomerId,
    pub plan_id: PlanId,
    pub billing_anchor: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub cancel_at: Option<DateTime<Utc>>,
    pub billing_interval: BillingInterval,
    pub created_at: DateTime<Utc>,
    /// On the answer of a write (`subscribe`, `cancel`): the instant it was
    /// made at, which its status and period are to be read at, so that the
    /// answer says what a read right after would. `None` on reads: they use
    /// their own now.
    pub as_of: Option<DateTime<Utc>>,
}

impl Subscription {
    pub(crate) fn from_model(m: subscription::Model, billing_interval: BillingInterval) -> Self {
        Self {
            id: SubscriptionId::from_uuid(m.id),
            customer_id: CustomerId::from_uuid(m.customer_id),
            plan_id: PlanId::from_uuid(m.plan_id),
            billing_anchor: m.billing_anchor,
            started_at: m.started_at,
            cancel_at: m.cancel_at,
            billing_interval,
            created_at: m.created_at,
            as_of: None,
        }
    }

    /// The instant to read status and period at: [`Self::as_of`] on a
    /// write's answer, else the reader's `now`.
    pub fn read_at(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.as_of.unwrap_or(now)
    }

    /// The status at `now`: `subscribe` answers with this at its own now
    /// (see [`Self::as_of`]), so a subscription starting now is `Active`.
    pub fn status_at(&self, now: DateTime<Utc>) -> SubscriptionStatus {
        if self.cancel_at.is_some_and(|c| c <= now) {
            SubscriptionStatus::Canceled
        } else if self.started_at > now {
            SubscriptionStatus::Scheduled
        } else {
            SubscriptionStatus::Active
        }
    }

    /// The billing period `[start, end)` containing `now`.
    pub fn period_at(&self, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        periods::period_at(self.billing_anchor, self.billing_interval.interval(), now)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error(transparent)]
    Customer(#[from] customers::Error),
    #[error(transparent)]
    Catalog(#[from] catalog::Error),
    #[error(transparent)]
    Ledger(#[from] ledger::Error),
    #[error("no subscription with this id")]
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
            Error::Catalog(e) => e.code(),
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
            Error::Catalog(e) => e.field(),
            Error::Ledger(e) => e.field(),
            Error::NotFound => Some("subscription"),
            Error::Conflict(_, f) => Some(f),
            Error::IdempotencyConflict => Some("idempotencyKey"),
            Error::Db(_) => None,
        }
    }

    fn details(&self) -> Vec<(&'static str, String)> {
        match self {
            Error::Ledger(e) => e.details(),
            _ => Vec::new(),
        }
    }
}

pub(crate) async fn interval_of(
    conn: &impl ConnectionTrait,
    tenant_id: Uuid,
    plan_id: Uuid,
) -> Result<BillingInterval, Error> {
    match catalog::find_plan(conn, tenant_id, &Ref::Id(plan_id)).await? {
        Some(p) => Ok(catalog::Plan::try_from(p)?.billing_interval),
        None => Err(missing_plan(plan_id).into()),
    }
}

/// A subscription's plan that is not there: a broken invariant (plans are
/// never deleted), never read as a default plan.
fn missing_plan(plan_id: Uuid) -> DbErr {
    tracing::error!(%plan_id, "a subscription's plan does not exist");
    DbErr::RecordNotFound(format!("plan {plan_id} of a subscription"))
}

pub(crate) async fn load(
    conn: &impl ConnectionTrait,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<Subscription, Error> {
    let m = subscription::Entity::find_by_id(id)
        .filter(subscription::Column::TenantId.eq(tenant_id))
        .one(conn)
        .await?
        .ok_or(Error::NotFound)?;
    let interval = interval_of(conn, tenant_id, m.plan_id).await?;
    Ok(Subscription::from_model(m, interval))
}

pub async fn get(db: &Db, tenant_id: Uuid, id: SubscriptionId) -> Result<Subscription, Error> {
    load(db.reader(), tenant_id, id.uuid()).await
}

/// The subscriptions of these customers, oldest first.
pub async fn of_customers(
    db: &Db,
    tenant_id: Uuid,
    customer_ids: &[CustomerId],
) -> Result<HashMap<CustomerId, Vec<Subscription>>, Error> {
    let rows = subscription::Entity::find()
        .filter(subscription::Column::TenantId.eq(tenant_id))
        .filter(subscription::Column::CustomerId.is_in(customer_ids.iter().copied()))
        .order_by_asc(subscription::Column::StartedAt)
        .all(db.reader())
        .await?;
    let plan_ids: Vec<PlanId> = rows.iter().map(|s| PlanId::from_uuid(s.plan_id)).collect();
    let intervals: HashMap<PlanId, BillingInterval> =
        catalog::plans_by_ids(db, tenant_id, &plan_ids)
            .await?
            .into_iter()
            .map(|p| (p.id, p.billing_interval))
            .collect();
    let mut out: HashMap<CustomerId, Vec<Subscription>> = HashMap::new();
    for s in rows {
        let interval = intervals
            .get(&PlanId::from_uuid(s.plan_id))
            .copied()
            .ok_or_else(|| missing_plan(s.plan_id))?;
        out.entry(CustomerId::from_uuid(s.customer_id))
            .or_default()
            .push(Subscription::from_model(s, interval));
    }
    Ok(out)
}
