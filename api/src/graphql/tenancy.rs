//! Who am I, and the tenant's API keys.

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use service::api_keys;

use super::{
    context::{RoleGuard, app, principal},
    error::ApiResult,
    ids::{self, Kind},
    pagination::{self, Conn},
};

/// What a key may do. Each role includes the ones below it.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "service::api_keys::Role")]
pub enum Role {
    /// Catalog, grants, voids, keys, settings, and everything WRITE can.
    Admin,
    /// Usage, purchases, holds, and everything READ can.
    Write,
    /// Reads only.
    Read,
}

/// A business using the engine.
#[derive(SimpleObject)]
pub struct Tenant {
    id: ID,
    name: String,
}

/// The caller: its tenant and the role of the key it used.
#[derive(SimpleObject)]
pub struct Viewer {
    tenant: Tenant,
    role: Role,
    /// The id of the key this request authenticated with.
    api_key_id: ID,
}

/// An API key as people see it: never its secret.
pub struct ApiKey(api_keys::ApiKey);

#[Object]
impl ApiKey {
    async fn id(&self) -> ID {
        ids::encode(Kind::ApiKey, self.0.id)
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn role(&self) -> Role {
        self.0.role.into()
    }
    /// `ck_live_…` and the key's last four characters.
    async fn hint(&self) -> &str {
        &self.0.hint
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn revoked_at(&self) -> Option<DateTime<Utc>> {
        self.0.revoked_at
    }
    async fn active(&self) -> bool {
        self.0.revoked_at.is_none()
    }
}

#[derive(Default)]
pub struct TenancyQuery;

#[Object]
impl TenancyQuery {
    /// The caller's tenant and role.
    async fn viewer(&self, ctx: &Context<'_>) -> ApiResult<Viewer> {
        let p = principal(ctx)?;
        Ok(Viewer {
            tenant: Tenant {
                id: ids::encode_tenant(p.tenant_id),
                name: p.tenant_name.clone(),
            },
            role: p.role.into(),
            api_key_id: match p.credential {
                api_keys::Credential::ApiKey(id) => ids::encode(Kind::ApiKey, id),
                api_keys::Credential::CustomerToken(_) => {
                    return Err(super::error::ApiError::forbidden("READ"));
                }
            },
        })
    }

    /// The tenant's API keys, newest first (revoked ones included).
    #[graphql(
        guard = "RoleGuard(api_keys::Role::Admin)",
        complexity = "crate::graphql::limits::list_cost(first, child_complexity)"
    )]
    async fn api_keys(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> ApiResult<Conn<ApiKey>> {
        let (p, app) = app(ctx)?;
        let page = pagination::page_request(first, after)?;
        let keys = api_keys::list(&app.db, p.tenant_id, page).await?;
        Ok(pagination::connection(keys, |k| k.id, ApiKey))
    }
}

#[derive(InputObject)]
pub struct CreateApiKeyInput {
    role: Role,
    /// What the key is for, shown in `apiKeys` (at most 100 characters).
    #[graphql(default)]
    name: String,
}

#[derive(SimpleObject)]
pub struct CreateApiKeyPayload {
    api_key: ApiKey,
    /// The whole key, to send as `Authorization: Bearer …`. Shown this once;
    /// only its hash is stored.
    secret: String,
}

#[derive(InputObject)]
pub struct RevokeApiKeyInput {
    id: ID,
}

#[derive(SimpleObject)]
pub struct RevokeApiKeyPayload {
    api_key: ApiKey,
}

#[derive(Default)]
pub struct TenancyMutation;

#[Object]
impl TenancyMutation {
    /// Creates an API key. Not idempotent by design (replaying would mean
    /// storing the secret): a surplus key is harmless and can be revoked.
    #[graphql(guard = "RoleGuard(api_keys::Role::Admin)")]
    async fn create_api_key(
        &self,
        ctx: &Context<'_>,
        input: CreateApiKeyInput,
    ) -> ApiResult<CreateApiKeyPayload> {
        let (p, app) = app(ctx)?;
        let issued = api_keys::create(
            &app.db,
            app.clock(),
            p.tenant_id,
            input.role.into(),
            &input.name,
        )
        .await?;
        Ok(CreateApiKeyPayload {
            api_key: ApiKey(issued.key),
            secret: issued.secret,
        })
    }

    /// Revokes an API key at once. Revoking a revoked key is a no-op; the
    /// tenant's last active ADMIN key can't be revoked (`CONFLICT`).
    #[graphql(guard = "RoleGuard(api_keys::Role::Admin)")]
    async fn revoke_api_key(
        &self,
        ctx: &Context<'_>,
        input: RevokeApiKeyInput,
    ) -> ApiResult<RevokeApiKeyPayload> {
        let (p, app) = app(ctx)?;
        let key_id = ids::decode_id(&input.id, "id")?;
        let key = api_keys::revoke(&app.db, app.clock(), p.tenant_id, key_id).await?;
        Ok(RevokeApiKeyPayload {
            api_key: ApiKey(key),
        })
    }
}
