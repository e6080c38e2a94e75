//! Auto top-up on plan credits (below a trigger, a PENDING order for a
//! fixed quantity is created for the tenant's backend to charge), and the
//! tenant's default low-balance threshold per credit system; and claimed
//! cron ticks, so that N worker replicas run each tick once.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for col in ["auto_top_up_below_micros", "auto_top_up_quantity_micros"] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new("plan_credit"))
                        .add_column(big_integer_null(Alias::new(col)))
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("credit_system"))
                    .add_column(big_integer_null(Alias::new("low_balance_threshold_micros")))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("job_tick"))
                    .col(string(Alias::new("job")))
                    .col(timestamp_with_time_zone(Alias::new("tick_at")))
                    .col(timestamp_with_time_zone(Alias::new("claimed_at")))
                    .primary_key(
                        Index::create()
                            .col(Alias::new("job"))
                            .col(Alias::new("tick_at")),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Alias::new("job_tick")).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("credit_system"))
                    .drop_column(Alias::new("low_balance_threshold_micros"))
                    .to_owned(),
            )
            .await?;
        for col in ["auto_top_up_quantity_micros", "auto_top_up_below_micros"] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new("plan_credit"))
                        .drop_column(Alias::new(col))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
