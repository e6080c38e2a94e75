//! A grant effective in the future is *scheduled*: it holds its amount but
//! its GRANT entry is booked only when it becomes spendable (like expiry,
//! lazily, by the next write to the wallet or the expiry sweep), so a
//! wallet's running `balance_after` never counts credits that can't be
//! spent yet. `booked` says whether the GRANT entry is in the ledger;
//! every existing grant already has its entry. The partial index lets the
//! sweep find scheduled grants that came due.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("credit_grant"))
                    .add_column(boolean(Alias::new("booked")).default(true))
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX credit_grant_scheduled ON credit_grant (effective_at) \
                 WHERE booked = false",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX credit_grant_scheduled")
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("credit_grant"))
                    .drop_column(Alias::new("booked"))
                    .to_owned(),
            )
            .await
    }
}
