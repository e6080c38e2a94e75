//! The ledger's rows read from a joined row by position.
//!
//! A statement that joins tables selects each one's columns under a
//! prefix ([`columns_as`](crate::db::columns_as)); read back by name,
//! SeaORM builds the string `"{prefix}{column}"` for every column of every
//! row and looks it up among the row's column names. On the hot reads (a
//! consume's grants, the nested read's entries with their splits and
//! grants) that was 9.5 % of the API's CPU under the nested read (perf,
//! 2026-12-05). Read by position instead: a table's columns are selected
//! in [`Iterable`](sea_orm::Iterable) order, which is the order of the
//! model's fields, so `from_columns(row, at)` reads columns `at..at +
//! COLUMNS`. The test below checks each reader against SeaORM's own
//! reading by name on a real row.

use entity::{credit_grant, entry_split, ledger_entry};
use sea_orm::{DbErr, QueryResult};

/// A model read from `COLUMNS` consecutive columns of a row.
pub trait FromColumns: Sized {
    /// How many columns it takes.
    const COLUMNS: usize;
    /// The model in columns `at..at + COLUMNS` of `row`, selected in the
    /// entity's column order.
    fn from_columns(row: &QueryResult, at: usize) -> Result<Self, DbErr>;
}

impl FromColumns for credit_grant::Model {
    const COLUMNS: usize = 19;
    fn from_columns(row: &QueryResult, at: usize) -> Result<Self, DbErr> {
        Ok(Self {
            id: row.try_get_by_index(at)?,
            tenant_id: row.try_get_by_index(at + 1)?,
            wallet_id: row.try_get_by_index(at + 2)?,
            category: row.try_get_by_index(at + 3)?,
            amount_micros: row.try_get_by_index(at + 4)?,
            remaining_micros: row.try_get_by_index(at + 5)?,
            debt_repaid_micros: row.try_get_by_index(at + 6)?,
            effective_at: row.try_get_by_index(at + 7)?,
            expires_at: row.try_get_by_index(at + 8)?,
            priority: row.try_get_by_index(at + 9)?,
            cost_basis: row.try_get_by_index(at + 10)?,
            reason: row.try_get_by_index(at + 11)?,
            metadata: row.try_get_by_index(at + 12)?,
            source_kind: row.try_get_by_index(at + 13)?,
            source_id: row.try_get_by_index(at + 14)?,
            voided_at: row.try_get_by_index(at + 15)?,
            expiry_notified_at: row.try_get_by_index(at + 16)?,
            created_at: row.try_get_by_index(at + 17)?,
            booked: row.try_get_by_index(at + 18)?,
        })
    }
}

impl FromColumns for ledger_entry::Model {
    const COLUMNS: usize = 18;
    fn from_columns(row: &QueryResult, at: usize) -> Result<Self, DbErr> {
        Ok(Self {
            id: row.try_get_by_index(at)?,
            tenant_id: row.try_get_by_index(at + 1)?,
            wallet_id: row.try_get_by_index(at + 2)?,
            seq: row.try_get_by_index(at + 3)?,
            entry_type: row.try_get_by_index(at + 4)?,
            amount_micros: row.try_get_by_index(at + 5)?,
            balance_after_micros: row.try_get_by_index(at + 6)?,
            grant_id: row.try_get_by_index(at + 7)?,
            hold_id: row.try_get_by_index(at + 8)?,
            refund_of_entry_id: row.try_get_by_index(at + 9)?,
            feature: row.try_get_by_index(at + 10)?,
            quantity_micros: row.try_get_by_index(at + 11)?,
            event_ref: row.try_get_by_index(at + 12)?,
            user_ref: row.try_get_by_index(at + 13)?,
            dimensions: row.try_get_by_index(at + 14)?,
            description: row.try_get_by_index(at + 15)?,
            idempotency_key: row.try_get_by_index(at + 16)?,
            created_at: row.try_get_by_index(at + 17)?,
        })
    }
}

