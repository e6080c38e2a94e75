//! Plan credits: a credit system in a plan — the allowance the plan
//! includes every reset interval ([`Allowance`], granted by
//! [`crate::allowances`]) and how its credits are sold ([`PlanPricing`]:
//! commitment, prices, limits, auto top-up).

use chrono::{DateTime, Utc};
use entity::{credit_system, entitlement, plan_credit};
use rust_decimal::Decimal;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction, DbErr,
    EntityTrait, QueryFilter, QueryOrder,
};
use serde::Serialize;
use uuid::Uuid;

use super::{
    Error, Ref, is_unique_violation,
    plans::{Plan, draft},
};
use crate::ids::{CreditSystemId, PlanCreditId, PlanId};
use crate::{
    Clock, Db,
    amount::{from_micros, positive_micros, to_micros},
    credit_systems::{self, CreditSystemRef},
    error::{Invalid, known, unknown},
    periods::{CalendarDuration, Interval},
    pricing::{self, Price},
};

/// What happens to unused allowance at a reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Rollover {
    /// It expires with its period.
    None,
    /// Up to this much carries into the next period (as a new grant).
    Capped(Decimal),
}

/// Credits a plan includes every reset interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Allowance {
    pub amount: Decimal,
    pub reset_interval: Interval,
    pub rollover: Rollover,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Commitment {
    Upfront,
    PayAsYouGo,
}

impl Commitment {
    pub fn as_str(self) -> &'static str {
        match self {
            Commitment::Upfront => "UPFRONT",
            Commitment::PayAsYouGo => "PAY_AS_YOU_GO",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum LowCreditAction {
    /// Notify only.
    Alert,
    /// Refuse consumption that would go below the limit (`LOW_CREDIT_LIMIT`).
    Block,
}

impl LowCreditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            LowCreditAction::Alert => "ALERT",
            LowCreditAction::Block => "BLOCK",
        }
    }
}

/// Credits granted and charged every billing cycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecurringPrice {
    pub quantity: Decimal,
    pub price: Price,
}

