//! Credit systems: what kinds of credit the tenant sells.

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use service::{api_keys::Role, credit_systems};

use super::{
    context::{RoleGuard, app, load},
    error::{ApiError, ApiResult},
    ids,
    loaders::CreditSystemKey,
    pagination::{self, Conn},
    refs::CreditSystemRefInput,
};

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "service::credit_systems::Kind", name = "CreditSystemKind")]
pub enum CreditSystemKindGql {
    /// Countable units: tokens, messages, generations.
    Units,
    /// Money-valued credit in one currency.
    Monetary,
}

/// A kind of credit: its unit labels and the precision every amount in it
/// respects.
pub struct CreditSystem(pub credit_systems::CreditSystem);

#[Object]
impl CreditSystem {
    async fn id(&self) -> ID {
        ids::encode_id(self.0.id)
    }
    /// Your key for it (unique per tenant), usable wherever a credit system
    /// is named.
    async fn key(&self) -> &str {
        &self.0.key
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn description(&self) -> &str {
        &self.0.description
    }
    async fn unit_singular(&self) -> &str {
        &self.0.unit_singular
    }
    async fn unit_plural(&self) -> &str {
        &self.0.unit_plural
    }
    /// Decimal places amounts may have (0–6). More is a `VALIDATION` error,
    /// never rounded.
    async fn precision(&self) -> u32 {
        self.0.precision
    }
    async fn kind(&self) -> CreditSystemKindGql {
        self.0.kind.into()
    }
    /// ISO 4217, for `MONETARY` systems.
    async fn currency(&self) -> Option<&str> {
        self.0.currency.as_deref()
    }
    /// The default low-balance threshold of its wallets (used when neither
    /// the wallet nor the customer's plan sets one).
    async fn low_balance_threshold(&self) -> Option<super::scalars::Credits> {
        self.0.low_balance_threshold.map(super::scalars::Credits)
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

#[derive(Default)]
pub struct CreditSystemQuery;

#[Object]
impl CreditSystemQuery {
    /// One credit system, by `id` or `key` (exactly one).
    async fn credit_system(
        &self,
        ctx: &Context<'_>,
        id: Option<ID>,
        key: Option<String>,
    ) -> ApiResult<CreditSystem> {
        let (p, app) = app(ctx)?;
        let which = match (id, key) {
            (Some(id), None) => CreditSystemRefInput::Id(id),
            (None, Some(key)) => CreditSystemRefInput::Key(service::input::key("key", &key)?),
            _ => return Err(ApiError::invalid("id", "give exactly one of id and key")),
        }
        .parse("id")?;
        Ok(CreditSystem(
            credit_systems::get(&app.db, p.tenant_id, &which).await?,
        ))
    }

    /// The tenant's credit systems, oldest first.
    #[graphql(complexity = "crate::graphql::limits::list_cost(first, child_complexity)")]
    async fn credit_systems(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> ApiResult<Conn<CreditSystem>> {
        let (p, app) = app(ctx)?;
        let page = pagination::page_request(first, after)?;
        let found = credit_systems::list(&app.db, p.tenant_id, page).await?;
        Ok(pagination::connection(found, |c| c.id.uuid(), CreditSystem))
    }
}

#[derive(InputObject)]
pub struct CreateCreditSystemInput {
    /// 1–64 of `a-z 0-9 _ . -`; unique per tenant.
    key: String,
    name: String,
    #[graphql(default)]
    description: String,
    unit_singular: String,
    unit_plural: String,
    /// Decimal places (0–6). Fixed once created.
    precision: i32,
    #[graphql(default_with = "CreditSystemKindGql::Units")]
    kind: CreditSystemKindGql,
    /// ISO 4217 code; required for `MONETARY`, refused for `UNITS`.
    currency: Option<String>,
}

#[derive(SimpleObject)]
pub struct CreditSystemPayload {
    credit_system: CreditSystem,
}

#[derive(InputObject)]
pub struct UpdateCreditSystemInput {
    credit_system: CreditSystemRefInput,
    name: Option<String>,
    description: Option<String>,
    unit_singular: Option<String>,
    unit_plural: Option<String>,
    /// The default low-balance threshold of its wallets; null clears it.
    low_balance_threshold: async_graphql::MaybeUndefined<super::scalars::Credits>,
}

#[derive(Default)]
pub struct CreditSystemMutation;

#[Object]
impl CreditSystemMutation {
    /// Creates a credit system. Repeating it with the same key and settings
    /// returns the existing one; other settings under that key: `CONFLICT`.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn create_credit_system(
        &self,
        ctx: &Context<'_>,
        input: CreateCreditSystemInput,
    ) -> ApiResult<CreditSystemPayload> {
        let (p, app) = app(ctx)?;
        let created = credit_systems::create(
            &app.db,
            app.clock(),
            p.tenant_id,
            &credit_systems::NewCreditSystem {
                key: input.key,
                name: input.name,
                description: input.description,
                unit_singular: input.unit_singular,
                unit_plural: input.unit_plural,
                precision: input.precision,
                kind: input.kind.into(),
                currency: input.currency,
            },
        )
        .await?;
        Ok(CreditSystemPayload {
            credit_system: CreditSystem(created),
        })
    }

    /// Changes a credit system's labels. Precision, kind and currency are
    /// fixed: they give meaning to amounts already on the ledger.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn update_credit_system(
        &self,
        ctx: &Context<'_>,
        input: UpdateCreditSystemInput,
    ) -> ApiResult<CreditSystemPayload> {
        let (p, app) = app(ctx)?;
        let which = input.credit_system.parse("creditSystem")?;
        let updated = credit_systems::update(
            &app.db,
            app.clock(),
            p.tenant_id,
            &which,
            &credit_systems::CreditSystemPatch {
                name: input.name,
                description: input.description,
                unit_singular: input.unit_singular,
                unit_plural: input.unit_plural,
                low_balance_threshold: input.low_balance_threshold.map_value(|v| v.0).into(),
            },
        )
        .await?;
        Ok(CreditSystemPayload {
            credit_system: CreditSystem(updated),
        })
    }
}

/// Loads a credit system for a nested field.
pub async fn credit_system(
    ctx: &Context<'_>,
    id: service::ids::CreditSystemId,
) -> ApiResult<Option<CreditSystem>> {
    Ok(load(ctx, CreditSystemKey(id)).await?.map(CreditSystem))
}
