//! API keys: how a tenant's systems authenticate, and with which role.
//!
//! A key reads `ck_live_<key id, 32 hex>_<secret, 64 hex>`: 256 random bits
//! of secret. Only the SHA-256 of the secret is stored; a key is found by its
//! id (the primary key) and then its secret hash is compared in constant
//! time, so no index over secrets is needed and a key cannot be recovered
//! from the database. Revoked keys stop working at once.

use chrono::{DateTime, Utc};
use entity::{api_key, tenant};
use rand::RngCore;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{
    Clock, Db,
    error::{Code, DomainError, Invalid, known},
    ids::ApiKeyId,
    pagination::{Page, PageRequest},
};

const KEY_PREFIX: &str = "ck_live_";
const NAME_LEN_MAX: usize = 100;

/// Who asks and with what, named here too: the API and the worker know
/// them as `api_keys::…`.
pub use crate::principal::{Credential, Principal, Role};

/// A key as shown to people: never its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub role: Role,
    pub hint: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl TryFrom<api_key::Model> for ApiKey {
    type Error = Error;

    fn try_from(m: api_key::Model) -> Result<Self, Error> {
        let role = known(Role::parse(&m.role), "api_key", "role", m.id, &m.role)?;
        Ok(Self {
            id: m.id,
            tenant_id: m.tenant_id,
            name: m.name,
            role,
            hint: m.hint,
            created_at: m.created_at,
            revoked_at: m.revoked_at,
        })
    }
}

/// A key just created: the only moment its full text exists.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    pub key: ApiKey,
    /// The whole key to send as `Authorization: Bearer …`. Shown once.
    pub secret: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("missing, malformed, unknown or revoked API key")]
    Unauthenticated,
    #[error("no API key with this id")]
    NotFound,
    #[error("this is the tenant's last active ADMIN key; create another ADMIN key first")]
    LastAdminKey,
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("database error")]
    Db(#[from] DbErr),
}

impl DomainError for Error {
    fn code(&self) -> Code {
        match self {
            Error::Unauthenticated => Code::Unauthenticated,
            Error::NotFound => Code::NotFound,
            Error::LastAdminKey => Code::Conflict,
            Error::Invalid(_) => Code::Validation,
            Error::Db(_) => Code::Internal,
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            Error::Invalid(e) => Some(&e.field),
            Error::NotFound | Error::LastAdminKey => Some("id"),
            _ => None,
        }
    }
}

fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Splits a presented key into its id and secret; `None` if malformed.
fn parse_key(presented: &str) -> Option<(Uuid, &str)> {
    let rest = presented.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    if id.len() != 32 || secret.len() != 64 || !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((Uuid::try_parse(id).ok()?, secret))
}

/// Optional: blank is no name; otherwise a name ([`crate::input::name`]).
fn parse_name(name: &str) -> Result<String, Invalid> {
    if name.trim().is_empty() {
        return Ok(String::new());
    }
    crate::input::name("name", name, NAME_LEN_MAX)
}

/// Inserts a new key on `conn` (a transaction or a connection).
pub(crate) async fn insert(
    conn: &impl ConnectionTrait,
    clock: &dyn Clock,
    tenant_id: Uuid,
    role: Role,
    name: &str,
) -> Result<IssuedKey, Error> {
    let name = parse_name(name)?;
    let id = Uuid::now_v7();
    let mut secret_bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut secret_bytes);
    let secret = hex::encode(secret_bytes);
    let full = format!("{KEY_PREFIX}{}_{secret}", id.simple());
    let hint = format!("{KEY_PREFIX}…{}", &secret[secret.len() - 4..]);
    let model = api_key::ActiveModel {
        id: Set(id),
        tenant_id: Set(tenant_id),
        name: Set(name),
        role: Set(role.as_str().to_owned()),
        secret_hash: Set(hash_secret(&secret)),
        hint: Set(hint),
        created_at: Set(clock.now()),
        revoked_at: Set(None),
    }
    .insert(conn)
    .await?;
    crate::audit_log::note_created(ApiKeyId::from_uuid(id));
    Ok(IssuedKey {
        key: model.try_into()?,
        secret: full,
    })
}

/// Creates a key for a tenant.
///
/// Not idempotent by design: replaying a creation would mean storing the
/// secret to show it again. A surplus key is harmless and can be revoked.
pub async fn create(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    role: Role,
    name: &str,
) -> Result<IssuedKey, Error> {
    let txn = db.begin_write().await?;
    let issued = insert(&txn, clock, tenant_id, role, name).await?;
    // Outside a request (the command line): recorded as SYSTEM.
    let key_id = ApiKeyId::from_uuid(issued.key.id).to_string();
    crate::audit_log::record_system(&txn, clock, tenant_id, "createApiKey", vec![key_id]).await?;
    txn.commit().await?;
    Ok(issued)
}

