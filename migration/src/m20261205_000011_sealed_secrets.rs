//! Secrets sealed at rest, and webhook secret rotation with overlap.
//!
//! - `webhook_endpoint.previous_secret` / `previous_secret_expires_at`:
//!   after `rotateWebhookSecret` the replaced secret keeps signing beside
//!   the new one until then (24 h), so receivers can switch without losing
//!   deliveries (Standard Webhooks: several space-separated signatures).
//! - `secrets_key_check`: one row holding a known text sealed under the
//!   database's secrets key, so a process started with another key refuses
//!   to start (see `service::secrets`). Engine-wide, so no `tenant_id`.
//!
//! Sealing itself can't happen here (a migration doesn't know the key):
//! webhook and customer-token secrets written before this migration stay
//! plaintext until the first start with a key, which seals every value
//! without the `sealed:` prefix (`service::secrets::prepare`).

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
        manager
            .create_table(
                Table::create()
                    .table(c("secrets_key_check"))
                    .col(integer(c("id")).primary_key())
                    .col(text(c("sealed")))
                    .col(timestamp_with_time_zone(c("created_at")))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(c("secrets_key_check")).to_owned())
            .await?;
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
