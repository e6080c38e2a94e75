//! For operators: how the scheduled jobs are doing.

use async_graphql::{Context, Object, SimpleObject};
use chrono::{DateTime, Utc};
use service::{
    api_keys::Role,
    jobs::{self, Job},
};

use super::{
    context::{RoleGuard, app},
    error::{ApiError, ApiResult},
};

/// One run of a scheduled job.
#[derive(SimpleObject)]
pub struct JobRun {
    started_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    /// `RUNNING`, `SUCCEEDED` or `FAILED`.
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
        Ok(jobs::recent(&app.db, self.0, first as u64)
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

#[derive(Default)]
pub struct OperationsQuery;

#[Object]
impl OperationsQuery {
    /// The scheduled jobs (shared by all tenants of this deployment).
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn jobs(&self) -> Vec<JobStatus> {
        Job::ALL.into_iter().map(JobStatus).collect()
    }
}
