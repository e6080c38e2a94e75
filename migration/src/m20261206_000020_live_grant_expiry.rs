//! The expiry sweep finds grants that expired with credits left; the
//! index it had, `(expires_at, remaining_micros)` over every grant, kept an
//! entry for each grant ever expired or spent, so each run scanned past the
//! history, and every write to a grant added one more. This one holds only
//! what the sweep (and `credits.expiring_soon`) look for — live grants that
//! expire, with credits left — and carries `wallet_id`, which is all the
//! sweep reads from it. A grant leaves it when the sweep (or a spend)
//! empties it: the write inserts no entry for it here.
//!
//! Queries reach it by stating its predicate literally (`remaining_micros >
//! 0 AND voided_at IS NULL`; `expires_at <= ?` implies `expires_at IS NOT
//! NULL`): SQLite uses a partial index only when the query's WHERE names
//! the index's terms, which a bound `remaining_micros > ?` does not.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE INDEX credit_grant_live_expiry ON credit_grant (expires_at, wallet_id) \
             WHERE remaining_micros > 0 AND voided_at IS NULL AND expires_at IS NOT NULL",
        )
        .await?;
        db.execute_unprepared("DROP INDEX ix_credit_grant_expiry")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE INDEX ix_credit_grant_expiry ON credit_grant (expires_at, remaining_micros)",
        )
        .await?;
        db.execute_unprepared("DROP INDEX credit_grant_live_expiry")
            .await?;
        Ok(())
    }
}
