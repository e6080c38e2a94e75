//! Subscriptions, metered usage and top-up purchases.

use async_graphql::{Context, Enum, ID, InputObject, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};
use service::ids::{CreditSystemId, EntryId};
use service::{
    api_keys::Role,
    entitlements, payments, pricing,
    purchases::{self, TopUpOrder as Order},
    subscriptions::{self, Subscription as Sub},
};

use super::{
    catalog::{self, CatalogRef, Plan, PlanPricingInput},
    context::{RoleGuard, app, load, loaders},
    credit_systems::{self, CreditSystem},
    customers::{self, Customer},
    error::{ApiError, ApiResult},
    ids::{self, Kind},
    ledger::{Grant, LedgerEntry},
    loaders::{EntryKey, GrantKey, PlanKey},
    pagination::{self, Conn},
    refs::{CreditSystemRefInput, CustomerRefInput},
    scalars::{Credits, ExactDecimal},
};

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "service::subscriptions::SubscriptionStatus")]
pub enum SubscriptionStatus {
    /// Starts in the future.
    Scheduled,
    Active,
    Canceled,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "service::purchases::OrderStatus")]
pub enum TopUpOrderStatus {
    /// Waiting for its payment (24 hours).
    Pending,
    /// Paid: the credits were granted.
    Paid,
    Failed,
    /// Not paid within 24 hours.
    Expired,
    /// Paid, then refunded: refunds asked for its whole quantity.
    Refunded,
    /// Paid, then refunded in part (`refundTopUpOrder` may refund the rest).
    PartiallyRefunded,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "service::entitlements::DenyReason")]
pub enum EntitlementDenyReason {
    /// No active plan of the customer includes the feature.
    NotEntitled,
    /// The plan needs a paid top-up first.
    PurchaseRequired,
    InsufficientCredits,
    /// It would go below the plan's BLOCK low-credit limit.
    LowCreditLimit,
}

/// A customer on a plan.
pub struct Subscription(pub Sub);

impl Subscription {
    /// The instant status and period are read at: the write's own now on
    /// a write's answer (the request's `now` is taken before the write's),
    /// else the request's.
    fn now(&self, ctx: &Context<'_>) -> ApiResult<DateTime<Utc>> {
        Ok(self.0.read_at(loaders(ctx)?.now()))
    }
}

