//! The catalog: products, plans, features, plan credits (allowances and
//! prices) and entitlements. ADMIN writes; any key reads.

use async_graphql::{Context, Enum, ID, InputObject, Object, OneofObject, SimpleObject};
use chrono::{DateTime, Utc};
use service::{
    api_keys::Role,
    catalog::{self, Ref},
    periods::{CalendarDuration, Interval},
    pricing,
};

use super::{
    context::{RoleGuard, app, load},
    credit_systems::{self, CreditSystem},
    error::{ApiError, ApiResult},
    ids::{self, Kind},
    loaders::{EntitlementsOfPlan, FeatureKey, PlanCreditsOfPlan, PlanKey, ProductKey},
    pagination::{self, Conn},
    refs::CreditSystemRefInput,
    scalars::{Credits, ExactDecimal},
};

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "service::catalog::PlanStatus")]
pub enum PlanStatus {
    Draft,
    Published,
    Archived,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "service::catalog::BillingInterval")]
pub enum BillingInterval {
    Monthly,
    Annually,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "service::periods::Interval")]
pub enum ResetInterval {
    Daily,
    Weekly,
    Monthly,
    Annually,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "service::catalog::Commitment")]
pub enum Commitment {
    /// Credits bought ahead: top-ups, and optionally a recurring price.
    Upfront,
    /// Credits bought as they are needed: top-ups only, no recurring price.
    PayAsYouGo,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "service::catalog::LowCreditAction")]
pub enum LowCreditAction {
    /// Notify only.
    Alert,
    /// Refuse consumption that would go below the limit (`LOW_CREDIT_LIMIT`).
    Block,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "service::pricing::PricingType")]
pub enum PricingType {
    /// Each tier prices its own slice of the quantity.
    Graduated,
    /// The tier the whole quantity falls in prices all of it.
    Volume,
}

/// What a tier's `amount` means.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum PriceModel {
    /// The price of one unit.
    PerUnit,
    /// The price of one package of `packageSize` units; a started package
    /// counts in full.
    PerPackage,
    /// A fixed price for reaching the tier.
    Flat,
    /// A percent of the tier's `base` price per unit (base 0.80, amount 90
    /// → 0.72 a unit).
    Percentage,
}

/// Names a plan, product or feature: by `id` or by `key`.
#[derive(OneofObject, Clone)]
pub enum CatalogRef {
    Id(ID),
    Key(String),
}

impl CatalogRef {
    /// The service's ref; a key goes through the identifier rule, so a
    /// NUL or overlong key is `VALIDATION` on `field`.
    pub(crate) fn parse(&self, kind: Kind, field: &str) -> ApiResult<Ref> {
        Ok(match self {
            CatalogRef::Id(id) => Ref::Id(ids::decode(kind, id, field)?),
            CatalogRef::Key(k) => Ref::key(field, k)?,
        })
    }
}

impl CatalogRef {
    /// As a query's `id` / `key` argument: the error names the one given.
    fn parse_argument(&self, kind: Kind) -> ApiResult<Ref> {
        match self {
            CatalogRef::Id(_) => self.parse(kind, "id"),
            CatalogRef::Key(_) => self.parse(kind, "key"),
        }
    }
}

fn one_of(id: Option<ID>, key: Option<String>) -> ApiResult<CatalogRef> {
    match (id, key) {
        (Some(id), None) => Ok(CatalogRef::Id(id)),
        (None, Some(key)) => Ok(CatalogRef::Key(key)),
        _ => Err(ApiError::invalid("id", "give exactly one of id and key")),
    }
}

// ---------------------------------------------------------------- objects

pub struct Product(pub catalog::Product);

