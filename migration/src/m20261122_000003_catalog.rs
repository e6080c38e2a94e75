//! Products, plans, features, plan credits, entitlements, subscriptions,
//! allowance periods and top-up orders; usage entries gain a quantity.
//!
//! Money (prices, order totals) is `BIGINT` micro-units of the currency,
//! like credits: exact and summable on both databases. Price tables are
//! JSON with every number written as a decimal string.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

fn index(name: &str, table: &str, cols: &[&str]) -> IndexCreateStatement {
    let mut idx = Index::create();
    idx.name(name).table(Alias::new(table));
    for col in cols {
        idx.col(Alias::new(*col));
    }
    idx.to_owned()
}

fn fk(name: &str, from: (&str, &str), to: &str) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(Alias::new(from.0), Alias::new(from.1))
        .to(Alias::new(to), Alias::new("id"))
        .to_owned()
}

fn table(name: &str) -> TableCreateStatement {
    Table::create()
        .table(Alias::new(name))
        .col(uuid(Alias::new("id")).primary_key())
        .col(uuid(Alias::new("tenant_id")))
        .foreign_key(&mut fk(
            &format!("fk_{name}_tenant"),
            (name, "tenant_id"),
            "tenant",
        ))
        .to_owned()
}

fn c(name: &str) -> Alias {
    Alias::new(name)
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                table("product")
                    .col(string(c("key")))
                    .col(string(c("name")))
                    .col(text(c("description")))
                    .col(timestamp_with_time_zone(c("created_at")))
                    .col(timestamp_with_time_zone(c("updated_at")))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("ux_product_key", "product", &["tenant_id", "key"])
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                table("plan")
                    .col(uuid(c("product_id")))
                    .col(string(c("key")))
                    .col(string(c("name")))
                    .col(string(c("billing_interval")))
                    .col(string(c("status")))
                    .col(uuid_null(c("copied_from_plan_id")))
                    .col(timestamp_with_time_zone(c("created_at")))
                    .col(timestamp_with_time_zone(c("updated_at")))
                    .col(timestamp_with_time_zone_null(c("published_at")))
                    .foreign_key(&mut fk(
                        "fk_plan_product",
                        ("plan", "product_id"),
                        "product",
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("ux_plan_key", "plan", &["tenant_id", "key"])
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_plan_product",
                "plan",
                &["tenant_id", "product_id"],
            ))
            .await?;

        manager
            .create_table(
                table("feature")
                    .col(string(c("key")))
                    .col(string(c("name")))
                    .col(string(c("unit")))
                    .col(timestamp_with_time_zone(c("created_at")))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("ux_feature_key", "feature", &["tenant_id", "key"])
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                table("plan_credit")
                    .col(uuid(c("plan_id")))
                    .col(uuid(c("credit_system_id")))
                    .col(big_integer_null(c("included_micros")))
                    .col(string_null(c("reset_interval")))
                    .col(string(c("rollover")))
                    .col(big_integer_null(c("rollover_cap_micros")))
                    .col(string_null(c("commitment")))
                    .col(json_binary_null(c("top_up_price")))
                    .col(json_binary_null(c("recurring_price")))
                    .col(big_integer_null(c("recurring_quantity_micros")))
                    .col(big_integer_null(c("min_quantity_micros")))
                    .col(big_integer_null(c("max_quantity_micros")))
                    .col(string_null(c("purchase_expiration")))
                    .col(big_integer_null(c("low_credit_limit_micros")))
                    .col(string_null(c("low_credit_action")))
                    .col(boolean(c("mandatory_purchase")))
                    .col(timestamp_with_time_zone(c("created_at")))
                    .col(timestamp_with_time_zone(c("updated_at")))
                    .foreign_key(&mut fk(
                        "fk_plan_credit_plan",
                        ("plan_credit", "plan_id"),
                        "plan",
                    ))
                    .foreign_key(&mut fk(
                        "fk_plan_credit_credit_system",
                        ("plan_credit", "credit_system_id"),
                        "credit_system",
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "ux_plan_credit",
                    "plan_credit",
                    &["tenant_id", "plan_id", "credit_system_id"],
                )
                .unique()
                .to_owned(),
            )
            .await?;

        manager
            .create_table(
                table("entitlement")
                    .col(uuid(c("plan_id")))
                    .col(uuid(c("feature_id")))
                    .col(uuid(c("credit_system_id")))
                    .col(big_integer(c("credit_cost_micros")))
                    .col(timestamp_with_time_zone(c("created_at")))
                    .foreign_key(&mut fk(
                        "fk_entitlement_plan",
                        ("entitlement", "plan_id"),
                        "plan",
                    ))
                    .foreign_key(&mut fk(
                        "fk_entitlement_feature",
                        ("entitlement", "feature_id"),
                        "feature",
                    ))
                    .foreign_key(&mut fk(
                        "fk_entitlement_credit_system",
                        ("entitlement", "credit_system_id"),
                        "credit_system",
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "ux_entitlement",
                    "entitlement",
                    &["tenant_id", "plan_id", "feature_id"],
                )
                .unique()
                .to_owned(),
            )
            .await?;

        manager
            .create_table(
                table("subscription")
                    .col(uuid(c("customer_id")))
                    .col(uuid(c("plan_id")))
                    .col(timestamp_with_time_zone(c("billing_anchor")))
                    .col(timestamp_with_time_zone(c("started_at")))
                    .col(timestamp_with_time_zone(c("current_period_start")))
                    .col(timestamp_with_time_zone(c("current_period_end")))
                    .col(timestamp_with_time_zone_null(c("cancel_at")))
                    .col(timestamp_with_time_zone(c("created_at")))
                    .col(timestamp_with_time_zone(c("updated_at")))
                    .foreign_key(&mut fk(
                        "fk_subscription_customer",
                        ("subscription", "customer_id"),
                        "customer",
                    ))
                    .foreign_key(&mut fk(
                        "fk_subscription_plan",
                        ("subscription", "plan_id"),
                        "plan",
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_subscription_customer",
                "subscription",
                &["tenant_id", "customer_id"],
            ))
            .await?;
        manager
            .create_index(index(
                "ix_subscription_period_end",
                "subscription",
                &["current_period_end"],
            ))
            .await?;

        // One row per allowance period granted: the key that makes resets
        // exactly-once, whoever runs them and however often.
        manager
            .create_table(
                table("allowance_period")
                    .col(uuid(c("subscription_id")))
                    .col(uuid(c("plan_credit_id")))
                    .col(timestamp_with_time_zone(c("period_start")))
                    .col(timestamp_with_time_zone(c("period_end")))
                    .col(uuid(c("grant_id")))
                    .col(timestamp_with_time_zone(c("created_at")))
                    .foreign_key(&mut fk(
                        "fk_allowance_period_subscription",
                        ("allowance_period", "subscription_id"),
                        "subscription",
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "ux_allowance_period",
                    "allowance_period",
                    &[
                        "tenant_id",
                        "subscription_id",
                        "plan_credit_id",
                        "period_start",
                    ],
                )
                .unique()
                .to_owned(),
            )
            .await?;

        manager
            .create_table(
                table("top_up_order")
                    .col(uuid(c("customer_id")))
                    .col(uuid(c("credit_system_id")))
                    .col(uuid(c("plan_credit_id")))
                    .col(big_integer(c("quantity_micros")))
                    .col(string(c("currency")))
                    .col(big_integer(c("subtotal_micros")))
                    .col(big_integer(c("tax_micros")))
                    .col(big_integer(c("total_micros")))
                    .col(json_binary(c("quote")))
                    .col(string(c("status")))
                    .col(string_null(c("gateway")))
                    .col(string_null(c("payment_id")))
                    .col(timestamp_with_time_zone_null(c("paid_at")))
                    .col(text_null(c("failure_reason")))
                    .col(uuid_null(c("grant_id")))
                    .col(boolean(c("automatic")))
                    .col(timestamp_with_time_zone(c("expires_at")))
                    .col(timestamp_with_time_zone(c("created_at")))
                    .col(timestamp_with_time_zone(c("updated_at")))
                    .foreign_key(&mut fk(
                        "fk_top_up_order_customer",
                        ("top_up_order", "customer_id"),
                        "customer",
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_top_up_order_customer",
                "top_up_order",
                &["tenant_id", "customer_id", "credit_system_id"],
            ))
            .await?;
        manager
            .create_index(index(
                "ix_top_up_order_expiry",
                "top_up_order",
                &["status", "expires_at"],
            ))
            .await?;

        manager
            .alter_table(
                Table::alter()
                    .table(c("ledger_entry"))
                    .add_column(big_integer_null(c("quantity_micros")))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(c("ledger_entry"))
                    .drop_column(c("quantity_micros"))
                    .to_owned(),
            )
            .await?;
        for t in [
            "top_up_order",
            "allowance_period",
            "subscription",
            "entitlement",
            "plan_credit",
            "feature",
            "plan",
            "product",
        ] {
            manager
                .drop_table(Table::drop().table(c(t)).to_owned())
                .await?;
        }
        Ok(())
    }
}
