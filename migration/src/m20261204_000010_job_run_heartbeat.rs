//! A running job run's heartbeat: a run whose worker died stops beating
//! and is marked `ABANDONED` (see `service::jobs`).

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
                    .add_column(timestamp_with_time_zone_null(Alias::new("heartbeat_at")))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("job_run"))
                    .drop_column(Alias::new("heartbeat_at"))
                    .to_owned(),
            )
            .await
    }
}