/// How a plan credit's credits are sold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanPricing {
    pub commitment: Commitment,
    pub top_up_price: Option<Price>,
    pub recurring: Option<RecurringPrice>,
    pub min_quantity: Option<Decimal>,
    pub max_quantity: Option<Decimal>,
    /// How long purchased credits live; `None`: forever.
    pub expiration: Option<CalendarDuration>,
    pub low_credit_limit: Option<(Decimal, LowCreditAction)>,
    /// A subscriber must pay for a top-up before metered usage.
    pub mandatory_purchase: bool,
    /// Below `below` available credits, a PENDING order for `quantity` is
    /// created (at most one open at a time) for the tenant to charge.
    pub auto_top_up: Option<AutoTopUp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AutoTopUp {
    pub below: Decimal,
    pub quantity: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanCredit {
    pub id: PlanCreditId,
    pub plan_id: PlanId,
    pub credit_system_id: CreditSystemId,
    pub included: Option<Allowance>,
    pub pricing: Option<PlanPricing>,
    /// Usage-% alert thresholds for subscribers' wallets (`Some([])`:
    /// off); `None`: the default (see `notifications::usage`).
    pub usage_alert_percents: Option<Vec<Decimal>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl PlanCredit {
    /// A stored plan credit. Every stored choice must be one this version
    /// knows, and what comes in pairs (an allowance's amount and interval,
    /// a recurring price and its quantity, …) must be whole: anything else
    /// fails (see [`known`]) rather than reading as "none" or a default.
    fn from_model(m: plan_credit::Model) -> Result<Self, DbErr> {
        let id = m.id;
        let bad = |column: &'static str, value: &str| unknown("plan_credit", column, id, value);
        let included = match (m.included_micros, m.reset_interval.as_deref()) {
            (None, None) => None,
            (Some(amount), Some(interval)) => Some(Allowance {
                amount: from_micros(amount),
                reset_interval: known(
                    Interval::parse(interval),
                    "plan_credit",
                    "reset_interval",
                    id,
                    interval,
                )?,
                rollover: match (m.rollover.as_str(), m.rollover_cap_micros) {
                    ("NONE", None) => Rollover::None,
                    ("CAPPED", Some(cap)) => Rollover::Capped(from_micros(cap)),
                    (other, _) => return Err(bad("rollover", other)),
                },
            }),
            (_, interval) => return Err(bad("reset_interval", interval.unwrap_or("NULL"))),
        };
        let price = |column: &'static str, j: &Option<serde_json::Value>| match j {
            None => Ok(None),
            Some(v) => serde_json::from_value::<Price>(v.clone())
                .map(Some)
                .map_err(|_| bad(column, &v.to_string())),
        };
        let pricing = match m.commitment.as_deref() {
            None => None,
            Some(commitment) => Some(PlanPricing {
                commitment: match commitment {
                    "UPFRONT" => Commitment::Upfront,
                    "PAY_AS_YOU_GO" => Commitment::PayAsYouGo,
                    other => return Err(bad("commitment", other)),
                },
                top_up_price: price("top_up_price", &m.top_up_price)?,
                recurring: match (
                    price("recurring_price", &m.recurring_price)?,
                    m.recurring_quantity_micros,
                ) {
                    (Some(price), Some(q)) => Some(RecurringPrice {
                        quantity: from_micros(q),
                        price,
                    }),
                    (None, None) => None,
                    (_, q) => {
                        return Err(bad(
                            "recurring_quantity_micros",
                            &q.map_or("NULL".into(), |q| q.to_string()),
                        ));
                    }
                },
                min_quantity: m.min_quantity_micros.map(from_micros),
                max_quantity: m.max_quantity_micros.map(from_micros),
                expiration: match m.purchase_expiration.as_deref() {
                    None => None,
                    Some(e) => Some(known(
                        CalendarDuration::parse(e),
                        "plan_credit",
                        "purchase_expiration",
                        id,
                        e,
                    )?),
                },
                low_credit_limit: match (m.low_credit_limit_micros, m.low_credit_action.as_deref())
                {
                    (None, None) => None,
                    (Some(l), Some("ALERT")) => Some((from_micros(l), LowCreditAction::Alert)),
                    (Some(l), Some("BLOCK")) => Some((from_micros(l), LowCreditAction::Block)),
                    (_, action) => return Err(bad("low_credit_action", action.unwrap_or("NULL"))),
                },
                mandatory_purchase: m.mandatory_purchase,
                auto_top_up: match (m.auto_top_up_below_micros, m.auto_top_up_quantity_micros) {
                    (Some(below), Some(quantity)) => Some(AutoTopUp {
                        below: from_micros(below),
                        quantity: from_micros(quantity),
                    }),
                    (None, None) => None,
                    (_, q) => {
                        return Err(bad(
                            "auto_top_up_quantity_micros",
                            &q.map_or("NULL".into(), |q| q.to_string()),
                        ));
                    }
                },
            }),
        };
        let usage_alert_percents = m
            .usage_alert_percents
            .as_ref()
            .map(|v| {
                crate::alert_percents::from_json("plan_credit", PlanCreditId::from_uuid(id), v)
            })
            .transpose()?;
        Ok(Self {
            id: PlanCreditId::from_uuid(m.id),
            plan_id: PlanId::from_uuid(m.plan_id),
            credit_system_id: CreditSystemId::from_uuid(m.credit_system_id),
            included,
            pricing,
            usage_alert_percents,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }

    /// The spending floor a BLOCK limit puts on subscribers' wallets.
    pub fn spend_floor(&self) -> Option<Decimal> {
        match self.pricing.as_ref()?.low_credit_limit? {
            (limit, LowCreditAction::Block) => Some(limit),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------- plan credits

/// What a plan credit says, as given (validated by [`attach_credit_system`]).
#[derive(Debug, Clone, Default)]
pub struct PlanCreditTerms {
    pub included: Option<Allowance>,
    pub pricing: Option<PlanPricing>,
    /// Usage-% alert thresholds for subscribers' wallets (`Some([])`:
    /// off); `None`: the default.
    pub usage_alert_percents: Option<Vec<Decimal>>,
}

fn validate_terms(
    terms: &PlanCreditTerms,
    precision: u32,
) -> Result<plan_credit::ActiveModel, Invalid> {
    let mut row = plan_credit::ActiveModel {
        included_micros: Set(None),
        reset_interval: Set(None),
        rollover: Set("NONE".into()),
        rollover_cap_micros: Set(None),
        commitment: Set(None),
        top_up_price: Set(None),
        recurring_price: Set(None),
        recurring_quantity_micros: Set(None),
        min_quantity_micros: Set(None),
        max_quantity_micros: Set(None),
        purchase_expiration: Set(None),
        low_credit_limit_micros: Set(None),
        low_credit_action: Set(None),
        mandatory_purchase: Set(false),
        auto_top_up_below_micros: Set(None),
        auto_top_up_quantity_micros: Set(None),
        usage_alert_percents: Set(None),
        ..Default::default()
    };
    if terms.included.is_none() && terms.pricing.is_none() {
        return Err(Invalid::new(
            "included",
            "a plan credit needs an included allowance, pricing, or both",
        ));
    }
    if let Some(p) = &terms.usage_alert_percents {
        row.usage_alert_percents = Set(Some(crate::alert_percents::to_json(
            &crate::alert_percents::validate_percents("usageAlertPercents", p)?,
        )));
    }
    if let Some(a) = &terms.included {
        row.included_micros = Set(Some(positive_micros(
            a.amount,
            precision,
            "included.amount",
        )?));
        row.reset_interval = Set(Some(a.reset_interval.as_str().to_owned()));
        if let Rollover::Capped(cap) = a.rollover {
            let cap = positive_micros(cap, precision, "included.rolloverCap")?;
            row.rollover = Set("CAPPED".into());
            row.rollover_cap_micros = Set(Some(cap));
        }
    }
    if let Some(p) = &terms.pricing {
        if p.commitment == Commitment::PayAsYouGo && p.recurring.is_some() {
            return Err(Invalid::new(
                "pricing.recurringPrice",
                "a recurring price is for UPFRONT commitments only: pay-as-you-go credits are bought as they are needed",
            ));
        }
        row.commitment = Set(Some(p.commitment.as_str().to_owned()));
        let json = |price: &Price, field: &str| -> Result<serde_json::Value, Invalid> {
            pricing::validate(price)
                .map_err(|e| Invalid::new(format!("{field}.{}", e.field), e.message))?;
            serde_json::to_value(price).map_err(|e| Invalid::new(field, e.to_string()))
        };
        if let Some(price) = &p.top_up_price {
            row.top_up_price = Set(Some(json(price, "pricing.topUpPrice")?));
        }
        if let Some(r) = &p.recurring {
            row.recurring_price = Set(Some(json(&r.price, "pricing.recurringPrice")?));
            row.recurring_quantity_micros = Set(Some(positive_micros(
                r.quantity,
                precision,
                "pricing.recurringPrice.quantity",
            )?));
        }
        let min = p
            .min_quantity
            .map(|q| positive_micros(q, precision, "pricing.minQuantity"))
            .transpose()?;
        let max = p
            .max_quantity
            .map(|q| positive_micros(q, precision, "pricing.maxQuantity"))
            .transpose()?;
        if let (Some(min), Some(max)) = (min, max)
            && min > max
        {
            return Err(Invalid::new(
                "pricing.maxQuantity",
                "must not be below minQuantity",
            ));
        }
        row.min_quantity_micros = Set(min);
        row.max_quantity_micros = Set(max);
        row.purchase_expiration = Set(p.expiration.map(CalendarDuration::to_iso));
        if let Some((limit, action)) = p.low_credit_limit {
            let limit = to_micros(limit, precision, "pricing.lowCreditLimit")?;
            if limit < 0 {
                return Err(Invalid::new(
                    "pricing.lowCreditLimit",
                    "must not be negative",
                ));
            }
            row.low_credit_limit_micros = Set(Some(limit));
            row.low_credit_action = Set(Some(action.as_str().to_owned()));
        }
        if p.mandatory_purchase && p.top_up_price.is_none() {
            return Err(Invalid::new(
                "pricing.mandatoryPurchase",
                "a mandatory purchase needs a top-up price",
            ));
        }
        row.mandatory_purchase = Set(p.mandatory_purchase);
        if let Some(auto) = p.auto_top_up {
            if p.top_up_price.is_none() {
                return Err(Invalid::new(
                    "pricing.autoTopUp",
                    "an auto top-up needs a top-up price",
                ));
            }
            let below = to_micros(auto.below, precision, "pricing.autoTopUp.below")?;
            if below <= 0 {
                return Err(Invalid::new(
                    "pricing.autoTopUp.below",
                    "must be greater than 0",
                ));
            }
            row.auto_top_up_below_micros = Set(Some(below));
            row.auto_top_up_quantity_micros = Set(Some(positive_micros(
                auto.quantity,
                precision,
                "pricing.autoTopUp.quantity",
            )?));
        }
    }
    Ok(row)
}

pub(super) async fn precision_of(
    txn: &DatabaseTransaction,
    tenant_id: Uuid,
    which: &CreditSystemRef,
) -> Result<credit_system::Model, Error> {
    Ok(credit_systems::resolve(txn, tenant_id, which).await?)
}

/// Attaches a credit system to a draft plan with its allowance and prices.
pub async fn attach_credit_system(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    plan: &Ref,
    credit_system: &CreditSystemRef,
    terms: &PlanCreditTerms,
) -> Result<PlanCredit, Error> {
    let now = clock.now();
    let txn = db.begin_write().await?;
    let plan = draft(&txn, tenant_id, plan).await?;
    let cs = precision_of(&txn, tenant_id, credit_system).await?;
    let mut row = validate_terms(terms, cs.precision.clamp(0, 6) as u32)?;
    row.id = Set(Uuid::now_v7());
    row.tenant_id = Set(tenant_id);
    row.plan_id = Set(plan.id);
    row.credit_system_id = Set(cs.id);
    row.created_at = Set(now);
    row.updated_at = Set(now);
    let model = row.insert(&txn).await.map_err(|e| {
        if is_unique_violation(&e) {
            Error::Conflict(
                format!(
                    "credit system {:?} is already attached to this plan",
                    cs.key
                ),
                "creditSystem",
            )
        } else {
            e.into()
        }
    })?;
    txn.commit().await?;
    PlanCredit::from_model(model).map_err(Into::into)
}

/// Replaces a draft plan credit's allowance and prices.
pub async fn update_plan_credit(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    plan_credit_id: PlanCreditId,
    terms: &PlanCreditTerms,
) -> Result<PlanCredit, Error> {
    let txn = db.begin_write().await?;
    let existing = plan_credit::Entity::find_by_id(plan_credit_id.uuid())
        .filter(plan_credit::Column::TenantId.eq(tenant_id))
        .one(&txn)
        .await?
        .ok_or_else(|| Error::NotFound("planCredit", "with this id".into()))?;
    draft(&txn, tenant_id, &Ref::Id(existing.plan_id)).await?;
    let cs = precision_of(
        &txn,
        tenant_id,
        &CreditSystemRef::Id(CreditSystemId::from_uuid(existing.credit_system_id)),
    )
    .await?;
    let mut row = validate_terms(terms, cs.precision.clamp(0, 6) as u32)?;
    row.id = sea_orm::ActiveValue::Unchanged(existing.id);
    row.updated_at = Set(clock.now());
    let model = row.update(&txn).await?;
    txn.commit().await?;
    PlanCredit::from_model(model).map_err(Into::into)
}

/// Removes a credit system (and the entitlements priced in it) from a draft.
pub async fn detach_credit_system(
    db: &Db,
    tenant_id: Uuid,
    plan: &Ref,
    credit_system: &CreditSystemRef,
) -> Result<Plan, Error> {
    let txn = db.begin_write().await?;
    let plan = draft(&txn, tenant_id, plan).await?;
    let cs = precision_of(&txn, tenant_id, credit_system).await?;
    let deleted = plan_credit::Entity::delete_many()
        .filter(plan_credit::Column::TenantId.eq(tenant_id))
        .filter(plan_credit::Column::PlanId.eq(plan.id))
        .filter(plan_credit::Column::CreditSystemId.eq(cs.id))
        .exec(&txn)
        .await?;
    if deleted.rows_affected == 0 {
        return Err(Error::NotFound(
            "creditSystem",
            format!("{:?} on this plan", cs.key),
        ));
    }
    entitlement::Entity::delete_many()
        .filter(entitlement::Column::TenantId.eq(tenant_id))
        .filter(entitlement::Column::PlanId.eq(plan.id))
        .filter(entitlement::Column::CreditSystemId.eq(cs.id))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(plan.try_into()?)
}

pub async fn plan_credits_of(
    conn: &impl ConnectionTrait,
    tenant_id: Uuid,
    plan_ids: &[PlanId],
) -> Result<Vec<PlanCredit>, DbErr> {
    plan_credit::Entity::find()
        .filter(plan_credit::Column::TenantId.eq(tenant_id))
        .filter(plan_credit::Column::PlanId.is_in(plan_ids.iter().copied()))
        .order_by_asc(plan_credit::Column::Id)
        .all(conn)
        .await?
        .into_iter()
        .map(PlanCredit::from_model)
        .collect()
}

pub async fn plan_credit(db: &Db, tenant_id: Uuid, id: PlanCreditId) -> Result<PlanCredit, Error> {
    plan_credit::Entity::find_by_id(id.uuid())
        .filter(plan_credit::Column::TenantId.eq(tenant_id))
        .one(db.reader())
        .await?
        .map(PlanCredit::from_model)
        .transpose()?
        .ok_or_else(|| Error::NotFound("planCredit", "with this id".into()))
}
