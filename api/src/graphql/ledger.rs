//! Wallets, balances, grants, entries and holds: reads batched through the
//! request's loaders, writes as one service call each.

use async_graphql::{Context, Enum, ID, InputObject, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use service::ids::{EntryId, GrantId, HoldId, OrderId, WalletId};
use service::{
    api_keys::Role,
    input,
    ledger::{self, Attribution, read},
    notifications::{payloads, usage},
};

use super::{
    context::{RoleGuard, app, load, loaders},
    credit_systems::{self, CreditSystem},
    customers::{self, Customer},
    error::{ApiError, ApiResult},
    ids,
    loaders::{
        BalanceAtKey, BalanceKey, CounterpartyKey, EntryKey, EntryPageKey, EntryPageWithSplitsKey,
        ExpiringKey, GrantKey, GrantPageKey, HoldKey, InheritedUsageAlertsKey, SplitsKey,
        WalletKey,
    },
    pagination::{self, Conn},
    refs::{CreditSystemRefInput, CustomerRefInput, wallet_ref},
    scalars::{Credits, ExactDecimal},
};

/// The longest look-ahead `expiringSoon` accepts.
const EXPIRING_DAYS_MAX: i32 = 3660;

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "service::ledger::EntryType")]
pub enum EntryType {
    /// Credits granted (a new grant).
    Grant,
    /// Credits spent.
    Usage,
    /// What was left of a grant at its expiry.
    Expiry,
    /// What was left of a grant when it was voided.
    Void,
    /// Spent credits given back.
    Refund,
    /// An ADMIN's correction.
    Adjustment,
    /// Credits moved to a descendant customer.
    TransferOut,
    /// Credits received from an ancestor customer.
    TransferIn,
    /// Credits reserved by a hold.
    Hold,
    /// Reserved credits returned.
    Release,
    /// Credits applied to an invoice.
    Invoice,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "service::ledger::Category")]
pub enum GrantCategory {
    Promotional,
    Admin,
    Purchased,
    Included,
    Refund,
    Transfer,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "service::ledger::HoldStatus")]
pub enum HoldStatus {
    /// Reserving credits until `expiresAt`.
    Active,
    /// Settled by a capture.
    Captured,
    /// Returned (by a release, or at its deadline).
    Released,
}

fn credits(d: Decimal) -> Credits {
    Credits(d)
}

// ---------------------------------------------------------------- Wallet

/// A wallet's usage-% alert thresholds in force (see README "Usage
/// alerts").
#[derive(SimpleObject)]
pub struct UsageAlerts {
    /// Ascending; empty: alerts are off.
    percents: Vec<ExactDecimal>,
    source: UsageAlertSource,
}

/// Where a wallet's usage-% alert thresholds come from.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum UsageAlertSource {
    /// Its own (`configureWallet(usageAlertPercents)`).
    Wallet,
    /// Its customer's active plans' (`PlanCredit.usageAlertPercents`; the
    /// lowest list when several plans set one).
    Plan,
    /// 75, 90 and 100.
    Default,
}

impl From<usage::Settings> for UsageAlerts {
    fn from(s: usage::Settings) -> Self {
        Self {
            percents: s.percents.into_iter().map(ExactDecimal).collect(),
            source: match s.source {
                usage::Source::Wallet => UsageAlertSource::Wallet,
                usage::Source::Plan => UsageAlertSource::Plan,
                usage::Source::Default => UsageAlertSource::Default,
            },
        }
    }
}

/// A customer's balance in one credit system, with its credit system when
/// it was read with the wallet ([`super::loaders::WalletsWithCreditSystems`]).
pub struct Wallet(
    pub ledger::Wallet,
    pub Option<service::credit_systems::CreditSystem>,
);

impl Wallet {
    pub fn new(wallet: ledger::Wallet) -> Self {
        Self(wallet, None)
    }
}

