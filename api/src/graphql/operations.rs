//! For operators: how the scheduled jobs are doing.

use async_graphql::{Context, ID, Object, SimpleObject};
use chrono::{DateTime, Utc};
use service::{
    api_keys::Role,
    jobs::{self, Job},
};

use super::{
    context::{RoleGuard, app},
    error::{ApiError, ApiResult},
    ids::{self, Kind},
};

/// One run of a scheduled job.
#[derive(SimpleObject)]
pub struct JobRun {
    started_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    /// `RUNNING`, `SUCCEEDED`, `FAILED`, or `ABANDONED`: its worker
    /// stopped (killed, crashed) while it ran; the next run did its work.
    status: String,
    /// What it handled (subscriptions reset, wallets and orders swept).
    processed: i64,
    error: Option<String>,
}

/// A scheduled job and its recent runs.
pub struct JobStatus(Job);

#[Object]
impl JobStatus {
    /// `allowance_reset`, `expiry_sweep`.
    async fn name(&self) -> &str {
        self.0.as_str()
    }
    async fn last_success_at(&self, ctx: &Context<'_>) -> ApiResult<Option<DateTime<Utc>>> {
        let (_, app) = app(ctx)?;
        Ok(jobs::last_success(&app.db, self.0)
            .await?
            .map(|r| r.started_at))
    }
    /// Newest first.
    #[graphql(complexity = "crate::graphql::limits::list_cost(Some(first), child_complexity)")]
    async fn recent_runs(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 10)] first: i32,
    ) -> ApiResult<Vec<JobRun>> {
        if !(1..=200).contains(&first) {
            return Err(ApiError::invalid("first", "must be between 1 and 200"));
        }
        let (_, app) = app(ctx)?;
        Ok(jobs::recent(&app.db, self.0, first as u64, app.clock.now())
            .await?
            .into_iter()
            .map(|r| JobRun {
                started_at: r.started_at,
                finished_at: r.finished_at,
                status: r.status,
                processed: r.processed,
                error: r.error,
            })
            .collect())
    }
}

/// A wallet whose ledger breaks an invariant (DESIGN.md "Ledger rules").
#[derive(SimpleObject)]
pub struct WalletAudit {
    wallet_id: ID,
    customer_id: ID,
    credit_system_id: ID,
    /// Each problem, in words.
    problems: Vec<String>,
}

/// One page of the ledger audit.
#[derive(SimpleObject)]
pub struct LedgerAudit {
    /// Wallets checked on this page.
    wallets_checked: i32,
    /// Only the wallets with problems: empty means all checked are sound.
    #[graphql(complexity = "crate::graphql::limits::unpaged_list_cost(child_complexity)")]
    problems: Vec<WalletAudit>,
    /// Pass as `after` for the next page.
    end_cursor: Option<String>,
    has_next_page: bool,
}

#[derive(Default)]
pub struct OperationsQuery;

#[Object]
impl OperationsQuery {
    /// The scheduled jobs (shared by all tenants of this deployment).
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn jobs(&self) -> Vec<JobStatus> {
        Job::ALL.into_iter().map(JobStatus).collect()
    }

    /// Checks the tenant's wallets against the ledger's invariants — the
    /// audit every test ends with — `first` (1–500, default 100) wallets
    /// at a time in id order; changes nothing.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn ledger_audit(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 100)] first: i32,
        after: Option<String>,
    ) -> ApiResult<LedgerAudit> {
        let max = service::ledger::audit::AUDIT_PAGE_MAX as i32;
        if !(1..=max).contains(&first) {
            return Err(ApiError::invalid(
                "first",
                format!("must be between 1 and {max}"),
            ));
        }
        let after = after
            .map(|c| ids::decode(Kind::Wallet, &ID(c), "after"))
            .transpose()?;
        let (principal, app) = app(ctx)?;
        let page = service::ledger::audit::audit_page(
            app.db.reader(),
            principal.tenant_id,
            after,
            first as u64,
        )
        .await
        .map_err(service::ledger::Error::from)?;
        Ok(LedgerAudit {
            wallets_checked: page.checked as i32,
            problems: page
                .reports
                .into_iter()
                .map(|r| WalletAudit {
                    wallet_id: ids::encode(Kind::Wallet, r.wallet_id),
                    customer_id: ids::encode(Kind::Customer, r.customer_id),
                    credit_system_id: ids::encode(Kind::CreditSystem, r.credit_system_id),
                    problems: r.problems,
                })
                .collect(),
            end_cursor: page
                .last_wallet_id
                .map(|id| ids::encode(Kind::Wallet, id).0),
            has_next_page: page.has_more,
        })
    }
}
