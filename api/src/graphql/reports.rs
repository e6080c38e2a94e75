//! Usage reports and the tenant's report calendar.
//!
//! A report covers the tenant, one customer (`customer`), or a customer and
//! every customer below it (`includeDescendants: true`). A customer token
//! may run reports on customers it can read: it must name one, and
//! `includeDescendants: true` needs a token that includes descendants —
//! otherwise `FORBIDDEN` (never a quietly narrower answer).

use async_graphql::{Context, Enum, Object, SimpleObject};
use chrono::{DateTime, Utc};
use service::{
    api_keys::Role,
    credit_systems, customers,
    reports::{self, Customers, GroupBy, Scope},
    tenants,
};

use super::{
    context::{RoleGuard, app},
    customer_access,
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
    /// The tenant's calendar day (`2027-01-31`); ranges up to 366 days.
    Day,
    /// An hour in the tenant's time zone, named by its local start and
    /// offset (`2027-01-31T14:00+01:00`); ranges up to 31 days. On a DST
    /// change a repeated local hour appears twice (one per offset), a
    /// skipped one not at all.
    Hour,
    /// The tenant's local hour of the day (`00`–`23`) over the whole range
    /// (peak times); ranges up to 366 days.
    HourOfDay,
    /// The customer's external id: the tenant-wide (or subtree) view.
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
    include_descendants: bool,
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
    if include_descendants && customer_id.is_none() {
        return Err(ApiError::invalid(
            "includeDescendants",
            "name the `customer` whose descendants to include (without one a report covers the whole tenant)",
        ));
    }
    customer_access::ensure_report_readable(ctx, customer_id, include_descendants).await?;
    let credit_system_id = match credit_system {
        Some(cs) => Some(
            credit_systems::get(&app.db, p.tenant_id, &cs.parse("creditSystem")?)
                .await?
                .id
                .uuid(),
        ),
        None => None,
    };
    Ok(Scope {
        customers: Customers::of(customer_id, include_descendants),
        credit_system_id,
    })
}

#[derive(Default)]
pub struct ReportQuery;

#[Object]
impl ReportQuery {
    /// Credits used per calendar month: the current month and the ones
    /// before it (4 in all by default), oldest first. Without a customer:
    /// the whole tenant; with `includeDescendants`, the customer and every
    /// customer below it; without a credit system, units add up across
    /// systems.
    #[graphql(complexity = "crate::graphql::limits::list_cost(Some(months), child_complexity)")]
    async fn usage_summary(
        &self,
        ctx: &Context<'_>,
        customer: Option<CustomerRefInput>,
        #[graphql(
            default = false,
            desc = "Count the customer's descendants too (its whole subtree)."
        )]
        include_descendants: bool,
        credit_system: Option<CreditSystemRefInput>,
        #[graphql(default = 4)] months: i32,
    ) -> ApiResult<Vec<UsageMonth>> {
        let scope = scope(ctx, customer, include_descendants, credit_system).await?;
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
    /// user, a dimension, day, hour, hour of the day or customer; largest
    /// first. With `includeDescendants`, over the customer and every
    /// customer below it (one statement, whatever the tree's depth).
    #[allow(clippy::too_many_arguments)]
    #[graphql(complexity = "crate::graphql::limits::list_cost(Some(first), child_complexity)")]
    async fn usage_breakdown(
        &self,
        ctx: &Context<'_>,
        customer: Option<CustomerRefInput>,
        #[graphql(
            default = false,
            desc = "Count the customer's descendants too (its whole subtree)."
        )]
        include_descendants: bool,
        credit_system: Option<CreditSystemRefInput>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        group_by: UsageGroupBy,
        dimension: Option<String>,
        #[graphql(desc = "Entry types counted; default USAGE.")] types: Option<Vec<EntryType>>,
        #[graphql(default = 20)] first: i32,
    ) -> ApiResult<Vec<UsageBreakdownRow>> {
        let scope = scope(ctx, customer, include_descendants, credit_system).await?;
        let (p, app) = app(ctx)?;
        let group_by =
            match group_by {
                UsageGroupBy::Feature => GroupBy::Feature,
                UsageGroupBy::EventRef => GroupBy::EventRef,
                UsageGroupBy::UserRef => GroupBy::UserRef,
                UsageGroupBy::Day => GroupBy::Day,
                UsageGroupBy::Hour => GroupBy::Hour,
                UsageGroupBy::HourOfDay => GroupBy::HourOfDay,
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
