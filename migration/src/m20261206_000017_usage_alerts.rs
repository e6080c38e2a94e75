//! Usage-% alerts (`wallet.usage_threshold_crossed`).
//!
//! - `wallet.usage_alert_percents`: the wallet's own thresholds, a JSON
//!   array of decimal strings (`["75","90","100"]`, `[]`: off); null: the
//!   plan's, else the default.
//! - `wallet.usage_alert_level_micros` / `usage_alert_granted_micros` /
//!   `usage_alert_grants`: the highest threshold told (percent × 10⁶), the
//!   credits granted it was measured against and which live grants made
//!   them up (their number and the newest one's creation); other grants
//!   re-arm the level.
//! - `plan_credit.usage_alert_percents`: the plan credit's thresholds for
//!   its subscribers' wallets (null: the default).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

fn c(name: &str) -> Alias {
    Alias::new(name)
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        for (table, column) in [
            (
                "wallet",
                json_binary_null(c("usage_alert_percents")).to_owned(),
            ),
            (
                "wallet",
                big_integer(c("usage_alert_level_micros"))
                    .default(0)
                    .to_owned(),
            ),
            (
                "wallet",
                big_integer_null(c("usage_alert_granted_micros")).to_owned(),
            ),
            ("wallet", text_null(c("usage_alert_grants")).to_owned()),
            (
                "plan_credit",
                json_binary_null(c("usage_alert_percents")).to_owned(),
            ),
        ] {
            let mut column = column;
            manager
                .alter_table(
                    Table::alter()
                        .table(c(table))
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (table, column) in [
            ("plan_credit", "usage_alert_percents"),
            ("wallet", "usage_alert_grants"),
            ("wallet", "usage_alert_granted_micros"),
            ("wallet", "usage_alert_level_micros"),
            ("wallet", "usage_alert_percents"),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(c(table))
                        .drop_column(c(column))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
