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
            Code::Internal => "INTERNAL",
        }
    }
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
