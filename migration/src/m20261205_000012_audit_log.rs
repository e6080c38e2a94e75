//! The audit trail (`service::audit_log`): one row per mutation of an API
//! key (and per key created outside a request), written in the
//! transaction of the change it records. Append-only: no code path
//! updates or deletes a row, and a trigger on each database refuses it.

use sea_orm_migration::{prelude::*, schema::*, sea_orm::DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

fn c(name: &str) -> Alias {
    Alias::new(name)
}

const APPEND_ONLY_SQLITE: [&str; 2] = [
    "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log \
     BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
    "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log \
     BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
];

const APPEND_ONLY_POSTGRES: [&str; 2] = [
    "CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS \
     $$ BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$",
    "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log \
     FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(c("audit_log"))
                    .col(uuid(c("id")).primary_key())
                    .col(uuid(c("tenant_id")))
                    .col(timestamp_with_time_zone(c("created_at")))
                    .col(string(c("actor_kind")))
                    .col(string_null(c("actor_id")))
                    .col(string_null(c("actor_role")))
                    .col(string(c("operation")))
                    .col(text(c("targets")))
                    .col(string(c("outcome")))
                    .col(boolean(c("replayed")))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_audit_log_tenant")
                            .from(c("audit_log"), c("tenant_id"))
                            .to(c("tenant"), c("id")),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, cols) in [
            ("ix_audit_log_tenant", &["tenant_id", "id"][..]),
            ("ix_audit_log_actor", &["tenant_id", "actor_id", "id"][..]),
            (
                "ix_audit_log_operation",
                &["tenant_id", "operation", "id"][..],
            ),
        ] {
            let mut index = Index::create();
            index.name(name).table(c("audit_log"));
            for col in cols {
                index.col(c(col));
            }
            manager.create_index(index.to_owned()).await?;
        }
        let triggers: &[&str] = match manager.get_database_backend() {
            DatabaseBackend::Postgres => &APPEND_ONLY_POSTGRES,
            _ => &APPEND_ONLY_SQLITE,
        };
        for sql in triggers {
            manager.get_connection().execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(c("audit_log")).to_owned())
            .await?;
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared("DROP FUNCTION IF EXISTS audit_log_append_only()")
                .await?;
        }
        Ok(())
    }
}
