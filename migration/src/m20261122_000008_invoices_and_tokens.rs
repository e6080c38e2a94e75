//! Invoices paid with credits (an application holds credits until the
//! invoice is finalized or voided; its holds point back at it), and the
//! per-tenant secret that signs customer (browser) tokens.

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
                    .table(c("invoice"))
                    .col(uuid(c("id")).primary_key())
                    .col(uuid(c("tenant_id")))
                    .col(uuid(c("customer_id")))
                    .col(string(c("external_id")))
                    .col(string(c("currency")))
                    .col(big_integer(c("subtotal_micros")))
                    .col(big_integer(c("credit_applied_micros")))
                    .col(text_null(c("note")))
                    .col(string(c("status")))
                    .col(timestamp_with_time_zone(c("holds_until")))
                    .col(timestamp_with_time_zone(c("created_at")))
                    .col(timestamp_with_time_zone_null(c("settled_at")))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_invoice_tenant")
                            .from(c("invoice"), c("tenant_id"))
                            .to(c("tenant"), c("id")),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_invoice_customer")
                            .from(c("invoice"), c("customer_id"))
                            .to(c("customer"), c("id")),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_invoice_external_id")
                    .table(c("invoice"))
                    .col(c("tenant_id"))
                    .col(c("external_id"))
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(c("credit_hold"))
                    .add_column(uuid_null(c("invoice_id")))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_credit_hold_invoice")
                    .table(c("credit_hold"))
                    .col(c("tenant_id"))
                    .col(c("invoice_id"))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(c("tenant"))
                    .add_column(string_null(c("customer_token_secret")))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(c("tenant"))
                    .drop_column(c("customer_token_secret"))
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("ix_credit_hold_invoice")
                    .table(c("credit_hold"))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(c("credit_hold"))
                    .drop_column(c("invoice_id"))
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(c("invoice")).to_owned())
            .await
    }
}
