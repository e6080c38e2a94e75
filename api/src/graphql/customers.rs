//! Customers and their wallets: the one-round-trip read a frontend makes.

use async_graphql::{Context, ID, InputObject, Json, MaybeUndefined, Object, SimpleObject};
use chrono::{DateTime, Utc};
use service::{
    api_keys::Role, credit_systems::CreditSystemRef, customers, ids::CustomerId, ledger::tree,
};

use super::{
    context::{RoleGuard, app, load},
    customer_access,
    error::{ApiError, ApiResult},
    ids::{self, Kind},
    ledger::Wallet,
    loaders::{
        ChildrenKey, CreditSystemByKey, CreditSystemKey, CustomerKey, WalletsOfCustomer,
        WalletsWithCreditSystems,
    },
    pagination::{self, Conn},
    refs::{CreditSystemRefInput, CustomerRefInput},
    scalars::Credits,
};

/// One of the tenant's customers.
pub struct Customer(pub customers::Customer);

#[Object]
impl Customer {
    async fn id(&self) -> ID {
        ids::encode_id(self.0.id)
    }
    /// Your own id for this customer.
    async fn external_id(&self) -> &str {
        &self.0.external_id
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn email(&self) -> Option<&str> {
        self.0.email.as_deref()
    }
    async fn metadata(&self) -> Option<Json<serde_json::Value>> {
        self.0.metadata.clone().map(Json)
    }
    /// The customer above this one (partner → client → event).
    async fn parent(&self, ctx: &Context<'_>) -> ApiResult<Option<Customer>> {
        match self.0.parent_id {
            Some(id) => customer(ctx, id).await,
            None => Ok(None),
        }
    }
    /// The customer's wallets, one per credit system used so far.
    #[graphql(complexity = "crate::graphql::limits::unpaged_list_cost(child_complexity)")]
    async fn wallets(&self, ctx: &Context<'_>) -> ApiResult<Vec<Wallet>> {
        if ctx.look_ahead().field("creditSystem").exists() {
            // Each with its credit system, in the same statement.
            return Ok(load(ctx, WalletsWithCreditSystems(self.0.id))
                .await?
                .unwrap_or_default()
                .into_iter()
                .map(|(w, cs)| Wallet(w, Some(cs)))
                .collect());
        }
        Ok(load(ctx, WalletsOfCustomer(self.0.id))
            .await?
            .unwrap_or_default()
            .into_iter()
            .map(Wallet::new)
            .collect())
    }
    /// The wallet in one credit system; null if never used.
    async fn wallet(
        &self,
        ctx: &Context<'_>,
        credit_system: CreditSystemRefInput,
    ) -> ApiResult<Option<Wallet>> {
        let wallets = load(ctx, WalletsOfCustomer(self.0.id))
            .await?
            .unwrap_or_default();
        for w in wallets {
            let cs = load(ctx, CreditSystemKey(w.credit_system_id)).await?;
            let matches = match (&credit_system, cs) {
                (CreditSystemRefInput::Id(id), _) => {
                    ids::decode(Kind::CreditSystem, id, "creditSystem")? == w.credit_system_id
                }
                (CreditSystemRefInput::Key(key), Some(cs)) => &cs.key == key,
                (CreditSystemRefInput::Key(_), None) => false,
            };
            if matches {
                return Ok(Some(Wallet::new(w)));
            }
        }
        Ok(None)
    }
    /// Its own totals in one credit system: bought, passed down the tree,
    /// received, used, and available now. `used` (and the usage % and
    /// status) counts what its descendants spent too with
    /// `includeDescendants: true` (a customer token needs to include
    /// descendants for that).
    async fn balance_summary(
        &self,
        ctx: &Context<'_>,
        credit_system: CreditSystemRefInput,
        #[graphql(default = false)] include_descendants: bool,
    ) -> ApiResult<TreeSummary> {
        if include_descendants {
            customer_access::ensure_descendants_readable(ctx)?;
        }
        let (p, app) = super::context::app(ctx)?;
        let cs = service::credit_systems::get(
            &app.db,
            p.tenant_id,
            &credit_system.parse("creditSystem")?,
        )
        .await?;
        let now = super::context::loaders(ctx)?.now();
        let mut found = tree::summaries(
            &app.db,
            p.tenant_id,
            cs.id,
            &[self.0.id],
            include_descendants,
            now,
        )
        .await?;
        Ok(TreeSummary(found.remove(&self.0.id).ok_or_else(|| {
            ApiError::new(service::Code::Internal, "internal error", None)
        })?))
    }

    /// Its direct children (oldest first), each with what was allocated to
    /// it, used and left in one credit system, as a usage % and a status.
    /// A child's `used` counts its whole subtree (a client's budget is used
    /// when its events spend it); `ownUsed` what it spent itself.
    #[graphql(complexity = "crate::graphql::limits::list_cost(first, child_complexity)")]
    async fn children(
        &self,
        ctx: &Context<'_>,
        credit_system: CreditSystemRefInput,
        first: Option<i32>,
        after: Option<String>,
    ) -> ApiResult<Conn<TreeSummary>> {
        customer_access::ensure_descendants_readable(ctx)?;
        let (p, app) = super::context::app(ctx)?;
        let page = pagination::page_request(first, after)?;
        // Batched: a level of the tree costs the same statements whatever
        // the number of parents in it (loaders `ChildrenKey`).
        let which = credit_system.parse("creditSystem")?;
        let cs = match &which {
            CreditSystemRef::Id(id) => load(ctx, CreditSystemKey(*id)).await?,
            CreditSystemRef::Key(key) => load(ctx, CreditSystemByKey(key.clone())).await?,
        };
        let cs = match cs {
            Some(cs) => cs,
            // Not found: the lookup's own error, as a direct read gives it.
            None => service::credit_systems::get(&app.db, p.tenant_id, &which).await?,
        };
        let page = load(ctx, ChildrenKey(self.0.id, cs.id, page))
            .await?
            .unwrap_or_else(|| page.finish(Vec::new()));
        Ok(pagination::connection(
            page,
            |s| s.customer_id.uuid(),
            TreeSummary,
        ))
    }

    /// The customer's subscriptions, oldest first.
    #[graphql(complexity = "crate::graphql::limits::unpaged_list_cost(child_complexity)")]
    async fn subscriptions(
        &self,
        ctx: &Context<'_>,
    ) -> ApiResult<Vec<super::commerce::Subscription>> {
        Ok(
            load(ctx, super::loaders::SubscriptionsOfCustomer(self.0.id))
                .await?
                .unwrap_or_default()
                .into_iter()
                .map(super::commerce::Subscription)
                .collect(),
        )
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

#[derive(Default)]
pub struct CustomerQuery;

#[Object]
impl CustomerQuery {
    /// One customer, by `id` or `externalId` (exactly one).
    async fn customer(
        &self,
        ctx: &Context<'_>,
        id: Option<ID>,
        external_id: Option<String>,
    ) -> ApiResult<Customer> {
        let (p, app) = app(ctx)?;
        let which = match (id, external_id) {
            (Some(id), None) => CustomerRefInput::Id(id),
            (None, Some(e)) => CustomerRefInput::ExternalId(service::input::key("externalId", &e)?),
            _ => {
                return Err(ApiError::invalid(
                    "id",
                    "give exactly one of id and externalId",
                ));
            }
        }
        .parse("id")?;
        let found = customers::get(&app.db, p.tenant_id, &which).await?;
        customer_access::ensure_readable(ctx, found.id).await?;
        Ok(Customer(found))
    }

    /// The tenant's customers, newest first. `search` matches the start of
    /// the external id, or part of the name or email (case-insensitive).
    #[graphql(complexity = "crate::graphql::limits::list_cost(first, child_complexity)")]
    async fn customers(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        search: Option<String>,
    ) -> ApiResult<Conn<Customer>> {
        let (p, app) = app(ctx)?;
        let page = pagination::page_request(first, after)?;
        let found = customers::list(&app.db, p.tenant_id, search.as_deref(), page).await?;
        Ok(pagination::connection(found, |c| c.id.uuid(), Customer))
    }
}

#[derive(InputObject)]
pub struct CreateCustomerInput {
    /// Your id for the customer; unique per tenant.
    external_id: String,
    name: String,
    email: Option<String>,
    /// A JSON object of your own (≤ 16 KiB).
    metadata: Option<Json<serde_json::Value>>,
    /// The customer above this one in a partner → client → event tree.
    parent: Option<CustomerRefInput>,
}

#[derive(SimpleObject)]
pub struct CustomerPayload {
    customer: Customer,
}

#[derive(InputObject)]
pub struct UpdateCustomerInput {
    customer: CustomerRefInput,
    name: Option<String>,
    /// `null` clears it.
    email: MaybeUndefined<String>,
    /// `null` clears it.
    metadata: MaybeUndefined<Json<serde_json::Value>>,
    /// `null` makes the customer a root.
    parent: MaybeUndefined<CustomerRefInput>,
}

#[derive(Default)]
pub struct CustomerMutation;

#[Object]
impl CustomerMutation {
    /// Creates a customer. Repeating it with the same external id and
    /// details returns the existing customer; other details: `CONFLICT`.
    #[graphql(guard = "RoleGuard(Role::Write)")]
    async fn create_customer(
        &self,
        ctx: &Context<'_>,
        input: CreateCustomerInput,
    ) -> ApiResult<CustomerPayload> {
        let (p, app) = app(ctx)?;
        let parent = input.parent.map(|r| r.parse("parent")).transpose()?;
        let created = customers::create(
            &app.db,
            app.clock(),
            p.tenant_id,
            &customers::NewCustomer {
                external_id: input.external_id,
                name: input.name,
                email: input.email,
                metadata: input.metadata.map(|m| m.0),
                parent,
            },
        )
        .await?;
        Ok(CustomerPayload {
            customer: Customer(created),
        })
    }

    /// Changes a customer's details.
    #[graphql(guard = "RoleGuard(Role::Write)")]
    async fn update_customer(
        &self,
        ctx: &Context<'_>,
        input: UpdateCustomerInput,
    ) -> ApiResult<CustomerPayload> {
        let (p, app) = app(ctx)?;
        let which = input.customer.parse("customer")?;
        let patch = customers::CustomerPatch {
            name: input.name,
            email: input.email.into(),
            metadata: input.metadata.map_value(|m| m.0).into(),
            parent: input
                .parent
                .map_value(|r| r.parse("parent"))
                .transpose()?
                .into(),
        };
        let updated = customers::update(&app.db, app.clock(), p.tenant_id, &which, &patch).await?;
        Ok(CustomerPayload {
            customer: Customer(updated),
        })
    }
}

#[derive(async_graphql::Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "service::ledger::tree::Health")]
pub enum UsageHealth {
    /// Below the tenant's watch threshold (75 % by default).
    Healthy,
    /// From the watch threshold up to the critical one (90 %).
    Watch,
    /// At or above the critical threshold.
    Critical,
}

/// A customer's standing in one credit system of a customer tree.
pub struct TreeSummary(tree::TreeSummary);

#[Object]
impl TreeSummary {
    async fn customer(&self, ctx: &Context<'_>) -> ApiResult<Option<Customer>> {
        customer(ctx, self.0.customer_id).await
    }
    /// Received from ancestors (TRANSFER_IN).
    async fn allocated(&self) -> Credits {
        Credits(self.0.allocated)
    }
    /// Passed on to descendants (TRANSFER_OUT).
    async fn total_allocated(&self) -> Credits {
        Credits(self.0.allocated_out)
    }
    /// Bought (PURCHASED grants).
    async fn total_purchased(&self) -> Credits {
        Credits(self.0.purchased)
    }
    /// Spent (usage less refunds) by this customer and every customer
    /// below it — in a `children` row always, in `balanceSummary` with
    /// `includeDescendants: true` (else by the customer itself).
    async fn used(&self) -> Credits {
        Credits(self.0.used)
    }
    /// Spent by this customer itself (usage less refunds), not by its
    /// descendants.
    async fn own_used(&self) -> Credits {
        Credits(self.0.own_used)
    }
    /// Available now.
    async fn remaining(&self) -> Credits {
        Credits(self.0.remaining)
    }
    /// Same as `remaining`: what the customer can spend now.
    async fn available(&self) -> Credits {
        Credits(self.0.remaining)
    }
    /// used ÷ allocated × 100 (0 when nothing was allocated); the status
    /// follows it by the tenant's thresholds (`setUsageThresholds`).
    async fn usage_percent(&self) -> super::scalars::ExactDecimal {
        super::scalars::ExactDecimal(self.0.usage_percent)
    }
    async fn status(&self) -> UsageHealth {
        self.0.health.into()
    }
}

/// Loads a customer for a nested field.
/// Refuses, for a customer token, one outside its scope.
pub async fn customer(ctx: &Context<'_>, id: CustomerId) -> ApiResult<Option<Customer>> {
    customer_access::ensure_readable(ctx, id).await?;
    Ok(load(ctx, CustomerKey(id)).await?.map(Customer))
}
