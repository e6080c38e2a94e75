//! What the scheduled jobs need: the outbox (side effects written in the
//! same transaction as the change that caused them), a record of job runs,
//! each subscription's next allowance reset, and each wallet's low-balance
//! state (so a crossing is told once).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

fn c(name: &str) -> Alias {
    Alias::new(name)
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(c("outbox_event"))
                    .col(uuid(c("id")).primary_key())
                    .col(uuid(c("tenant_id")))
                    .col(string(c("event_type")))
                    .col(uuid_null(c("wallet_id")))
                    .col(json_binary(c("payload")))
                    .col(timestamp_with_time_zone(c("created_at")))
                    .col(timestamp_with_time_zone_null(c("dispatched_at")))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_outbox_event_tenant")
                            .from(c("outbox_event"), c("tenant_id"))
                            .to(c("tenant"), c("id")),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_outbox_event_pending")
                    .table(c("outbox_event"))
                    .col(c("dispatched_at"))
                    .col(c("id"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_outbox_event_tenant")
                    .table(c("outbox_event"))
                    .col(c("tenant_id"))
                    .col(c("id"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(c("job_run"))
                    .col(uuid(c("id")).primary_key())
                    .col(string(c("job")))
                    .col(timestamp_with_time_zone(c("started_at")))
                    .col(timestamp_with_time_zone_null(c("finished_at")))
                    .col(string(c("status")))
                    .col(big_integer(c("processed")))
                    .col(text_null(c("error")))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_job_run_job")
                    .table(c("job_run"))
                    .col(c("job"))
                    .col(c("started_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(c("subscription"))
                    .add_column(timestamp_with_time_zone_null(c("next_reset_at")))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_subscription_next_reset")
                    .table(c("subscription"))
                    .col(c("next_reset_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(c("wallet"))
                    .add_column(string(c("low_balance_state")).default("OK"))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(c("allowance_period"))
                    .add_column(uuid_null(c("rollover_grant_id")))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(c("allowance_period"))
                    .drop_column(c("rollover_grant_id"))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(c("wallet"))
                    .drop_column(c("low_balance_state"))
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("ix_subscription_next_reset")
                    .table(c("subscription"))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(c("subscription"))
                    .drop_column(c("next_reset_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(c("job_run")).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(c("outbox_event")).to_owned())
            .await
    }
}