#[Object]
impl Wallet {
    async fn id(&self) -> ID {
        ids::encode_id(self.0.id)
    }
    async fn customer(&self, ctx: &Context<'_>) -> ApiResult<Option<Customer>> {
        customers::customer(ctx, self.0.customer_id).await
    }
    async fn credit_system(&self, ctx: &Context<'_>) -> ApiResult<Option<CreditSystem>> {
        match &self.1 {
            Some(cs) => Ok(Some(CreditSystem(cs.clone()))),
            None => credit_systems::credit_system(ctx, self.0.credit_system_id).await,
        }
    }
    /// Whether spending may go below zero (the next grant repays it first).
    async fn allow_overage(&self) -> bool {
        self.0.allow_overage
    }
    /// Below this available balance the customer is told (notifications).
    async fn low_balance_threshold(&self) -> Option<Credits> {
        self.0.low_balance_threshold.map(credits)
    }
    /// The wallet's own usage-% alert thresholds (`[]`: alerts off); null:
    /// those of its plan credit, else 75, 90 and 100. Usage % is what was
    /// used of the credits granted to the wallet now (see README "Usage
    /// alerts").
    async fn usage_alert_percents(&self) -> ApiResult<Option<Vec<ExactDecimal>>> {
        Ok(self
            .0
            .usage_alert_percents()
            .map_err(ledger::Error::from)?
            .map(|p| p.into_iter().map(ExactDecimal).collect()))
    }
    /// The usage-% alert thresholds in force, and where they come from:
    /// the wallet's own, else its plan credit's, else the default.
    async fn usage_alerts(&self, ctx: &Context<'_>) -> ApiResult<UsageAlerts> {
        if let Some(own) = self.0.usage_alert_percents().map_err(ledger::Error::from)? {
            return Ok(UsageAlerts::from(usage::effective(Some(own), &[])));
        }
        let key = InheritedUsageAlertsKey(self.0.customer_id, self.0.credit_system_id);
        let settings = load(ctx, key)
            .await?
            .unwrap_or_else(|| usage::effective(None, &[]));
        Ok(UsageAlerts::from(settings))
    }
    /// The balance now, computed from grants and holds (right even before
    /// any expiry sweep has run).
    async fn balance(&self, ctx: &Context<'_>) -> ApiResult<Balance> {
        // `expiringSoon` is read with the balance when the query asks it
        // for one valid number of days (else by its own loader).
        let days = expiring_days(ctx);
        let (balance, expiring) = load(ctx, BalanceKey(self.0.id, days))
            .await?
            .unwrap_or_default();
        Ok(Balance::new(
            self.0.id,
            balance,
            days.map(|d| (d, expiring)),
        ))
    }
    /// The ledger's balance as of a past instant: the `balanceAfter` of the
    /// last entry at or before `at`.
    async fn balance_at(&self, ctx: &Context<'_>, at: DateTime<Utc>) -> ApiResult<Credits> {
        let at = input::time("at", at)?;
        Ok(credits(
            load(ctx, BalanceAtKey(self.0.id, at))
                .await?
                .unwrap_or_default(),
        ))
    }
    /// The wallet's grants, newest first.
    #[graphql(complexity = "crate::graphql::limits::list_cost(first, child_complexity)")]
    async fn grants(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<GrantFilter>,
    ) -> ApiResult<Conn<Grant>> {
        let page = pagination::page_request(first, after)?;
        let filter = filter
            .map(|f| read::GrantFilter {
                live: f.live,
                categories: f
                    .categories
                    .map(|c| c.into_iter().map(Into::into).collect()),
            })
            .unwrap_or_default();
        let found = load(ctx, GrantPageKey(self.0.id, filter, page))
            .await?
            .unwrap_or_else(|| page.finish(Vec::new()));
        Ok(pagination::connection(found, |g| g.id.uuid(), Grant))
    }
    /// The wallet's ledger, newest first.
    #[graphql(complexity = "crate::graphql::limits::list_cost(first, child_complexity)")]
    async fn entries(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<EntryFilter>,
    ) -> ApiResult<Conn<LedgerEntry>> {
        let page = pagination::page_request(first, after)?;
        let filter = filter
            .map(EntryFilter::parse)
            .transpose()?
            .unwrap_or_default();
        let splits = ctx
            .look_ahead()
            .field("edges")
            .field("node")
            .field("splits");
        if !splits.exists() {
            let found = load(ctx, EntryPageKey(self.0.id, filter, page))
                .await?
                .unwrap_or_else(|| page.finish(Vec::new()));
            return Ok(pagination::connection(found, |e| e.id.uuid(), LedgerEntry));
        }
        // The splits and their grants in the page's statement.
        let found = load(ctx, EntryPageWithSplitsKey(self.0.id, filter, page))
            .await?
            .unwrap_or_else(|| page.finish(Vec::new()));
        let loaders = loaders(ctx)?;
        let mut entries = Vec::with_capacity(found.items.len());
        let mut splits = Vec::with_capacity(found.items.len());
        for (entry, s) in found.items {
            splits.push((entry.id.uuid(), s));
            entries.push(entry);
        }
        loaders.prime_splits(splits);
        let found = service::pagination::Page {
            items: entries,
            has_next_page: found.has_next_page,
        };
        Ok(pagination::connection(found, |e| e.id.uuid(), LedgerEntry))
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// Which grants to list.
#[derive(InputObject, Default)]
pub struct GrantFilter {
    /// `true`: only grants spendable now; `false`: only the others (spent,
    /// expired, voided, not yet effective).
    live: Option<bool>,
    /// Only grants of these categories, e.g. `[PURCHASED]` for a purchase
    /// history.
    categories: Option<Vec<GrantCategory>>,
}

/// Which entries to list.
#[derive(InputObject, Default)]
pub struct EntryFilter {
    types: Option<Vec<EntryType>>,
    /// Entries at or after this instant.
    from: Option<DateTime<Utc>>,
    /// Entries before this instant.
    to: Option<DateTime<Utc>>,
    feature: Option<String>,
    event_ref: Option<String>,
    user_ref: Option<String>,
}

impl EntryFilter {
    fn parse(self) -> ApiResult<read::EntryFilter> {
        let from = input::time_opt("filter.from", self.from)?;
        let to = input::time_opt("filter.to", self.to)?;
        if let (Some(from), Some(to)) = (from, to)
            && from >= to
        {
            return Err(ApiError::invalid("filter.to", "must be after `from`"));
        }
        let key = |field: &str, v: Option<String>| v.map(|v| input::key(field, &v)).transpose();
        Ok(read::EntryFilter {
            types: self.types.map(|t| t.into_iter().map(Into::into).collect()),
            from,
            to,
            feature: key("filter.feature", self.feature)?,
            event_ref: key("filter.eventRef", self.event_ref)?,
            user_ref: key("filter.userRef", self.user_ref)?,
        })
    }
}

// A wallet's balance as of the request's instant (no description in the
// schema): `included + purchased + promotional + admin + refund + transfer
// − debt = available`, always: one part per grant category.
//
// Plain data: every part is read with the balance, so only `expiringSoon`
// (an argument) has a resolver of its own.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Balance {
    /// What can be spent now: the parts by category (`included`,
    /// `purchased`, `promotional`, `admin`, `refund`, `transfer`) less
    /// `debt`.
    available: Credits,
    /// Reserved by active holds.
    pending: Credits,
    /// `available + pending`.
    total: Credits,
    /// Part of `available`: live credits from plan allowances (INCLUDED
    /// grants). Each part counts what holds past their deadline return to
    /// its grants.
    included: Credits,
    /// Part of `available`: live credits bought (PURCHASED grants).
    purchased: Credits,
    /// Part of `available`: live promotional credits (PROMOTIONAL grants).
    promotional: Credits,
    /// Part of `available`: live credits an admin granted (ADMIN grants,
    /// `adjustBalance` up included).
    admin: Credits,
    /// Part of `available`: live refunded credits (REFUND grants).
    refund: Credits,
    /// Part of `available`: live credits received from an ancestor
    /// (TRANSFER grants, `allocateCredits`).
    transfer: Credits,
    /// Granted with a future `effectiveAt`: not spendable yet.
    scheduled: Credits,
    /// Overage not yet repaid (only with `allowOverage`): subtracted from
    /// the parts to give `available`.
    debt: Credits,
    #[graphql(skip)]
    wallet_id: WalletId,
    /// `expiringSoon` for these days, read with the balance.
    #[graphql(skip)]
    expiring: Option<(i64, Decimal)>,
}

impl Balance {
    fn new(wallet_id: WalletId, b: ledger::Balance, expiring: Option<(i64, Decimal)>) -> Self {
        Self {
            available: credits(b.available),
            pending: credits(b.pending),
            total: credits(b.total),
            included: credits(b.included),
            purchased: credits(b.purchased),
            promotional: credits(b.promotional),
            admin: credits(b.admin),
            refund: credits(b.refund),
            transfer: credits(b.transfer),
            scheduled: credits(b.scheduled),
            debt: credits(b.debt),
            wallet_id,
            expiring,
        }
    }
}

/// The days of the `expiringSoon` under the current `balance` field, when
/// every one asks for the same valid number.
fn expiring_days(ctx: &Context<'_>) -> Option<i64> {
    let mut days = None;
    for field in ctx.look_ahead().field("expiringSoon").selection_fields() {
        let args = field.arguments().ok()?;
        let (_, value) = args.iter().find(|(name, _)| name.as_str() == "days")?;
        let d = match value {
            async_graphql::Value::Number(n) => n.as_i64()?,
            _ => return None,
        };
        if !(1..=i64::from(EXPIRING_DAYS_MAX)).contains(&d) || days.is_some_and(|x| x != d) {
            return None;
        }
        days = Some(d);
    }
    days
}

#[async_graphql::ComplexObject]
impl Balance {
    /// Live credits that expire within `days` days from now.
    async fn expiring_soon(&self, ctx: &Context<'_>, days: i32) -> ApiResult<Credits> {
        if !(1..=EXPIRING_DAYS_MAX).contains(&days) {
            return Err(ApiError::invalid(
                "days",
                format!("must be 1 to {EXPIRING_DAYS_MAX}"),
            ));
        }
        if let Some((d, expiring)) = self.expiring
            && d == i64::from(days)
        {
            return Ok(credits(expiring));
        }
        Ok(credits(
            load(ctx, ExpiringKey(self.wallet_id, i64::from(days)))
                .await?
                .unwrap_or_default(),
        ))
    }
}

// ---------------------------------------------------------------- Grant

/// A block of credits with its own expiry and priority.
pub struct Grant(pub ledger::Grant);

#[Object]
impl Grant {
    async fn id(&self) -> ID {
        ids::encode_id(self.0.id)
    }
    async fn wallet(&self, ctx: &Context<'_>) -> ApiResult<Option<Wallet>> {
        Ok(load(ctx, WalletKey(self.0.wallet_id))
            .await?
            .map(Wallet::new))
    }
    async fn category(&self) -> GrantCategory {
        self.0.category.into()
    }
    async fn amount(&self) -> Credits {
        credits(self.0.amount)
    }
    /// What is left (0 once spent, expired or voided).
    async fn remaining(&self) -> Credits {
        credits(self.0.remaining)
    }
    /// What of `amount` repaid overage debt.
    async fn debt_repaid(&self) -> Credits {
        credits(self.0.debt_repaid)
    }
    async fn effective_at(&self) -> DateTime<Utc> {
        self.0.effective_at
    }
    /// Credits are spendable before this instant, not at it.
    async fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.0.expires_at
    }
    /// Among grants expiring together, lower is spent first.
    async fn priority(&self) -> i32 {
        self.0.priority
    }
    /// Price paid per credit.
    async fn cost_basis(&self) -> Option<String> {
        self.0.cost_basis.map(|c| c.normalize().to_string())
    }
    async fn reason(&self) -> &str {
        &self.0.reason
    }
    /// As given at grantCredits; a purchase's (`orderId`, `gateway`,
    /// `paymentId`) with the order's id as the API speaks it.
    async fn metadata(&self) -> Option<Json<serde_json::Value>> {
        self.0
            .metadata
            .as_ref()
            .map(|m| Json(payloads::grant_metadata(self.0.source_kind.as_deref(), m)))
    }
    /// What made it (`order`, `allowance`, `refund`, `transfer`,
    /// `adjustment`, …) and that thing's id (`ord_…`, `sub_…`, the refunded
    /// usage entry's `ent_…`, the grant moved from's `grt_…`).
    async fn source_kind(&self) -> Option<&str> {
        self.0.source_kind.as_deref()
    }
    async fn source_id(&self) -> Option<String> {
        let kind = self.0.source_kind.as_deref();
        self.0
            .source_id
            .as_deref()
            .map(|id| payloads::grant_source_id(kind, id))
    }
    async fn voided_at(&self) -> Option<DateTime<Utc>> {
        self.0.voided_at
    }
    /// For PURCHASED grants: the top-up order (gateway, payment id).
    async fn order(&self, ctx: &Context<'_>) -> ApiResult<Option<super::commerce::TopUpOrder>> {
        let order_id = match (self.0.source_kind.as_deref(), self.0.source_id.as_deref()) {
            (Some("order"), Some(id)) => uuid::Uuid::try_parse(id).ok().map(OrderId::from_uuid),
            _ => None,
        };
        match order_id {
            Some(id) => Ok(load(ctx, super::loaders::OrderKey(id))
                .await?
                .map(super::commerce::TopUpOrder)),
            None => Ok(None),
        }
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// Spendable now.
    async fn live(&self, ctx: &Context<'_>) -> ApiResult<bool> {
        Ok(self.0.is_live(loaders(ctx)?.now()))
    }
}

// ---------------------------------------------------------------- Entry

/// One immutable line of a wallet's ledger.
pub struct LedgerEntry(pub ledger::Entry);

#[Object]
impl LedgerEntry {
    async fn id(&self) -> ID {
        ids::encode_id(self.0.id)
    }
    async fn wallet(&self, ctx: &Context<'_>) -> ApiResult<Option<Wallet>> {
        Ok(load(ctx, WalletKey(self.0.wallet_id))
            .await?
            .map(Wallet::new))
    }
    /// 1, 2, 3… per wallet: the order of the running balance.
    async fn seq(&self) -> i64 {
        self.0.seq
    }
    #[graphql(name = "type")]
    async fn entry_type(&self) -> EntryType {
        self.0.entry_type.into()
    }
    /// Signed: credits in are positive, credits out negative.
    async fn amount(&self) -> Credits {
        credits(self.0.amount)
    }
    /// The wallet's ledger balance after this entry.
    async fn balance_after(&self) -> Credits {
        credits(self.0.balance_after)
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn feature(&self) -> Option<&str> {
        self.0.attribution.feature.as_deref()
    }
    /// Units of the feature used (trackUsage).
    async fn quantity(&self) -> Option<ExactDecimal> {
        self.0.attribution.quantity.map(ExactDecimal)
    }
    async fn event_ref(&self) -> Option<&str> {
        self.0.attribution.event_ref.as_deref()
    }
    async fn user_ref(&self) -> Option<&str> {
        self.0.attribution.user_ref.as_deref()
    }
    async fn dimensions(&self) -> Option<Json<serde_json::Value>> {
        self.0.attribution.dimensions.clone().map(Json)
    }
    async fn description(&self) -> Option<&str> {
        self.0.attribution.description.as_deref()
    }
    /// The grant a GRANT, ADJUSTMENT, EXPIRY or VOID entry is about.
    async fn grant(&self, ctx: &Context<'_>) -> ApiResult<Option<Grant>> {
        match self.0.grant_id {
            Some(id) => Ok(load(ctx, GrantKey(id)).await?.map(Grant)),
            None => Ok(None),
        }
    }
    async fn hold(&self, ctx: &Context<'_>) -> ApiResult<Option<Hold>> {
        match self.0.hold_id {
            Some(id) => Ok(load(ctx, HoldKey(id)).await?.map(Hold)),
            None => Ok(None),
        }
    }
    /// For a REFUND: the USAGE entry refunded; for a TRANSFER_IN: the
    /// ancestor's TRANSFER_OUT (a customer token must be able to read
    /// that customer).
    async fn refund_of(&self, ctx: &Context<'_>) -> ApiResult<Option<LedgerEntry>> {
        let Some(id) = self.0.refund_of_entry_id else {
            return Ok(None);
        };
        let Some(entry) = load(ctx, EntryKey(id)).await? else {
            return Ok(None);
        };
        if entry.wallet_id != self.0.wallet_id
            && let Some(wallet) = load(ctx, WalletKey(entry.wallet_id)).await?
        {
            super::customer_access::ensure_readable(ctx, wallet.customer_id).await?;
        }
        Ok(Some(LedgerEntry(entry)))
    }
    /// For a TRANSFER_OUT: the customer the credits went to; for a
    /// TRANSFER_IN: the one they came from (null for other entries). A
    /// customer token must be able to read that customer (`FORBIDDEN`
    /// otherwise: a TRANSFER_IN's is an ancestor).
    async fn counterparty(&self, ctx: &Context<'_>) -> ApiResult<Option<Customer>> {
        if !matches!(
            self.0.entry_type,
            ledger::EntryType::TransferIn | ledger::EntryType::TransferOut
        ) {
            return Ok(None);
        }
        match load(ctx, CounterpartyKey(self.0.id)).await? {
            Some(customer_id) => customers::customer(ctx, customer_id).await,
            None => Ok(None),
        }
    }
    /// Which grants this entry drew from or filled, and how much each.
    #[graphql(complexity = "crate::graphql::limits::unpaged_list_cost(child_complexity)")]
    async fn splits(&self, ctx: &Context<'_>) -> ApiResult<Vec<Split>> {
        if let Some(primed) = loaders(ctx)?.primed_splits(self.0.id.uuid()) {
            return Ok(primed
                .into_iter()
                .map(|(split, grant)| Split(split, Some(grant)))
                .collect());
        }
        Ok(load(ctx, SplitsKey(self.0.id))
            .await?
            .unwrap_or_default()
            .into_iter()
            .map(|split| Split(split, None))
            .collect())
    }
}

/// How much of an entry one grant gave or took (signed like the entry),
/// with the grant when it was read with the split.
pub struct Split(ledger::Split, Option<ledger::Grant>);

#[Object]
impl Split {
    async fn grant(&self, ctx: &Context<'_>) -> ApiResult<Option<Grant>> {
        if let Some(grant) = &self.1 {
            return Ok(Some(Grant(grant.clone())));
        }
        Ok(load(ctx, GrantKey(self.0.grant_id)).await?.map(Grant))
    }
    async fn amount(&self) -> Credits {
        credits(self.0.amount)
    }
}

// ---------------------------------------------------------------- Hold

/// Credits reserved until captured, released, or `expiresAt`.
pub struct Hold(pub ledger::Hold);

#[Object]
impl Hold {
    async fn id(&self) -> ID {
        ids::encode_id(self.0.id)
    }
    async fn wallet(&self, ctx: &Context<'_>) -> ApiResult<Option<Wallet>> {
        Ok(load(ctx, WalletKey(self.0.wallet_id))
            .await?
            .map(Wallet::new))
    }
    async fn amount(&self) -> Credits {
        credits(self.0.amount)
    }
    async fn captured(&self) -> Option<Credits> {
        self.0.captured.map(credits)
    }
    /// As of now: an active hold past its deadline reads `RELEASED`.
    async fn status(&self, ctx: &Context<'_>) -> ApiResult<HoldStatus> {
        Ok(self.0.status_at(loaders(ctx)?.now()).into())
    }
    async fn expires_at(&self) -> DateTime<Utc> {
        self.0.expires_at
    }
    async fn feature(&self) -> Option<&str> {
        self.0.attribution.feature.as_deref()
    }
    async fn event_ref(&self) -> Option<&str> {
        self.0.attribution.event_ref.as_deref()
    }
    async fn user_ref(&self) -> Option<&str> {
        self.0.attribution.user_ref.as_deref()
    }
    async fn description(&self) -> Option<&str> {
        self.0.attribution.description.as_deref()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn settled_at(&self) -> Option<DateTime<Utc>> {
        self.0.settled_at
    }
}

// ---------------------------------------------------------------- queries

#[derive(Default)]
pub struct LedgerQuery;

fn not_found(what: &str) -> ApiError {
    ApiError::new(
        service::Code::NotFound,
        format!("no {what} with this id"),
        Some("id"),
    )
}

#[Object]
impl LedgerQuery {
    async fn wallet(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Wallet> {
        let id = ids::decode_id::<WalletId>(&id, "id")?;
        load(ctx, WalletKey(id))
            .await?
            .map(Wallet::new)
            .ok_or_else(|| not_found("wallet"))
    }
    async fn grant(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Grant> {
        let id = ids::decode_id::<GrantId>(&id, "id")?;
        load(ctx, GrantKey(id))
            .await?
            .map(Grant)
            .ok_or_else(|| not_found("grant"))
    }
    async fn entry(&self, ctx: &Context<'_>, id: ID) -> ApiResult<LedgerEntry> {
        let id = ids::decode_id::<EntryId>(&id, "id")?;
        load(ctx, EntryKey(id))
            .await?
            .map(LedgerEntry)
            .ok_or_else(|| not_found("entry"))
    }
    async fn hold(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Hold> {
        let id = ids::decode_id::<HoldId>(&id, "id")?;
        load(ctx, HoldKey(id))
            .await?
            .map(Hold)
            .ok_or_else(|| not_found("hold"))
    }
}

// ---------------------------------------------------------------- mutations

#[derive(InputObject)]
pub struct GrantCreditsInput {
    customer: CustomerRefInput,
    credit_system: CreditSystemRefInput,
    /// Greater than 0, within the credit system's precision.
    amount: Credits,
    category: GrantCategory,
    /// Default: never.
    expires_at: Option<DateTime<Utc>>,
    /// Default: now. Until then the credits are `scheduled`, not spendable.
    effective_at: Option<DateTime<Utc>>,
    /// Among grants expiring together, lower is spent first. Default 0.
    priority: Option<i32>,
    /// Price paid per credit.
    cost_basis: Option<Credits>,
    reason: String,
    metadata: Option<Json<serde_json::Value>>,
    idempotency_key: String,
}

#[derive(SimpleObject)]
pub struct GrantCreditsPayload {
    grant: Grant,
    /// The GRANT entry; null while the grant is scheduled (`effectiveAt`
    /// in the future): its entry is booked when it becomes spendable, so
    /// `balanceAfter` never counts credits that can't be spent yet.
    entry: Option<LedgerEntry>,
}

#[derive(InputObject)]
pub struct ConsumeCreditsInput {
    customer: CustomerRefInput,
    credit_system: CreditSystemRefInput,
    amount: Credits,
    idempotency_key: String,
    feature: Option<String>,
    event_ref: Option<String>,
    user_ref: Option<String>,
    /// Free-form attribution: a JSON object (≤ 4 KiB).
    dimensions: Option<Json<serde_json::Value>>,
    description: Option<String>,
}

#[derive(SimpleObject)]
pub struct ConsumeCreditsPayload {
    /// The USAGE entry: `balanceAfter` and `splits` say what it did.
    entry: LedgerEntry,
}

#[derive(InputObject)]
pub struct VoidGrantInput {
    grant: ID,
    reason: String,
    idempotency_key: String,
}

#[derive(SimpleObject)]
pub struct VoidGrantPayload {
    grant: Grant,
    entry: LedgerEntry,
}

#[derive(InputObject)]
pub struct AdjustBalanceInput {
    customer: CustomerRefInput,
    credit_system: CreditSystemRefInput,
    /// Signed, not zero: up creates a never-expiring ADMIN grant, down
    /// spends like usage.
    amount: Credits,
    reason: String,
    idempotency_key: String,
}

#[derive(SimpleObject)]
pub struct AdjustBalancePayload {
    entry: LedgerEntry,
    grant: Option<Grant>,
}

#[derive(InputObject)]
pub struct RefundUsageInput {
    /// The USAGE entry.
    entry: ID,
    /// Default: all that is left to refund of it.
    amount: Option<Credits>,
    reason: String,
    idempotency_key: String,
}

#[derive(SimpleObject)]
pub struct RefundUsagePayload {
    entry: LedgerEntry,
    grants: Vec<Grant>,
}

#[derive(InputObject)]
pub struct CreateHoldInput {
    customer: CustomerRefInput,
    credit_system: CreditSystemRefInput,
    amount: Credits,
    /// When the hold stops reserving (within 90 days).
    expires_at: DateTime<Utc>,
    idempotency_key: String,
    feature: Option<String>,
    event_ref: Option<String>,
    user_ref: Option<String>,
    dimensions: Option<Json<serde_json::Value>>,
    description: Option<String>,
}

#[derive(InputObject)]
pub struct CaptureHoldInput {
    hold: ID,
    /// At most what is held; the rest returns.
    amount: Credits,
    idempotency_key: String,
}

#[derive(InputObject)]
pub struct ReleaseHoldInput {
    hold: ID,
    idempotency_key: String,
}

#[derive(SimpleObject)]
pub struct HoldPayload {
    hold: Hold,
    /// HOLD (create), USAGE (capture) or RELEASE; null when releasing a
    /// hold that was already released.
    entry: Option<LedgerEntry>,
}

#[derive(InputObject)]
pub struct AllocateCreditsInput {
    from: CustomerRefInput,
    /// A descendant of `from` (a client of a partner, an event of a client).
    to: CustomerRefInput,
    credit_system: CreditSystemRefInput,
    amount: Credits,
    note: Option<String>,
    idempotency_key: String,
}

#[derive(SimpleObject)]
pub struct AllocateCreditsPayload {
    /// The source's TRANSFER_OUT entry.
    out_entry: LedgerEntry,
    /// The target's TRANSFER_IN entry.
    in_entry: LedgerEntry,
    /// The target's new TRANSFER grants, keeping the source blocks' expiry.
    grants: Vec<Grant>,
}

#[derive(InputObject)]
pub struct ConfigureWalletInput {
    customer: CustomerRefInput,
    credit_system: CreditSystemRefInput,
    allow_overage: Option<bool>,
    /// `null` clears it.
    low_balance_threshold: async_graphql::MaybeUndefined<Credits>,
    /// Usage-% alert thresholds (each above 0 and at most 1000, at most
    /// 10; `[]`: alerts off); `null` clears them (the plan credit's, else
    /// 75, 90 and 100 apply).
    usage_alert_percents: async_graphql::MaybeUndefined<Vec<ExactDecimal>>,
}

#[derive(SimpleObject)]
pub struct ConfigureWalletPayload {
    wallet: Wallet,
}

fn attribution(
    feature: Option<String>,
    event_ref: Option<String>,
    user_ref: Option<String>,
    dimensions: Option<Json<serde_json::Value>>,
    description: Option<String>,
) -> Attribution {
    Attribution {
        feature,
        quantity: None,
        event_ref,
        user_ref,
        dimensions: dimensions.map(|d| d.0),
        description,
    }
}

impl From<ledger::HoldOutcome> for HoldPayload {
    fn from(out: ledger::HoldOutcome) -> Self {
        HoldPayload {
            hold: Hold(out.hold),
            entry: out.entry.map(LedgerEntry),
        }
    }
}

#[derive(Default)]
pub struct LedgerMutation;

#[Object]
impl LedgerMutation {
    /// Grants credits (the wallet is created on first use). A grant
    /// effective now repays overage debt first.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn grant_credits(
        &self,
        ctx: &Context<'_>,
        input: GrantCreditsInput,
    ) -> ApiResult<GrantCreditsPayload> {
        let (p, app) = app(ctx)?;
        let out = ledger::grant(
            &app.db,
            app.clock(),
            p.tenant_id,
            &ledger::GrantInput {
                wallet: wallet_ref(&input.customer, &input.credit_system)?,
                amount: input.amount.0,
                category: input.category.into(),
                effective_at: input.effective_at,
                expires_at: input.expires_at,
                priority: input.priority,
                cost_basis: input.cost_basis.map(|c| c.0),
                reason: input.reason,
                metadata: input.metadata.map(|m| m.0),
                idempotency_key: input.idempotency_key,
            },
        )
        .await?;
        Ok(GrantCreditsPayload {
            grant: Grant(out.grant),
            entry: out.entry.map(LedgerEntry),
        })
    }

    /// Spends credits: soonest-expiring first, all or nothing
    /// (`INSUFFICIENT_CREDITS` with `requested` and `available`), or into
    /// debt when the wallet allows overage.
    #[graphql(guard = "RoleGuard(Role::Write)")]
    async fn consume_credits(
        &self,
        ctx: &Context<'_>,
        input: ConsumeCreditsInput,
    ) -> ApiResult<ConsumeCreditsPayload> {
        let (p, app) = app(ctx)?;
        let out = ledger::consume(
            &app.db,
            app.clock(),
            p.tenant_id,
            &ledger::ConsumeInput {
                wallet: wallet_ref(&input.customer, &input.credit_system)?,
                amount: input.amount.0,
                attribution: attribution(
                    input.feature,
                    input.event_ref,
                    input.user_ref,
                    input.dimensions,
                    input.description,
                ),
                idempotency_key: input.idempotency_key,
            },
        )
        .await?;
        Ok(ConsumeCreditsPayload {
            entry: LedgerEntry(out.entry),
        })
    }

    /// Removes what remains of a grant; what was spent stays spent.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn void_grant(
        &self,
        ctx: &Context<'_>,
        input: VoidGrantInput,
    ) -> ApiResult<VoidGrantPayload> {
        let (p, app) = app(ctx)?;
        let grant_id = ids::decode_id(&input.grant, "grant")?;
        let out = ledger::void_grant(
            &app.db,
            app.clock(),
            p.tenant_id,
            grant_id,
            &input.reason,
            &input.idempotency_key,
        )
        .await?;
        Ok(VoidGrantPayload {
            grant: Grant(out.grant),
            entry: LedgerEntry(out.entry),
        })
    }

    /// A correction, up or down, as an ADJUSTMENT entry.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn adjust_balance(
        &self,
        ctx: &Context<'_>,
        input: AdjustBalanceInput,
    ) -> ApiResult<AdjustBalancePayload> {
        let (p, app) = app(ctx)?;
        let out = ledger::adjust(
            &app.db,
            app.clock(),
            p.tenant_id,
            &ledger::AdjustInput {
                wallet: wallet_ref(&input.customer, &input.credit_system)?,
                amount: input.amount.0,
                reason: input.reason,
                idempotency_key: input.idempotency_key,
            },
        )
        .await?;
        Ok(AdjustBalancePayload {
            entry: LedgerEntry(out.entry),
            grant: out.grant.map(Grant),
        })
    }

