//! Customers: the tenant's own customers, named by the tenant's
//! `external_id`, optionally in a tree (partner → client → event).
//!
//! **The tree stays a tree.** A customer without a parent is level 1; the
//! tree is at most [`TREE_DEPTH_MAX`] (8) levels deep (partner → client →
//! event uses 3). Creating a customer under a parent and changing a
//! customer's parent are checked by recursive queries over `parent_id`
//! (tenant-scoped, bounded by the depth limit): a new parent may not be
//! the customer itself or any of its descendants (that would close a
//! cycle), and no customer may end up deeper than the limit. Both refusals
//! are `VALIDATION` on `parent`. On PostgreSQL these writes lock the
//! tenant row (`FOR UPDATE` to move a customer, `FOR SHARE` to add one),
//! so two concurrent moves can't close a cycle between them; SQLite has
//! one writer.

use chrono::{DateTime, Utc};
use entity::{customer, tenant};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, SqlErr, Value,
    sea_query::{Expr, ExprTrait, Func, LikeExpr},
};
use serde::Serialize;
use serde_json::Value as Json;
use uuid::Uuid;

use crate::{
    Clock, Db,
    db::statement,
    error::{Code, DomainError, Invalid, NotFound},
    ids::CustomerId,
    input,
    pagination::{Page, PageRequest},
};

/// How many levels a customer tree may have (a customer without a parent
/// is level 1; partner → client → event needs 3).
pub const TREE_DEPTH_MAX: usize = 8;
/// A customer's `name`, in characters.
pub const NAME_LEN_MAX: usize = 200;