#[Object]
impl Subscription {
    async fn id(&self) -> ID {
        ids::encode_id(self.0.id)
    }
    async fn customer(&self, ctx: &Context<'_>) -> ApiResult<Option<Customer>> {
        customers::customer(ctx, self.0.customer_id).await
    }
    async fn plan(&self, ctx: &Context<'_>) -> ApiResult<Option<Plan>> {
        Ok(load(ctx, PlanKey(self.0.plan_id)).await?.map(Plan))
    }
    /// As of now (in a `subscribe` or `cancelSubscription` payload: as of
    /// the write, i.e. what a read right after says).
    async fn status(&self, ctx: &Context<'_>) -> ApiResult<SubscriptionStatus> {
        Ok(self.0.status_at(self.now(ctx)?).into())
    }
    /// Billing periods are counted from here (month ends clamp).
    async fn billing_anchor(&self) -> DateTime<Utc> {
        self.0.billing_anchor
    }
    async fn started_at(&self) -> DateTime<Utc> {
        self.0.started_at
    }
    /// The billing period containing now.
    async fn current_period_start(&self, ctx: &Context<'_>) -> ApiResult<DateTime<Utc>> {
        Ok(self.0.period_at(self.now(ctx)?).0)
    }
    async fn current_period_end(&self, ctx: &Context<'_>) -> ApiResult<DateTime<Utc>> {
        Ok(self.0.period_at(self.now(ctx)?).1)
    }
    async fn cancel_at(&self) -> Option<DateTime<Utc>> {
        self.0.cancel_at
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

#[derive(SimpleObject)]
pub struct TopUpQuoteLine {
    /// Index into the price's tiers.
    tier: i32,
    quantity: ExactDecimal,
    unit_amount: ExactDecimal,
    amount: ExactDecimal,
}

/// What a quantity of credits costs (money in the price's currency,
/// rounded half-up to its minor units).
#[derive(SimpleObject)]
pub struct TopUpQuote {
    quantity: Credits,
    subtotal: ExactDecimal,
    tax: ExactDecimal,
    total: ExactDecimal,
    currency: String,
    /// `subtotal ÷ quantity`, 6 places.
    unit_price: ExactDecimal,
    lines: Vec<TopUpQuoteLine>,
}

impl From<pricing::Quote> for TopUpQuote {
    fn from(q: pricing::Quote) -> Self {
        TopUpQuote {
            quantity: Credits(q.quantity),
            subtotal: ExactDecimal(q.subtotal),
            tax: ExactDecimal(q.tax),
            total: ExactDecimal(q.total),
            currency: q.currency,
            unit_price: ExactDecimal(q.unit_price),
            lines: q
                .lines
                .into_iter()
                .map(|l| TopUpQuoteLine {
                    tier: i32::try_from(l.tier).unwrap_or(i32::MAX),
                    quantity: ExactDecimal(l.quantity),
                    unit_amount: ExactDecimal(l.unit_amount),
                    amount: ExactDecimal(l.amount),
                })
                .collect(),
        }
    }
}

/// A purchase of credits.
pub struct TopUpOrder(pub Order);

#[Object]
impl TopUpOrder {
    async fn id(&self) -> ID {
        ids::encode_id(self.0.id)
    }
    async fn customer(&self, ctx: &Context<'_>) -> ApiResult<Option<Customer>> {
        customers::customer(ctx, self.0.customer_id).await
    }
    async fn credit_system(&self, ctx: &Context<'_>) -> ApiResult<Option<CreditSystem>> {
        credit_systems::credit_system(ctx, self.0.credit_system_id).await
    }
    async fn quantity(&self) -> Credits {
        Credits(self.0.quantity)
    }
    async fn quote(&self) -> TopUpQuote {
        self.0.quote.clone().into()
    }
    /// As of now: a pending order past its 24 hours reads `EXPIRED`.
    async fn status(&self, ctx: &Context<'_>) -> ApiResult<TopUpOrderStatus> {
        Ok(self.0.status_at(loaders(ctx)?.now()).into())
    }
    async fn gateway(&self) -> Option<&str> {
        self.0.gateway.as_deref()
    }
    async fn payment_id(&self) -> Option<&str> {
        self.0.payment_id.as_deref()
    }
    async fn paid_at(&self) -> Option<DateTime<Utc>> {
        self.0.paid_at
    }
    async fn failure_reason(&self) -> Option<&str> {
        self.0.failure_reason.as_deref()
    }
    /// The PURCHASED grant a paid order made.
    async fn grant(&self, ctx: &Context<'_>) -> ApiResult<Option<Grant>> {
        match self.0.grant_id {
            Some(id) => Ok(load(ctx, GrantKey(id)).await?.map(Grant)),
            None => Ok(None),
        }
    }
    /// Created by auto top-up rather than a purchase request.
    async fn automatic(&self) -> bool {
        self.0.automatic
    }
    async fn expires_at(&self) -> DateTime<Utc> {
        self.0.expires_at
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// Credits taken back by `refundTopUpOrder` so far.
    async fn refunded_quantity(&self) -> Credits {
        Credits(self.0.refunded_quantity)
    }
    /// Money refunded so far: `total × refundedQuantity ÷ quantity`,
    /// rounded half-up to the currency's minor units.
    async fn refunded_amount(&self) -> ExactDecimal {
        ExactDecimal(self.0.refunded_amount)
    }
    /// Set when a payment provider reported a payment for this order whose
    /// amount or currency is not the quote's: nothing was granted, and the
    /// order kept its status. Someone should look at it.
    async fn payment_issue(&self) -> Option<&str> {
        self.0.payment_issue.as_deref()
    }
}

/// One refund of a top-up order.
pub struct TopUpRefund(pub purchases::OrderRefund);

#[Object]
impl TopUpRefund {
    async fn id(&self) -> ID {
        ids::encode(Kind::Refund, self.0.id)
    }
    /// Credits this refund asked for.
    async fn quantity(&self) -> Credits {
        Credits(self.0.quantity)
    }
    /// Credits taken back from the order's grant (a VOID entry).
    async fn refunded_quantity(&self) -> Credits {
        Credits(self.0.refunded)
    }
    /// Credits asked for that could not be taken back: spent, expired or
    /// voided already.
    async fn not_refundable_quantity(&self) -> Credits {
        Credits(self.0.not_refundable)
    }
    /// Money this refund stands for, in `currency` (see
    /// `TopUpOrder.refundedAmount`): pay it back at your gateway.
    async fn amount(&self) -> ExactDecimal {
        ExactDecimal(self.0.amount)
    }
    async fn currency(&self) -> &str {
        &self.0.currency
    }
    async fn reason(&self) -> &str {
        &self.0.reason
    }
    /// The VOID entry that took the credits back; null when none could be.
    async fn entry(&self, ctx: &Context<'_>) -> ApiResult<Option<LedgerEntry>> {
        match self.0.entry_id {
            Some(id) => Ok(load(ctx, EntryKey(EntryId::from_uuid(id)))
                .await?
                .map(LedgerEntry)),
            None => Ok(None),
        }
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "service::payments::Provider")]
pub enum PaymentProvider {
    Stripe,
    #[graphql(name = "MERCADOPAGO")]
    MercadoPago,
}

/// Where a payment provider sends its notifications for this tenant
/// (README "Taking payments"). Its secrets are never shown.
pub struct PaymentIntake(pub payments::Intake);

#[Object]
impl PaymentIntake {
    async fn provider(&self) -> PaymentProvider {
        self.0.provider.into()
    }
    /// `/payments/<provider>/<intake id>`: give the provider this path on
    /// the API's public origin (`https://credits.example.com/payments/…`).
    /// The intake id names the tenant and is unguessable; the provider's
    /// signature is what proves a notification.
    async fn path(&self) -> &str {
        &self.0.path
    }
    /// Whether an API access token is set (Mercado Pago).
    async fn has_access_token(&self) -> bool {
        self.0.has_access_token
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

/// Whether usage would be allowed now, and what it would cost.
#[derive(SimpleObject)]
pub struct EntitlementCheck {
    allowed: bool,
    /// Credits the quantity would cost.
    credit_cost: Option<Credits>,
    credit_system: Option<CreditSystem>,
    available: Option<Credits>,
    /// Why not, when not allowed.
    reason: Option<EntitlementDenyReason>,
}

#[derive(Default)]
pub struct CommerceQuery;

#[Object]
impl CommerceQuery {
    async fn subscription(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Subscription> {
        let (p, app) = app(ctx)?;
        let id = ids::decode_id(&id, "id")?;
        Ok(Subscription(
            subscriptions::get(&app.db, p.tenant_id, id).await?,
        ))
    }

    /// What `quantity` credits would cost (no side effects; any key may
    /// quote). Give exactly one of:
    ///
    /// - `customer`: the price of the customer's plan now — what
    ///   `purchaseCredits` would charge;
    /// - `pricing`: an unsaved plan credit's pricing, the same input as
    ///   `attachCreditSystem`'s (a price editor's preview): its top-up
    ///   price, tax rate, currency and min/max quantity, through the same
    ///   arithmetic. At most 100 tiers; the quantity is checked against
    ///   `creditSystem`'s precision.
    ///
    /// Both, or neither: `VALIDATION` on `pricing`. A bad pricing is
    /// refused with the field at fault (`pricing.topUpPrice.tiers[1]`,
    /// `pricing.maxQuantity`, …).
    async fn quote_top_up(
        &self,
        ctx: &Context<'_>,
        customer: Option<CustomerRefInput>,
        credit_system: CreditSystemRefInput,
        quantity: Credits,
        pricing: Option<PlanPricingInput>,
    ) -> ApiResult<TopUpQuote> {
        let (p, app) = app(ctx)?;
        let credit_system = credit_system.parse("creditSystem")?;
        let quote = match (customer, pricing) {
            (Some(customer), None) => {
                purchases::quote_top_up(
                    &app.db,
                    app.clock(),
                    p.tenant_id,
                    &customer.parse("customer")?,
                    &credit_system,
                    quantity.0,
                )
                .await?
            }
            (None, Some(pricing)) => {
                let pricing = catalog::terms(None, Some(pricing), None)?
                    .pricing
                    .ok_or_else(|| ApiError::invalid("pricing", "no pricing given"))?;
                purchases::quote_pricing(&app.db, p.tenant_id, &credit_system, &pricing, quantity.0)
                    .await?
            }
            _ => {
                return Err(ApiError::invalid(
                    "pricing",
                    "give either customer (the price of their plan) or pricing (a price to preview), not both",
                ));
            }
        };
        Ok(quote.into())
    }

    /// The tenant's payment-provider intakes (`setPaymentProvider`).
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn payment_providers(&self, ctx: &Context<'_>) -> ApiResult<Vec<PaymentIntake>> {
        let (p, app) = app(ctx)?;
        Ok(payments::intakes(&app.db, p.tenant_id)
            .await?
            .into_iter()
            .map(PaymentIntake)
            .collect())
    }

    async fn top_up_order(&self, ctx: &Context<'_>, id: ID) -> ApiResult<TopUpOrder> {
        let (p, app) = app(ctx)?;
        let id = ids::decode_id(&id, "id")?;
        Ok(TopUpOrder(purchases::get(&app.db, p.tenant_id, id).await?))
    }

    /// Top-up orders, newest first.
    #[graphql(complexity = "crate::graphql::limits::list_cost(first, child_complexity)")]
    async fn top_up_orders(
        &self,
        ctx: &Context<'_>,
        customer: Option<CustomerRefInput>,
        status: Option<TopUpOrderStatus>,
        first: Option<i32>,
        after: Option<String>,
    ) -> ApiResult<Conn<TopUpOrder>> {
        let (p, app) = app(ctx)?;
        let page = pagination::page_request(first, after)?;
        let customer = customer.map(|c| c.parse("customer")).transpose()?;
        let found = purchases::list(
            &app.db,
            app.clock(),
            p.tenant_id,
            customer.as_ref(),
            status.map(Into::into),
            page,
        )
        .await?;
        Ok(pagination::connection(found, |o| o.id.uuid(), TopUpOrder))
    }

    /// Whether `quantity` units of a feature could be used now, and at
    /// what cost: for a frontend deciding whether to show a button.
    async fn check_entitlement(
        &self,
        ctx: &Context<'_>,
        customer: CustomerRefInput,
        feature: CatalogRef,
        #[graphql(default_with = "ExactDecimal(rust_decimal::Decimal::ONE)")]
        quantity: ExactDecimal,
    ) -> ApiResult<EntitlementCheck> {
        let (p, app) = app(ctx)?;
        let check = entitlements::check_entitlement(
            &app.db,
            app.clock(),
            p.tenant_id,
            &customer.parse("customer")?,
            &feature_ref(&feature)?,
            quantity.0,
        )
        .await?;
        let credit_system = match check.credit_system_id {
            Some(id) => credit_systems::credit_system(ctx, CreditSystemId::from_uuid(id)).await?,
            None => None,
        };
        Ok(EntitlementCheck {
            allowed: check.allowed,
            credit_cost: check.credit_cost.map(Credits),
            credit_system,
            available: check.available.map(Credits),
            reason: check.reason.map(Into::into),
        })
    }
}

fn feature_ref(feature: &CatalogRef) -> ApiResult<service::catalog::Ref> {
    feature.parse(Kind::Feature, "feature")
}

#[derive(InputObject)]
pub struct SubscribeInput {
    customer: CustomerRefInput,
    plan: CatalogRef,
    /// Default: now. Periods are anchored here.
    start_at: Option<DateTime<Utc>>,
    idempotency_key: String,
}

#[derive(SimpleObject)]
pub struct SubscribePayload {
    subscription: Subscription,
    /// The first allowance grant of each credit system the plan includes.
    grants: Vec<Grant>,
}

#[derive(InputObject)]
pub struct CancelSubscriptionInput {
    subscription: ID,
    /// Default: now.
    at: Option<DateTime<Utc>>,
}

#[derive(SimpleObject)]
pub struct SubscriptionPayload {
    subscription: Subscription,
}

#[derive(InputObject)]
pub struct TrackUsageInput {
    customer: CustomerRefInput,
    feature: CatalogRef,
    /// Units of the feature used (up to 6 decimal places).
    quantity: ExactDecimal,
    idempotency_key: String,
    event_ref: Option<String>,
    user_ref: Option<String>,
    dimensions: Option<Json<serde_json::Value>>,
    description: Option<String>,
}

#[derive(SimpleObject)]
pub struct TrackUsagePayload {
    /// The USAGE entry, with `feature` and `quantity`.
    entry: LedgerEntry,
}

#[derive(InputObject)]
pub struct PurchaseCreditsInput {
    customer: CustomerRefInput,
    credit_system: CreditSystemRefInput,
    quantity: Credits,
    idempotency_key: String,
}

#[derive(SimpleObject)]
pub struct TopUpOrderPayload {
    order: TopUpOrder,
}

#[derive(InputObject)]
pub struct ConfirmTopUpPaymentInput {
    order: ID,
    /// Which gateway took the payment (`stripe`, `barion`, …).
    gateway: String,
    /// The gateway's id for the payment.
    payment_id: String,
    /// Default: now.
    paid_at: Option<DateTime<Utc>>,
}

#[derive(InputObject)]
pub struct FailTopUpPaymentInput {
    order: ID,
    reason: String,
}

#[derive(InputObject)]
pub struct RefundTopUpOrderInput {
    /// A PAID or PARTIALLY_REFUNDED order.
    order: ID,
    /// Credits to refund. Default: all that is left to refund of the order.
    quantity: Option<Credits>,
    reason: String,
    idempotency_key: String,
}

#[derive(SimpleObject)]
pub struct RefundTopUpOrderPayload {
    /// The order as it is now.
    order: TopUpOrder,
    refund: TopUpRefund,
}

#[derive(InputObject)]
pub struct SetPaymentProviderInput {
    provider: PaymentProvider,
    /// Stripe: the webhook endpoint's signing secret (`whsec_…`); Mercado
    /// Pago: the webhook secret ("Your integrations" → Webhooks). Stored
    /// sealed, never shown again.
    secret: String,
    /// Mercado Pago only: the access token the engine fetches notified
    /// payments with. Stored sealed.
    access_token: Option<String>,
}

#[derive(SimpleObject)]
pub struct SetPaymentProviderPayload {
    intake: PaymentIntake,
}

#[derive(Default)]
pub struct CommerceMutation;

#[Object]
impl CommerceMutation {
    /// Puts a customer on a published plan: creates the plan's wallets and
    /// grants the first allowance period.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn subscribe(
        &self,
        ctx: &Context<'_>,
        input: SubscribeInput,
    ) -> ApiResult<SubscribePayload> {
        let (p, app) = app(ctx)?;
        let plan = input.plan.parse(Kind::Plan, "plan")?;
        let out = subscriptions::subscribe(
            &app.db,
            app.clock(),
            p.tenant_id,
            &subscriptions::SubscribeInput {
                customer: input.customer.parse("customer")?,
                plan,
                start_at: input.start_at,
                idempotency_key: input.idempotency_key,
            },
        )
        .await?;
        Ok(SubscribePayload {
            subscription: Subscription(out.subscription),
            grants: out.grants.into_iter().map(Grant).collect(),
        })
    }

    /// Ends a subscription (now, or at a later instant). Granted credits
    /// live out their own expiry. To change plan today: cancel, subscribe.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn cancel_subscription(
        &self,
        ctx: &Context<'_>,
        input: CancelSubscriptionInput,
    ) -> ApiResult<SubscriptionPayload> {
        let (p, app) = app(ctx)?;
        let id = ids::decode_id(&input.subscription, "subscription")?;
        let sub = subscriptions::cancel(&app.db, app.clock(), p.tenant_id, id, input.at).await?;
        Ok(SubscriptionPayload {
            subscription: Subscription(sub),
        })
    }

    /// Meters usage of a feature: consumes `quantity × creditCost` of the
    /// customer's plan (`FEATURE_NOT_ENTITLED` without one).
    #[graphql(guard = "RoleGuard(Role::Write)")]
    async fn track_usage(
        &self,
        ctx: &Context<'_>,
        input: TrackUsageInput,
    ) -> ApiResult<TrackUsagePayload> {
        let (p, app) = app(ctx)?;
        let out = entitlements::track_usage(
            &app.db,
            app.clock(),
            p.tenant_id,
            &entitlements::TrackUsageInput {
                customer: input.customer.parse("customer")?,
                feature: feature_ref(&input.feature)?,
                quantity: input.quantity.0,
                idempotency_key: input.idempotency_key,
                event_ref: input.event_ref,
                user_ref: input.user_ref,
                dimensions: input.dimensions.map(|d| d.0),
                description: input.description,
            },
        )
        .await?;
        Ok(TrackUsagePayload {
            entry: LedgerEntry(out.entry),
        })
    }

    /// Creates a PENDING top-up order at the current quote. Pay it at any
    /// gateway, then `confirmTopUpPayment`.
    #[graphql(guard = "RoleGuard(Role::Write)")]
    async fn purchase_credits(
        &self,
        ctx: &Context<'_>,
        input: PurchaseCreditsInput,
    ) -> ApiResult<TopUpOrderPayload> {
        let (p, app) = app(ctx)?;
        let order = purchases::purchase(
            &app.db,
            app.clock(),
            p.tenant_id,
            &input.customer.parse("customer")?,
            &input.credit_system.parse("creditSystem")?,
            input.quantity.0,
            &input.idempotency_key,
        )
        .await?;
        Ok(TopUpOrderPayload {
            order: TopUpOrder(order),
        })
    }

    /// Marks an order PAID and grants its credits, in one transaction.
    /// Confirming again with the same payment id grants nothing more.
    /// ADMIN only: recording a payment mints credits, which a WRITE key
    /// (usage, purchases, holds) must not be able to do.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn confirm_top_up_payment(
        &self,
        ctx: &Context<'_>,
        input: ConfirmTopUpPaymentInput,
    ) -> ApiResult<TopUpOrderPayload> {
        let (p, app) = app(ctx)?;
        let id = ids::decode_id(&input.order, "order")?;
        let order = purchases::confirm_payment(
            &app.db,
            app.clock(),
            p.tenant_id,
            id,
            &input.gateway,
            &input.payment_id,
            input.paid_at,
        )
        .await?;
        Ok(TopUpOrderPayload {
            order: TopUpOrder(order),
        })
    }

    /// Refunds a paid order: takes back up to `quantity` of what remains of
    /// its grant (never more; `notRefundableQuantity` says what was spent
    /// already), marks it REFUNDED or PARTIALLY_REFUNDED and emits
    /// `topup.refunded`. `refund.amount` is the money to pay back, pro
    /// rata. ADMIN only, like confirming a payment.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn refund_top_up_order(
        &self,
        ctx: &Context<'_>,
        input: RefundTopUpOrderInput,
    ) -> ApiResult<RefundTopUpOrderPayload> {
        let (p, app) = app(ctx)?;
        let id = ids::decode_id(&input.order, "order")?;
        let out = purchases::refund_order(
            &app.db,
            app.clock(),
            p.tenant_id,
            id,
            input.quantity.map(|q| q.0),
            &input.reason,
            &input.idempotency_key,
        )
        .await?;
        Ok(RefundTopUpOrderPayload {
            order: TopUpOrder(out.order),
            refund: TopUpRefund(out.refund),
        })
    }

    /// Sets a payment provider's secrets and returns the tenant's intake
    /// for it: the path the provider must notify. The first call makes the
    /// intake; later calls replace the secrets and keep the path.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn set_payment_provider(
        &self,
        ctx: &Context<'_>,
        input: SetPaymentProviderInput,
    ) -> ApiResult<SetPaymentProviderPayload> {
        let (p, app) = app(ctx)?;
        let intake = payments::set_provider(
            &app.db,
            app.clock(),
            p.tenant_id,
            input.provider.into(),
            &input.secret,
            input.access_token.as_deref(),
        )
        .await?;
        Ok(SetPaymentProviderPayload {
            intake: PaymentIntake(intake),
        })
    }

    /// Marks a pending order FAILED (ADMIN, like confirming).
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn fail_top_up_payment(
        &self,
        ctx: &Context<'_>,
        input: FailTopUpPaymentInput,
    ) -> ApiResult<TopUpOrderPayload> {
        let (p, app) = app(ctx)?;
        let id = ids::decode_id(&input.order, "order")?;
        let order =
            purchases::fail_payment(&app.db, app.clock(), p.tenant_id, id, &input.reason).await?;
        Ok(TopUpOrderPayload {
            order: TopUpOrder(order),
        })
    }
}
