use sea_orm::entity::prelude::*;

/// One run of a scheduled job (across tenants: jobs are the operator's).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "job_run")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// `allowance_reset`, `expiry_sweep`, …
    pub job: String,
    pub started_at: DateTimeUtc,
    pub finished_at: Option<DateTimeUtc>,
    /// `RUNNING`, `SUCCEEDED`, `FAILED`, or `ABANDONED` (its worker
    /// stopped beating while it ran).
    pub status: String,
    /// Rows (subscriptions, wallets, …) the run handled.
    pub processed: i64,
    pub error: Option<String>,
    /// Last sign of life of a `RUNNING` run.
    pub heartbeat_at: Option<DateTimeUtc>,
    /// Until when its worker vouches for a `RUNNING` run (renewed at every
    /// heartbeat); past it, the run is `ABANDONED`.
    pub lease_until: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
