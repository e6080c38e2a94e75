//! Entitlements: what one unit of a feature costs on a plan, in one of the
//! plan's credit systems. Checking and metering usage by them is
//! [`crate::entitlements`].

use entity::{entitlement, plan_credit};
use rust_decimal::Decimal;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder,
};
use uuid::Uuid;

use super::{
    Error, Ref, describe,
    features::find_feature,
    plan_credits::precision_of,
    plans::{Plan, draft},
};
use crate::{
    Clock, Db,
    amount::{from_micros, positive_micros},
    credit_systems::CreditSystemRef,
    error::Invalid,
    ids::{CreditSystemId, EntitlementId, FeatureId, PlanId},
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entitlement {
    pub id: EntitlementId,
    pub plan_id: PlanId,
    pub feature_id: FeatureId,
    pub credit_system_id: CreditSystemId,
    /// Credits one unit of the feature costs.
    pub credit_cost: Decimal,
}

impl From<entitlement::Model> for Entitlement {
    fn from(m: entitlement::Model) -> Self {
        Self {
            id: EntitlementId::from_uuid(m.id),
            plan_id: PlanId::from_uuid(m.plan_id),
            feature_id: FeatureId::from_uuid(m.feature_id),
            credit_system_id: CreditSystemId::from_uuid(m.credit_system_id),
            credit_cost: from_micros(m.credit_cost_micros),
        }
    }
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
    plan_ids: &[PlanId],
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
