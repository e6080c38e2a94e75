//! Indexes the benchmarks showed missing (bench/results, "Findings"):
//! usage reports filter `ledger_entry` by tenant, entry type and a time
//! range, and allowance rollovers look up a grant's EXPIRY entries.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const INDEXES: [(&str, &[&str]); 2] = [
    (
        "ix_ledger_entry_usage",
        &["tenant_id", "entry_type", "created_at"],
    ),
    ("ix_ledger_entry_grant", &["tenant_id", "grant_id"]),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, cols) in INDEXES {
            let mut idx = Index::create();
            idx.name(name).table(Alias::new("ledger_entry"));
            for col in cols {
                idx.col(Alias::new(*col));
            }
            manager.create_index(idx.to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, _) in INDEXES {
            manager
                .drop_index(
                    Index::drop()
                        .name(name)
                        .table(Alias::new("ledger_entry"))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
