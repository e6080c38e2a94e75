//! Usage reports and the tenant's report calendar.

use async_graphql::{Context, Enum, Object, SimpleObject};
use chrono::{DateTime, Utc};
use service::{
    api_keys::Role,
    credit_systems, customers,
    reports::{self, GroupBy, Scope},
    tenants,
};

use super::{
    context::{RoleGuard, app},
    error::{ApiError, ApiResult},
    ledger::EntryType,
    refs::{CreditSystemRefInput, CustomerRefInput},
    scalars::{Credits, ExactDecimal},
};

/// Credits used in one calendar month (the tenant's time zone).
#[derive(SimpleObject)]
pub struct UsageMonth {
    /// `2027-01`.
    month: String,
    starts_at: DateTime<Utc>,
    credits: Credits,
    /// USAGE entries.
    count: i64,
    /// The month in progress.
    is_current: bool,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum UsageGroupBy {
    Feature,
    EventRef,
    UserRef,
    /// A key of the entries' dimensions (give `dimension`).
    Dimension,
    /// The tenant's calendar day.
    Day,
    /// The customer's external id: the tenant-wide view.
    Customer,
}

#[derive(SimpleObject)]
pub struct UsageBreakdownRow {
    /// The group; null for entries without that attribution.
    key: Option<String>,
    credits: Credits,
    count: i64,
    average_per_use: ExactDecimal,
}

async fn scope(
    ctx: &Context<'_>,
    customer: Option<CustomerRefInput>,
    credit_system: Option<CreditSystemRefInput>,
) -> ApiResult<Scope> {
    let (p, app) = app(ctx)?;
    let customer_id = match customer {
        Some(c) => Some(
            customers::get(&app.db, p.tenant_id, &c.parse("customer")?)
                .await?
                .id,
        ),
        None => None,
    };
    let credit_system_id = match credit_system {
        Some(cs) => Some(
            credit_systems::get(&app.db, p.tenant_id, &cs.parse("creditSystem")?)
                .await?
                .id,
        ),
        None => None,
    };
    Ok(Scope {
        customer_id,
        credit_system_id,
    })
}

#[derive(Default)]
pub struct ReportQuery;

#[Object]
impl ReportQuery {
    /// Credits used per calendar month: the current month and the ones
    /// before it (4 in all by default), oldest first. Without a customer:
    /// the whole tenant; without a credit system, units add up across
    /// systems.
    #[graphql(complexity = "crate::graphql::limits::list_cost(Some(months), child_complexity)")]
    async fn usage_summary(
        &self,
        ctx: &Context<'_>,
        customer: Option<CustomerRefInput>,
        credit_system: Option<CreditSystemRefInput>,
        #[graphql(default = 4)] months: i32,
    ) -> ApiResult<Vec<UsageMonth>> {
        let scope = scope(ctx, customer, credit_system).await?;
        let (p, app) = app(ctx)?;
        let months =
            u32::try_from(months).map_err(|_| ApiError::invalid("months", "must be 1 to 24"))?;
        let rows = reports::usage_summary(&app.db, app.clock(), p.tenant_id, scope, months).await?;
        Ok(rows
            .into_iter()
            .map(|m| UsageMonth {
                month: m.month,
                starts_at: m.starts_at,
                credits: Credits(m.credits),
                count: m.count,
                is_current: m.is_current,
            })
            .collect())
    }

    /// Where credits went in `[from, to)`: grouped by feature, event,
    /// user, a dimension, day or customer; largest first.
    #[allow(clippy::too_many_arguments)]
    #[graphql(complexity = "crate::graphql::limits::list_cost(Some(first), child_complexity)")]
    async fn usage_breakdown(
        &self,
        ctx: &Context<'_>,
        customer: Option<CustomerRefInput>,
        credit_system: Option<CreditSystemRefInput>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        group_by: UsageGroupBy,
        dimension: Option<String>,
        #[graphql(desc = "Entry types counted; default USAGE.")] types: Option<Vec<EntryType>>,
        #[graphql(default = 20)] first: i32,
    ) -> ApiResult<Vec<UsageBreakdownRow>> {
        let scope = scope(ctx, customer, credit_system).await?;
        let (p, app) = app(ctx)?;
        let group_by =
            match group_by {
                UsageGroupBy::Feature => GroupBy::Feature,
                UsageGroupBy::EventRef => GroupBy::EventRef,
                UsageGroupBy::UserRef => GroupBy::UserRef,
                UsageGroupBy::Day => GroupBy::Day,
                UsageGroupBy::Customer => GroupBy::Customer,
                UsageGroupBy::Dimension => GroupBy::Dimension(dimension.ok_or_else(|| {
                    ApiError::invalid("dimension", "name the dimension to group by")
                })?),
            };
        let types: Vec<service::ledger::EntryType> = types
            .map(|t| t.into_iter().map(Into::into).collect())
            .unwrap_or_else(|| vec![service::ledger::EntryType::Usage]);
        let first =
            u32::try_from(first).map_err(|_| ApiError::invalid("first", "must be 1 to 200"))?;
        let rows = reports::usage_breakdown(
            &app.db,
            p.tenant_id,
            scope,
            service::clock::truncate_micros(from),
            service::clock::truncate_micros(to),
            &group_by,
            &types,
            first,
        )
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| UsageBreakdownRow {
                key: r.key,
                credits: Credits(r.credits),
                count: r.count,
                average_per_use: ExactDecimal(r.average_per_use),
            })
            .collect())
    }

    /// The IANA time zone reports count months and days in.
    async fn time_zone(&self, ctx: &Context<'_>) -> ApiResult<String> {
        let (p, app) = app(ctx)?;
        Ok(tenants::time_zone(&app.db, p.tenant_id)
            .await?
            .name()
            .to_owned())
    }
}

#[derive(Default)]
pub struct ReportMutation;

#[Object]
impl ReportMutation {
    /// Sets the IANA time zone (`Europe/Budapest`) reports use.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn set_time_zone(&self, ctx: &Context<'_>, time_zone: String) -> ApiResult<String> {
        let (p, app) = app(ctx)?;
        Ok(tenants::set_time_zone(&app.db, p.tenant_id, &time_zone)
            .await?
            .name()
            .to_owned())
    }
}
