//! A running job run's lease: until when its worker vouches for it. Each
//! worker sets it from its own `JOB_LEASE` at every heartbeat, so every
//! reader (the API's `jobs` query, the next worker) agrees on when a run
//! whose worker died is `ABANDONED` (see `service::jobs`).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("job_run"))
                    .add_column(timestamp_with_time_zone_null(Alias::new("lease_until")))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("job_run"))
                    .drop_column(Alias::new("lease_until"))
                    .to_owned(),
            )
            .await
    }
}