#[Object]
impl Product {
    async fn id(&self) -> ID {
        ids::encode_id(self.0.id)
    }
    async fn key(&self) -> &str {
        &self.0.key
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn description(&self) -> &str {
        &self.0.description
    }
    #[graphql(complexity = "crate::graphql::limits::list_cost(first, child_complexity)")]
    async fn plans(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> ApiResult<Conn<Plan>> {
        let (p, app) = app(ctx)?;
        let page = pagination::page_request(first, after)?;
        let found = catalog::list_plans(&app.db, p.tenant_id, Some(self.0.id), None, page).await?;
        Ok(pagination::connection(found, |p| p.id.uuid(), Plan))
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

pub struct Plan(pub catalog::Plan);

#[Object]
impl Plan {
    async fn id(&self) -> ID {
        ids::encode_id(self.0.id)
    }
    async fn key(&self) -> &str {
        &self.0.key
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// What the plan offers, for people ("" when none was given).
    async fn description(&self) -> &str {
        &self.0.description
    }
    async fn billing_interval(&self) -> BillingInterval {
        self.0.billing_interval.into()
    }
    async fn status(&self) -> PlanStatus {
        self.0.status.into()
    }
    async fn product(&self, ctx: &Context<'_>) -> ApiResult<Option<Product>> {
        Ok(load(ctx, ProductKey(self.0.product_id)).await?.map(Product))
    }
    /// The plan this draft was copied from.
    async fn copied_from(&self, ctx: &Context<'_>) -> ApiResult<Option<Plan>> {
        match self.0.copied_from_plan_id {
            Some(id) => Ok(load(ctx, PlanKey(id)).await?.map(Plan)),
            None => Ok(None),
        }
    }
    /// The credit systems the plan includes or sells.
    #[graphql(complexity = "crate::graphql::limits::unpaged_list_cost(child_complexity)")]
    async fn credits(&self, ctx: &Context<'_>) -> ApiResult<Vec<PlanCredit>> {
        Ok(load(ctx, PlanCreditsOfPlan(self.0.id))
            .await?
            .unwrap_or_default()
            .into_iter()
            .map(PlanCredit)
            .collect())
    }
    /// What each feature costs in credits.
    #[graphql(complexity = "crate::graphql::limits::unpaged_list_cost(child_complexity)")]
    async fn entitlements(&self, ctx: &Context<'_>) -> ApiResult<Vec<Entitlement>> {
        Ok(load(ctx, EntitlementsOfPlan(self.0.id))
            .await?
            .unwrap_or_default()
            .into_iter()
            .map(Entitlement)
            .collect())
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn published_at(&self) -> Option<DateTime<Utc>> {
        self.0.published_at
    }
}

pub struct Feature(pub catalog::Feature);

#[Object]
impl Feature {
    async fn id(&self) -> ID {
        ids::encode_id(self.0.id)
    }
    /// E.g. `image.generate`.
    async fn key(&self) -> &str {
        &self.0.key
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// What one unit of use is (`image`, `call`, `message`).
    async fn unit(&self) -> &str {
        &self.0.unit
    }
}

/// What a plan includes of a credit system every reset interval.
#[derive(SimpleObject)]
pub struct IncludedAllowance {
    amount: Credits,
    reset_interval: ResetInterval,
    /// Unused allowance carried into the next period, at most this much;
    /// null: none (it expires with its period).
    rollover_cap: Option<Credits>,
}

#[derive(SimpleObject)]
pub struct PriceTier {
    first_unit: ExactDecimal,
    /// Null: no upper end.
    last_unit: Option<ExactDecimal>,
    amount: ExactDecimal,
    /// For `PERCENTAGE`: the per-unit base price the percent applies to.
    base: Option<ExactDecimal>,
}

#[derive(SimpleObject)]
pub struct Price {
    pricing_type: PricingType,
    model: PriceModel,
    package_size: Option<ExactDecimal>,
    currency: String,
    /// A fraction: 0.27 is 27 %.
    tax_rate: ExactDecimal,
    tiers: Vec<PriceTier>,
}

impl From<&pricing::Price> for Price {
    fn from(p: &pricing::Price) -> Self {
        let (model, package_size) = match &p.model {
            pricing::PriceModel::PerUnit => (PriceModel::PerUnit, None),
            pricing::PriceModel::PerPackage { package_size } => {
                (PriceModel::PerPackage, Some(ExactDecimal(*package_size)))
            }
            pricing::PriceModel::Flat => (PriceModel::Flat, None),
            pricing::PriceModel::Percentage => (PriceModel::Percentage, None),
        };
        Price {
            pricing_type: p.pricing_type.into(),
            model,
            package_size,
            currency: p.currency.clone(),
            tax_rate: ExactDecimal(p.tax_rate),
            tiers: p
                .tiers
                .iter()
                .map(|t| PriceTier {
                    first_unit: ExactDecimal(t.first_unit),
                    last_unit: t.last_unit.map(ExactDecimal),
                    amount: ExactDecimal(t.amount),
                    base: t.base.map(ExactDecimal),
                })
                .collect(),
        }
    }
}

#[derive(SimpleObject)]
pub struct RecurringPrice {
    /// Credits granted (and charged) every billing cycle.
    quantity: Credits,
    price: Price,
}

#[derive(SimpleObject)]
pub struct PlanPricing {
    commitment: Commitment,
    top_up_price: Option<Price>,
    recurring_price: Option<RecurringPrice>,
    min_quantity: Option<Credits>,
    max_quantity: Option<Credits>,
    /// ISO 8601 duration purchased credits live for (`P12M`); null: forever.
    expiration: Option<String>,
    low_credit_limit: Option<Credits>,
    low_credit_action: Option<LowCreditAction>,
    mandatory_purchase: bool,
    auto_top_up: Option<AutoTopUp>,
}

/// Below `below` available credits, a PENDING order for `quantity` is
/// created (at most one open at a time) and `topup.requested` emitted.
#[derive(SimpleObject, InputObject)]
#[graphql(input_name = "AutoTopUpInput")]
pub struct AutoTopUp {
    below: Credits,
    quantity: Credits,
}

/// A credit system in a plan: its allowance and its prices.
pub struct PlanCredit(pub catalog::PlanCredit);

#[Object]
impl PlanCredit {
    async fn id(&self) -> ID {
        ids::encode_id(self.0.id)
    }
    async fn plan(&self, ctx: &Context<'_>) -> ApiResult<Option<Plan>> {
        Ok(load(ctx, PlanKey(self.0.plan_id)).await?.map(Plan))
    }
    async fn credit_system(&self, ctx: &Context<'_>) -> ApiResult<Option<CreditSystem>> {
        credit_systems::credit_system(ctx, self.0.credit_system_id).await
    }
    async fn included(&self) -> Option<IncludedAllowance> {
        self.0.included.as_ref().map(|a| IncludedAllowance {
            amount: Credits(a.amount),
            reset_interval: a.reset_interval.into(),
            rollover_cap: match a.rollover {
                catalog::Rollover::Capped(cap) => Some(Credits(cap)),
                catalog::Rollover::None => None,
            },
        })
    }
    /// Usage-% alert thresholds for subscribers' wallets that set none
    /// of their own (`[]`: off); null: 75, 90 and 100.
    async fn usage_alert_percents(&self) -> Option<Vec<ExactDecimal>> {
        self.0
            .usage_alert_percents
            .as_ref()
            .map(|p| p.iter().copied().map(ExactDecimal).collect())
    }
    async fn pricing(&self) -> Option<PlanPricing> {
        self.0.pricing.as_ref().map(|p| PlanPricing {
            commitment: p.commitment.into(),
            top_up_price: p.top_up_price.as_ref().map(Into::into),
            recurring_price: p.recurring.as_ref().map(|r| RecurringPrice {
                quantity: Credits(r.quantity),
                price: (&r.price).into(),
            }),
            min_quantity: p.min_quantity.map(Credits),
            max_quantity: p.max_quantity.map(Credits),
            expiration: p.expiration.map(CalendarDuration::to_iso),
            low_credit_limit: p.low_credit_limit.map(|(l, _)| Credits(l)),
            low_credit_action: p.low_credit_limit.map(|(_, a)| a.into()),
            mandatory_purchase: p.mandatory_purchase,
            auto_top_up: p.auto_top_up.map(|a| AutoTopUp {
                below: Credits(a.below),
                quantity: Credits(a.quantity),
            }),
        })
    }
}

/// A feature in a plan: what one unit of it costs in credits.
pub struct Entitlement(pub catalog::Entitlement);

#[Object]
impl Entitlement {
    async fn id(&self) -> ID {
        ids::encode_id(self.0.id)
    }
    async fn feature(&self, ctx: &Context<'_>) -> ApiResult<Option<Feature>> {
        Ok(load(ctx, FeatureKey(self.0.feature_id)).await?.map(Feature))
    }
    async fn credit_system(&self, ctx: &Context<'_>) -> ApiResult<Option<CreditSystem>> {
        credit_systems::credit_system(ctx, self.0.credit_system_id).await
    }
    async fn credit_cost(&self) -> Credits {
        Credits(self.0.credit_cost)
    }
}

// ---------------------------------------------------------------- queries

#[derive(Default)]
pub struct CatalogQuery;

#[Object]
impl CatalogQuery {
    async fn product(
        &self,
        ctx: &Context<'_>,
        id: Option<ID>,
        key: Option<String>,
    ) -> ApiResult<Product> {
        let (p, app) = app(ctx)?;
        let which = one_of(id, key)?.parse_argument(Kind::Product)?;
        Ok(Product(
            catalog::get_product(&app.db, p.tenant_id, &which).await?,
        ))
    }
    #[graphql(complexity = "crate::graphql::limits::list_cost(first, child_complexity)")]
    async fn products(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> ApiResult<Conn<Product>> {
        let (p, app) = app(ctx)?;
        let page = pagination::page_request(first, after)?;
        let found = catalog::list_products(&app.db, p.tenant_id, page).await?;
        Ok(pagination::connection(found, |p| p.id.uuid(), Product))
    }
    async fn plan(
        &self,
        ctx: &Context<'_>,
        id: Option<ID>,
        key: Option<String>,
    ) -> ApiResult<Plan> {
        let (p, app) = app(ctx)?;
        let which = one_of(id, key)?.parse_argument(Kind::Plan)?;
        Ok(Plan(catalog::get_plan(&app.db, p.tenant_id, &which).await?))
    }
    #[graphql(complexity = "crate::graphql::limits::list_cost(first, child_complexity)")]
    async fn plans(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        status: Option<PlanStatus>,
    ) -> ApiResult<Conn<Plan>> {
        let (p, app) = app(ctx)?;
        let page = pagination::page_request(first, after)?;
        let found =
            catalog::list_plans(&app.db, p.tenant_id, None, status.map(Into::into), page).await?;
        Ok(pagination::connection(found, |p| p.id.uuid(), Plan))
    }
    async fn feature(
        &self,
        ctx: &Context<'_>,
        id: Option<ID>,
        key: Option<String>,
    ) -> ApiResult<Feature> {
        let (p, app) = app(ctx)?;
        let which = one_of(id, key)?.parse_argument(Kind::Feature)?;
        Ok(Feature(
            catalog::get_feature(&app.db, p.tenant_id, &which).await?,
        ))
    }
    #[graphql(complexity = "crate::graphql::limits::list_cost(first, child_complexity)")]
    async fn features(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> ApiResult<Conn<Feature>> {
        let (p, app) = app(ctx)?;
        let page = pagination::page_request(first, after)?;
        let found = catalog::list_features(&app.db, p.tenant_id, page).await?;
        Ok(pagination::connection(found, |f| f.id.uuid(), Feature))
    }
}

// ---------------------------------------------------------------- inputs

#[derive(InputObject)]
pub struct CreateProductInput {
    key: String,
    name: String,
    #[graphql(default)]
    description: String,
}

#[derive(SimpleObject)]
pub struct ProductPayload {
    product: Product,
}

#[derive(InputObject)]
pub struct CreatePlanInput {
    product: CatalogRef,
    key: String,
    name: String,
    /// What the plan offers, for people (at most 1,000 characters).
    #[graphql(default)]
    description: String,
    billing_interval: BillingInterval,
}

#[derive(InputObject)]
pub struct UpdatePlanInput {
    plan: CatalogRef,
    /// Omitted: unchanged.
    name: Option<String>,
    /// Omitted: unchanged; "" clears it (at most 1,000 characters).
    description: Option<String>,
}

#[derive(SimpleObject)]
pub struct PlanPayload {
    plan: Plan,
}

#[derive(InputObject)]
pub struct PlanInput {
    plan: CatalogRef,
}

#[derive(InputObject)]
pub struct DuplicatePlanInput {
    plan: CatalogRef,
    key: String,
    name: String,
}

#[derive(InputObject)]
pub struct CreateFeatureInput {
    /// E.g. `image.generate`.
    key: String,
    name: String,
    /// What one unit is: `image`, `call`, `message`.
    unit: String,
}

#[derive(SimpleObject)]
pub struct FeaturePayload {
    feature: Feature,
}

#[derive(InputObject)]
pub struct IncludedAllowanceInput {
    amount: Credits,
    reset_interval: ResetInterval,
    /// Carry unused allowance into the next period, at most this much.
    rollover_cap: Option<Credits>,
}

#[derive(InputObject)]
pub struct PriceTierInput {
    /// Tiers cover `(firstUnit, lastUnit]`, the first starting at 0 and each
    /// next one where the previous ends; or whole units `[firstUnit,
    /// lastUnit]` when the first starts at 1 (1–10000, 10001–50000, …).
    first_unit: ExactDecimal,
    /// Null: no upper end (last tier only).
    last_unit: Option<ExactDecimal>,
    amount: ExactDecimal,
    /// For `PERCENTAGE`: the per-unit base price.
    base: Option<ExactDecimal>,
}

#[derive(InputObject)]
pub struct PriceInput {
    pricing_type: PricingType,
    model: PriceModel,
    /// For `PER_PACKAGE`.
    package_size: Option<ExactDecimal>,
    tiers: Vec<PriceTierInput>,
}

#[derive(InputObject)]
pub struct RecurringPriceInput {
    quantity: Credits,
    price: PriceInput,
}

#[derive(InputObject)]
pub struct PlanPricingInput {
    commitment: Commitment,
    /// ISO 4217 code of every price here.
    currency: String,
    /// A fraction: 0.27 is 27 %.
    #[graphql(default_with = "ExactDecimal(rust_decimal::Decimal::ZERO)")]
    tax_rate: ExactDecimal,
    top_up_price: Option<PriceInput>,
    /// Credits granted and charged every billing cycle: `UPFRONT` only
    /// (refused with `PAY_AS_YOU_GO`).
    recurring_price: Option<RecurringPriceInput>,
    min_quantity: Option<Credits>,
    max_quantity: Option<Credits>,
    /// ISO 8601 duration purchased credits live for (`P12M`); null: forever.
    expiration: Option<String>,
    low_credit_limit: Option<Credits>,
    low_credit_action: Option<LowCreditAction>,
    #[graphql(default)]
    mandatory_purchase: bool,
    /// Create a PENDING order automatically below a trigger.
    auto_top_up: Option<AutoTopUp>,
}

fn price(
    input: PriceInput,
    currency: &str,
    tax_rate: ExactDecimal,
    field: &str,
) -> ApiResult<pricing::Price> {
    let model = match input.model {
        PriceModel::PerUnit => pricing::PriceModel::PerUnit,
        PriceModel::PerPackage => pricing::PriceModel::PerPackage {
            package_size: input
                .package_size
                .ok_or_else(|| {
                    ApiError::invalid(
                        &format!("{field}.packageSize"),
                        "PER_PACKAGE needs a packageSize",
                    )
                })?
                .0,
        },
        PriceModel::Flat => pricing::PriceModel::Flat,
        PriceModel::Percentage => pricing::PriceModel::Percentage,
    };
    Ok(pricing::Price {
        pricing_type: input.pricing_type.into(),
        model,
        tiers: input
            .tiers
            .into_iter()
            .map(|t| pricing::Tier {
                first_unit: t.first_unit.0,
                last_unit: t.last_unit.map(|l| l.0),
                amount: t.amount.0,
                base: t.base.map(|b| b.0),
            })
            .collect(),
        currency: currency.to_owned(),
        tax_rate: tax_rate.0,
    })
}

pub(crate) fn terms(
    included: Option<IncludedAllowanceInput>,
    pricing: Option<PlanPricingInput>,
    usage_alert_percents: Option<Vec<ExactDecimal>>,
) -> ApiResult<catalog::PlanCreditTerms> {
    let included = included.map(|a| catalog::Allowance {
        amount: a.amount.0,
        reset_interval: Interval::from(a.reset_interval),
        rollover: match a.rollover_cap {
            Some(cap) => catalog::Rollover::Capped(cap.0),
            None => catalog::Rollover::None,
        },
    });
    let pricing = match pricing {
        None => None,
        Some(p) => {
            let expiration = p
                .expiration
                .as_deref()
                .map(|e| {
                    CalendarDuration::parse(e).ok_or_else(|| {
                        ApiError::invalid(
                            "pricing.expiration",
                            "an ISO 8601 duration like P12M, P1Y or P30D",
                        )
                    })
                })
                .transpose()?;
            let low_credit_limit = match (p.low_credit_limit, p.low_credit_action) {
                (Some(l), Some(a)) => Some((l.0, a.into())),
                (None, None) => None,
                _ => {
                    return Err(ApiError::invalid(
                        "pricing.lowCreditAction",
                        "give lowCreditLimit and lowCreditAction together",
                    ));
                }
            };
            Some(catalog::PlanPricing {
                commitment: p.commitment.into(),
                top_up_price: p
                    .top_up_price
                    .map(|t| price(t, &p.currency, p.tax_rate, "pricing.topUpPrice"))
                    .transpose()?,
                recurring: p
                    .recurring_price
                    .map(|r| {
                        Ok::<_, ApiError>(catalog::RecurringPrice {
                            quantity: r.quantity.0,
                            price: price(
                                r.price,
                                &p.currency,
                                p.tax_rate,
                                "pricing.recurringPrice",
                            )?,
                        })
                    })
                    .transpose()?,
                min_quantity: p.min_quantity.map(|q| q.0),
                max_quantity: p.max_quantity.map(|q| q.0),
                expiration,
                low_credit_limit,
                mandatory_purchase: p.mandatory_purchase,
                auto_top_up: p.auto_top_up.map(|a| catalog::AutoTopUp {
                    below: a.below.0,
                    quantity: a.quantity.0,
                }),
            })
        }
    };
    Ok(catalog::PlanCreditTerms {
        included,
        pricing,
        usage_alert_percents: usage_alert_percents.map(|p| p.into_iter().map(|p| p.0).collect()),
    })
}

#[derive(InputObject)]
pub struct AttachCreditSystemInput {
    plan: CatalogRef,
    credit_system: CreditSystemRefInput,
    included: Option<IncludedAllowanceInput>,
    pricing: Option<PlanPricingInput>,
    /// Usage-% alert thresholds for subscribers' wallets (each above 0
    /// and at most 1000, at most 10; `[]`: off); null: 75, 90 and 100.
    usage_alert_percents: Option<Vec<ExactDecimal>>,
}

#[derive(InputObject)]
pub struct UpdatePlanCreditInput {
    plan_credit: ID,
    /// Replaces the allowance (null: none).
    included: Option<IncludedAllowanceInput>,
    /// Replaces the pricing (null: none).
    pricing: Option<PlanPricingInput>,
    /// Replaces the usage-% alert thresholds (null: 75, 90 and 100).
    usage_alert_percents: Option<Vec<ExactDecimal>>,
}

#[derive(SimpleObject)]
pub struct PlanCreditPayload {
    plan_credit: PlanCredit,
}

#[derive(InputObject)]
pub struct DetachCreditSystemInput {
    plan: CatalogRef,
    credit_system: CreditSystemRefInput,
}

#[derive(InputObject)]
pub struct SetEntitlementInput {
    plan: CatalogRef,
    feature: CatalogRef,
    /// One of the plan's credit systems.
    credit_system: CreditSystemRefInput,
    /// Credits one unit of the feature costs (e.g. 0.5 per API call).
    credit_cost: Credits,
}

#[derive(SimpleObject)]
pub struct EntitlementPayload {
    entitlement: Entitlement,
}

#[derive(InputObject)]
pub struct RemoveEntitlementInput {
    plan: CatalogRef,
    feature: CatalogRef,
}

// ---------------------------------------------------------------- mutations

#[derive(Default)]
pub struct CatalogMutation;

#[Object]
impl CatalogMutation {
    /// Creates a product (same key and details again: the same product).
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn create_product(
        &self,
        ctx: &Context<'_>,
        input: CreateProductInput,
    ) -> ApiResult<ProductPayload> {
        let (p, app) = app(ctx)?;
        let product = catalog::create_product(
            &app.db,
            app.clock(),
            p.tenant_id,
            &input.key,
            &input.name,
            &input.description,
        )
        .await?;
        Ok(ProductPayload {
            product: Product(product),
        })
    }

    /// Creates a DRAFT plan of a product.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn create_plan(
        &self,
        ctx: &Context<'_>,
        input: CreatePlanInput,
    ) -> ApiResult<PlanPayload> {
        let (p, app) = app(ctx)?;
        let product = input.product.parse(Kind::Product, "product")?;
        let plan = catalog::create_plan_with(
            &app.db,
            app.clock(),
            p.tenant_id,
            &catalog::NewPlan {
                product: &product,
                key: &input.key,
                name: &input.name,
                description: &input.description,
                billing_interval: input.billing_interval.into(),
            },
        )
        .await?;
        Ok(PlanPayload { plan: Plan(plan) })
    }

    /// Renames or redescribes a plan, whatever its status: name and
    /// description are for people, not terms subscribers rely on.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn update_plan(
        &self,
        ctx: &Context<'_>,
        input: UpdatePlanInput,
    ) -> ApiResult<PlanPayload> {
        let (p, app) = app(ctx)?;
        let which = input.plan.parse(Kind::Plan, "plan")?;
        let plan = catalog::update_plan(
            &app.db,
            app.clock(),
            p.tenant_id,
            &which,
            &catalog::PlanChanges {
                name: input.name,
                description: input.description,
            },
        )
        .await?;
        Ok(PlanPayload { plan: Plan(plan) })
    }

    /// DRAFT → PUBLISHED: the plan takes subscriptions and its terms freeze.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn publish_plan(&self, ctx: &Context<'_>, input: PlanInput) -> ApiResult<PlanPayload> {
        let (p, app) = app(ctx)?;
        let which = input.plan.parse(Kind::Plan, "plan")?;
        let plan = catalog::publish_plan(&app.db, app.clock(), p.tenant_id, &which).await?;
        Ok(PlanPayload { plan: Plan(plan) })
    }

    /// → ARCHIVED: no new subscriptions; existing ones go on.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn archive_plan(&self, ctx: &Context<'_>, input: PlanInput) -> ApiResult<PlanPayload> {
        let (p, app) = app(ctx)?;
        let which = input.plan.parse(Kind::Plan, "plan")?;
        let plan = catalog::archive_plan(&app.db, app.clock(), p.tenant_id, &which).await?;
        Ok(PlanPayload { plan: Plan(plan) })
    }

    /// A new DRAFT copying a plan's credits and entitlements: how a
    /// published plan's terms are changed.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn duplicate_plan(
        &self,
        ctx: &Context<'_>,
        input: DuplicatePlanInput,
    ) -> ApiResult<PlanPayload> {
        let (p, app) = app(ctx)?;
        let which = input.plan.parse(Kind::Plan, "plan")?;
        let plan = catalog::duplicate_plan(
            &app.db,
            app.clock(),
            p.tenant_id,
            &which,
            &input.key,
            &input.name,
        )
        .await?;
        Ok(PlanPayload { plan: Plan(plan) })
    }

    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn create_feature(
        &self,
        ctx: &Context<'_>,
        input: CreateFeatureInput,
    ) -> ApiResult<FeaturePayload> {
        let (p, app) = app(ctx)?;
        let feature = catalog::create_feature(
            &app.db,
            app.clock(),
            p.tenant_id,
            &input.key,
            &input.name,
            &input.unit,
        )
        .await?;
        Ok(FeaturePayload {
            feature: Feature(feature),
        })
    }

    /// Adds a credit system to a draft plan: an included allowance, prices,
    /// or both.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn attach_credit_system(
        &self,
        ctx: &Context<'_>,
        input: AttachCreditSystemInput,
    ) -> ApiResult<PlanCreditPayload> {
        let (p, app) = app(ctx)?;
        let plan = input.plan.parse(Kind::Plan, "plan")?;
        let cs = input.credit_system.parse("creditSystem")?;
        let terms = terms(input.included, input.pricing, input.usage_alert_percents)?;
        let pc =
            catalog::attach_credit_system(&app.db, app.clock(), p.tenant_id, &plan, &cs, &terms)
                .await?;
        Ok(PlanCreditPayload {
            plan_credit: PlanCredit(pc),
        })
    }

    /// Replaces a draft plan credit's allowance and prices.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn update_plan_credit(
        &self,
        ctx: &Context<'_>,
        input: UpdatePlanCreditInput,
    ) -> ApiResult<PlanCreditPayload> {
        let (p, app) = app(ctx)?;
        let id = ids::decode_id(&input.plan_credit, "planCredit")?;
        let terms = terms(input.included, input.pricing, input.usage_alert_percents)?;
        let pc = catalog::update_plan_credit(&app.db, app.clock(), p.tenant_id, id, &terms).await?;
        Ok(PlanCreditPayload {
            plan_credit: PlanCredit(pc),
        })
    }

    /// Removes a credit system (and features priced in it) from a draft.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn detach_credit_system(
        &self,
        ctx: &Context<'_>,
        input: DetachCreditSystemInput,
    ) -> ApiResult<PlanPayload> {
        let (p, app) = app(ctx)?;
        let plan = input.plan.parse(Kind::Plan, "plan")?;
        let cs = input.credit_system.parse("creditSystem")?;
        let plan = catalog::detach_credit_system(&app.db, p.tenant_id, &plan, &cs).await?;
        Ok(PlanPayload { plan: Plan(plan) })
    }

    /// Sets what one unit of a feature costs on a draft plan.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn set_entitlement(
        &self,
        ctx: &Context<'_>,
        input: SetEntitlementInput,
    ) -> ApiResult<EntitlementPayload> {
        let (p, app) = app(ctx)?;
        let plan = input.plan.parse(Kind::Plan, "plan")?;
        let feature = input.feature.parse(Kind::Feature, "feature")?;
        let cs = input.credit_system.parse("creditSystem")?;
        let e = catalog::set_entitlement(
            &app.db,
            app.clock(),
            p.tenant_id,
            &plan,
            &feature,
            &cs,
            input.credit_cost.0,
        )
        .await?;
        Ok(EntitlementPayload {
            entitlement: Entitlement(e),
        })
    }

    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn remove_entitlement(
        &self,
        ctx: &Context<'_>,
        input: RemoveEntitlementInput,
    ) -> ApiResult<PlanPayload> {
        let (p, app) = app(ctx)?;
        let plan = input.plan.parse(Kind::Plan, "plan")?;
        let feature = input.feature.parse(Kind::Feature, "feature")?;
        let plan = catalog::remove_entitlement(&app.db, p.tenant_id, &plan, &feature).await?;
        Ok(PlanPayload { plan: Plan(plan) })
    }
}