impl FromColumns for entry_split::Model {
    const COLUMNS: usize = 5;
    fn from_columns(row: &QueryResult, at: usize) -> Result<Self, DbErr> {
        Ok(Self {
            id: row.try_get_by_index(at)?,
            tenant_id: row.try_get_by_index(at + 1)?,
            entry_id: row.try_get_by_index(at + 2)?,
            grant_id: row.try_get_by_index(at + 3)?,
            amount_micros: row.try_get_by_index(at + 4)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use entity::{credit_grant, entry_split, ledger_entry};
    use rust_decimal::Decimal;
    use sea_orm::{ConnectionTrait, EntityTrait, FromQueryResult, Iterable};

    use super::FromColumns;
    use crate::{
        FixedClock,
        credit_systems::CreditSystemRef,
        customers::CustomerRef,
        db::{columns_as, statement},
        ledger::{Attribution, Category, ConsumeInput, GrantInput, WalletRef, consume, grant},
        testing::{TestDb, seed_tenant},
    };

    fn count<E: EntityTrait>() -> usize {
        E::Column::iter().count()
    }

    /// Each reader takes as many columns as its entity has, and reads a
    /// real row (a consume's entry, its split and its grant, after a
    /// leading column) as SeaORM does by name.
    #[tokio::test]
    async fn rows_read_by_position_are_the_rows_read_by_name() {
        assert_eq!(
            credit_grant::Model::COLUMNS,
            count::<credit_grant::Entity>()
        );
        assert_eq!(
            ledger_entry::Model::COLUMNS,
            count::<ledger_entry::Entity>()
        );
        assert_eq!(entry_split::Model::COLUMNS, count::<entry_split::Entity>());

        let t = TestDb::new().await;
        let clock = FixedClock::new(Utc.with_ymd_and_hms(2026, 1, 31, 12, 0, 0).unwrap());
        let seeded = seed_tenant(&t.db, &clock, "acme-corp", 2).await;
        let wallet = WalletRef {
            customer: CustomerRef::Id(seeded.customer_id),
            credit_system: CreditSystemRef::Id(seeded.credit_system_id),
        };
        grant(
            &t.db,
            &clock,
            seeded.tenant_id,
            &GrantInput {
                wallet: wallet.clone(),
                amount: Decimal::from(10),
                category: Category::Promotional,
                effective_at: None,
                expires_at: Some(Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap()),
                priority: None,
                cost_basis: None,
                reason: "test".into(),
                metadata: Some(serde_json::json!({ "k": "v" })),
                idempotency_key: "g-1".into(),
            },
        )
        .await
        .unwrap();
        consume(
            &t.db,
            &clock,
            seeded.tenant_id,
            &ConsumeInput {
                wallet,
                amount: "2.5".parse().unwrap(),
                attribution: Attribution {
                    feature: Some("chat".into()),
                    quantity: Some(Decimal::from(3)),
                    description: Some("a reply".into()),
                    dimensions: Some(serde_json::json!({ "model": "m" })),
                    ..Default::default()
                },
                idempotency_key: "c-1".into(),
            },
        )
        .await
        .unwrap();

        let sql = format!(
            "SELECT 1 AS lead, {e}, {s}, {g} FROM ledger_entry e \
             JOIN entry_split s ON s.entry_id = e.id \
             JOIN credit_grant g ON g.id = s.grant_id \
             WHERE e.entry_type = 'USAGE'",
            e = columns_as::<ledger_entry::Entity>("e", "e_"),
            s = columns_as::<entry_split::Entity>("s", "s_"),
            g = columns_as::<credit_grant::Entity>("g", "g_"),
        );
        let conn = t.db.reader();
        let rows = conn
            .query_all_raw(statement(conn.get_database_backend(), &sql, vec![]))
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        let e_at = 1;
        let s_at = e_at + ledger_entry::Model::COLUMNS;
        let g_at = s_at + entry_split::Model::COLUMNS;
        assert_eq!(
            ledger_entry::Model::from_columns(row, e_at).unwrap(),
            ledger_entry::Model::from_query_result(row, "e_").unwrap()
        );
        assert_eq!(
            entry_split::Model::from_columns(row, s_at).unwrap(),
            entry_split::Model::from_query_result(row, "s_").unwrap()
        );
        assert_eq!(
            credit_grant::Model::from_columns(row, g_at).unwrap(),
            credit_grant::Model::from_query_result(row, "g_").unwrap()
        );
    }
}
