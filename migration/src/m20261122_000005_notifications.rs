//! Webhook endpoints and deliveries (every attempt kept), emails, the
//! tenant's admin address, and the once-per-grant expiring-soon notice.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

fn c(name: &str) -> Alias {
    Alias::new(name)
}

fn table(name: &str) -> TableCreateStatement {
    Table::create()
        .table(c(name))
        .col(uuid(c("id")).primary_key())
        .col(uuid(c("tenant_id")))
        .foreign_key(
            ForeignKey::create()
                .name(format!("fk_{name}_tenant"))
                .from(c(name), c("tenant_id"))
                .to(c("tenant"), c("id")),
        )
        .to_owned()
}

fn index(name: &str, table: &str, cols: &[&str]) -> IndexCreateStatement {
    let mut idx = Index::create();
    idx.name(name).table(c(table));
    for col in cols {
        idx.col(c(col));
    }
    idx.to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                table("webhook_endpoint")
                    .col(string(c("url")))
                    .col(text(c("description")))
                    .col(json_binary(c("events")))
                    .col(string(c("secret")))
                    .col(boolean(c("enabled")))
                    .col(integer(c("consecutive_failures")))
                    .col(timestamp_with_time_zone_null(c("disabled_at")))
                    .col(timestamp_with_time_zone(c("created_at")))
                    .col(timestamp_with_time_zone(c("updated_at")))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_webhook_endpoint_tenant",
                "webhook_endpoint",
                &["tenant_id", "id"],
            ))
            .await?;
        manager
            .create_table(
                table("webhook_delivery")
                    .col(uuid(c("endpoint_id")))
                    .col(uuid(c("event_id")))
                    .col(string(c("event_type")))
                    .col(text(c("body")))
                    .col(string(c("status")))
                    .col(integer(c("attempts")))
                    .col(timestamp_with_time_zone(c("next_attempt_at")))
                    .col(timestamp_with_time_zone_null(c("lease_until")))
                    .col(integer_null(c("last_status_code")))
                    .col(timestamp_with_time_zone(c("created_at")))
                    .col(timestamp_with_time_zone_null(c("finished_at")))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_webhook_delivery_endpoint")
                            .from(c("webhook_delivery"), c("endpoint_id"))
                            .to(c("webhook_endpoint"), c("id")),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_webhook_delivery_endpoint",
                "webhook_delivery",
                &["tenant_id", "endpoint_id", "id"],
            ))
            .await?;
        manager
            .create_index(index(
                "ix_webhook_delivery_due",
                "webhook_delivery",
                &["status", "next_attempt_at"],
            ))
            .await?;
        manager
            .create_table(
                table("webhook_attempt")
                    .col(uuid(c("delivery_id")))
                    .col(integer(c("number")))
                    .col(timestamp_with_time_zone(c("attempted_at")))
                    .col(integer_null(c("status_code")))
                    .col(big_integer(c("duration_ms")))
                    .col(text_null(c("error")))
                    .col(text(c("response_snippet")))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_webhook_attempt_delivery")
                            .from(c("webhook_attempt"), c("delivery_id"))
                            .to(c("webhook_delivery"), c("id")),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_webhook_attempt_delivery",
                "webhook_attempt",
                &["tenant_id", "delivery_id"],
            ))
            .await?;
        manager
            .create_table(
                table("email_delivery")
                    .col(uuid_null(c("event_id")))
                    .col(string(c("kind")))
                    .col(string(c("to_address")))
                    .col(string(c("subject")))
                    .col(text(c("body")))
                    .col(string(c("status")))
                    .col(integer(c("attempts")))
                    .col(timestamp_with_time_zone(c("next_attempt_at")))
                    .col(timestamp_with_time_zone_null(c("lease_until")))
                    .col(text_null(c("last_error")))
                    .col(timestamp_with_time_zone(c("created_at")))
                    .col(timestamp_with_time_zone_null(c("sent_at")))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_email_delivery_tenant",
                "email_delivery",
                &["tenant_id", "id"],
            ))
            .await?;
        manager
            .create_table(
                table("email_attempt")
                    .col(uuid(c("email_id")))
                    .col(integer(c("number")))
                    .col(timestamp_with_time_zone(c("attempted_at")))
                    .col(boolean(c("sent")))
                    .col(text_null(c("error")))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_email_attempt_email")
                            .from(c("email_attempt"), c("email_id"))
                            .to(c("email_delivery"), c("id")),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_email_attempt_email",
                "email_attempt",
                &["tenant_id", "email_id"],
            ))
            .await?;
        manager
            .create_index(index(
                "ix_email_delivery_due",
                "email_delivery",
                &["status", "next_attempt_at"],
            ))
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(c("tenant"))
                    .add_column(string_null(c("admin_email")))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(c("credit_grant"))
                    .add_column(timestamp_with_time_zone_null(c("expiry_notified_at")))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(c("credit_grant"))
                    .drop_column(c("expiry_notified_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(c("tenant"))
                    .drop_column(c("admin_email"))
                    .to_owned(),
            )
            .await?;
        for t in [
            "email_attempt",
            "email_delivery",
            "webhook_attempt",
            "webhook_delivery",
            "webhook_endpoint",
        ] {
            manager
                .drop_table(Table::drop().table(c(t)).to_owned())
                .await?;
        }
        Ok(())
    }
}
