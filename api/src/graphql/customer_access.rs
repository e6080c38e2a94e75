//! What a customer token (a browser's credential) may do, enforced in two
//! places so no resolver has to remember it:
//!
//! - [`CustomerTokenFence`], a schema extension, answers `FORBIDDEN` for
//!   every root field except `Query.customer`, the usage reports
//!   (`Query.usageSummary`, `Query.usageBreakdown`) and
//!   `SubscriptionRoot.walletUpdated` — so every other query, and every
//!   mutation, is refused before its resolver runs.
//! - [`ensure_readable`] is called wherever a `Customer` is produced (the
//!   root `customer` field, `Customer.parent`, nested `customer` links) and
//!   refuses customers outside the token's scope: its own customer, plus
//!   its descendants if the token includes them. `Customer.children` needs
//!   a token that includes descendants.
//! - [`ensure_report_readable`] does the same for a report's scope: a
//!   token's report names a customer it can read, and asks for that
//!   customer's descendants (`includeDescendants: true`) only if the token
//!   includes them. A token without them is refused rather than answered
//!   for its own customer alone: a report that silently covered less than
//!   it was asked to would show wrong totals as if they were right.
//!
//! API keys pass through untouched.

use std::sync::Arc;

use async_graphql::{
    Context, ServerResult, Value,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextResolve, ResolveInfo},
};
use service::{Code, api_keys::Principal, ids::CustomerId};

use super::{
    context::app,
    error::{ApiError, ApiResult},
};

/// Root fields a customer token may use (the subscription root is
/// `SubscriptionRoot`: `Subscription` names a customer's plan).
/// Introspection (`__schema`, `__type`) is allowed: the schema is public,
/// and browser tooling (and the GraphQL-over-HTTP audit) relies on it.
const ALLOWED_ROOT_FIELDS: [(&str, &str); 6] = [
    ("Query", "customer"),
    ("Query", "usageSummary"),
    ("Query", "usageBreakdown"),
    ("Query", "__schema"),
    ("Query", "__type"),
    ("SubscriptionRoot", "walletUpdated"),
];

fn refused() -> ApiError {
    ApiError::new(
        Code::Forbidden,
        "a customer token can read only its customer (and descendants it includes); use an API key",
        None,
    )
}

pub struct CustomerTokenFence;

impl ExtensionFactory for CustomerTokenFence {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(CustomerTokenFence)
    }
}

#[async_trait::async_trait]
impl Extension for CustomerTokenFence {
    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        let is_root = info.path_node.parent.is_none();
        let token = ctx
            .data_opt::<Principal>()
            .is_some_and(|p| p.customer_scope().is_some());
        if token
            && is_root
            && !info.is_for_introspection
            && !ALLOWED_ROOT_FIELDS.contains(&(info.parent_type, info.name))
        {
            // The resolve hook knows no position: no `locations` rather
            // than a made-up one.
            let err: async_graphql::Error = refused().into();
            let mut server_error = async_graphql::ServerError::new(err.message, None);
            server_error.extensions = err.extensions;
            server_error.path = info
                .path_node
                .to_string_vec()
                .into_iter()
                .map(async_graphql::PathSegment::Field)
                .collect();
            return Err(server_error);
        }
        next.run(ctx, info).await
    }
}

/// Refuses, for a customer token, a customer outside its scope.
pub async fn ensure_readable(ctx: &Context<'_>, customer_id: CustomerId) -> ApiResult<()> {
    let (p, app) = app(ctx)?;
    if let Some(scope) = p.customer_scope()
        && !scope
            .covers(app.db.reader(), p.tenant_id, customer_id)
            .await
            .map_err(|e| ApiError::from(service::ledger::Error::from(e)))?
    {
        return Err(refused());
    }
    Ok(())
}

/// Refuses a customer token that does not include descendants.
pub fn ensure_descendants_readable(ctx: &Context<'_>) -> ApiResult<()> {
    let (p, _) = app(ctx)?;
    match p.customer_scope() {
        Some(scope) if !scope.include_descendants => Err(refused()),
        _ => Ok(()),
    }
}

/// Refuses, for a customer token, a report outside its scope: one that
/// names no customer (the whole tenant), names a customer it can't read,
/// or includes descendants the token does not include.
pub async fn ensure_report_readable(
    ctx: &Context<'_>,
    customer_id: Option<CustomerId>,
    include_descendants: bool,
) -> ApiResult<()> {
    let (p, _) = app(ctx)?;
    if p.customer_scope().is_none() {
        return Ok(());
    }
    let Some(customer_id) = customer_id else {
        return Err(refused());
    };
    ensure_readable(ctx, customer_id).await?;
    if include_descendants {
        ensure_descendants_readable(ctx)?;
    }
    Ok(())
}