    /// Gives spent credits back as REFUND grants that keep the expiry of
    /// the grants they were spent from; at most what the entry spent, less
    /// earlier refunds. WRITE keys may refund (a backend whose job failed).
    #[graphql(guard = "RoleGuard(Role::Write)")]
    async fn refund_usage(
        &self,
        ctx: &Context<'_>,
        input: RefundUsageInput,
    ) -> ApiResult<RefundUsagePayload> {
        let (p, app) = app(ctx)?;
        let entry_id = ids::decode_id(&input.entry, "entry")?;
        let out = ledger::refund_usage(
            &app.db,
            app.clock(),
            p.tenant_id,
            &ledger::RefundInput {
                entry_id,
                amount: input.amount.map(|a| a.0),
                reason: input.reason,
                idempotency_key: input.idempotency_key,
            },
        )
        .await?;
        Ok(RefundUsagePayload {
            entry: LedgerEntry(out.entry),
            grants: out.grants.into_iter().map(Grant).collect(),
        })
    }

    /// Reserves credits (they leave `available`, enter `pending`) until
    /// captured, released, or `expiresAt`.
    #[graphql(guard = "RoleGuard(Role::Write)")]
    async fn create_hold(
        &self,
        ctx: &Context<'_>,
        input: CreateHoldInput,
    ) -> ApiResult<HoldPayload> {
        let (p, app) = app(ctx)?;
        let out = ledger::create_hold(
            &app.db,
            app.clock(),
            p.tenant_id,
            &ledger::HoldInput {
                wallet: wallet_ref(&input.customer, &input.credit_system)?,
                amount: input.amount.0,
                expires_at: input.expires_at,
                attribution: attribution(
                    input.feature,
                    input.event_ref,
                    input.user_ref,
                    input.dimensions,
                    input.description,
                ),
                idempotency_key: input.idempotency_key,
            },
        )
        .await?;
        Ok(out.into())
    }

