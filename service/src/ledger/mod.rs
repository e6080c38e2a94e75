//! The ledger: wallets, grants, entries, holds — and the rules that keep
//! every balance exact (see DESIGN.md, "Ledger rules").
//!
//! # How a balance is kept
//! - Credits live in **grants**; every change appends **entries** to the
//!   wallet's ledger (`seq` 1, 2, 3…) whose `balance_after` is the running
//!   sum of their amounts.
//! - The wallet caches that sum: `wallet.balance == Σ grant.remaining − debt
//!   == last entry's balance_after`, at every commit ([`audit::verify_wallet`]
//!   checks it; every test ends with it).
//! - **Debt** is overage (only with `allow_overage`): spending more than the
//!   live grants hold. A later grant repays it before anything else.
//! - **Holds** draw credits out of grants into a reservation (`HOLD` entry);
//!   a capture returns them (`RELEASE`) and spends the captured part from
//!   the same grants (`USAGE`), a release returns them all.
//!
//! # Time
//! What time does to a wallet — a grant passing its `expires_at`, a hold
//! passing its deadline — is written as `EXPIRY` / `RELEASE` entries by the
//! next write on that wallet (before its own change) or by the expiry sweep,
//! whichever comes first. Reads never wait for either: they compute
//! balances from the grants and holds as of now, so an expired grant is
//! never counted or spent, even before its `EXPIRY` entry exists.

pub mod allocations;
pub mod audit;
mod book;
pub mod burn;
pub(crate) mod columns;
pub mod invoices;
pub mod live;
mod ops;
pub mod read;
pub mod tree;

use chrono::{DateTime, Utc};
use entity::{credit_grant, credit_hold, entry_split, ledger_entry, wallet};
use rust_decimal::Decimal;
use sea_orm::DbErr;
use serde::Serialize;
use serde_json::Value as Json;

pub(crate) use book::Session;
pub use ops::*;

use crate::{
    amount::from_micros,
    credit_systems::{self, CreditSystemRef},
    customers::{self, CustomerRef},
    error::{Code, DomainError, Invalid, known},
    ids::{CreditSystemId, CustomerId, EntryId, GrantId, HoldId, WalletId},
    input,
};

/// The kind of a ledger entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum EntryType {
    /// Credits granted (a new grant).
    Grant,
    /// Credits spent.
    Usage,
    /// What was left of a grant at its `expires_at`.
    Expiry,
    /// What was left of a grant when it was voided.
    Void,
    /// Spent credits given back (as new `REFUND` grants).
    Refund,
    /// An ADMIN's correction, up or down.
    Adjustment,
    /// Credits moved to a descendant customer.
    TransferOut,
    /// Credits received from an ancestor customer.
    TransferIn,
    /// Credits reserved by a hold.
    Hold,
    /// Reserved credits returned by a release or capture.
    Release,
    /// Credits applied to an invoice.
    Invoice,
}

impl EntryType {
    pub const ALL: [EntryType; 11] = [
        EntryType::Grant,
        EntryType::Usage,
        EntryType::Expiry,
        EntryType::Void,
        EntryType::Refund,
        EntryType::Adjustment,
        EntryType::TransferOut,
        EntryType::TransferIn,
        EntryType::Hold,
        EntryType::Release,
        EntryType::Invoice,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EntryType::Grant => "GRANT",
            EntryType::Usage => "USAGE",
            EntryType::Expiry => "EXPIRY",
            EntryType::Void => "VOID",
            EntryType::Refund => "REFUND",
            EntryType::Adjustment => "ADJUSTMENT",
            EntryType::TransferOut => "TRANSFER_OUT",
            EntryType::TransferIn => "TRANSFER_IN",
            EntryType::Hold => "HOLD",
            EntryType::Release => "RELEASE",
            EntryType::Invoice => "INVOICE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// Why a grant exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Category {
    Promotional,
    Admin,
    Purchased,
    Included,
    Refund,
    Transfer,
}

impl Category {
    pub const ALL: [Category; 6] = [
        Category::Promotional,
        Category::Admin,
        Category::Purchased,
        Category::Included,
        Category::Refund,
        Category::Transfer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Promotional => "PROMOTIONAL",
            Category::Admin => "ADMIN",
            Category::Purchased => "PURCHASED",
            Category::Included => "INCLUDED",
            Category::Refund => "REFUND",
            Category::Transfer => "TRANSFER",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// The state of a hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum HoldStatus {
    /// Reserving credits (until `expires_at`).
    Active,
    /// Settled by a capture.
    Captured,
    /// Returned, by a release or at its deadline.
    Released,
}

impl HoldStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HoldStatus::Active => "ACTIVE",
            HoldStatus::Captured => "CAPTURED",
            HoldStatus::Released => "RELEASED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ACTIVE" => Some(HoldStatus::Active),
            "CAPTURED" => Some(HoldStatus::Captured),
            "RELEASED" => Some(HoldStatus::Released),
            _ => None,
        }
    }
}

