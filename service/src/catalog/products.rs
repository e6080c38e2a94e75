//! Products: what a tenant sells; each has plans ([`super::plans`]).

use chrono::{DateTime, Utc};
use entity::product;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::{Error, Ref, describe, is_unique_violation};
use crate::{
    Clock, Db,
    credit_systems::{parse_key, parse_label},
    ids::ProductId,
    input,
    pagination::{Page, PageRequest},
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: ProductId,
    pub key: String,
    pub name: String,
    pub description: String,
    pub created_at: DateTime<Utc>,
}

impl From<product::Model> for Product {
    fn from(m: product::Model) -> Self {
        Self {
            id: ProductId::from_uuid(m.id),
            key: m.key,
            name: m.name,
            description: m.description,
            created_at: m.created_at,
        }
    }
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

pub(super) async fn find_product(
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

pub async fn products_by_ids(
    db: &Db,
    tenant_id: Uuid,
    ids: &[ProductId],
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
