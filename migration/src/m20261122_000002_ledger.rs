//! Credit systems, customers, wallets, grants, the ledger, holds and
//! idempotency records.
//!
//! Amounts are `BIGINT` micro-credits (10⁻⁶ of a credit, the finest
//! precision a credit system may declare): exact on both databases, summable
//! in SQL, and good for ±9.2 × 10¹² credits.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

fn index(name: &str, table: impl IntoIden, cols: &[&'static str]) -> IndexCreateStatement {
    let mut idx = Index::create();
    idx.name(name).table(table);
    for col in cols {
        idx.col(Alias::new(*col));
    }
    idx.to_owned()
}

fn tenant_fk(table: impl IntoIden, name: &str) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(table, Alias::new("tenant_id"))
        .to(Alias::new("tenant"), Alias::new("id"))
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(CreditSystem::Table)
                    .col(uuid(CreditSystem::Id).primary_key())
                    .col(uuid(CreditSystem::TenantId))
                    .col(string(CreditSystem::Key))
                    .col(string(CreditSystem::Name))
                    .col(text(CreditSystem::Description))
                    .col(string(CreditSystem::UnitSingular))
                    .col(string(CreditSystem::UnitPlural))
                    .col(integer(CreditSystem::Precision))
                    .col(string(CreditSystem::Kind))
                    .col(string_null(CreditSystem::Currency))
                    .col(timestamp_with_time_zone(CreditSystem::CreatedAt))
                    .col(timestamp_with_time_zone(CreditSystem::UpdatedAt))
                    .foreign_key(&mut tenant_fk(
                        CreditSystem::Table,
                        "fk_credit_system_tenant",
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "ux_credit_system_key",
                    CreditSystem::Table,
                    &["tenant_id", "key"],
                )
                .unique()
                .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Customer::Table)
                    .col(uuid(Customer::Id).primary_key())
                    .col(uuid(Customer::TenantId))
                    .col(string(Customer::ExternalId))
                    .col(string(Customer::Name))
                    .col(string_null(Customer::Email))
                    .col(json_binary_null(Customer::Metadata))
                    .col(uuid_null(Customer::ParentId))
                    .col(timestamp_with_time_zone(Customer::CreatedAt))
                    .col(timestamp_with_time_zone(Customer::UpdatedAt))
                    .foreign_key(&mut tenant_fk(Customer::Table, "fk_customer_tenant"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_customer_parent")
                            .from(Customer::Table, Customer::ParentId)
                            .to(Customer::Table, Customer::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "ux_customer_external_id",
                    Customer::Table,
                    &["tenant_id", "external_id"],
                )
                .unique()
                .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_customer_parent",
                Customer::Table,
                &["tenant_id", "parent_id"],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Wallet::Table)
                    .col(uuid(Wallet::Id).primary_key())
                    .col(uuid(Wallet::TenantId))
                    .col(uuid(Wallet::CustomerId))
                    .col(uuid(Wallet::CreditSystemId))
                    .col(big_integer(Wallet::BalanceMicros))
                    .col(big_integer(Wallet::DebtMicros))
                    .col(big_integer(Wallet::LastSeq))
                    .col(boolean(Wallet::AllowOverage))
                    .col(big_integer_null(Wallet::LowBalanceThresholdMicros))
                    .col(timestamp_with_time_zone(Wallet::CreatedAt))
                    .col(timestamp_with_time_zone(Wallet::UpdatedAt))
                    .foreign_key(&mut tenant_fk(Wallet::Table, "fk_wallet_tenant"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_wallet_customer")
                            .from(Wallet::Table, Wallet::CustomerId)
                            .to(Customer::Table, Customer::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_wallet_credit_system")
                            .from(Wallet::Table, Wallet::CreditSystemId)
                            .to(CreditSystem::Table, CreditSystem::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "ux_wallet_customer_credit_system",
                    Wallet::Table,
                    &["tenant_id", "customer_id", "credit_system_id"],
                )
                .unique()
                .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(CreditGrant::Table)
                    .col(uuid(CreditGrant::Id).primary_key())
                    .col(uuid(CreditGrant::TenantId))
                    .col(uuid(CreditGrant::WalletId))
                    .col(string(CreditGrant::Category))
                    .col(big_integer(CreditGrant::AmountMicros))
                    .col(big_integer(CreditGrant::RemainingMicros))
                    .col(big_integer(CreditGrant::DebtRepaidMicros))
                    .col(timestamp_with_time_zone(CreditGrant::EffectiveAt))
                    .col(timestamp_with_time_zone_null(CreditGrant::ExpiresAt))
                    .col(integer(CreditGrant::Priority))
                    .col(string_null(CreditGrant::CostBasis))
                    .col(text(CreditGrant::Reason))
                    .col(json_binary_null(CreditGrant::Metadata))
                    .col(string_null(CreditGrant::SourceKind))
                    .col(string_null(CreditGrant::SourceId))
                    .col(timestamp_with_time_zone_null(CreditGrant::VoidedAt))
                    .col(timestamp_with_time_zone(CreditGrant::CreatedAt))
                    .foreign_key(&mut tenant_fk(CreditGrant::Table, "fk_credit_grant_tenant"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_credit_grant_wallet")
                            .from(CreditGrant::Table, CreditGrant::WalletId)
                            .to(Wallet::Table, Wallet::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_credit_grant_wallet",
                CreditGrant::Table,
                &["tenant_id", "wallet_id", "id"],
            ))
            .await?;
        // The expiry sweep and the burn order look at grants with credits left.
        manager
            .create_index(index(
                "ix_credit_grant_expiry",
                CreditGrant::Table,
                &["expires_at", "remaining_micros"],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(CreditHold::Table)
                    .col(uuid(CreditHold::Id).primary_key())
                    .col(uuid(CreditHold::TenantId))
                    .col(uuid(CreditHold::WalletId))
                    .col(big_integer(CreditHold::AmountMicros))
                    .col(big_integer_null(CreditHold::CapturedMicros))
                    .col(string(CreditHold::Status))
                    .col(timestamp_with_time_zone(CreditHold::ExpiresAt))
                    .col(string_null(CreditHold::Feature))
                    .col(string_null(CreditHold::EventRef))
                    .col(string_null(CreditHold::UserRef))
                    .col(json_binary_null(CreditHold::Dimensions))
                    .col(text_null(CreditHold::Description))
                    .col(timestamp_with_time_zone(CreditHold::CreatedAt))
                    .col(timestamp_with_time_zone_null(CreditHold::SettledAt))
                    .foreign_key(&mut tenant_fk(CreditHold::Table, "fk_credit_hold_tenant"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_credit_hold_wallet")
                            .from(CreditHold::Table, CreditHold::WalletId)
                            .to(Wallet::Table, Wallet::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_credit_hold_wallet",
                CreditHold::Table,
                &["tenant_id", "wallet_id", "status"],
            ))
            .await?;
        manager
            .create_index(index(
                "ix_credit_hold_expiry",
                CreditHold::Table,
                &["status", "expires_at"],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(HoldSplit::Table)
                    .col(uuid(HoldSplit::Id).primary_key())
                    .col(uuid(HoldSplit::TenantId))
                    .col(uuid(HoldSplit::HoldId))
                    .col(uuid(HoldSplit::GrantId))
                    .col(integer(HoldSplit::Position))
                    .col(big_integer(HoldSplit::AmountMicros))
                    .foreign_key(&mut tenant_fk(HoldSplit::Table, "fk_hold_split_tenant"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_hold_split_hold")
                            .from(HoldSplit::Table, HoldSplit::HoldId)
                            .to(CreditHold::Table, CreditHold::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_hold_split_grant")
                            .from(HoldSplit::Table, HoldSplit::GrantId)
                            .to(CreditGrant::Table, CreditGrant::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_hold_split_hold",
                HoldSplit::Table,
                &["tenant_id", "hold_id"],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(LedgerEntry::Table)
                    .col(uuid(LedgerEntry::Id).primary_key())
                    .col(uuid(LedgerEntry::TenantId))
                    .col(uuid(LedgerEntry::WalletId))
                    .col(big_integer(LedgerEntry::Seq))
                    .col(string(LedgerEntry::EntryType))
                    .col(big_integer(LedgerEntry::AmountMicros))
                    .col(big_integer(LedgerEntry::BalanceAfterMicros))
                    .col(uuid_null(LedgerEntry::GrantId))
                    .col(uuid_null(LedgerEntry::HoldId))
                    .col(uuid_null(LedgerEntry::RefundOfEntryId))
                    .col(string_null(LedgerEntry::Feature))
                    .col(string_null(LedgerEntry::EventRef))
                    .col(string_null(LedgerEntry::UserRef))
                    .col(json_binary_null(LedgerEntry::Dimensions))
                    .col(text_null(LedgerEntry::Description))
                    .col(string_null(LedgerEntry::IdempotencyKey))
                    .col(timestamp_with_time_zone(LedgerEntry::CreatedAt))
                    .foreign_key(&mut tenant_fk(LedgerEntry::Table, "fk_ledger_entry_tenant"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_ledger_entry_wallet")
                            .from(LedgerEntry::Table, LedgerEntry::WalletId)
                            .to(Wallet::Table, Wallet::Id),
                    )
                    .to_owned(),
            )
            .await?;
        // One sequence per wallet: the running sum's order, and a guard
        // against two writers appending the same position.
        manager
            .create_index(
                index(
                    "ux_ledger_entry_seq",
                    LedgerEntry::Table,
                    &["tenant_id", "wallet_id", "seq"],
                )
                .unique()
                .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_ledger_entry_wallet_time",
                LedgerEntry::Table,
                &["tenant_id", "wallet_id", "created_at"],
            ))
            .await?;
        manager
            .create_index(index(
                "ix_ledger_entry_refund_of",
                LedgerEntry::Table,
                &["tenant_id", "refund_of_entry_id"],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(EntrySplit::Table)
                    .col(uuid(EntrySplit::Id).primary_key())
                    .col(uuid(EntrySplit::TenantId))
                    .col(uuid(EntrySplit::EntryId))
                    .col(uuid(EntrySplit::GrantId))
                    .col(big_integer(EntrySplit::AmountMicros))
                    .foreign_key(&mut tenant_fk(EntrySplit::Table, "fk_entry_split_tenant"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_entry_split_entry")
                            .from(EntrySplit::Table, EntrySplit::EntryId)
                            .to(LedgerEntry::Table, LedgerEntry::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_entry_split_grant")
                            .from(EntrySplit::Table, EntrySplit::GrantId)
                            .to(CreditGrant::Table, CreditGrant::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_entry_split_entry",
                EntrySplit::Table,
                &["tenant_id", "entry_id"],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(IdempotencyRecord::Table)
                    .col(uuid(IdempotencyRecord::TenantId))
                    .col(string(IdempotencyRecord::Key))
                    .col(string(IdempotencyRecord::Operation))
                    .col(string(IdempotencyRecord::RequestHash))
                    .col(uuid(IdempotencyRecord::ResultId))
                    .col(timestamp_with_time_zone(IdempotencyRecord::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(IdempotencyRecord::TenantId)
                            .col(IdempotencyRecord::Key),
                    )
                    .foreign_key(&mut tenant_fk(
                        IdempotencyRecord::Table,
                        "fk_idempotency_record_tenant",
                    ))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            IdempotencyRecord::Table.into_iden(),
            EntrySplit::Table.into_iden(),
            LedgerEntry::Table.into_iden(),
            HoldSplit::Table.into_iden(),
            CreditHold::Table.into_iden(),
            CreditGrant::Table.into_iden(),
            Wallet::Table.into_iden(),
            Customer::Table.into_iden(),
            CreditSystem::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum CreditSystem {
    Table,
    Id,
    TenantId,
    Key,
    Name,
    Description,
    UnitSingular,
    UnitPlural,
    Precision,
    Kind,
    Currency,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Customer {
    Table,
    Id,
    TenantId,
    ExternalId,
    Name,
    Email,
    Metadata,
    ParentId,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Wallet {
    Table,
    Id,
    TenantId,
    CustomerId,
    CreditSystemId,
    BalanceMicros,
    DebtMicros,
    LastSeq,
    AllowOverage,
    LowBalanceThresholdMicros,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum CreditGrant {
    Table,
    Id,
    TenantId,
    WalletId,
    Category,
    AmountMicros,
    RemainingMicros,
    DebtRepaidMicros,
    EffectiveAt,
    ExpiresAt,
    Priority,
    CostBasis,
    Reason,
    Metadata,
    SourceKind,
    SourceId,
    VoidedAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum CreditHold {
    Table,
    Id,
    TenantId,
    WalletId,
    AmountMicros,
    CapturedMicros,
    Status,
    ExpiresAt,
    Feature,
    EventRef,
    UserRef,
    Dimensions,
    Description,
    CreatedAt,
    SettledAt,
}

#[derive(DeriveIden)]
enum HoldSplit {
    Table,
    Id,
    TenantId,
    HoldId,
    GrantId,
    Position,
    AmountMicros,
}

#[derive(DeriveIden)]
enum LedgerEntry {
    Table,
    Id,
    TenantId,
    WalletId,
    Seq,
    EntryType,
    AmountMicros,
    BalanceAfterMicros,
    GrantId,
    HoldId,
    RefundOfEntryId,
    Feature,
    EventRef,
    UserRef,
    Dimensions,
    Description,
    IdempotencyKey,
    CreatedAt,
}

#[derive(DeriveIden)]
enum EntrySplit {
    Table,
    Id,
    TenantId,
    EntryId,
    GrantId,
    AmountMicros,
}

#[derive(DeriveIden)]
enum IdempotencyRecord {
    Table,
    TenantId,
    Key,
    Operation,
    RequestHash,
    ResultId,
    CreatedAt,
}
