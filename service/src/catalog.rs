//! The catalog billing admins configure: products → plans → plan credits
//! (a credit system's allowance and prices in a plan) and entitlements (a
//! feature's cost in credits), plus the features themselves.
//!
//! Plans move `DRAFT → PUBLISHED → ARCHIVED`. Only drafts can change: a
//! published plan's terms never move under its subscribers
//! ([`duplicate_plan`] starts a new draft from it). Archived plans take no
//! new subscriptions.

use chrono::{DateTime, Utc};
use entity::{credit_system, entitlement, feature, plan, plan_credit, product};
use rust_decimal::Decimal;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction, DbErr,
    EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, SqlErr,
};
use serde::Serialize;
use uuid::Uuid;

use crate::{
    Clock, Db,
    amount::{from_micros, positive_micros, to_micros},
    credit_systems::{self, CreditSystemRef, parse_key, parse_label},
    error::{Code, DomainError, Invalid, known, unknown},
    input,
    pagination::{Page, PageRequest},
    periods::{CalendarDuration, Interval},
    pricing::{self, Price},
};

// ---------------------------------------------------------------- types

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PlanStatus {
    Draft,
    Published,
    Archived,
}

impl PlanStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PlanStatus::Draft => "DRAFT",
            PlanStatus::Published => "PUBLISHED",
            PlanStatus::Archived => "ARCHIVED",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "DRAFT" => Some(PlanStatus::Draft),
            "PUBLISHED" => Some(PlanStatus::Published),
            "ARCHIVED" => Some(PlanStatus::Archived),
            _ => None,
        }
    }

    /// A stored plan's status; an unknown one fails (see [`known`]).
    fn of(m: &plan::Model) -> Result<Self, DbErr> {
        known(Self::parse(&m.status), "plan", "status", m.id, &m.status)
    }
}

/// How often a plan is billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum BillingInterval {
    Monthly,
    Annually,
}

