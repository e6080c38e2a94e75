//! Entitlements and usage metering: whether a customer may use a feature
//! now ([`check_entitlement`]) and metering its use ([`track_usage`]).
//!
//! What a feature costs is configured on the plan
//! ([`crate::catalog::Entitlement`], `catalog/entitlements.rs`); which plans
//! a customer is on is [`crate::subscriptions`]; the spend itself is the
//! ledger's ([`crate::ledger::consume`]: spending order, all or nothing,
//! idempotency, BLOCK limits). This module joins the three: the entitlement
//! that prices a feature for a customer is the one of its oldest active
//! subscription whose plan has it.

use chrono::{DateTime, Utc};
use entity::top_up_order;
use rust_decimal::Decimal;
use sea_orm::{ColumnTrait, DbErr, EntityTrait, QueryFilter};
use serde::Serialize;
use uuid::Uuid;

use crate::ids::{CustomerId, FeatureId, PlanId};
use crate::{
    Clock, Db,
    amount::positive_micros,
    catalog::{self, Entitlement, PlanCredit, Ref},
    credit_systems::CreditSystemRef,
    customers::{self, CustomerRef},
    error::{Code, DomainError, Invalid},
    idempotency::IdempotencyKey,
    ledger::{self, Attribution, WalletRef, read},
    subscriptions::{self, Subscription, SubscriptionStatus},
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error(transparent)]
    Customer(#[from] customers::Error),
    #[error(transparent)]
    Catalog(#[from] catalog::Error),
    #[error(transparent)]
    Subscription(#[from] subscriptions::Error),
    #[error(transparent)]
    Ledger(#[from] ledger::Error),
    #[error("the customer's active plans don't include feature {0:?}")]
    NotEntitled(String),
    #[error("the plan needs a paid top-up of {0:?} before usage")]
    PurchaseRequired(String),
    #[error("database error")]
    Db(#[from] DbErr),
}

impl DomainError for Error {
    fn code(&self) -> Code {
        match self {
            Error::Invalid(_) => Code::Validation,
            Error::Customer(e) => e.code(),
            Error::Catalog(e) => e.code(),
            Error::Subscription(e) => e.code(),
            Error::Ledger(e) => e.code(),
            Error::NotEntitled(_) => Code::FeatureNotEntitled,
            Error::PurchaseRequired(_) => Code::PurchaseRequired,
            Error::Db(_) => Code::Internal,
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            Error::Invalid(e) => Some(&e.field),
            Error::Customer(e) => e.field(),
            Error::Catalog(e) => e.field(),
            Error::Subscription(e) => e.field(),
            Error::Ledger(e) => e.field(),
            Error::NotEntitled(_) => Some("feature"),
            Error::PurchaseRequired(_) => Some("customer"),
            Error::Db(_) => None,
        }
    }

    fn details(&self) -> Vec<(&'static str, String)> {
        match self {
            Error::Ledger(e) => e.details(),
            Error::Subscription(e) => e.details(),
            _ => Vec::new(),
        }
    }
}

/// The entitlement that prices `feature` for `customer` now: from the
/// oldest active subscription whose plan has it.
async fn entitlement_for(
    db: &Db,
    tenant_id: Uuid,
    customer_id: CustomerId,
    feature_id: FeatureId,
    now: DateTime<Utc>,
) -> Result<Option<(Subscription, Entitlement, Option<PlanCredit>)>, Error> {
    let subs: Vec<Subscription> = subscriptions::of_customers(db, tenant_id, &[customer_id])
        .await?
        .remove(&customer_id)
        .unwrap_or_default()
        .into_iter()
        .filter(|s| s.status_at(now) == SubscriptionStatus::Active)
        .collect();
    if subs.is_empty() {
        return Ok(None);
    }
    let plan_ids: Vec<PlanId> = subs.iter().map(|s| s.plan_id).collect();
    let entitlements = catalog::entitlements_of(db.reader(), tenant_id, &plan_ids).await?;
    for sub in subs {
        if let Some(e) = entitlements
            .iter()
            .find(|e| e.plan_id == sub.plan_id && e.feature_id == feature_id)
        {
            let pc = catalog::plan_credits_of(db.reader(), tenant_id, &[sub.plan_id])
                .await?
                .into_iter()
                .find(|pc| pc.credit_system_id == e.credit_system_id);
            return Ok(Some((sub, e.clone(), pc)));
        }
    }
    Ok(None)
}

/// Whether a mandatory purchase is still owed: the plan requires one and no
/// top-up of that credit system was paid since the subscription started.
async fn purchase_owed(
    db: &Db,
    tenant_id: Uuid,
    sub: &Subscription,
    pc: Option<&PlanCredit>,
) -> Result<bool, Error> {
    let required = pc
        .and_then(|pc| pc.pricing.as_ref())
        .is_some_and(|p| p.mandatory_purchase);
    if !required {
        return Ok(false);
    }
    let Some(pc) = pc else { return Ok(false) };
    let paid = top_up_order::Entity::find()
        .filter(top_up_order::Column::TenantId.eq(tenant_id))
        .filter(top_up_order::Column::CustomerId.eq(sub.customer_id))
        .filter(top_up_order::Column::CreditSystemId.eq(pc.credit_system_id))
        .filter(top_up_order::Column::Status.eq("PAID"))
        .filter(top_up_order::Column::PaidAt.gte(sub.started_at))
        .one(db.reader())
        .await?;
    Ok(paid.is_none())
}

fn cost(quantity: Decimal, unit_cost: Decimal, precision: u32) -> Result<Decimal, Invalid> {
    let total = quantity * unit_cost;
    positive_micros(total, precision, "quantity").map_err(|_| {
        Invalid::new(
            "quantity",
            format!(
                "{quantity} × {unit_cost} = {} has more decimals than the credit system allows ({precision})",
                total.normalize()
            ),
        )
    })?;
    Ok(total)
}

#[derive(Debug, Clone)]
pub struct TrackUsageInput {
    pub customer: CustomerRef,
    pub feature: Ref,
    /// Units of the feature used (> 0, up to 6 decimal places).
    pub quantity: Decimal,
    pub idempotency_key: String,
    pub event_ref: Option<String>,
    pub user_ref: Option<String>,
    pub dimensions: Option<serde_json::Value>,
    pub description: Option<String>,
}

/// Meters usage of a feature: looks up what the customer's plan charges for
/// it and consumes `quantity × creditCost` credits under the ledger's rules
/// (spending order, all or nothing, idempotency key, BLOCK limits).
pub async fn track_usage(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    input: &TrackUsageInput,
) -> Result<ledger::ConsumeOutcome, Error> {
    if input.quantity <= Decimal::ZERO {
        return Err(Invalid::new("quantity", "must be greater than 0").into());
    }
    // Checked before any lookup (the consume checks them again).
    IdempotencyKey::parse(&input.idempotency_key)?;
    Attribution {
        event_ref: input.event_ref.clone(),
        user_ref: input.user_ref.clone(),
        dimensions: input.dimensions.clone(),
        description: input.description.clone(),
        ..Attribution::default()
    }
    .parse()?;
    let now = clock.now();
    let customer = customers::resolve(db.reader(), tenant_id, &input.customer).await?;
    let feature = catalog::find_feature(db.reader(), tenant_id, &input.feature)
        .await?
        .ok_or_else(|| catalog::Error::NotFound("feature", "with this id or key".into()))?;
    let attribution = Attribution {
        feature: Some(feature.key.clone()),
        quantity: Some(input.quantity),
        event_ref: input.event_ref.clone(),
        user_ref: input.user_ref.clone(),
        dimensions: input.dimensions.clone(),
        description: input.description.clone(),
    };
    // Idempotency first: a retry returns the original usage even if the
    // plan no longer includes the feature or prices it differently.
    if let Some(original) = ledger::replay_usage(
        db,
        tenant_id,
        CustomerId::from_uuid(customer.id),
        &attribution,
        &input.idempotency_key,
    )
    .await?
    {
        return Ok(original);
    }
    let (sub, entitlement, pc) = entitlement_for(
        db,
        tenant_id,
        CustomerId::from_uuid(customer.id),
        FeatureId::from_uuid(feature.id),
        now,
    )
    .await?
    .ok_or_else(|| Error::NotEntitled(feature.key.clone()))?;
    if purchase_owed(db, tenant_id, &sub, pc.as_ref()).await? {
        return Err(Error::PurchaseRequired(feature.key));
    }
    let cs = crate::credit_systems::get(
        db,
        tenant_id,
        &CreditSystemRef::Id(entitlement.credit_system_id),
    )
    .await
    .map_err(catalog::Error::from)?;
    let amount = cost(input.quantity, entitlement.credit_cost, cs.precision)?;
    Ok(ledger::consume(
        db,
        clock,
        tenant_id,
        &ledger::ConsumeInput {
            wallet: WalletRef {
                customer: CustomerRef::Id(CustomerId::from_uuid(customer.id)),
                credit_system: CreditSystemRef::Id(cs.id),
            },
            amount,
            attribution,
            idempotency_key: input.idempotency_key.clone(),
        },
    )
    .await?)
}

/// Why usage would be refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum DenyReason {
    NotEntitled,
    PurchaseRequired,
    InsufficientCredits,
    LowCreditLimit,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntitlementCheck {
    pub allowed: bool,
    /// Credits `quantity` units would cost.
    pub credit_cost: Option<Decimal>,
    pub credit_system_id: Option<Uuid>,
    /// Spendable now in that credit system.
    pub available: Option<Decimal>,
    pub reason: Option<DenyReason>,
}

/// Whether `quantity` units of a feature could be used now, with no side
/// effects: for a frontend deciding whether to show a button.
pub async fn check_entitlement(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    customer: &CustomerRef,
    feature: &Ref,
    quantity: Decimal,
) -> Result<EntitlementCheck, Error> {
    if quantity <= Decimal::ZERO {
        return Err(Invalid::new("quantity", "must be greater than 0").into());
    }
    let now = clock.now();
    let customer = customers::resolve(db.reader(), tenant_id, customer).await?;
    let feature = catalog::find_feature(db.reader(), tenant_id, feature)
        .await?
        .ok_or_else(|| catalog::Error::NotFound("feature", "with this id or key".into()))?;
    let denied = |reason| EntitlementCheck {
        allowed: false,
        credit_cost: None,
        credit_system_id: None,
        available: None,
        reason: Some(reason),
    };
    let Some((sub, entitlement, pc)) = entitlement_for(
        db,
        tenant_id,
        CustomerId::from_uuid(customer.id),
        FeatureId::from_uuid(feature.id),
        now,
    )
    .await?
    else {
        return Ok(denied(DenyReason::NotEntitled));
    };
    let cs = crate::credit_systems::get(
        db,
        tenant_id,
        &CreditSystemRef::Id(entitlement.credit_system_id),
    )
    .await
    .map_err(catalog::Error::from)?;
    let credit_cost = cost(quantity, entitlement.credit_cost, cs.precision)?;
    let wallet = read::wallet_of(db, tenant_id, CustomerId::from_uuid(customer.id), cs.id).await?;
    let (available, overage) = match &wallet {
        Some(w) => (
            read::balances(db, tenant_id, &[w.id], now)
                .await?
                .remove(&w.id)
                .unwrap_or_default()
                .available,
            w.allow_overage,
        ),
        None => (Decimal::ZERO, false),
    };
    let floor = pc.as_ref().and_then(PlanCredit::spend_floor);
    let reason = if purchase_owed(db, tenant_id, &sub, pc.as_ref()).await? {
        Some(DenyReason::PurchaseRequired)
    } else if floor.is_some_and(|f| available - credit_cost < f) {
        Some(DenyReason::LowCreditLimit)
    } else if credit_cost > available && !overage {
        Some(DenyReason::InsufficientCredits)
    } else {
        None
    };
    Ok(EntitlementCheck {
        allowed: reason.is_none(),
        credit_cost: Some(credit_cost),
        credit_system_id: Some(cs.id.uuid()),
        available: Some(available),
        reason,
    })
}
