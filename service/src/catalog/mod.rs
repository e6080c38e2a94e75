//! The catalog billing admins configure, one file per aggregate:
//!
//! - `products.rs` — what is sold ([`Product`]);
//! - `plans.rs` — a product's plans and their lifecycle
//!   ([`Plan`]: `DRAFT → PUBLISHED → ARCHIVED`, [`duplicate_plan`]);
//! - `plan_credits.rs` — a credit system in a plan: its
//!   included allowance and its prices ([`PlanCredit`], [`PlanCreditTerms`]);
//! - `features.rs` — what usage is metered by ([`Feature`]);
//! - `entitlements.rs` — a feature's cost in credits on a
//!   plan ([`Entitlement`]). Applying it (checking and metering usage) is
//!   [`crate::entitlements`].
//!
//! Plans move `DRAFT → PUBLISHED → ARCHIVED`. Only drafts can change: a
//! published plan's terms never move under its subscribers
//! ([`duplicate_plan`] starts a new draft from it). Archived plans take no
//! new subscriptions.
//!
//! This module re-exports each file's public API by name (no globs), so
//! callers write `catalog::create_plan` and `catalog::PlanCredit`; what is
//! shared by every aggregate — [`Ref`] and [`Error`] — lives here.

use sea_orm::{DbErr, SqlErr};
use serde::Serialize;
use uuid::Uuid;

use crate::{
    credit_systems,
    error::{Code, DomainError, Invalid},
    input,
};

mod entitlements;
mod features;
mod plan_credits;
mod plans;
mod products;

pub use entitlements::{Entitlement, entitlements_of, remove_entitlement, set_entitlement};
pub(crate) use features::find_feature;
pub use features::{Feature, create_feature, features_by_ids, get_feature, list_features};
pub use plan_credits::{
    Allowance, AutoTopUp, Commitment, LowCreditAction, PlanCredit, PlanCreditTerms, PlanPricing,
    RecurringPrice, Rollover, attach_credit_system, detach_credit_system, plan_credit,
    plan_credits_of, update_plan_credit,
};
pub(crate) use plans::find_plan;
pub use plans::{
    BillingInterval, NewPlan, Plan, PlanChanges, PlanStatus, archive_plan, create_plan,
    create_plan_with, duplicate_plan, get_plan, list_plans, plans_by_ids, publish_plan,
    update_plan,
};
pub use products::{Product, create_product, get_product, list_products, products_by_ids};

/// Names a catalog object by id or key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Ref {
    Id(Uuid),
    Key(String),
}

impl Ref {
    /// A ref by key, checked by the identifier rule ([`input::key`]).
    pub fn key(field: &str, key: &str) -> Result<Self, Invalid> {
        Ok(Ref::Key(input::key(field, key)?))
    }

    /// Whether a lookup could find anything: a key the input rules refuse
    /// is answered "not found" without asking the database.
    fn may_exist(&self) -> bool {
        match self {
            Ref::Id(_) => true,
            Ref::Key(k) => input::key("key", k).is_ok_and(|checked| checked == *k),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error(transparent)]
    CreditSystem(#[from] credit_systems::Error),
    #[error("no {0} {1}")]
    NotFound(&'static str, String),
    #[error("{0}")]
    Conflict(String, &'static str),
    #[error("database error")]
    Db(#[from] DbErr),
}

impl DomainError for Error {
    fn code(&self) -> Code {
        match self {
            Error::Invalid(_) => Code::Validation,
            Error::CreditSystem(e) => e.code(),
            Error::NotFound(..) => Code::NotFound,
            Error::Conflict(..) => Code::Conflict,
            Error::Db(_) => Code::Internal,
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            Error::Invalid(e) => Some(&e.field),
            Error::CreditSystem(e) => e.field(),
            Error::NotFound(what, _) => Some(what),
            Error::Conflict(_, field) => Some(field),
            Error::Db(_) => None,
        }
    }
}

fn describe(r: &Ref) -> String {
    match r {
        Ref::Id(_) => "with this id".into(),
        Ref::Key(k) => format!("with key {k:?}"),
    }
}

fn is_unique_violation(e: &DbErr) -> bool {
    matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}
