//! Credit systems: the kinds of credit a tenant sells (tokens, SMS, HUF),
//! with unit labels and the precision every amount in them must respect.
//!
//! `precision`, `kind` and `currency` are fixed at creation: changing them
//! under existing balances would re-interpret amounts already on the ledger.

use chrono::{DateTime, Utc};
use entity::credit_system;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, SqlErr,
};
use serde::Serialize;
use uuid::Uuid;

use crate::{
    Clock, Db,
    amount::PRECISION_MAX,
    error::{Code, DomainError, Invalid, NotFound, known},
    ids::CreditSystemId,
    input,
    pagination::{Page, PageRequest},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Kind {
    /// Countable units: tokens, messages, generations.
    Units,
    /// Money-valued credit in one currency.
    Monetary,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Units => "UNITS",
            Kind::Monetary => "MONETARY",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "UNITS" => Some(Kind::Units),
            "MONETARY" => Some(Kind::Monetary),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditSystem {
    pub id: CreditSystemId,
    pub tenant_id: Uuid,
    pub key: String,
    pub name: String,
    pub description: String,
    pub unit_singular: String,
    pub unit_plural: String,
    pub precision: u32,
    pub kind: Kind,
    pub currency: Option<String>,
    /// Default low-balance threshold of its wallets.
    pub low_balance_threshold: Option<rust_decimal::Decimal>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A stored credit system; an unknown kind fails (see [`known`]).
impl TryFrom<credit_system::Model> for CreditSystem {
    type Error = DbErr;

    fn try_from(m: credit_system::Model) -> Result<Self, DbErr> {
        let kind = known(Kind::parse(&m.kind), "credit_system", "kind", m.id, &m.kind)?;
        Ok(Self {
            id: CreditSystemId::from_uuid(m.id),
            tenant_id: m.tenant_id,
            key: m.key,
            name: m.name,
            description: m.description,
            unit_singular: m.unit_singular,
            unit_plural: m.unit_plural,
            precision: m.precision.clamp(0, PRECISION_MAX as i32) as u32,
            kind,
            currency: m.currency,
            low_balance_threshold: m
                .low_balance_threshold_micros
                .map(crate::amount::from_micros),
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}

/// How a request names a credit system: its id or its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum CreditSystemRef {
    Id(CreditSystemId),
    Key(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct NewCreditSystem {
    pub key: String,
    pub name: String,
    pub description: String,
    pub unit_singular: String,
    pub unit_plural: String,
    pub precision: i32,
    pub kind: Kind,
    pub currency: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct CreditSystemPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub unit_singular: Option<String>,
    pub unit_plural: Option<String>,
    /// The default low-balance threshold of its wallets; `Some(None)`
    /// clears it.
    pub low_balance_threshold: Option<Option<rust_decimal::Decimal>>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// By id: names the kind and the id.
    #[error(transparent)]
    NotFound(#[from] NotFound),
    #[error("no credit system with key {0:?}")]
    NoKey(String),
    #[error("a credit system with key {0:?} exists with other settings")]
    KeyTaken(String),
    #[error("database error")]
    Db(#[from] DbErr),
}

impl DomainError for Error {
    fn code(&self) -> Code {
        match self {
            Error::Invalid(_) => Code::Validation,
            Error::NotFound(_) | Error::NoKey(_) => Code::NotFound,
            Error::KeyTaken(_) => Code::Conflict,
            Error::Db(_) => Code::Internal,
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            Error::Invalid(e) => Some(&e.field),
            Error::NotFound(e) => Some(e.field),
            Error::NoKey(_) => Some("creditSystem"),
            Error::KeyTaken(_) => Some("key"),
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

/// A machine key: 1–64 of `a-z 0-9 _ . -`, starting with a letter or digit.
pub fn parse_key(key: &str, field: &str) -> Result<String, Invalid> {
    let ok = !key.is_empty()
        && key.len() <= 64
        && key.as_bytes()[0].is_ascii_alphanumeric()
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
    if ok {
        Ok(key.to_owned())
    } else {
        Err(Invalid::new(
            field,
            "must be 1 to 64 characters of a-z, 0-9, '_', '.', '-'",
        ))
    }
}

/// A required label: trimmed, 1 to `max` characters, no control
/// characters ([`input::name`]).
pub fn parse_label(value: &str, field: &str, max: usize) -> Result<String, Invalid> {
    input::name(field, value, max)
}

fn validate(new: &NewCreditSystem) -> Result<NewCreditSystem, Invalid> {
    let mut v = new.clone();
    v.key = parse_key(&new.key, "key")?;
    v.name = parse_label(&new.name, "name", 100)?;
    v.unit_singular = parse_label(&new.unit_singular, "unitSingular", 50)?;
    v.unit_plural = parse_label(&new.unit_plural, "unitPlural", 50)?;
    v.description = input::text("description", &new.description, input::TEXT_LEN_MAX)?;
    if !(0..=PRECISION_MAX as i32).contains(&new.precision) {
        return Err(Invalid::new(
            "precision",
            format!("must be 0 to {PRECISION_MAX} decimal places"),
        ));
    }
    v.currency = match (new.kind, &new.currency) {
        (Kind::Monetary, Some(c)) if c.len() == 3 && c.bytes().all(|b| b.is_ascii_alphabetic()) => {
            Some(c.to_ascii_uppercase())
        }
        (Kind::Monetary, _) => {
            return Err(Invalid::new(
                "currency",
                "a MONETARY credit system needs an ISO 4217 currency code, e.g. \"EUR\"",
            ));
        }
        (Kind::Units, Some(_)) => {
            return Err(Invalid::new(
                "currency",
                "only MONETARY credit systems have a currency",
            ));
        }
        (Kind::Units, None) => None,
    };
    Ok(v)
}

fn same_settings(m: &credit_system::Model, v: &NewCreditSystem) -> bool {
    m.name == v.name
        && m.description == v.description
        && m.unit_singular == v.unit_singular
        && m.unit_plural == v.unit_plural
        && m.precision == v.precision
        && m.kind == v.kind.as_str()
        && m.currency == v.currency
}

/// Creates a credit system. Creating the same key again with the same
/// settings returns the existing one (a safe retry); with other settings
/// it is a `CONFLICT`.
pub async fn create(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    new: &NewCreditSystem,
) -> Result<CreditSystem, Error> {
    let v = validate(new)?;
    let txn = db.begin_write().await?;
    if let Some(existing) = find_by_key(&txn, tenant_id, &v.key).await? {
        return if same_settings(&existing, &v) {
            Ok(existing.try_into()?)
        } else {
            Err(Error::KeyTaken(v.key))
        };
    }
    let now = clock.now();
    let inserted = credit_system::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(tenant_id),
        key: Set(v.key.clone()),
        name: Set(v.name),
        description: Set(v.description),
        unit_singular: Set(v.unit_singular),
        unit_plural: Set(v.unit_plural),
        precision: Set(v.precision),
        kind: Set(v.kind.as_str().to_owned()),
        currency: Set(v.currency),
        low_balance_threshold_micros: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await;
    let model = match inserted {
        Ok(m) => m,
        Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
            return Err(Error::KeyTaken(v.key));
        }
        Err(e) => return Err(e.into()),
    };
    txn.commit().await?;
    Ok(model.try_into()?)
}

/// Changes labels; `precision`, `kind` and `currency` are fixed.
pub async fn update(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    which: &CreditSystemRef,
    patch: &CreditSystemPatch,
) -> Result<CreditSystem, Error> {
    let txn = db.begin_write().await?;
    let model = resolve(&txn, tenant_id, which).await?;
    let mut active: credit_system::ActiveModel = model.into();
    if let Some(name) = &patch.name {
        active.name = Set(parse_label(name, "name", 100)?);
    }
    if let Some(description) = &patch.description {
        active.description = Set(input::text(
            "description",
            description,
            input::TEXT_LEN_MAX,
        )?);
    }
    if let Some(unit) = &patch.unit_singular {
        active.unit_singular = Set(parse_label(unit, "unitSingular", 50)?);
    }
    if let Some(unit) = &patch.unit_plural {
        active.unit_plural = Set(parse_label(unit, "unitPlural", 50)?);
    }
    if let Some(threshold) = &patch.low_balance_threshold {
        let precision = match &active.precision {
            sea_orm::ActiveValue::Set(p) | sea_orm::ActiveValue::Unchanged(p) => {
                (*p).clamp(0, 6) as u32
            }
            sea_orm::ActiveValue::NotSet => 0,
        };
        let micros = threshold
            .map(|t| crate::amount::to_micros(t, precision, "lowBalanceThreshold"))
            .transpose()?;
        if micros.is_some_and(|m| m < 0) {
            return Err(Invalid::new("lowBalanceThreshold", "must not be negative").into());
        }
        active.low_balance_threshold_micros = Set(micros);
    }
    active.updated_at = Set(clock.now());
    let model = active.update(&txn).await?;
    txn.commit().await?;
    Ok(model.try_into()?)
}

async fn find_by_key(
    conn: &impl ConnectionTrait,
    tenant_id: Uuid,
    key: &str,
) -> Result<Option<credit_system::Model>, DbErr> {
    credit_system::Entity::find()
        .filter(credit_system::Column::TenantId.eq(tenant_id))
        .filter(credit_system::Column::Key.eq(key))
        .one(conn)
        .await
}

/// Finds a credit system of the tenant by id or key.
pub async fn resolve(
    conn: &impl ConnectionTrait,
    tenant_id: Uuid,
    which: &CreditSystemRef,
) -> Result<credit_system::Model, Error> {
    let found = match which {
        CreditSystemRef::Id(id) => {
            credit_system::Entity::find_by_id(id.uuid())
                .filter(credit_system::Column::TenantId.eq(tenant_id))
                .one(conn)
                .await?
        }
        CreditSystemRef::Key(key) => {
            // Checked first: a NUL must not reach PostgreSQL.
            input::key("creditSystem", key)?;
            find_by_key(conn, tenant_id, key).await?
        }
    };
    found.ok_or_else(|| match which {
        CreditSystemRef::Id(id) => NotFound::of(*id, "creditSystem").into(),
        CreditSystemRef::Key(k) => Error::NoKey(k.clone()),
    })
}

pub async fn get(db: &Db, tenant_id: Uuid, which: &CreditSystemRef) -> Result<CreditSystem, Error> {
    Ok(resolve(db.reader(), tenant_id, which).await?.try_into()?)
}

/// The tenant's credit systems, oldest first.
pub async fn list(
    db: &Db,
    tenant_id: Uuid,
    page: PageRequest,
) -> Result<Page<CreditSystem>, Error> {
    let mut query =
        credit_system::Entity::find().filter(credit_system::Column::TenantId.eq(tenant_id));
    if let Some(after) = page.after {
        query = query.filter(credit_system::Column::Id.gt(after));
    }
    let rows = query
        .order_by_asc(credit_system::Column::Id)
        .limit(page.fetch_limit())
        .all(db.reader())
        .await?;
    let items = rows
        .into_iter()
        .map(CreditSystem::try_from)
        .collect::<Result<_, _>>()?;
    Ok(page.finish(items))
}

/// Credit systems by id, for batched reads.
pub async fn by_ids(
    db: &Db,
    tenant_id: Uuid,
    ids: &[CreditSystemId],
) -> Result<Vec<CreditSystem>, Error> {
    Ok(credit_system::Entity::find()
        .filter(credit_system::Column::TenantId.eq(tenant_id))
        .filter(credit_system::Column::Id.is_in(ids.iter().copied()))
        .all(db.reader())
        .await?
        .into_iter()
        .map(CreditSystem::try_from)
        .collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new() -> NewCreditSystem {
        NewCreditSystem {
            key: "tokens".into(),
            name: "AI tokens".into(),
            description: String::new(),
            unit_singular: "token".into(),
            unit_plural: "tokens".into(),
            precision: 4,
            kind: Kind::Units,
            currency: None,
        }
    }

    #[test]
    fn validates_every_field() {
        assert!(validate(&new()).is_ok());
        let field = |n: NewCreditSystem| validate(&n).unwrap_err().field;
        assert_eq!(
            field(NewCreditSystem {
                key: "Bad Key".into(),
                ..new()
            }),
            "key"
        );
        assert_eq!(
            field(NewCreditSystem {
                precision: 7,
                ..new()
            }),
            "precision"
        );
        assert_eq!(
            field(NewCreditSystem {
                precision: -1,
                ..new()
            }),
            "precision"
        );
        assert_eq!(
            field(NewCreditSystem {
                unit_plural: " ".into(),
                ..new()
            }),
            "unitPlural"
        );
        assert_eq!(
            field(NewCreditSystem {
                kind: Kind::Monetary,
                ..new()
            }),
            "currency"
        );
        assert_eq!(
            field(NewCreditSystem {
                currency: Some("EUR".into()),
                ..new()
            }),
            "currency"
        );
        let huf = validate(&NewCreditSystem {
            kind: Kind::Monetary,
            currency: Some("huf".into()),
            precision: 2,
            ..new()
        })
        .unwrap();
        assert_eq!(huf.currency.as_deref(), Some("HUF"));
    }
}
