//! The stable error codes every domain module's error maps to.
//!
//! Each module has its own `thiserror` enum implementing [`DomainError`];
//! the API maps [`Code`] to GraphQL `extensions.code` in one place.

/// A stable, documented error code (`extensions.code` in GraphQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Unauthenticated,
    Forbidden,
    NotFound,
    Validation,
    Conflict,
    InsufficientCredits,
    LowCreditLimit,
    FeatureNotEntitled,
    PurchaseRequired,
    IdempotencyConflict,
    /// The database could not be reached or could not take the write (down,
    /// pool exhausted, disk full): retry later. A write answered so may or
    /// may not have happened — its retry with the same idempotency key is
    /// safe.
    Unavailable,
    Internal,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Unauthenticated => "UNAUTHENTICATED",
            Code::Forbidden => "FORBIDDEN",
            Code::NotFound => "NOT_FOUND",
            Code::Validation => "VALIDATION",
            Code::Conflict => "CONFLICT",
            Code::InsufficientCredits => "INSUFFICIENT_CREDITS",
            Code::LowCreditLimit => "LOW_CREDIT_LIMIT",
            Code::FeatureNotEntitled => "FEATURE_NOT_ENTITLED",
            Code::PurchaseRequired => "PURCHASE_REQUIRED",
            Code::IdempotencyConflict => "IDEMPOTENCY_CONFLICT",
            Code::Unavailable => "UNAVAILABLE",
            Code::Internal => "INTERNAL",
        }
    }
}

/// Whether a database error means "the database is unavailable" (rather
/// than a bug): no connection within the pool's timeout, a connection lost
/// or refused, the server shutting down, the disk full, SQLite busy.
pub fn is_unavailable(e: &(dyn std::error::Error + 'static)) -> bool {
    use sea_orm::{DbErr, RuntimeErr, sqlx};
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(db) = err.downcast_ref::<DbErr>() {
            return match db {
                DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
                DbErr::Exec(RuntimeErr::SqlxError(sqlx))
                | DbErr::Query(RuntimeErr::SqlxError(sqlx)) => match sqlx.as_ref() {
                    sqlx::Error::Io(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::WorkerCrashed
                    | sqlx::Error::Protocol(_) => true,
                    sqlx::Error::Database(d) => {
                        let code = d.code().unwrap_or_default();
                        // PostgreSQL: connection exception (08), insufficient
                        // resources (53: disk full, out of memory), operator
                        // intervention (57: shutdown, cancel). SQLite: BUSY
                        // (5), LOCKED (6), IOERR (10), FULL (13), CANTOPEN (14),
                        // extended codes keep the primary code in the low byte.
                        let sqlite = code.parse::<i32>().ok().map(|c| c & 0xff);
                        code.starts_with("08")
                            || code.starts_with("53")
                            || code.starts_with("57")
                            || matches!(sqlite, Some(5 | 6 | 10 | 13 | 14))
                    }
                    _ => false,
                },
                _ => false,
            };
        }
        next = err.source();
    }
    false
}

/// An error a person can act on, with a stable code and, where one input is
/// at fault, the name of that input (camelCase, as the API spells it).
pub trait DomainError: std::error::Error + Send + Sync + 'static {
    fn code(&self) -> Code;

    /// The input field at fault, if one is.
    fn field(&self) -> Option<&str> {
        None
    }

    /// Further machine-readable facts (e.g. `requested`, `available`).
    fn details(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
}

/// An invalid input: which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl DomainError for Invalid {
    fn code(&self) -> Code {
        Code::Validation
    }

    fn field(&self) -> Option<&str> {
        Some(&self.field)
    }
}

/// A thing named by its id that does not exist (in the caller's tenant):
/// "customer cus_0193… not found", `NOT_FOUND`, with `field` the input that
/// named it and `kind`/`id` as details (`extensions.kind`, `extensions.id`).
/// A lookup by another key (an external id, a credit system's key) says so
/// in its module's own error instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} {id} not found", kind.noun())]
pub struct NotFound {
    pub kind: crate::ids::Kind,
    /// The public form (`cus_0193…`).
    pub id: String,
    /// The input that named it (camelCase).
    pub field: &'static str,
}

impl NotFound {
    pub fn of<T: crate::ids::TypedId>(id: T, field: &'static str) -> Self {
        Self {
            kind: T::KIND,
            id: id.to_string(),
            field,
        }
    }
}

impl DomainError for NotFound {
    fn code(&self) -> Code {
        Code::NotFound
    }

    fn field(&self) -> Option<&str> {
        Some(self.field)
    }

    fn details(&self) -> Vec<(&'static str, String)> {
        vec![
            ("kind", self.kind.noun().to_owned()),
            ("id", self.id.clone()),
        ]
    }
}

/// A stored value the code does not know — a status, type, category or
/// role no version of it writes: a broken invariant, never read as a
/// default. It reaches clients as `INTERNAL` (it becomes a `DbErr`, which
/// every domain error maps so); the log names the row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{table}.{column} of row {id} holds {value:?}, which is not a value this version knows")]
pub struct UnknownValue {
    pub table: &'static str,
    pub column: &'static str,
    /// The row's id (or what names it: a wallet and a category).
    pub id: String,
    pub value: String,
}

impl From<UnknownValue> for sea_orm::DbErr {
    fn from(e: UnknownValue) -> Self {
        sea_orm::DbErr::Custom(e.to_string())
    }
}

/// `parsed`, the reading of `value` stored in `table.column` of row `id`;
/// `None` is an [`UnknownValue`] (as a `DbErr`, so `?` carries it through
/// every domain error), logged here with the row it came from.
pub fn known<T>(
    parsed: Option<T>,
    table: &'static str,
    column: &'static str,
    id: impl std::fmt::Display,
    value: &str,
) -> Result<T, sea_orm::DbErr> {
    parsed.ok_or_else(|| unknown(table, column, id, value))
}

/// The error for a stored `value` in `table.column` of row `id` that this
/// version does not know (logged here, with the row).
pub fn unknown(
    table: &'static str,
    column: &'static str,
    id: impl std::fmt::Display,
    value: &str,
) -> sea_orm::DbErr {
    let id = id.to_string();
    tracing::error!(table, column, id, value, "stored value not recognised");
    UnknownValue {
        table,
        column,
        id,
        value: value.to_owned(),
    }
    .into()
}
