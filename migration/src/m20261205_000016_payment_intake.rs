//! Refunds of top-up orders and payment-provider intake.
//!
//! - `top_up_order` gains what was refunded so far (credits and money)
//!   and `payment_issue`: why a provider's payment did not grant (amount
//!   or currency not the quote's).
//! - `top_up_refund`: one row per `refundTopUpOrder` — asked, taken back,
//!   not refundable (already spent or gone), money — and its ledger entry.
//! - `payment_intake`: a tenant's intake per provider (`stripe`,
//!   `mercadopago`): the unguessable token of its URL and the provider
//!   secrets, sealed (`service::secrets`).
//! - `payment_event`: every provider event or payment id processed, unique
//!   per (tenant, provider, id), so a redelivery is a no-op.

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
        for column in [
            big_integer(c("refunded_quantity_micros"))
                .default(0)
                .to_owned(),
            big_integer(c("refunded_amount_micros"))
                .default(0)
                .to_owned(),
            text_null(c("payment_issue")).to_owned(),
        ] {
            let mut column = column;
            manager
                .alter_table(
                    Table::alter()
                        .table(c("top_up_order"))
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(c("top_up_refund"))
                    .col(uuid(c("id")).primary_key())
                    .col(uuid(c("tenant_id")))
                    .col(uuid(c("order_id")))
                    .col(big_integer(c("requested_micros")))
                    .col(big_integer(c("refunded_micros")))
                    .col(big_integer(c("not_refundable_micros")))
                    .col(big_integer(c("amount_micros")))
                    .col(string(c("currency")))
                    .col(text(c("reason")))
                    .col(uuid_null(c("entry_id")))
                    .col(timestamp_with_time_zone(c("created_at")))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_top_up_refund_tenant")
                            .from(c("top_up_refund"), c("tenant_id"))
                            .to(c("tenant"), c("id")),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_top_up_refund_order")
                            .from(c("top_up_refund"), c("order_id"))
                            .to(c("top_up_order"), c("id")),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_top_up_refund_order")
                    .table(c("top_up_refund"))
                    .col(c("tenant_id"))
                    .col(c("order_id"))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(c("payment_intake"))
                    .col(uuid(c("id")).primary_key())
                    .col(uuid(c("tenant_id")))
                    .col(string(c("provider")))
                    .col(string(c("token")))
                    .col(text(c("secret")))
                    .col(text_null(c("access_token")))
                    .col(timestamp_with_time_zone(c("created_at")))
                    .col(timestamp_with_time_zone(c("updated_at")))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_payment_intake_tenant")
                            .from(c("payment_intake"), c("tenant_id"))
                            .to(c("tenant"), c("id")),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_payment_intake_provider")
                    .table(c("payment_intake"))
                    .col(c("tenant_id"))
                    .col(c("provider"))
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(c("payment_event"))
                    .col(uuid(c("id")).primary_key())
                    .col(uuid(c("tenant_id")))
                    .col(string(c("provider")))
                    .col(string(c("event_id")))
                    .col(string(c("event_type")))
                    .col(uuid_null(c("order_id")))
                    .col(string(c("outcome")))
                    .col(text_null(c("detail")))
                    .col(timestamp_with_time_zone(c("created_at")))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_payment_event_tenant")
                            .from(c("payment_event"), c("tenant_id"))
                            .to(c("tenant"), c("id")),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_payment_event_id")
                    .table(c("payment_event"))
                    .col(c("tenant_id"))
                    .col(c("provider"))
                    .col(c("event_id"))
                    .unique()
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["payment_event", "payment_intake", "top_up_refund"] {
            manager
                .drop_table(Table::drop().table(c(table)).to_owned())
                .await?;
        }
        for column in [
            "payment_issue",
            "refunded_amount_micros",
            "refunded_quantity_micros",
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(c("top_up_order"))
                        .drop_column(c(column))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
