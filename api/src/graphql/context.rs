//! The request context: who is asking (and the guard on their role), and
//! the services resolvers call.
//!
//! Authorization: every request carries a [`Principal`]; fields that need
//! more than READ say so with `#[graphql(guard = "RoleGuard(Role::Admin)")]`.

use std::sync::Arc;

use async_graphql::{Context, Guard};
use service::{
    Clock, Code, Db,
    api_keys::{Principal, Role},
    notifications::TargetPolicy,
};

use async_graphql::dataloader::Loader;

use super::{
    error::{ApiError, ApiResult},
    loaders::{Batch, LoadError, Loaders},
};

/// Refuses with `FORBIDDEN` unless the caller's role includes this one.
pub struct RoleGuard(pub Role);

impl Guard for RoleGuard {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        let principal = principal(ctx)?;
        if principal.role.allows(self.0) {
            Ok(())
        } else {
            Err(ApiError::forbidden(self.0.as_str()).into())
        }
    }
}

/// Who is asking. The HTTP layer refuses requests without one, so a
/// missing principal is answered as `UNAUTHENTICATED`, never a panic.
pub fn principal<'a>(ctx: &Context<'a>) -> ApiResult<&'a Principal> {
    ctx.data_opt::<Principal>()
        .ok_or_else(ApiError::unauthenticated)
}

/// What resolvers call the service with.
#[derive(Clone)]
pub struct AppContext {
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    /// Where webhook endpoints may point (`WEBHOOK_ALLOW_PRIVATE`).
    pub webhook_targets: TargetPolicy,
}

impl AppContext {
    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }
}

/// The caller and the service context, for a resolver.
pub fn app<'a>(ctx: &Context<'a>) -> ApiResult<(&'a Principal, &'a AppContext)> {
    let principal = principal(ctx)?;
    let app = ctx.data_opt::<AppContext>().ok_or_else(|| {
        tracing::error!("schema built without AppContext");
        ApiError::new(Code::Internal, "internal error", None)
    })?;
    Ok((principal, app))
}

/// The request's batch loaders (tenant-scoped, one `now`).
pub fn loaders<'a>(ctx: &Context<'a>) -> ApiResult<&'a Loaders> {
    ctx.data_opt::<Loaders>().ok_or_else(|| {
        tracing::error!("request without loaders");
        ApiError::new(Code::Internal, "internal error", None)
    })
}

/// Loads one value by key; `None` when it does not exist (or is another
/// tenant's: loaders are tenant-scoped).
pub async fn load<K>(ctx: &Context<'_>, key: K) -> ApiResult<Option<<Batch as Loader<K>>::Value>>
where
    K: Send + Sync + std::hash::Hash + Eq + Clone + 'static,
    Batch: Loader<K, Error = LoadError>,
{
    Ok(loaders(ctx)?.load_one(key).await?)
}
