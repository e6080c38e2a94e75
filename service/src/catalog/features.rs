//! Features: what usage is metered by (`chat`, `print.4x6`), with the unit
//! a quantity of it counts. What a feature costs on a plan is an
//! entitlement ([`super::entitlements`]).

use chrono::{DateTime, Utc};
use entity::feature;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::{Error, Ref, describe, is_unique_violation};
use crate::{
    Clock, Db,
    credit_systems::{parse_key, parse_label},
    ids::FeatureId,
    pagination::{Page, PageRequest},
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feature {
    pub id: FeatureId,
    pub key: String,
    pub name: String,
    pub unit: String,
    pub created_at: DateTime<Utc>,
}

impl From<feature::Model> for Feature {
    fn from(m: feature::Model) -> Self {
        Self {
            id: FeatureId::from_uuid(m.id),
            key: m.key,
            name: m.name,
            unit: m.unit,
            created_at: m.created_at,
        }
    }
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

pub async fn features_by_ids(
    db: &Db,
    tenant_id: Uuid,
    ids: &[FeatureId],
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
