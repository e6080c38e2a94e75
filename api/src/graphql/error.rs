//! The one mapping from domain errors to GraphQL errors.
//!
//! Every error a client sees carries `extensions.code` (see
//! [`service::Code`]) and, when one input is at fault, `extensions.field`.
//! Internal errors are logged with their cause chain and reach clients only
//! as `INTERNAL`, never with a database message.

use async_graphql::ErrorExtensions;
use service::{Code, DomainError};

/// An error on its way to a client. Resolvers return [`ApiResult`] and use
/// `?` on service results; no other conversion exists, so a raw `DbErr`
/// can't reach a client.
#[derive(Debug, Clone)]
pub struct ApiError(async_graphql::Error);

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>, field: Option<&str>) -> Self {
        let field = field.map(str::to_owned);
        Self(async_graphql::Error::new(message).extend_with(|_, ext| {
            ext.set("code", code.as_str());
            if let Some(field) = &field {
                ext.set("field", field.as_str());
            }
        }))
    }

    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::new(Code::Validation, message, Some(field))
    }

    pub fn unauthenticated() -> Self {
        Self::new(
            Code::Unauthenticated,
            "send a valid API key as `Authorization: Bearer <key>`",
            None,
        )
    }

    pub fn forbidden(needed: &str) -> Self {
        Self::new(
            Code::Forbidden,
            format!("this needs a key with role {needed} or above"),
            None,
        )
    }
}

impl<E: DomainError> From<E> for ApiError {
    fn from(e: E) -> Self {
        let code = e.code();
        if code == Code::Internal {
            if service::error::is_unavailable(&e) {
                tracing::warn!(error = %chain(&e), "database unavailable");
                return Self::new(
                    Code::Unavailable,
                    "the database is unavailable; a write may or may not have been applied: retry with the same idempotencyKey",
                    None,
                );
            }
            tracing::error!(error = %chain(&e), "internal error");
            return Self::new(code, "internal error", None);
        }
        let mut err = Self::new(code, e.to_string(), e.field());
        for (key, value) in e.details() {
            err.0 = err.0.extend_with(|_, ext| ext.set(key, value.clone()));
        }
        err
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(e: ApiError) -> Self {
        e.0
    }
}

/// `error: cause: cause…`
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Gives errors raised by async-graphql itself (syntax, unknown fields,
/// scalar parsing, depth and complexity limits) the `VALIDATION` code, and
/// where the message names an argument, that argument as `field`.
///
/// Every error also gets `extensions.retryable`: whether the same request
/// may succeed later ([`retryable`]).
pub fn annotate_request_errors(response: &mut async_graphql::Response) {
    for err in &mut response.errors {
        let ext = err.extensions.get_or_insert_with(Default::default);
        if ext.get("code").is_none() {
            ext.set("code", Code::Validation.as_str());
            if let Some(field) = argument_named_in(&err.message) {
                ext.set("field", field);
            }
        }
        if ext.get("retryable").is_none() {
            let code = match ext.get("code") {
                Some(async_graphql::Value::String(c)) => c.clone(),
                _ => String::new(),
            };
            ext.set("retryable", retryable(&code));
        }
    }
}

/// Codes whose request may succeed as it is when sent again: the server
/// or the database was unavailable, busy or slow. A retried write is safe
/// with the same idempotency key (README "Failure and recovery").
pub fn retryable(code: &str) -> bool {
    matches!(
        code,
        "UNAVAILABLE" | "INTERNAL" | "TIMEOUT" | "OVERLOADED" | "REQUEST_TIMEOUT" | "RATE_LIMITED"
    )
}

/// `Invalid value for argument "input.amount", …` → `input.amount`.
fn argument_named_in(message: &str) -> Option<String> {
    let rest = message.split_once("argument \"")?.1;
    Some(rest.split_once('"')?.0.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_names_are_found_in_messages() {
        assert_eq!(
            argument_named_in(
                r#"Invalid value for argument "input.amount", expected type "Credits""#
            )
            .as_deref(),
            Some("input.amount")
        );
        assert_eq!(argument_named_in("Query is nested too deep."), None);
    }
}