/// Finds who a presented key belongs to. Every failure is the same
/// [`Error::Unauthenticated`], so a caller learns nothing about which part
/// was wrong.
pub async fn authenticate(db: &Db, presented: &str) -> Result<Principal, Error> {
    let (id, secret) = parse_key(presented).ok_or(Error::Unauthenticated)?;
    let Some((key, Some(tenant))) = api_key::Entity::find_by_id(id)
        .find_also_related(tenant::Entity)
        .one(db.reader())
        .await?
    else {
        return Err(Error::Unauthenticated);
    };
    if key.revoked_at.is_some()
        || !constant_time_eq(hash_secret(secret).as_bytes(), key.secret_hash.as_bytes())
    {
        return Err(Error::Unauthenticated);
    }
    // A key whose stored role is unknown is a broken invariant: INTERNAL
    // (logged), not a key that seems not to exist.
    let role = known(Role::parse(&key.role), "api_key", "role", key.id, &key.role)?;
    Ok(Principal {
        tenant_id: key.tenant_id,
        tenant_name: tenant.name,
        role,
        credential: Credential::ApiKey(key.id),
    })
}

/// The tenant's keys, newest first, revoked ones included.
pub async fn list(db: &Db, tenant_id: Uuid, page: PageRequest) -> Result<Page<ApiKey>, Error> {
    let mut query = api_key::Entity::find().filter(api_key::Column::TenantId.eq(tenant_id));
    if let Some(after) = page.after {
        query = query.filter(api_key::Column::Id.lt(after));
    }
    let rows = query
        .order_by_desc(api_key::Column::Id)
        .limit(page.fetch_limit())
        .all(db.reader())
        .await?
        .into_iter()
        .map(ApiKey::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(page.finish(rows))
}

/// Revokes a key of the tenant. Revoking a revoked key returns it as it is.
/// The tenant's last active ADMIN key cannot be revoked (that would lock the
/// tenant out of its own settings).
pub async fn revoke(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    key_id: ApiKeyId,
) -> Result<ApiKey, Error> {
    let txn = db.begin_write().await?;
    // Lock the tenant row (PostgreSQL) so two revocations can't each see the
    // other's key as the remaining ADMIN. SQLite's IMMEDIATE already does.
    tenant::Entity::find_by_id(tenant_id)
        .lock_exclusive()
        .one(&txn)
        .await?;
    let key = api_key::Entity::find_by_id(key_id.uuid())
        .filter(api_key::Column::TenantId.eq(tenant_id))
        .one(&txn)
        .await?
        .ok_or(Error::NotFound)?;
    if key.revoked_at.is_some() {
        return key.try_into();
    }
    if key.role == Role::Admin.as_str() {
        let other_admins = api_key::Entity::find()
            .filter(api_key::Column::TenantId.eq(tenant_id))
            .filter(api_key::Column::Role.eq(Role::Admin.as_str()))
            .filter(api_key::Column::RevokedAt.is_null())
            .filter(api_key::Column::Id.ne(key_id))
            .count(&txn)
            .await?;
        if other_admins == 0 {
            return Err(Error::LastAdminKey);
        }
    }
    let mut active: api_key::ActiveModel = key.into();
    active.revoked_at = Set(Some(clock.now()));
    let updated = active.update(&txn).await?;
    txn.commit().await?;
    // Open WebSockets authenticated with it close now, in every process.
    crate::revocations::announce(db).await;
    updated.try_into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_include_the_ones_below() {
        assert!(Role::Admin.allows(Role::Write));
        assert!(Role::Write.allows(Role::Read));
        assert!(!Role::Read.allows(Role::Write));
        assert!(!Role::Write.allows(Role::Admin));
        for r in [Role::Admin, Role::Write, Role::Read] {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
    }

    #[test]
    fn malformed_keys_are_rejected_before_any_lookup() {
        let id = Uuid::now_v7();
        let good = format!("ck_live_{}_{}", id.simple(), "a".repeat(64));
        assert_eq!(parse_key(&good).map(|(i, _)| i), Some(id));
        for bad in [
            String::new(),
            "Bearer".into(),
            format!("ck_test_{}_{}", id.simple(), "a".repeat(64)),
            format!("ck_live_{}_{}", id.simple(), "a".repeat(63)),
            format!("ck_live_{}_{}", id.simple(), "z".repeat(64)),
            format!("ck_live_{}{}", id.simple(), "a".repeat(65)),
        ] {
            assert_eq!(parse_key(&bad), None, "{bad}");
        }
    }

    #[test]
    fn constant_time_eq_compares_whole_slices() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
