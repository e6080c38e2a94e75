//! Customer tokens for browsers: issue and rotate. What a token may read
//! is enforced in `customer_access`.

use async_graphql::{Context, Object};
use chrono::{DateTime, Utc};
use service::ids::CustomerId;
use service::{api_keys::Role, customer_tokens};

use super::{
    context::{RoleGuard, app},
    customers::{self, Customer},
    error::ApiResult,
    refs::CustomerRefInput,
};

/// A signed, expiring bearer token for one customer's browser.
pub struct CustomerToken(customer_tokens::IssuedToken);

#[Object]
impl CustomerToken {
    /// Send as `Authorization: Bearer <token>` (or in the WebSocket
    /// `connection_init` payload). Shown once; not stored.
    async fn token(&self) -> &str {
        &self.0.token
    }
    async fn customer(&self, ctx: &Context<'_>) -> ApiResult<Option<Customer>> {
        customers::customer(ctx, CustomerId::from_uuid(self.0.scope.customer_id)).await
    }
    /// Whether it can also read the customer's descendants.
    async fn include_descendants(&self) -> bool {
        self.0.scope.include_descendants
    }
    async fn expires_at(&self) -> DateTime<Utc> {
        self.0.scope.expires_at
    }
}

#[derive(Default)]
pub struct CustomerTokenMutation;

#[Object]
impl CustomerTokenMutation {
    /// A token a browser can use to read this customer (and, with
    /// `includeDescendants`, the customers below it) and to subscribe to
    /// its wallets — nothing else: every other field and every mutation
    /// answers `FORBIDDEN`. `ttlSeconds`: 1 to 86,400.
    #[graphql(guard = "RoleGuard(Role::Write)")]
    async fn create_customer_token(
        &self,
        ctx: &Context<'_>,
        customer: CustomerRefInput,
        ttl_seconds: i32,
        #[graphql(default = false)] include_descendants: bool,
    ) -> ApiResult<CustomerToken> {
        let (p, app) = app(ctx)?;
        Ok(CustomerToken(
            customer_tokens::issue(
                &app.db,
                app.clock(),
                p.tenant_id,
                &customer.parse("customer")?,
                i64::from(ttl_seconds),
                include_descendants,
            )
            .await?,
        ))
    }

    /// Replaces the tenant's token-signing secret: every customer token
    /// issued before stops working at once.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn rotate_customer_token_secret(&self, ctx: &Context<'_>) -> ApiResult<bool> {
        let (p, app) = app(ctx)?;
        customer_tokens::rotate_secret(&app.db, p.tenant_id).await?;
        Ok(true)
    }
}