/// Who spent credits and on what: carried by usage entries and holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Attribution {
    pub feature: Option<String>,
    /// Units of the feature used (trackUsage); up to 6 decimal places.
    pub quantity: Option<Decimal>,
    pub event_ref: Option<String>,
    pub user_ref: Option<String>,
    pub dimensions: Option<Json>,
    pub description: Option<String>,
}

impl Attribution {
    /// The quantity as stored (validated to fit by [`Attribution::validate`]).
    pub fn quantity_micros(&self) -> Option<i64> {
        self.quantity.and_then(|q| {
            crate::amount::to_micros(q, crate::amount::PRECISION_MAX, "quantity").ok()
        })
    }

    /// Checks every field by the input rules ([`crate::input`]): feature,
    /// event and user refs are identifiers (trimmed, 1–255 characters, no
    /// control characters); dimensions a JSON object ≤ 4 KiB nested ≤ 8
    /// levels; the description free text ≤ 1,000 characters. Returns the
    /// attribution as stored.
    pub fn parse(&self) -> Result<Self, Invalid> {
        let key = |field: &str, v: &Option<String>| {
            v.as_deref().map(|v| input::key(field, v)).transpose()
        };
        Ok(Self {
            feature: key("feature", &self.feature)?,
            quantity: self.quantity,
            event_ref: key("eventRef", &self.event_ref)?,
            user_ref: key("userRef", &self.user_ref)?,
            dimensions: input::json_object(
                "dimensions",
                self.dimensions.as_ref(),
                input::DIMENSIONS_BYTES_MAX,
            )?,
            description: self
                .description
                .as_deref()
                .map(|d| input::text("description", d, input::TEXT_LEN_MAX))
                .transpose()?,
        })
    }
}

/// Names a wallet: a customer and a credit system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WalletRef {
    pub customer: CustomerRef,
    pub credit_system: CreditSystemRef,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Wallet {
    pub id: WalletId,
    pub customer_id: CustomerId,
    pub credit_system_id: CreditSystemId,
    pub allow_overage: bool,
    pub low_balance_threshold: Option<Decimal>,
    /// Its own usage-% alert thresholds as stored (see
    /// [`Wallet::usage_alert_percents`]).
    usage_alert_percents: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
}

impl Wallet {
    /// Its own usage-% alert thresholds (`Some([])`: off); `None`: its
    /// plan's or the default (see `notifications::usage`).
    pub fn usage_alert_percents(&self) -> Result<Option<Vec<Decimal>>, DbErr> {
        self.usage_alert_percents
            .as_ref()
            .map(|v| crate::alert_percents::from_json("wallet", self.id, v))
            .transpose()
    }
}

