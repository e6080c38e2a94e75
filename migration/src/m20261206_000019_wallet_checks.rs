//! `wallet_check`: the durable queue of the checks a consumption makes due
//! for its wallet — usage-% alerts and auto top-up. The dispatcher writes
//! one row per consumed wallet in the transaction that marks the
//! `credits.consumed` events dispatched, so a committed dispatch always
//! leaves its checks behind, whatever happens after the commit.
//!
//! - (`tenant_id`, `wallet_id`) is the key: one row per wallet, however many
//!   consumptions asked; `requests` counts them, so a run that finishes can
//!   tell whether another consumption came meanwhile.
//! - `attempts`, `next_attempt_at`, `last_error`: failed runs back off;
//!   `given_up_at`: the checks stopped (attempts spent, or the auto top-up
//!   can't be priced — the reason in `last_error`); the row stays, visible,
//!   until the wallet's next consumption re-arms it.

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
                    .table(c("wallet_check"))
                    .col(uuid(c("tenant_id")))
                    .col(uuid(c("wallet_id")))
                    .col(big_integer(c("requests")).default(1))
                    .col(integer(c("attempts")).default(0))
                    .col(timestamp_with_time_zone(c("next_attempt_at")))
                    .col(text_null(c("last_error")))
                    .col(timestamp_with_time_zone_null(c("given_up_at")))
                    .col(timestamp_with_time_zone(c("created_at")))
                    .primary_key(Index::create().col(c("tenant_id")).col(c("wallet_id")))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_wallet_check_tenant")
                            .from(c("wallet_check"), c("tenant_id"))
                            .to(c("tenant"), c("id")),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_wallet_check_wallet")
                            .from(c("wallet_check"), c("wallet_id"))
                            .to(c("wallet"), c("id")),
                    )
                    .to_owned(),
            )
            .await?;
        // The runner's scan: due rows, oldest first.
        manager
            .create_index(
                Index::create()
                    .name("ix_wallet_check_due")
                    .table(c("wallet_check"))
                    .col(c("next_attempt_at"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(c("wallet_check")).to_owned())
            .await
    }
}