impl BillingInterval {
    pub fn as_str(self) -> &'static str {
        match self {
            BillingInterval::Monthly => "MONTHLY",
            BillingInterval::Annually => "ANNUALLY",
        }
    }

    pub fn interval(self) -> Interval {
        match self {
            BillingInterval::Monthly => Interval::Monthly,
            BillingInterval::Annually => Interval::Annually,
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "MONTHLY" => Some(BillingInterval::Monthly),
            "ANNUALLY" => Some(BillingInterval::Annually),
            _ => None,
        }
    }

    /// A stored plan's interval; an unknown one fails (see [`known`]).
    fn of(m: &plan::Model) -> Result<Self, DbErr> {
        known(
            Self::parse(&m.billing_interval),
            "plan",
            "billing_interval",
            m.id,
            &m.billing_interval,
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: Uuid,
    pub key: String,
    pub name: String,
    pub description: String,
    pub created_at: DateTime<Utc>,
}

impl From<product::Model> for Product {
    fn from(m: product::Model) -> Self {
        Self {
            id: m.id,
            key: m.key,
            name: m.name,
            description: m.description,
            created_at: m.created_at,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub id: Uuid,
    pub product_id: Uuid,
    pub key: String,
    pub name: String,
    /// What the plan offers, for people ("" when none was given).
    pub description: String,
    pub billing_interval: BillingInterval,
    pub status: PlanStatus,
    pub copied_from_plan_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub published_at: Option<DateTime<Utc>>,
}

/// A stored plan; an unknown status or interval fails (see [`known`]).
impl TryFrom<plan::Model> for Plan {
    type Error = DbErr;

    fn try_from(m: plan::Model) -> Result<Self, DbErr> {
        Ok(Self {
            billing_interval: BillingInterval::of(&m)?,
            status: PlanStatus::of(&m)?,
            id: m.id,
            product_id: m.product_id,
            key: m.key,
            name: m.name,
            description: m.description,
            copied_from_plan_id: m.copied_from_plan_id,
            created_at: m.created_at,
            published_at: m.published_at,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feature {
    pub id: Uuid,
    pub key: String,
    pub name: String,
    pub unit: String,
    pub created_at: DateTime<Utc>,
}

impl From<feature::Model> for Feature {
    fn from(m: feature::Model) -> Self {
        Self {
            id: m.id,
            key: m.key,
            name: m.name,
            unit: m.unit,
            created_at: m.created_at,
        }
    }
}

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
    pub id: Uuid,
    pub plan_id: Uuid,
    pub credit_system_id: Uuid,
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
            .map(|v| crate::notifications::usage::from_json("plan_credit", id, v))
            .transpose()?;
        Ok(Self {
            id: m.id,
            plan_id: m.plan_id,
            credit_system_id: m.credit_system_id,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entitlement {
    pub id: Uuid,
    pub plan_id: Uuid,
    pub feature_id: Uuid,
    pub credit_system_id: Uuid,
    /// Credits one unit of the feature costs.
    pub credit_cost: Decimal,
}

impl From<entitlement::Model> for Entitlement {
    fn from(m: entitlement::Model) -> Self {
        Self {
            id: m.id,
            plan_id: m.plan_id,
            feature_id: m.feature_id,
            credit_system_id: m.credit_system_id,
            credit_cost: from_micros(m.credit_cost_micros),
        }
    }
}

/// Names a catalog object by id or key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Ref {
    Id(Uuid),
    Key(String),
}

impl Ref {
    /// A ref by key, checked by the identifier rule ([`input::key`]).
    pub fn key(field: &str, key: &str) -> Result<Self, Invalid> {
        Ok(Ref::Key(input::key(field, key)?))
    }

    /// Whether a lookup could find anything: a key the input rules refuse
    /// is answered "not found" without asking the database.
    fn may_exist(&self) -> bool {
        match self {
            Ref::Id(_) => true,
            Ref::Key(k) => input::key("key", k).is_ok_and(|checked| checked == *k),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error(transparent)]
    CreditSystem(#[from] credit_systems::Error),
    #[error("no {0} {1}")]
    NotFound(&'static str, String),
    #[error("{0}")]
    Conflict(String, &'static str),
    #[error("database error")]
    Db(#[from] DbErr),
}

impl DomainError for Error {
    fn code(&self) -> Code {
        match self {
            Error::Invalid(_) => Code::Validation,
            Error::CreditSystem(e) => e.code(),
            Error::NotFound(..) => Code::NotFound,
            Error::Conflict(..) => Code::Conflict,
            Error::Db(_) => Code::Internal,
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            Error::Invalid(e) => Some(&e.field),
            Error::CreditSystem(e) => e.field(),
            Error::NotFound(what, _) => Some(what),
            Error::Conflict(_, field) => Some(field),
            Error::Db(_) => None,
        }
    }
}

fn describe(r: &Ref) -> String {
    match r {
        Ref::Id(_) => "with this id".into(),
        Ref::Key(k) => format!("with key {k:?}"),
    }
}

fn is_unique_violation(e: &DbErr) -> bool {
    matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

// ---------------------------------------------------------------- products

pub async fn create_product(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    key: &str,
    name: &str,
    description: &str,
) -> Result<Product, Error> {
    let key = parse_key(key, "key")?;
    let name = parse_label(name, "name", 100)?;
    let description = input::text("description", description, input::TEXT_LEN_MAX)?;
    let now = clock.now();
    let txn = db.begin_write().await?;
    if let Some(existing) = find_product(&txn, tenant_id, &Ref::Key(key.clone())).await? {
        return if existing.name == name && existing.description == description {
            Ok(existing.into())
        } else {
            Err(Error::Conflict(
                format!("a product with key {key:?} exists"),
                "key",
            ))
        };
    }
    let model = product::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(tenant_id),
        key: Set(key.clone()),
        name: Set(name),
        description: Set(description),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            Error::Conflict(format!("a product with key {key:?} exists"), "key")
        } else {
            e.into()
        }
    })?;
    txn.commit().await?;
    Ok(model.into())
}

async fn find_product(
    conn: &impl ConnectionTrait,
    tenant_id: Uuid,
    which: &Ref,
) -> Result<Option<product::Model>, DbErr> {
    if !which.may_exist() {
        return Ok(None);
    }
    let q = product::Entity::find().filter(product::Column::TenantId.eq(tenant_id));
    match which {
        Ref::Id(id) => q.filter(product::Column::Id.eq(*id)).one(conn).await,
        Ref::Key(k) => {
            q.filter(product::Column::Key.eq(k.as_str()))
                .one(conn)
                .await
        }
    }
}

pub async fn get_product(db: &Db, tenant_id: Uuid, which: &Ref) -> Result<Product, Error> {
    find_product(db.reader(), tenant_id, which)
        .await?
        .map(Into::into)
        .ok_or_else(|| Error::NotFound("product", describe(which)))
}

pub async fn list_products(
    db: &Db,
    tenant_id: Uuid,
    page: PageRequest,
) -> Result<Page<Product>, Error> {
    let mut q = product::Entity::find().filter(product::Column::TenantId.eq(tenant_id));
    if let Some(after) = page.after {
        q = q.filter(product::Column::Id.gt(after));
    }
    let rows = q
        .order_by_asc(product::Column::Id)
        .limit(page.fetch_limit())
        .all(db.reader())
        .await?;
    Ok(page.finish(rows.into_iter().map(Into::into).collect()))
}

// ---------------------------------------------------------------- features

pub async fn create_feature(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    key: &str,
    name: &str,
    unit: &str,
) -> Result<Feature, Error> {
    let key = parse_key(key, "key")?;
    let name = parse_label(name, "name", 100)?;
    let unit = parse_label(unit, "unit", 50)?;
    let txn = db.begin_write().await?;
    if let Some(existing) = find_feature(&txn, tenant_id, &Ref::Key(key.clone())).await? {
        return if existing.name == name && existing.unit == unit {
            Ok(existing.into())
        } else {
            Err(Error::Conflict(
                format!("a feature with key {key:?} exists"),
                "key",
            ))
        };
    }
    let model = feature::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(tenant_id),
        key: Set(key.clone()),
        name: Set(name),
        unit: Set(unit),
        created_at: Set(clock.now()),
    }
    .insert(&txn)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            Error::Conflict(format!("a feature with key {key:?} exists"), "key")
        } else {
            e.into()
        }
    })?;
    txn.commit().await?;
    Ok(model.into())
}

pub(crate) async fn find_feature(
    conn: &impl ConnectionTrait,
    tenant_id: Uuid,
    which: &Ref,
) -> Result<Option<feature::Model>, DbErr> {
    if !which.may_exist() {
        return Ok(None);
    }
    let q = feature::Entity::find().filter(feature::Column::TenantId.eq(tenant_id));
    match which {
        Ref::Id(id) => q.filter(feature::Column::Id.eq(*id)).one(conn).await,
        Ref::Key(k) => {
            q.filter(feature::Column::Key.eq(k.as_str()))
                .one(conn)
                .await
        }
    }
}

pub async fn get_feature(db: &Db, tenant_id: Uuid, which: &Ref) -> Result<Feature, Error> {
    find_feature(db.reader(), tenant_id, which)
        .await?
        .map(Into::into)
        .ok_or_else(|| Error::NotFound("feature", describe(which)))
}

pub async fn list_features(
    db: &Db,
    tenant_id: Uuid,
    page: PageRequest,
) -> Result<Page<Feature>, Error> {
    let mut q = feature::Entity::find().filter(feature::Column::TenantId.eq(tenant_id));
    if let Some(after) = page.after {
        q = q.filter(feature::Column::Id.gt(after));
    }
    let rows = q
        .order_by_asc(feature::Column::Id)
        .limit(page.fetch_limit())
        .all(db.reader())
        .await?;
    Ok(page.finish(rows.into_iter().map(Into::into).collect()))
}

// ---------------------------------------------------------------- plans

/// A new plan, as given to [`create_plan_with`].
#[derive(Debug, Clone)]
pub struct NewPlan<'a> {
    pub product: &'a Ref,
    pub key: &'a str,
    pub name: &'a str,
    /// At most [`input::TEXT_LEN_MAX`] characters; "" for none.
    pub description: &'a str,
    pub billing_interval: BillingInterval,
}

/// A new draft plan without a description (see [`create_plan_with`]).
pub async fn create_plan(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    product: &Ref,
    key: &str,
    name: &str,
    billing_interval: BillingInterval,
) -> Result<Plan, Error> {
    let plan = NewPlan {
        product,
        key,
        name,
        description: "",
        billing_interval,
    };
    create_plan_with(db, clock, tenant_id, &plan).await
}

/// A new draft plan. Creating it again with the same fields returns it;
/// other fields under the same key are `CONFLICT`.
pub async fn create_plan_with(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    plan: &NewPlan<'_>,
) -> Result<Plan, Error> {
    let key = parse_key(plan.key, "key")?;
    let name = parse_label(plan.name, "name", 100)?;
    let description = input::text("description", plan.description, input::TEXT_LEN_MAX)?;
    let billing_interval = plan.billing_interval;
    let now = clock.now();
    let txn = db.begin_write().await?;
    let product = find_product(&txn, tenant_id, plan.product)
        .await?
        .ok_or_else(|| Error::NotFound("product", describe(plan.product)))?;
    if let Some(existing) = find_plan(&txn, tenant_id, &Ref::Key(key.clone())).await? {
        return if existing.product_id == product.id
            && existing.name == name
            && existing.description == description
            && existing.billing_interval == billing_interval.as_str()
        {
            Ok(existing.try_into()?)
        } else {
            Err(Error::Conflict(
                format!("a plan with key {key:?} exists"),
                "key",
            ))
        };
    }
    let model = insert_plan(
        &txn,
        tenant_id,
        product.id,
        (&key, &name, &description),
        billing_interval,
        None,
        now,
    )
    .await?;
    txn.commit().await?;
    Ok(model.try_into()?)
}

/// What [`update_plan`] changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct PlanChanges {
    pub name: Option<String>,
    pub description: Option<String>,
}

/// Renames or redescribes a plan, in any status: its name and description
/// are for people, not terms subscribers rely on.
pub async fn update_plan(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    which: &Ref,
    changes: &PlanChanges,
) -> Result<Plan, Error> {
    let name = changes
        .name
        .as_deref()
        .map(|n| parse_label(n, "name", 100))
        .transpose()?;
    let description = changes
        .description
        .as_deref()
        .map(|d| input::text("description", d, input::TEXT_LEN_MAX))
        .transpose()?;
    let txn = db.begin_write().await?;
    let plan = find_plan(&txn, tenant_id, which)
        .await?
        .ok_or_else(|| Error::NotFound("plan", describe(which)))?;
    if name.as_ref().is_none_or(|n| *n == plan.name)
        && description.as_ref().is_none_or(|d| *d == plan.description)
    {
        return Ok(plan.try_into()?);
    }
    let mut active = plan.into_active_model();
    if let Some(name) = name {
        active.name = Set(name);
    }
    if let Some(description) = description {
        active.description = Set(description);
    }
    active.updated_at = Set(clock.now());
    let plan = active.update(&txn).await?;
    txn.commit().await?;
    Ok(plan.try_into()?)
}

/// `(key, name, description)` are checked already.
async fn insert_plan(
    txn: &DatabaseTransaction,
    tenant_id: Uuid,
    product_id: Uuid,
    (key, name, description): (&str, &str, &str),
    billing_interval: BillingInterval,
    copied_from: Option<Uuid>,
    now: DateTime<Utc>,
) -> Result<plan::Model, Error> {
    plan::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(tenant_id),
        product_id: Set(product_id),
        key: Set(key.to_owned()),
        name: Set(name.to_owned()),
        description: Set(description.to_owned()),
        billing_interval: Set(billing_interval.as_str().to_owned()),
        status: Set(PlanStatus::Draft.as_str().to_owned()),
        copied_from_plan_id: Set(copied_from),
        created_at: Set(now),
        updated_at: Set(now),
        published_at: Set(None),
    }
    .insert(txn)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            Error::Conflict(format!("a plan with key {key:?} exists"), "key")
        } else {
            e.into()
        }
    })
}

pub(crate) async fn find_plan(
    conn: &impl ConnectionTrait,
    tenant_id: Uuid,
    which: &Ref,
) -> Result<Option<plan::Model>, DbErr> {
    if !which.may_exist() {
        return Ok(None);
    }
    let q = plan::Entity::find().filter(plan::Column::TenantId.eq(tenant_id));
    match which {
        Ref::Id(id) => q.filter(plan::Column::Id.eq(*id)).one(conn).await,
        Ref::Key(k) => q.filter(plan::Column::Key.eq(k.as_str())).one(conn).await,
    }
}

pub async fn get_plan(db: &Db, tenant_id: Uuid, which: &Ref) -> Result<Plan, Error> {
    find_plan(db.reader(), tenant_id, which)
        .await?
        .map(Plan::try_from)
        .transpose()?
        .ok_or_else(|| Error::NotFound("plan", describe(which)))
}

/// The tenant's plans, oldest first, optionally of one product or status.
pub async fn list_plans(
    db: &Db,
    tenant_id: Uuid,
    product_id: Option<Uuid>,
    status: Option<PlanStatus>,
    page: PageRequest,
) -> Result<Page<Plan>, Error> {
    let mut q = plan::Entity::find().filter(plan::Column::TenantId.eq(tenant_id));
    if let Some(p) = product_id {
        q = q.filter(plan::Column::ProductId.eq(p));
    }
    if let Some(s) = status {
        q = q.filter(plan::Column::Status.eq(s.as_str()));
    }
    if let Some(after) = page.after {
        q = q.filter(plan::Column::Id.gt(after));
    }
    let rows = q
        .order_by_asc(plan::Column::Id)
        .limit(page.fetch_limit())
        .all(db.reader())
        .await?;
    let items = rows
        .into_iter()
        .map(Plan::try_from)
        .collect::<Result<_, _>>()?;
    Ok(page.finish(items))
}

/// Locks a plan for a change and checks it is a draft.
async fn draft(
    txn: &DatabaseTransaction,
    tenant_id: Uuid,
    which: &Ref,
) -> Result<plan::Model, Error> {
    if !which.may_exist() {
        return Err(Error::NotFound("plan", describe(which)));
    }
    let plan = plan::Entity::find()
        .filter(plan::Column::TenantId.eq(tenant_id))
        .filter(match which {
            Ref::Id(id) => plan::Column::Id.eq(*id),
            Ref::Key(k) => plan::Column::Key.eq(k.as_str()),
        })
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or_else(|| Error::NotFound("plan", describe(which)))?;
    if PlanStatus::of(&plan)? != PlanStatus::Draft {
        return Err(Error::Conflict(
            format!(
                "plan {:?} is {}: only drafts can change (duplicatePlan makes a new draft)",
                plan.key, plan.status
            ),
            "plan",
        ));
    }
    Ok(plan)
}

/// DRAFT → PUBLISHED: its terms are frozen from now on. Publishing a
/// published plan returns it as it is.
pub async fn publish_plan(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    which: &Ref,
) -> Result<Plan, Error> {
    set_status(db, clock, tenant_id, which, PlanStatus::Published).await
}

/// → ARCHIVED: no new subscriptions; existing ones go on.
pub async fn archive_plan(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    which: &Ref,
) -> Result<Plan, Error> {
    set_status(db, clock, tenant_id, which, PlanStatus::Archived).await
}

async fn set_status(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    which: &Ref,
    to: PlanStatus,
) -> Result<Plan, Error> {
    let txn = db.begin_write().await?;
    let plan = find_plan(&txn, tenant_id, which)
        .await?
        .ok_or_else(|| Error::NotFound("plan", describe(which)))?;
    let from = PlanStatus::of(&plan)?;
    if from == to {
        return Ok(plan.try_into()?);
    }
    let allowed = matches!(
        (from, to),
        (PlanStatus::Draft, PlanStatus::Published)
            | (PlanStatus::Draft, PlanStatus::Archived)
            | (PlanStatus::Published, PlanStatus::Archived)
    );
    if !allowed {
        return Err(Error::Conflict(
            format!("a {} plan can't become {}", from.as_str(), to.as_str()),
            "plan",
        ));
    }
    let now = clock.now();
    let mut active = plan.into_active_model();
    active.status = Set(to.as_str().to_owned());
    active.updated_at = Set(now);
    if to == PlanStatus::Published {
        active.published_at = Set(Some(now));
    }
    let plan = active.update(&txn).await?;
    txn.commit().await?;
    Ok(plan.try_into()?)
}

/// A new DRAFT with the same description, plan credits and entitlements.
pub async fn duplicate_plan(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    which: &Ref,
    key: &str,
    name: &str,
) -> Result<Plan, Error> {
    let key = parse_key(key, "key")?;
    let name = parse_label(name, "name", 100)?;
    let now = clock.now();
    let txn = db.begin_write().await?;
    let source = find_plan(&txn, tenant_id, which)
        .await?
        .ok_or_else(|| Error::NotFound("plan", describe(which)))?;
    if let Some(existing) = find_plan(&txn, tenant_id, &Ref::Key(key.clone())).await? {
        return if existing.copied_from_plan_id == Some(source.id) && existing.name == name {
            Ok(existing.try_into()?)
        } else {
            Err(Error::Conflict(
                format!("a plan with key {key:?} exists"),
                "key",
            ))
        };
    }
    let copy = insert_plan(
        &txn,
        tenant_id,
        source.product_id,
        (&key, &name, &source.description),
        BillingInterval::of(&source)?,
        Some(source.id),
        now,
    )
    .await?;
    for pc in plan_credit::Entity::find()
        .filter(plan_credit::Column::TenantId.eq(tenant_id))
        .filter(plan_credit::Column::PlanId.eq(source.id))
        .all(&txn)
        .await?
    {
        let mut row = pc.into_active_model();
        row.id = Set(Uuid::now_v7());
        row.plan_id = Set(copy.id);
        row.created_at = Set(now);
        row.updated_at = Set(now);
        row.reset_all().insert(&txn).await?;
    }
    for e in entitlement::Entity::find()
        .filter(entitlement::Column::TenantId.eq(tenant_id))
        .filter(entitlement::Column::PlanId.eq(source.id))
        .all(&txn)
        .await?
    {
        let mut row = e.into_active_model();
        row.id = Set(Uuid::now_v7());
        row.plan_id = Set(copy.id);
        row.created_at = Set(now);
        row.reset_all().insert(&txn).await?;
    }
    txn.commit().await?;
    Ok(copy.try_into()?)
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
        row.usage_alert_percents = Set(Some(crate::notifications::usage::to_json(
            &crate::notifications::usage::validate_percents("usageAlertPercents", p)?,
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

async fn precision_of(
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
    plan_credit_id: Uuid,
    terms: &PlanCreditTerms,
) -> Result<PlanCredit, Error> {
    let txn = db.begin_write().await?;
    let existing = plan_credit::Entity::find_by_id(plan_credit_id)
        .filter(plan_credit::Column::TenantId.eq(tenant_id))
        .one(&txn)
        .await?
        .ok_or_else(|| Error::NotFound("planCredit", "with this id".into()))?;
    draft(&txn, tenant_id, &Ref::Id(existing.plan_id)).await?;
    let cs = precision_of(
        &txn,
        tenant_id,
        &CreditSystemRef::Id(existing.credit_system_id),
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
    plan_ids: &[Uuid],
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

pub async fn plan_credit(db: &Db, tenant_id: Uuid, id: Uuid) -> Result<PlanCredit, Error> {
    plan_credit::Entity::find_by_id(id)
        .filter(plan_credit::Column::TenantId.eq(tenant_id))
        .one(db.reader())
        .await?
        .map(PlanCredit::from_model)
        .transpose()?
        .ok_or_else(|| Error::NotFound("planCredit", "with this id".into()))
}

// ---------------------------------------------------------------- entitlements

/// Sets what one unit of a feature costs on a draft plan, in one of the
/// plan's credit systems.
pub async fn set_entitlement(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    plan: &Ref,
    feature: &Ref,
    credit_system: &CreditSystemRef,
    credit_cost: Decimal,
) -> Result<Entitlement, Error> {
    let txn = db.begin_write().await?;
    let plan = draft(&txn, tenant_id, plan).await?;
    let feature = find_feature(&txn, tenant_id, feature)
        .await?
        .ok_or_else(|| Error::NotFound("feature", describe(feature)))?;
    let cs = precision_of(&txn, tenant_id, credit_system).await?;
    let attached = plan_credit::Entity::find()
        .filter(plan_credit::Column::TenantId.eq(tenant_id))
        .filter(plan_credit::Column::PlanId.eq(plan.id))
        .filter(plan_credit::Column::CreditSystemId.eq(cs.id))
        .one(&txn)
        .await?;
    if attached.is_none() {
        return Err(Invalid::new(
            "creditSystem",
            format!(
                "attach {:?} to the plan before pricing features in it",
                cs.key
            ),
        )
        .into());
    }
    let cost = positive_micros(credit_cost, cs.precision.clamp(0, 6) as u32, "creditCost")?;
    let existing = entitlement::Entity::find()
        .filter(entitlement::Column::TenantId.eq(tenant_id))
        .filter(entitlement::Column::PlanId.eq(plan.id))
        .filter(entitlement::Column::FeatureId.eq(feature.id))
        .one(&txn)
        .await?;
    let model = match existing {
        Some(e) => {
            let mut active = e.into_active_model();
            active.credit_system_id = Set(cs.id);
            active.credit_cost_micros = Set(cost);
            active.update(&txn).await?
        }
        None => {
            entitlement::ActiveModel {
                id: Set(Uuid::now_v7()),
                tenant_id: Set(tenant_id),
                plan_id: Set(plan.id),
                feature_id: Set(feature.id),
                credit_system_id: Set(cs.id),
                credit_cost_micros: Set(cost),
                created_at: Set(clock.now()),
            }
            .insert(&txn)
            .await?
        }
    };
    txn.commit().await?;
    Ok(model.into())
}

pub async fn remove_entitlement(
    db: &Db,
    tenant_id: Uuid,
    plan: &Ref,
    feature: &Ref,
) -> Result<Plan, Error> {
    let txn = db.begin_write().await?;
    let plan = draft(&txn, tenant_id, plan).await?;
    let feature = find_feature(&txn, tenant_id, feature)
        .await?
        .ok_or_else(|| Error::NotFound("feature", describe(feature)))?;
    entitlement::Entity::delete_many()
        .filter(entitlement::Column::TenantId.eq(tenant_id))
        .filter(entitlement::Column::PlanId.eq(plan.id))
        .filter(entitlement::Column::FeatureId.eq(feature.id))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(plan.try_into()?)
}

pub async fn entitlements_of(
    conn: &impl ConnectionTrait,
    tenant_id: Uuid,
    plan_ids: &[Uuid],
) -> Result<Vec<Entitlement>, DbErr> {
    Ok(entitlement::Entity::find()
        .filter(entitlement::Column::TenantId.eq(tenant_id))
        .filter(entitlement::Column::PlanId.is_in(plan_ids.iter().copied()))
        .order_by_asc(entitlement::Column::Id)
        .all(conn)
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}

/// Plans, products and features by id, for batched reads.
pub async fn plans_by_ids(db: &Db, tenant_id: Uuid, ids: &[Uuid]) -> Result<Vec<Plan>, DbErr> {
    plan::Entity::find()
        .filter(plan::Column::TenantId.eq(tenant_id))
        .filter(plan::Column::Id.is_in(ids.iter().copied()))
        .all(db.reader())
        .await?
        .into_iter()
        .map(Plan::try_from)
        .collect()
}

pub async fn products_by_ids(
    db: &Db,
    tenant_id: Uuid,
    ids: &[Uuid],
) -> Result<Vec<Product>, DbErr> {
    Ok(product::Entity::find()
        .filter(product::Column::TenantId.eq(tenant_id))
        .filter(product::Column::Id.is_in(ids.iter().copied()))
        .all(db.reader())
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}

pub async fn features_by_ids(
    db: &Db,
    tenant_id: Uuid,
    ids: &[Uuid],
) -> Result<Vec<Feature>, DbErr> {
    Ok(feature::Entity::find()
        .filter(feature::Column::TenantId.eq(tenant_id))
        .filter(feature::Column::Id.is_in(ids.iter().copied()))
        .all(db.reader())
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}