    /// Settles a hold: `amount` (≤ held) becomes a USAGE entry, the rest
    /// returns.
    #[graphql(guard = "RoleGuard(Role::Write)")]
    async fn capture_hold(
        &self,
        ctx: &Context<'_>,
        input: CaptureHoldInput,
    ) -> ApiResult<HoldPayload> {
        let (p, app) = app(ctx)?;
        let hold_id = ids::decode_id(&input.hold, "hold")?;
        let out = ledger::capture_hold(
            &app.db,
            app.clock(),
            p.tenant_id,
            hold_id,
            input.amount.0,
            &input.idempotency_key,
        )
        .await?;
        Ok(out.into())
    }

    /// Returns all of a hold's credits.
    #[graphql(guard = "RoleGuard(Role::Write)")]
    async fn release_hold(
        &self,
        ctx: &Context<'_>,
        input: ReleaseHoldInput,
    ) -> ApiResult<HoldPayload> {
        let (p, app) = app(ctx)?;
        let hold_id = ids::decode_id(&input.hold, "hold")?;
        let out = ledger::release_hold(
            &app.db,
            app.clock(),
            p.tenant_id,
            hold_id,
            &input.idempotency_key,
        )
        .await?;
        Ok(out.into())
    }

    /// Moves credits down the customer tree (to a descendant only). Each
    /// block drawn becomes a TRANSFER grant with the same expiry, priority
    /// and cost basis: a transfer never extends a credit's life. Allocated
    /// credits can't be pulled back (an ADMIN's `adjustBalance` is the
    /// escape hatch).
    #[graphql(guard = "RoleGuard(Role::Write)")]
    async fn allocate_credits(
        &self,
        ctx: &Context<'_>,
        input: AllocateCreditsInput,
    ) -> ApiResult<AllocateCreditsPayload> {
        let (p, app) = app(ctx)?;
        let out = ledger::allocations::allocate(
            &app.db,
            app.clock(),
            p.tenant_id,
            &ledger::allocations::AllocateInput {
                from: input.from.parse("from")?,
                to: input.to.parse("to")?,
                credit_system: input.credit_system.parse("creditSystem")?,
                amount: input.amount.0,
                note: input.note,
                idempotency_key: input.idempotency_key,
            },
        )
        .await?;
        Ok(AllocateCreditsPayload {
            out_entry: LedgerEntry(out.out),
            in_entry: LedgerEntry(out.r#in),
            grants: out.grants.into_iter().map(Grant).collect(),
        })
    }

    /// Sets a wallet's options (creating the wallet if needed).
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn configure_wallet(
        &self,
        ctx: &Context<'_>,
        input: ConfigureWalletInput,
    ) -> ApiResult<ConfigureWalletPayload> {
        let (p, app) = app(ctx)?;
        let threshold = input.low_balance_threshold.map_value(|v| v.0).into();
        let wallet = ledger::configure_wallet(
            &app.db,
            app.clock(),
            p.tenant_id,
            &wallet_ref(&input.customer, &input.credit_system)?,
            &ledger::WalletOptions {
                allow_overage: input.allow_overage,
                low_balance_threshold: threshold,
                usage_alert_percents: input
                    .usage_alert_percents
                    .map_value(|v| v.into_iter().map(|p| p.0).collect())
                    .into(),
            },
        )
        .await?;
        Ok(ConfigureWalletPayload {
            wallet: Wallet::new(wallet),
        })
    }
}
