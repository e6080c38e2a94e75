//! The domain of the credits engine. Knows SeaORM; knows nothing of GraphQL,
//! HTTP, queues or mail.
//!
//! # Glossary (one word, one meaning)
//! - **tenant** — a business using the engine; every row belongs to one.
//! - **audit log** — who changed what, when, with which outcome: one row
//!   per API-key mutation ([`audit_log`]; not [`ledger::audit`], which
//!   checks that balances add up).
//! - **API key** — a secret a tenant's systems authenticate with; carries a
//!   [`principal::Role`].
//! - **sealed** — a secret stored encrypted under the secrets key (webhook
//!   and customer-token signing secrets: [`secrets`]).
//! - **principal** — who is making a request: a tenant and a role
//!   ([`principal`]).
//! - **credit system** — a kind of credit (tokens, SMS, HUF) with its unit
//!   labels and precision.
//! - **wallet** — the balance of one customer in one credit system.
//! - **grant** — a block of credits in a wallet, with its own expiry and
//!   priority; spending draws from grants.
//! - **entry** — one immutable line of the ledger (never "transaction": that
//!   word belongs to the database).
//! - **hold** — credits reserved before the real amount is known.
//! - **allowance** — what a plan includes per period; **reset** — granting
//!   the next period's allowance; **expiry** — removing what is left of a
//!   grant at its `expires_at`.
//! - **entitlement** — what one unit of a feature costs on a plan, in one
//!   of its credit systems ([`catalog::Entitlement`]); checking and
//!   metering usage by it is [`entitlements`].
//!
//! Time is always a parameter ([`clock::Clock`]); timestamps are UTC, `*_at`,
//! truncated to microseconds (the precision both databases store), and
//! ranges are `[start, end)`.

pub mod alert_percents;
pub mod allowances;
pub mod amount;
pub mod api_keys;
pub mod audit_log;
mod audit_scope;
pub mod auto_top_up;
pub mod backup;
pub mod catalog;
pub mod clock;
pub mod credit_systems;
pub mod customer_tokens;
pub mod customers;
pub mod db;
pub mod entitlements;
pub mod error;
pub mod expiry;
pub mod exports;
pub mod gauges;
pub mod idempotency;
pub mod ids;
pub mod input;
pub mod jobs;
pub mod ledger;
pub mod listen;
pub mod live;
pub mod metrics;
pub mod notifications;
pub mod outbox;
pub mod pagination;
pub mod payments;
pub mod periods;
pub mod pricing;
pub mod principal;
pub mod purchases;
pub mod reports;
pub mod revocations;
pub mod sealing;
pub mod secrets;
mod subscription_state;
pub mod subscriptions;
pub mod tenants;
#[cfg(feature = "testing")]
pub mod testing;

pub use clock::{Clock, FixedClock, SystemClock};
pub use db::Db;
pub use error::{Code, DomainError};
