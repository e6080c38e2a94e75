//! Plans: a product's offers, with their billing interval and lifecycle
//! `DRAFT → PUBLISHED → ARCHIVED`. Only drafts change ([`draft`] locks one
//! for a change of its terms); [`duplicate_plan`] starts a new draft from
//! any plan, with its plan credits and entitlements.

use chrono::{DateTime, Utc};
use entity::{entitlement, plan, plan_credit};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction, DbErr,
    EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect,
};
use serde::Serialize;
use uuid::Uuid;

use super::{Error, Ref, describe, is_unique_violation, products::find_product};
use crate::{
    Clock, Db,
    credit_systems::{parse_key, parse_label},
    error::known,
    ids::{PlanId, ProductId},
    input,
    pagination::{Page, PageRequest},
    periods::Interval,
};

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
pub struct Plan {
    pub id: PlanId,
    pub product_id: ProductId,
    pub key: String,
    pub name: String,
    /// What the plan offers, for people ("" when none was given).
    pub description: String,
    pub billing_interval: BillingInterval,
    pub status: PlanStatus,
    pub copied_from_plan_id: Option<PlanId>,
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
            id: PlanId::from_uuid(m.id),
            product_id: ProductId::from_uuid(m.product_id),
            key: m.key,
            name: m.name,
            description: m.description,
            copied_from_plan_id: m.copied_from_plan_id.map(PlanId::from_uuid),
            created_at: m.created_at,
            published_at: m.published_at,
        })
    }
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
    product_id: Option<ProductId>,
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
pub(super) async fn draft(
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

/// Plans, products and features by id, for batched reads.
pub async fn plans_by_ids(db: &Db, tenant_id: Uuid, ids: &[PlanId]) -> Result<Vec<Plan>, DbErr> {
    plan::Entity::find()
        .filter(plan::Column::TenantId.eq(tenant_id))
        .filter(plan::Column::Id.is_in(ids.iter().copied()))
        .all(db.reader())
        .await?
        .into_iter()
        .map(Plan::try_from)
        .collect()
}