impl From<wallet::Model> for Wallet {
    fn from(m: wallet::Model) -> Self {
        Self {
            id: WalletId::from_uuid(m.id),
            customer_id: CustomerId::from_uuid(m.customer_id),
            credit_system_id: CreditSystemId::from_uuid(m.credit_system_id),
            allow_overage: m.allow_overage,
            low_balance_threshold: m.low_balance_threshold_micros.map(from_micros),
            usage_alert_percents: m.usage_alert_percents,
            created_at: m.created_at,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub id: GrantId,
    pub wallet_id: WalletId,
    pub category: Category,
    pub amount: Decimal,
    pub remaining: Decimal,
    /// What of `amount` repaid overage debt when the grant arrived.
    pub debt_repaid: Decimal,
    pub effective_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub priority: i32,
    pub cost_basis: Option<Decimal>,
    pub reason: String,
    pub metadata: Option<Json>,
    pub source_kind: Option<String>,
    pub source_id: Option<String>,
    pub voided_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl Grant {
    /// Spendable at `now` ([`live::Facts::is_live`]).
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        live::Facts {
            voided: self.voided_at.is_some(),
            has_credits: self.remaining > Decimal::ZERO,
            effective_at: self.effective_at,
            expires_at: self.expires_at,
        }
        .is_live(now)
    }
}

/// A stored grant; an unknown category or an unreadable cost basis fails
/// (see [`known`]).
impl TryFrom<credit_grant::Model> for Grant {
    type Error = DbErr;

    fn try_from(m: credit_grant::Model) -> Result<Self, DbErr> {
        let category = known(
            Category::parse(&m.category),
            "credit_grant",
            "category",
            m.id,
            &m.category,
        )?;
        let cost_basis = match &m.cost_basis {
            Some(c) => Some(known(
                c.parse::<Decimal>().ok(),
                "credit_grant",
                "cost_basis",
                m.id,
                c,
            )?),
            None => None,
        };
        Ok(Self {
            id: GrantId::from_uuid(m.id),
            wallet_id: WalletId::from_uuid(m.wallet_id),
            category,
            amount: from_micros(m.amount_micros),
            remaining: from_micros(m.remaining_micros),
            debt_repaid: from_micros(m.debt_repaid_micros),
            effective_at: m.effective_at,
            expires_at: m.expires_at,
            priority: m.priority,
            cost_basis,
            reason: m.reason,
            metadata: m.metadata,
            source_kind: m.source_kind,
            source_id: m.source_id,
            voided_at: m.voided_at,
            created_at: m.created_at,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub id: EntryId,
    pub wallet_id: WalletId,
    pub seq: i64,
    pub entry_type: EntryType,
    /// Signed: credits in positive, out negative.
    pub amount: Decimal,
    pub balance_after: Decimal,
    pub grant_id: Option<GrantId>,
    pub hold_id: Option<HoldId>,
    pub refund_of_entry_id: Option<EntryId>,
    pub attribution: Attribution,
    pub created_at: DateTime<Utc>,
}

/// A stored entry; an unknown type fails (see [`known`]).
impl TryFrom<ledger_entry::Model> for Entry {
    type Error = DbErr;

    fn try_from(m: ledger_entry::Model) -> Result<Self, DbErr> {
        let entry_type = known(
            EntryType::parse(&m.entry_type),
            "ledger_entry",
            "entry_type",
            m.id,
            &m.entry_type,
        )?;
        Ok(Self {
            id: EntryId::from_uuid(m.id),
            wallet_id: WalletId::from_uuid(m.wallet_id),
            seq: m.seq,
            entry_type,
            amount: from_micros(m.amount_micros),
            balance_after: from_micros(m.balance_after_micros),
            grant_id: m.grant_id.map(GrantId::from_uuid),
            hold_id: m.hold_id.map(HoldId::from_uuid),
            refund_of_entry_id: m.refund_of_entry_id.map(EntryId::from_uuid),
            attribution: Attribution {
                feature: m.feature,
                quantity: m.quantity_micros.map(from_micros),
                event_ref: m.event_ref,
                user_ref: m.user_ref,
                dimensions: m.dimensions,
                description: m.description,
            },
            created_at: m.created_at,
        })
    }
}

/// How much of an entry one grant gave or took (signed like the entry).
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    pub entry_id: EntryId,
    pub grant_id: GrantId,
    pub amount: Decimal,
}

impl From<entry_split::Model> for Split {
    fn from(m: entry_split::Model) -> Self {
        Self {
            entry_id: EntryId::from_uuid(m.entry_id),
            grant_id: GrantId::from_uuid(m.grant_id),
            amount: from_micros(m.amount_micros),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Hold {
    pub id: HoldId,
    pub wallet_id: WalletId,
    pub amount: Decimal,
    pub captured: Option<Decimal>,
    /// As stored; a hold past `expires_at` reserves nothing even while it
    /// still says `Active` (see [`Hold::status_at`]).
    pub status: HoldStatus,
    pub expires_at: DateTime<Utc>,
    pub attribution: Attribution,
    pub created_at: DateTime<Utc>,
    pub settled_at: Option<DateTime<Utc>>,
}

impl Hold {
    /// The status as of `now`: an active hold past its deadline is released.
    pub fn status_at(&self, now: DateTime<Utc>) -> HoldStatus {
        match self.status {
            HoldStatus::Active if self.expires_at <= now => HoldStatus::Released,
            s => s,
        }
    }
}

/// A stored hold; an unknown status fails (see [`known`]).
impl TryFrom<credit_hold::Model> for Hold {
    type Error = DbErr;

    fn try_from(m: credit_hold::Model) -> Result<Self, DbErr> {
        let status = known(
            HoldStatus::parse(&m.status),
            "credit_hold",
            "status",
            m.id,
            &m.status,
        )?;
        Ok(Self {
            id: HoldId::from_uuid(m.id),
            wallet_id: WalletId::from_uuid(m.wallet_id),
            amount: from_micros(m.amount_micros),
            captured: m.captured_micros.map(from_micros),
            status,
            expires_at: m.expires_at,
            attribution: Attribution {
                feature: m.feature,
                quantity: None,
                event_ref: m.event_ref,
                user_ref: m.user_ref,
                dimensions: m.dimensions,
                description: m.description,
            },
            created_at: m.created_at,
            settled_at: m.settled_at,
        })
    }
}

/// A wallet's balance as of an instant.
///
/// The parts by category (`included`, `purchased`, `promotional`, `admin`,
/// `refund`, `transfer`: one per [`Category`]) less `debt` always add up
/// to `available` ([`Balance::parts_total`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Balance {
    /// What can be spent now: live grants − debt (+ what expired holds
    /// return to live grants).
    pub available: Decimal,
    /// Reserved by active holds.
    pub pending: Decimal,
    /// `available + pending`.
    pub total: Decimal,
    /// Live credits by category (before debt), each with what holds past
    /// their deadline return to its grants.
    pub included: Decimal,
    pub purchased: Decimal,
    pub promotional: Decimal,
    pub admin: Decimal,
    pub refund: Decimal,
    pub transfer: Decimal,
    /// Granted but not yet effective.
    pub scheduled: Decimal,
    /// Overage not yet repaid.
    pub debt: Decimal,
}

impl Balance {
    /// The part of `available` (before debt) from grants of a category.
    pub fn part(&self, category: Category) -> Decimal {
        match category {
            Category::Included => self.included,
            Category::Purchased => self.purchased,
            Category::Promotional => self.promotional,
            Category::Admin => self.admin,
            Category::Refund => self.refund,
            Category::Transfer => self.transfer,
        }
    }

    pub fn part_mut(&mut self, category: Category) -> &mut Decimal {
        match category {
            Category::Included => &mut self.included,
            Category::Purchased => &mut self.purchased,
            Category::Promotional => &mut self.promotional,
            Category::Admin => &mut self.admin,
            Category::Refund => &mut self.refund,
            Category::Transfer => &mut self.transfer,
        }
    }

    /// Σ parts − debt: always equal to `available`.
    pub fn parts_total(&self) -> Decimal {
        Category::ALL.iter().map(|&c| self.part(c)).sum::<Decimal>() - self.debt
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error(transparent)]
    Customer(#[from] customers::Error),
    #[error(transparent)]
    CreditSystem(#[from] credit_systems::Error),
    /// A thing named by its id: names the kind and the id.
    #[error(transparent)]
    NotFound(#[from] crate::error::NotFound),
    /// A thing found through another (a wallet of a customer, a hold of
    /// an invoice): what is missing and the input that led to it.
    #[error("no {0} with this id")]
    Missing(&'static str, &'static str),
    #[error("insufficient credits: requested {requested}, available {available}")]
    InsufficientCredits {
        requested: Decimal,
        available: Decimal,
    },
    #[error(
        "this would take the available balance ({available}) below the plan's low-credit limit ({limit})"
    )]
    LowCreditLimit {
        requested: Decimal,
        available: Decimal,
        limit: Decimal,
    },
    #[error("this idempotency key was used for a different request")]
    IdempotencyConflict,
    #[error("{0}")]
    Conflict(String, &'static str),
    #[error("database error")]
    Db(#[from] DbErr),
}

impl From<crate::idempotency::Conflict> for Error {
    fn from(_: crate::idempotency::Conflict) -> Self {
        Error::IdempotencyConflict
    }
}

impl DomainError for Error {
    fn code(&self) -> Code {
        match self {
            Error::Invalid(_) => Code::Validation,
            Error::Customer(e) => e.code(),
            Error::CreditSystem(e) => e.code(),
            Error::NotFound(_) | Error::Missing(..) => Code::NotFound,
            Error::InsufficientCredits { .. } => Code::InsufficientCredits,
            Error::LowCreditLimit { .. } => Code::LowCreditLimit,
            Error::IdempotencyConflict => Code::IdempotencyConflict,
            Error::Conflict(..) => Code::Conflict,
            Error::Db(_) => Code::Internal,
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            Error::Invalid(e) => Some(&e.field),
            Error::Customer(e) => e.field(),
            Error::CreditSystem(e) => e.field(),
            Error::NotFound(e) => Some(e.field),
            Error::Missing(_, field) | Error::Conflict(_, field) => Some(field),
            Error::InsufficientCredits { .. } | Error::LowCreditLimit { .. } => Some("amount"),
            Error::IdempotencyConflict => Some("idempotencyKey"),
            Error::Db(_) => None,
        }
    }

    fn details(&self) -> Vec<(&'static str, String)> {
        match self {
            Error::NotFound(e) => e.details(),
            Error::Customer(e) => e.details(),
            Error::CreditSystem(e) => e.details(),
            Error::InsufficientCredits {
                requested,
                available,
            } => vec![
                ("requested", requested.normalize().to_string()),
                ("available", available.normalize().to_string()),
            ],
            Error::LowCreditLimit {
                requested,
                available,
                limit,
            } => vec![
                ("requested", requested.normalize().to_string()),
                ("available", available.normalize().to_string()),
                ("limit", limit.normalize().to_string()),
            ],
            _ => Vec::new(),
        }
    }
}