#[derive(Debug, Clone, PartialEq)]
pub struct Customer {
    pub id: CustomerId,
    pub tenant_id: Uuid,
    pub external_id: String,
    pub name: String,
    pub email: Option<String>,
    pub metadata: Option<Json>,
    pub parent_id: Option<CustomerId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<customer::Model> for Customer {
    fn from(m: customer::Model) -> Self {
        Self {
            id: CustomerId::from_uuid(m.id),
            tenant_id: m.tenant_id,
            external_id: m.external_id,
            name: m.name,
            email: m.email,
            metadata: m.metadata,
            parent_id: m.parent_id.map(CustomerId::from_uuid),
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// How a request names a customer: the engine's id or the tenant's
/// external id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum CustomerRef {
    Id(CustomerId),
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
    /// By id: names the kind and the id.
    #[error(transparent)]
    NotFound(#[from] NotFound),
    #[error("no customer with external id {0:?}")]
    NoExternalId(String),
    #[error("a customer with external id {0:?} exists with other details")]
    ExternalIdTaken(String),
    #[error("database error")]
    Db(#[from] DbErr),
}

impl DomainError for Error {
    fn code(&self) -> Code {
        match self {
            Error::Invalid(_) => Code::Validation,
            Error::NotFound(_) | Error::NoExternalId(_) => Code::NotFound,
            Error::ExternalIdTaken(_) => Code::Conflict,
            Error::Db(_) => Code::Internal,
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            Error::Invalid(e) => Some(&e.field),
            Error::NotFound(e) => Some(e.field),
            Error::NoExternalId(_) => Some("customer"),
            Error::ExternalIdTaken(_) => Some("externalId"),
            Error::Db(_) => None,
        }
    }

    fn details(&self) -> Vec<(&'static str, String)> {
        match self {
            Error::NotFound(e) => e.details(),
            _ => Vec::new(),
        }
    }
}

fn parse_email(email: Option<&str>) -> Result<Option<String>, Invalid> {
    email.map_or(Ok(None), |e| input::email("email", e))
}

fn parse_metadata(metadata: Option<&Json>) -> Result<Option<Json>, Invalid> {
    input::json_object("metadata", metadata, input::METADATA_BYTES_MAX)
}

/// Checks a ref before it is looked up, so no value the rules refuse
/// reaches a database.
fn check_ref(which: &CustomerRef, field: &str) -> Result<CustomerRef, Invalid> {
    Ok(match which {
        CustomerRef::Id(id) => CustomerRef::Id(*id),
        CustomerRef::ExternalId(e) => CustomerRef::ExternalId(input::key(field, e)?),
    })
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
    let external_id = input::key("externalId", &new.external_id)?;
    let name = input::name("name", &new.name, NAME_LEN_MAX)?;
    let email = parse_email(new.email.as_deref())?;
    let metadata = parse_metadata(new.metadata.as_ref())?;
    let parent = new
        .parent
        .as_ref()
        .map(|p| check_ref(p, "parent"))
        .transpose()?;
    let txn = db.begin_write().await?;
    let parent_id = match &parent {
        Some(p) => {
            lock_tree(&txn, tenant_id, false).await?;
            Some(resolve_as(&txn, tenant_id, p, "parent").await?.id)
        }
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
    if let Some(parent_id) = parent_id {
        let above = Chain::up_from(&txn, tenant_id, parent_id).await?;
        if above
            .levels()
            .is_none_or(|levels| levels + 1 > TREE_DEPTH_MAX)
        {
            return Err(too_deep().into());
        }
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
    crate::audit_log::note_created(CustomerId::from_uuid(model.id));
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
    let which = check_ref(which, "customer")?;
    let name = patch
        .name
        .as_deref()
        .map(|n| input::name("name", n, NAME_LEN_MAX))
        .transpose()?;
    let email = patch
        .email
        .as_ref()
        .map(|e| parse_email(e.as_deref()))
        .transpose()?;
    let metadata = patch
        .metadata
        .as_ref()
        .map(|m| parse_metadata(m.as_ref()))
        .transpose()?;
    let new_parent = match &patch.parent {
        Some(Some(p)) => Some(Some(check_ref(p, "parent")?)),
        Some(None) => Some(None),
        None => None,
    };
    let txn = db.begin_write().await?;
    if matches!(new_parent, Some(Some(_))) {
        lock_tree(&txn, tenant_id, true).await?;
    }
    let model = resolve(&txn, tenant_id, &which).await?;
    let id = model.id;
    let mut active: customer::ActiveModel = model.into();
    if let Some(name) = name {
        active.name = Set(name);
    }
    if let Some(email) = email {
        active.email = Set(email);
    }
    if let Some(metadata) = metadata {
        active.metadata = Set(metadata);
    }
    if let Some(parent) = &new_parent {
        let parent_id = match parent {
            Some(p) => {
                let parent = resolve_as(&txn, tenant_id, p, "parent").await?;
                check_move(&txn, tenant_id, id, parent.id).await?;
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

/// `id` and the ids above it, nearest first, at most [`TREE_DEPTH_MAX`]
/// of them (one recursive query).
pub async fn ancestors(
    conn: &impl ConnectionTrait,
    tenant_id: Uuid,
    id: CustomerId,
) -> Result<Vec<Uuid>, DbErr> {
    let mut chain = Chain::up_from(conn, tenant_id, id.uuid()).await?.ids;
    chain.truncate(TREE_DEPTH_MAX);
    Ok(chain)
}

/// The recursive common table expression `subtree(root_id, id, depth)`:
/// each of `roots` (depth 0) and every customer below it, each row naming
/// the root it was reached from — the same walk down `parent_id` as
/// [`height`], tenant-scoped and stopped after [`TREE_DEPTH_MAX`] levels
/// (which also ends a walk round a cycle left by data older than the
/// checks). Returns the text to put after `WITH RECURSIVE` and its
/// values, in placeholder order; the caller selects from `subtree` (a
/// customer may appear twice only in such a cycle: select DISTINCT where
/// it matters). However deep the tree, it is part of one statement.
pub(crate) fn subtree_cte(tenant_id: Uuid, roots: &[CustomerId]) -> (String, Vec<Value>) {
    let sql = format!(
        "subtree(root_id, id, depth) AS ( \
           SELECT id, id, 0 FROM customer WHERE tenant_id = ? AND id IN ({}) \
           UNION ALL \
           SELECT s.root_id, c.id, s.depth + 1 FROM customer c JOIN subtree s ON c.parent_id = s.id \
           WHERE c.tenant_id = ? AND s.depth < ? \
         )",
        vec!["?"; roots.len()].join(", ")
    );
    let mut values: Vec<Value> = vec![tenant_id.into()];
    values.extend(roots.iter().map(|id| Value::from(*id)));
    values.push(tenant_id.into());
    values.push((TREE_DEPTH_MAX as i32).into());
    (sql, values)
}

fn too_deep() -> Invalid {
    Invalid::new(
        "parent",
        format!("the customer tree may be at most {TREE_DEPTH_MAX} levels deep"),
    )
}

/// Serializes changes to the tenant's tree on PostgreSQL: moving a
/// customer takes the tenant row `FOR UPDATE`, adding one under a parent
/// `FOR SHARE` (adds don't wait for each other). A no-op on SQLite, whose
/// write transactions already run one at a time.
async fn lock_tree(txn: &DatabaseTransaction, tenant_id: Uuid, moving: bool) -> Result<(), DbErr> {
    if txn.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
        return Ok(());
    }
    let q = tenant::Entity::find_by_id(tenant_id)
        .select_only()
        .column(tenant::Column::Id);
    let q = if moving {
        q.lock_exclusive()
    } else {
        q.lock_shared()
    };
    q.into_tuple::<Uuid>().one(txn).await?;
    Ok(())
}

/// A customer and the customers above it, nearest first, read by one
/// recursive query that stops after [`TREE_DEPTH_MAX`] + 1 rows.
struct Chain {
    ids: Vec<Uuid>,
    /// Whether the last id has no parent (the walk reached the root).
    reached_root: bool,
}

impl Chain {
    async fn up_from(
        conn: &impl ConnectionTrait,
        tenant_id: Uuid,
        id: Uuid,
    ) -> Result<Self, DbErr> {
        let sql = "WITH RECURSIVE up(id, parent_id, depth) AS ( \
               SELECT id, parent_id, 1 FROM customer WHERE tenant_id = ? AND id = ? \
               UNION ALL \
               SELECT c.id, c.parent_id, up.depth + 1 FROM customer c JOIN up ON c.id = up.parent_id \
               WHERE c.tenant_id = ? AND up.depth <= ? \
             ) SELECT id, parent_id FROM up ORDER BY depth";
        let values: Vec<Value> = vec![
            tenant_id.into(),
            id.into(),
            tenant_id.into(),
            (TREE_DEPTH_MAX as i32).into(),
        ];
        let rows = conn
            .query_all_raw(statement(conn.get_database_backend(), sql, values))
            .await?;
        let mut ids = Vec::with_capacity(rows.len());
        let mut reached_root = false;
        for row in rows {
            ids.push(row.try_get::<Uuid>("", "id")?);
            reached_root = row.try_get::<Option<Uuid>>("", "parent_id")?.is_none();
        }
        Ok(Self { ids, reached_root })
    }

    /// How many levels the chain spans, when it is a whole path to the
    /// root within the limit (`None`: deeper than allowed, or a cycle left
    /// by data written before the limit existed).
    fn levels(&self) -> Option<usize> {
        (self.reached_root && self.ids.len() <= TREE_DEPTH_MAX).then_some(self.ids.len())
    }
}

/// How many levels lie below `id` (0 for a leaf), read by one recursive
/// query that goes at most [`TREE_DEPTH_MAX`] levels down.
async fn height(conn: &impl ConnectionTrait, tenant_id: Uuid, id: Uuid) -> Result<usize, DbErr> {
    let sql = "WITH RECURSIVE down(id, depth) AS ( \
           SELECT id, 0 FROM customer WHERE tenant_id = ? AND id = ? \
           UNION ALL \
           SELECT c.id, down.depth + 1 FROM customer c JOIN down ON c.parent_id = down.id \
           WHERE c.tenant_id = ? AND down.depth < ? \
         ) SELECT CAST(COALESCE(MAX(depth), 0) AS BIGINT) AS height FROM down";
    let values: Vec<Value> = vec![
        tenant_id.into(),
        id.into(),
        tenant_id.into(),
        (TREE_DEPTH_MAX as i32).into(),
    ];
    let row = conn
        .query_one_raw(statement(conn.get_database_backend(), sql, values))
        .await?;
    let height = match row {
        Some(row) => row.try_get::<i64>("", "height")?,
        None => 0,
    };
    Ok(usize::try_from(height).unwrap_or(TREE_DEPTH_MAX))
}

/// Whether `id` may move under `parent_id`: not under itself or a
/// descendant (a cycle), and not so deep that any customer of its
/// subtree ends up below level [`TREE_DEPTH_MAX`].
async fn check_move(
    txn: &DatabaseTransaction,
    tenant_id: Uuid,
    id: Uuid,
    parent_id: Uuid,
) -> Result<(), Error> {
    let above = Chain::up_from(txn, tenant_id, parent_id).await?;
    if above.ids.contains(&id) {
        return Err(Invalid::new(
            "parent",
            "a customer can't be its own ancestor: the new parent is the customer itself or one of its descendants",
        )
        .into());
    }
    let Some(levels) = above.levels() else {
        return Err(too_deep().into());
    };
    let below = height(txn, tenant_id, id).await?;
    if levels + 1 + below > TREE_DEPTH_MAX {
        return Err(too_deep().into());
    }
    Ok(())
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
    let which = &check_ref(which, field)?;
    let found = match which {
        CustomerRef::Id(id) => {
            customer::Entity::find_by_id(id.uuid())
                .filter(customer::Column::TenantId.eq(tenant_id))
                .one(conn)
                .await?
        }
        CustomerRef::ExternalId(external_id) => {
            find_by_external_id(conn, tenant_id, external_id).await?
        }
    };
    found.ok_or_else(|| {
        if field == "customer" {
            match which {
                CustomerRef::Id(id) => NotFound::of(*id, "customer").into(),
                CustomerRef::ExternalId(e) => Error::NoExternalId(e.clone()),
            }
        } else {
            let what = match which {
                CustomerRef::Id(id) => id.to_string(),
                CustomerRef::ExternalId(e) => format!("with external id {e:?}"),
            };
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
    let search = search
        .map(|s| input::search("search", s))
        .transpose()?
        .flatten();
    if let Some(search) = search {
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
pub async fn by_ids(db: &Db, tenant_id: Uuid, ids: &[CustomerId]) -> Result<Vec<Customer>, Error> {
    Ok(customer::Entity::find()
        .filter(customer::Column::TenantId.eq(tenant_id))
        .filter(customer::Column::Id.is_in(ids.iter().copied()))
        .all(db.reader())
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}

/// A page of each parent's direct children (oldest first), by id, in one
/// statement for all the parents (`Customer.children` a level at a time).
/// A parent without children gets an empty page.
pub async fn children_pages(
    db: &Db,
    tenant_id: Uuid,
    parent_ids: &[CustomerId],
    page: PageRequest,
) -> Result<std::collections::HashMap<CustomerId, Page<CustomerId>>, DbErr> {
    if parent_ids.is_empty() {
        return Ok(Default::default());
    }
    let mut values: Vec<Value> = vec![tenant_id.into()];
    values.extend(parent_ids.iter().map(|id| Value::from(*id)));
    let mut after = String::new();
    if let Some(a) = page.after {
        after.push_str(" AND id > ?");
        values.push(a.into());
    }
    values.push((page.fetch_limit() as i64).into());
    let sql = format!(
        "SELECT id, parent_id FROM ( \
           SELECT id, parent_id, ROW_NUMBER() OVER (PARTITION BY parent_id ORDER BY id) AS rn \
           FROM customer WHERE tenant_id = ? AND parent_id IN ({}){after} \
         ) t WHERE rn <= ? ORDER BY parent_id, id",
        vec!["?"; parent_ids.len()].join(", ")
    );
    let conn = db.reader();
    let mut found: std::collections::HashMap<CustomerId, Vec<CustomerId>> = Default::default();
    for row in conn
        .query_all_raw(statement(conn.get_database_backend(), &sql, values))
        .await?
    {
        found
            .entry(CustomerId::from_uuid(row.try_get("", "parent_id")?))
            .or_default()
            .push(CustomerId::from_uuid(row.try_get("", "id")?));
    }
    Ok(parent_ids
        .iter()
        .map(|id| (*id, page.finish(found.remove(id).unwrap_or_default())))
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
