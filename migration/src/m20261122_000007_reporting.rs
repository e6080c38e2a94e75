//! Tenant settings for reports: the usage-% thresholds of a child's
//! status (WATCH, CRITICAL) and the time zone calendar months and days are
//! counted in.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for col in ["watch_percent_micros", "critical_percent_micros"] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new("tenant"))
                        .add_column(big_integer_null(Alias::new(col)))
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("tenant"))
                    .add_column(string_null(Alias::new("time_zone")))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("tenant"))
                    .drop_column(Alias::new("time_zone"))
                    .to_owned(),
            )
            .await?;
        for col in ["critical_percent_micros", "watch_percent_micros"] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new("tenant"))
                        .drop_column(Alias::new(col))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
