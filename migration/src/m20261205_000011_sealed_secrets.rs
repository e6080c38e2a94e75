//! Webhook secret rotation with overlap: after `rotateWebhookSecret` the
//! replaced secret keeps signing beside the new one until
//! `previous_secret_expires_at` (24 h), so receivers can switch without
//! losing deliveries (Standard Webhooks: several space-separated
//! signatures).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

fn c(name: &str) -> Alias {
    Alias::new(name)
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one at a time.
        for column in [
            text_null(c("previous_secret")),
            timestamp_with_time_zone_null(c("previous_secret_expires_at")),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(c("webhook_endpoint"))
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in ["previous_secret_expires_at", "previous_secret"] {
            manager
                .alter_table(
                    Table::alter()
                        .table(c("webhook_endpoint"))
                        .drop_column(c(column))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
