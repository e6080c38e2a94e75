//! Tenants: the businesses using the engine. Everything else belongs to one.

use chrono::{DateTime, Utc};
use entity::tenant;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait,
    PaginatorTrait, QueryFilter, SqlErr,
};
use uuid::Uuid;

use crate::{
    Clock, Db,
    api_keys::{self, IssuedKey, Role},
    error::{Code, DomainError, Invalid},
};

/// The tenant created on an empty database so a newcomer can start at once.
pub const DEFAULT_TENANT_NAME: &str = "default";
const NAME_LEN_MAX: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

impl From<tenant::Model> for Tenant {
    fn from(m: tenant::Model) -> Self {
        Self {
            id: m.id,
            name: m.name,
            created_at: m.created_at,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("a tenant named {0:?} already exists")]
    NameTaken(String),
    #[error("no tenant named {0:?}")]
    NotFound(String),
    #[error(transparent)]
    ApiKey(#[from] api_keys::Error),
    #[error("database error")]
    Db(#[from] DbErr),
}

impl DomainError for Error {
    fn code(&self) -> Code {
        match self {
            Error::Invalid(_) => Code::Validation,
            Error::NameTaken(_) => Code::Conflict,
            Error::NotFound(_) => Code::NotFound,
            Error::ApiKey(e) => e.code(),
            Error::Db(_) => Code::Internal,
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            Error::Invalid(e) => Some(&e.field),
            Error::NameTaken(_) => Some("name"),
            Error::ApiKey(e) => e.field(),
            _ => None,
        }
    }
}

fn parse_name(name: &str) -> Result<String, Invalid> {
    crate::input::name("name", name, NAME_LEN_MAX)
}

/// An IANA zone name is at most this long (the longest is 32).
const TIME_ZONE_LEN_MAX: usize = 64;

async fn insert(
    conn: &impl ConnectionTrait,
    clock: &dyn Clock,
    name: &str,
) -> Result<Tenant, Error> {
    let name = parse_name(name)?;
    let model = tenant::ActiveModel {
        id: Set(Uuid::now_v7()),
        name: Set(name.clone()),
        admin_email: Set(None),
        watch_percent_micros: Set(None),
        critical_percent_micros: Set(None),
        time_zone: Set(None),
        customer_token_secret: Set(None),
        created_at: Set(clock.now()),
    };
    match model.insert(conn).await {
        Ok(m) => Ok(m.into()),
        Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
            Err(Error::NameTaken(name))
        }
        Err(e) => Err(e.into()),
    }
}

/// Creates a tenant; names are unique.
pub async fn create(db: &Db, clock: &dyn Clock, name: &str) -> Result<Tenant, Error> {
    let txn = db.begin_write().await?;
    let tenant = insert(&txn, clock, name).await?;
    txn.commit().await?;
    Ok(tenant)
}

/// Changes some of a tenant's settings in one write.
async fn update_settings(
    db: &Db,
    tenant_id: Uuid,
    change: impl FnOnce(&mut tenant::ActiveModel),
) -> Result<(), Error> {
    let txn = db.begin_write().await?;
    let tenant = tenant::Entity::find_by_id(tenant_id)
        .one(&txn)
        .await?
        .ok_or_else(|| Error::NotFound(tenant_id.to_string()))?;
    let mut active: tenant::ActiveModel = tenant.into();
    change(&mut active);
    active.update(&txn).await?;
    txn.commit().await?;
    Ok(())
}

/// Sets where operator notices go (a webhook endpoint disabled, …);
/// `None` clears it.
pub async fn set_admin_email(
    db: &Db,
    tenant_id: Uuid,
    email: Option<&str>,
) -> Result<Option<String>, Error> {
    let email = match email {
        Some(e) => crate::input::email("adminEmail", e)?,
        None => None,
    };
    let value = email.clone();
    update_settings(db, tenant_id, move |t| t.admin_email = Set(value)).await?;
    Ok(email)
}

/// Sets the usage-% thresholds of children's statuses (WATCH from
/// `watch`, CRITICAL from `critical`).
pub async fn set_usage_thresholds(
    db: &Db,
    tenant_id: Uuid,
    watch: rust_decimal::Decimal,
    critical: rust_decimal::Decimal,
) -> Result<crate::ledger::tree::Thresholds, Error> {
    let t = crate::ledger::tree::Thresholds::new(watch, critical)?;
    let micros = |d| crate::amount::to_micros(d, 6, "watchPercent");
    let (watch, critical) = (micros(t.watch)?, micros(t.critical)?);
    update_settings(db, tenant_id, move |a| {
        a.watch_percent_micros = Set(Some(watch));
        a.critical_percent_micros = Set(Some(critical));
    })
    .await?;
    Ok(t)
}

/// Sets the IANA time zone reports count months and days in.
pub async fn set_time_zone(db: &Db, tenant_id: Uuid, zone: &str) -> Result<chrono_tz::Tz, Error> {
    let refused = || {
        Invalid::new(
            "timeZone",
            "must be an IANA time zone name such as Europe/Budapest",
        )
    };
    if zone.chars().count() > TIME_ZONE_LEN_MAX {
        return Err(refused().into());
    }
    let tz: chrono_tz::Tz = zone.parse().map_err(|_| refused())?;
    let name = tz.name().to_owned();
    update_settings(db, tenant_id, move |t| t.time_zone = Set(Some(name))).await?;
    Ok(tz)
}

/// The tenant's report time zone (UTC unless set).
pub async fn time_zone(db: &Db, tenant_id: Uuid) -> Result<chrono_tz::Tz, Error> {
    let Some(t) = tenant::Entity::find_by_id(tenant_id)
        .one(db.reader())
        .await?
    else {
        return Ok(chrono_tz::UTC);
    };
    match t.time_zone {
        None => Ok(chrono_tz::UTC),
        // Set through `set_time_zone`, which parsed it: one that no longer
        // parses is a broken invariant, not UTC.
        Some(zone) => Ok(crate::error::known(
            zone.parse().ok(),
            "tenant",
            "time_zone",
            t.id,
            &zone,
        )?),
    }
}

/// The tenant's admin email, if set.
pub async fn admin_email(db: &Db, tenant_id: Uuid) -> Result<Option<String>, Error> {
    Ok(tenant::Entity::find_by_id(tenant_id)
        .one(db.reader())
        .await?
        .and_then(|t| t.admin_email))
}

pub async fn find_by_name(db: &Db, name: &str) -> Result<Tenant, Error> {
    let name = parse_name(name)?;
    tenant::Entity::find()
        .filter(tenant::Column::Name.eq(name.as_str()))
        .one(db.reader())
        .await?
        .map(Tenant::from)
        .ok_or_else(|| Error::NotFound(name.to_owned()))
}

/// On a database with no tenant at all, creates the `default` tenant and
/// one ADMIN key for it, in one transaction. Returns `None` when any tenant
/// exists already (including when another process won the race).
pub async fn bootstrap(db: &Db, clock: &dyn Clock) -> Result<Option<(Tenant, IssuedKey)>, Error> {
    let txn = db.begin_write().await?;
    if tenant::Entity::find().count(&txn).await? > 0 {
        return Ok(None);
    }
    let tenant = match insert(&txn, clock, DEFAULT_TENANT_NAME).await {
        Ok(t) => t,
        Err(Error::NameTaken(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let key = api_keys::insert(&txn, clock, tenant.id, Role::Admin, "bootstrap").await?;
    let key_id = crate::ids::ApiKeyId::from_uuid(key.key.id).to_string();
    crate::audit_log::record_system(&txn, clock, tenant.id, "bootstrap", vec![key_id]).await?;
    txn.commit().await?;
    Ok(Some((tenant, key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(parse_name("  acme ").unwrap(), "acme");
        assert_eq!(parse_name("   ").unwrap_err().field, "name");
        assert!(parse_name(&"x".repeat(101)).is_err());
        assert!(parse_name(&"é".repeat(100)).is_ok());
    }
}
