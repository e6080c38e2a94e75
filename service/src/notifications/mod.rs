//! Telling people (email) and systems (webhooks) what happened.
//!
//! Ledger changes write outbox events in their own transaction
//! ([`crate::outbox`]); [`dispatch`] turns committed events into delivery
//! rows (one per subscribed webhook endpoint; emails for low balance,
//! receipts and usage alerts) and marks them dispatched in one
//! transaction, so each event is dispatched exactly once; then it
//! evaluates usage-% alerts ([`usage`]) off the hot path.
//! [`webhooks::deliver_due`] and [`email::send_due`] then send what is
//! due, retrying on a finite schedule, each attempt recorded. The
//! transports are traits the worker implements (lettre, reqwest): this
//! crate knows no mail or HTTP library.

pub mod dispatch;
pub mod email;
mod error;
pub mod payloads;
pub mod retry;
pub mod targets;
pub mod usage;
pub mod wallet_checks;
pub mod webhooks;

use std::{future::Future, time::Duration};

pub use dispatch::{DrainLimits, dispatch, drain};
pub use error::Error;
pub use targets::TargetPolicy;

/// An email to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailMessage {
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// Why an email was not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError {
    /// Retrying won't help (a refused address, a malformed message).
    pub permanent: bool,
    pub message: String,
}

/// Sends email (SMTP, or files for development).
pub trait Mailer: Send + Sync {
    fn send(&self, message: &EmailMessage) -> impl Future<Output = Result<(), SendError>> + Send;
}

/// What an endpoint answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpReply {
    pub status: u16,
    /// `Retry-After`, when given (seconds or an HTTP date).
    pub retry_after: Option<Duration>,
    /// The start of the body (for the attempt log).
    pub body_snippet: String,
}

/// Why no answer came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    Timeout,
    Connect(String),
    /// The target is not allowed (see [`targets`]): nothing was sent.
    Refused(targets::Refusal),
}

/// POSTs webhook bodies, only to targets its [`TargetPolicy`] allows
/// (checked on the address connected to, after DNS).
pub trait WebhookTransport: Send + Sync {
    fn post(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: &str,
    ) -> impl Future<Output = Result<HttpReply, TransportError>> + Send;
}
