//! Customers: the tenant's own customers, named by the tenant's
//! `external_id`, optionally in a tree (partner → client → event).

use chrono::{DateTime, Utc};
use entity::customer;
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, SqlErr,
    sea_query::{Expr, ExprTrait, Func, LikeExpr},
};
use serde::Serialize;
use serde_json::Value as Json;
use uuid::Uuid;

use crate::{
    Clock, Db,
    credit_systems::parse_label,
    error::{Code, DomainError, Invalid},
    pagination::{Page, PageRequest},
};

/// How deep a customer tree may be (partner → client → event needs 3).
pub const TREE_DEPTH_MAX: usize = 16;
const METADATA_BYTES_MAX: usize = 16 * 1024;
const SEARCH_LEN_MAX: usize = 100;

#[derive(Debug, Clone, PartialEq)]
pub struct Customer {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub external_id: String,
    pub name: String,
    pub email: Option<String>,
    pub metadata: Option<Json>,
    pub parent_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<customer::Model> for Customer {
    fn from(m: customer::Model) -> Self {
        Self {
            id: m.id,
            tenant_id: m.tenant_id,
            external_id: m.external_id,
            name: m.name,
            email: m.email,
            metadata: m.metadata,
            parent_id: m.parent_id,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// How a request names a customer: the engine's id or the tenant's
/// external id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum CustomerRef {
    Id(Uuid),
    ExternalId(String),
}

#[derive(Debug, Clone)]
pub struct NewCustomer {
    pub external_id: String,
    pub name: String,
    pub email: Option<String>,
    pub metadata: Option<Json>,
    pub parent: Option<CustomerRef>,
}

/// `None` leaves a field as it is; `Some(None)` clears an optional one.
#[derive(Debug, Clone, Default)]
pub struct CustomerPatch {
    pub name: Option<String>,
    pub email: Option<Option<String>>,
    pub metadata: Option<Option<Json>>,
    pub parent: Option<Option<CustomerRef>>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("no customer {0}")]
    NotFound(String),
    #[error("a customer with external id {0:?} exists with other details")]
    ExternalIdTaken(String),
    #[error("database error")]
    Db(#[from] DbErr),
}

impl DomainError for Error {
    fn code(&self) -> Code {
        match self {
            Error::Invalid(_) => Code::Validation,
            Error::NotFound(_) => Code::NotFound,
            Error::ExternalIdTaken(_) => Code::Conflict,
            Error::Db(_) => Code::Internal,
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            Error::Invalid(e) => Some(&e.field),
            Error::NotFound(_) => Some("customer"),
            Error::ExternalIdTaken(_) => Some("externalId"),
            Error::Db(_) => None,
        }
    }
}

fn parse_external_id(s: &str) -> Result<String, Invalid> {
    let s = s.trim();
    if s.is_empty() || s.len() > 255 {
        return Err(Invalid::new("externalId", "must be 1 to 255 characters"));
    }
    Ok(s.to_owned())
}

fn parse_email(email: Option<&str>) -> Result<Option<String>, Invalid> {
    match email.map(str::trim) {
        None | Some("") => Ok(None),
        Some(e) => {
            let valid = e.len() <= 254
                && e.split_once('@')
                    .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
                && !e.contains(char::is_whitespace);
            if valid {
                Ok(Some(e.to_owned()))
            } else {
                Err(Invalid::new(
                    "email",
                    format!("{e:?} is not an email address"),
                ))
            }
        }
    }
}

fn parse_metadata(metadata: Option<&Json>) -> Result<Option<Json>, Invalid> {
    match metadata {
        None | Some(Json::Null) => Ok(None),
        Some(m @ Json::Object(_)) => {
            if m.to_string().len() > METADATA_BYTES_MAX {
                return Err(Invalid::new(
                    "metadata",
                    format!("must be at most {METADATA_BYTES_MAX} bytes of JSON"),
                ));
            }
            Ok(Some(m.clone()))
        }
        Some(_) => Err(Invalid::new("metadata", "must be a JSON object")),
    }
}

/// Creates a customer. The same external id with the same details returns
/// the existing customer (a safe retry); with other details it is a
/// `CONFLICT`.
pub async fn create(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    new: &NewCustomer,
) -> Result<Customer, Error> {
    let external_id = parse_external_id(&new.external_id)?;
    let name = parse_label(&new.name, "name", 200)?;
    let email = parse_email(new.email.as_deref())?;
    let metadata = parse_metadata(new.metadata.as_ref())?;
    let txn = db.begin_write().await?;
    let parent_id = match &new.parent {
        Some(p) => Some(resolve_as(&txn, tenant_id, p, "parent").await?.id),
        None => None,
    };
    if let Some(existing) = find_by_external_id(&txn, tenant_id, &external_id).await? {
        let same = existing.name == name
            && existing.email == email
            && existing.metadata == metadata
            && existing.parent_id == parent_id;
        return if same {
            Ok(existing.into())
        } else {
            Err(Error::ExternalIdTaken(external_id))
        };
    }
    let now = clock.now();
    let inserted = customer::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(tenant_id),
        external_id: Set(external_id.clone()),
        name: Set(name),
        email: Set(email),
        metadata: Set(metadata),
        parent_id: Set(parent_id),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await;
    let model = match inserted {
        Ok(m) => m,
        Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
            return Err(Error::ExternalIdTaken(external_id));
        }
        Err(e) => return Err(e.into()),
    };
    txn.commit().await?;
    Ok(model.into())
}

/// Changes a customer's details. A new parent may not be the customer
/// itself or one of its descendants.
pub async fn update(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    which: &CustomerRef,
    patch: &CustomerPatch,
) -> Result<Customer, Error> {
    let txn = db.begin_write().await?;
    let model = resolve(&txn, tenant_id, which).await?;
    let id = model.id;
    let mut active: customer::ActiveModel = model.into();
    if let Some(name) = &patch.name {
        active.name = Set(parse_label(name, "name", 200)?);
    }
    if let Some(email) = &patch.email {
        active.email = Set(parse_email(email.as_deref())?);
    }
    if let Some(metadata) = &patch.metadata {
        active.metadata = Set(parse_metadata(metadata.as_ref())?);
    }
    if let Some(parent) = &patch.parent {
        let parent_id = match parent {
            Some(p) => {
                let parent = resolve_as(&txn, tenant_id, p, "parent").await?;
                if ancestors(&txn, tenant_id, parent.id).await?.contains(&id) || parent.id == id {
                    return Err(
                        Invalid::new("parent", "a customer can't be its own ancestor").into(),
                    );
                }
                Some(parent.id)
            }
            None => None,
        };
        active.parent_id = Set(parent_id);
    }
    active.updated_at = Set(clock.now());
    let model = active.update(&txn).await?;
    txn.commit().await?;
    Ok(model.into())
}

/// `id` and the ids above it, nearest first, up to [`TREE_DEPTH_MAX`].
pub async fn ancestors(
    conn: &impl ConnectionTrait,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<Vec<Uuid>, DbErr> {
    let mut chain = vec![id];
    let mut current = id;
    for _ in 0..TREE_DEPTH_MAX {
        let parent = customer::Entity::find_by_id(current)
            .filter(customer::Column::TenantId.eq(tenant_id))
            .one(conn)
            .await?
            .and_then(|c| c.parent_id);
        match parent {
            Some(p) if !chain.contains(&p) => {
                chain.push(p);
                current = p;
            }
            _ => break,
        }
    }
    Ok(chain)
}

async fn find_by_external_id(
    conn: &impl ConnectionTrait,
    tenant_id: Uuid,
    external_id: &str,
) -> Result<Option<customer::Model>, DbErr> {
    customer::Entity::find()
        .filter(customer::Column::TenantId.eq(tenant_id))
        .filter(customer::Column::ExternalId.eq(external_id))
        .one(conn)
        .await
}

/// Finds a customer of the tenant by id or external id.
pub async fn resolve(
    conn: &impl ConnectionTrait,
    tenant_id: Uuid,
    which: &CustomerRef,
) -> Result<customer::Model, Error> {
    resolve_as(conn, tenant_id, which, "customer").await
}

async fn resolve_as(
    conn: &impl ConnectionTrait,
    tenant_id: Uuid,
    which: &CustomerRef,
    field: &str,
) -> Result<customer::Model, Error> {
    let found = match which {
        CustomerRef::Id(id) => {
            customer::Entity::find_by_id(*id)
                .filter(customer::Column::TenantId.eq(tenant_id))
                .one(conn)
                .await?
        }
        CustomerRef::ExternalId(external_id) => {
            find_by_external_id(conn, tenant_id, external_id).await?
        }
    };
    found.ok_or_else(|| {
        let what = match which {
            CustomerRef::Id(_) => "with this id".to_owned(),
            CustomerRef::ExternalId(e) => format!("with external id {e:?}"),
        };
        if field == "customer" {
            Error::NotFound(what)
        } else {
            Error::Invalid(Invalid::new(field, format!("no customer {what}")))
        }
    })
}

pub async fn get(db: &Db, tenant_id: Uuid, which: &CustomerRef) -> Result<Customer, Error> {
    Ok(resolve(db.reader(), tenant_id, which).await?.into())
}

/// The tenant's customers, newest first; `search` matches the start of the
/// external id, or any part of the name or email (case-insensitive).
pub async fn list(
    db: &Db,
    tenant_id: Uuid,
    search: Option<&str>,
    page: PageRequest,
) -> Result<Page<Customer>, Error> {
    let mut query = customer::Entity::find().filter(customer::Column::TenantId.eq(tenant_id));
    if let Some(search) = search.map(str::trim).filter(|s| !s.is_empty()) {
        if search.chars().count() > SEARCH_LEN_MAX {
            return Err(Invalid::new(
                "search",
                format!("must be at most {SEARCH_LEN_MAX} characters"),
            )
            .into());
        }
        let escaped = search
            .to_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        let raw = search
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        let like = |pattern: String| LikeExpr::new(pattern).escape('\\');
        let lower = |col: customer::Column| Expr::expr(Func::lower(Expr::col(col)));
        query = query.filter(
            Condition::any()
                .add(Expr::col(customer::Column::ExternalId).like(like(format!("{raw}%"))))
                .add(lower(customer::Column::Name).like(like(format!("%{escaped}%"))))
                .add(lower(customer::Column::Email).like(like(format!("%{escaped}%")))),
        );
    }
    if let Some(after) = page.after {
        query = query.filter(customer::Column::Id.lt(after));
    }
    let rows = query
        .order_by_desc(customer::Column::Id)
        .limit(page.fetch_limit())
        .all(db.reader())
        .await?;
    Ok(page.finish(rows.into_iter().map(Into::into).collect()))
}

/// Customers by id, for batched reads.
pub async fn by_ids(db: &Db, tenant_id: Uuid, ids: &[Uuid]) -> Result<Vec<Customer>, Error> {
    Ok(customer::Entity::find()
        .filter(customer::Column::TenantId.eq(tenant_id))
        .filter(customer::Column::Id.is_in(ids.iter().copied()))
        .all(db.reader())
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_and_metadata_are_checked() {
        assert_eq!(
            parse_email(Some(" a@b.co ")).unwrap().as_deref(),
            Some("a@b.co")
        );
        assert_eq!(parse_email(Some("")).unwrap(), None);
        for bad in ["nope", "@b.co", "a@b", "a b@c.d"] {
            assert_eq!(parse_email(Some(bad)).unwrap_err().field, "email", "{bad}");
        }
        assert!(parse_metadata(Some(&serde_json::json!({"plan": "pro"}))).is_ok());
        assert_eq!(
            parse_metadata(Some(&serde_json::json!([1])))
                .unwrap_err()
                .field,
            "metadata"
        );
    }
}
