//! Test support: a fresh, migrated database per test.
//!
//! By default each [`TestDb`] is a new SQLite file in a temporary folder.
//! With `TEST_DATABASE_URL=postgres://user@host:port/any_db` set, each is a
//! new PostgreSQL database of its own (`credits_test_<uuid>`), created and
//! migrated through the real migrations, and dropped when the `TestDb` is.
//!
//! Each has a secrets key of its own ([`TestDb::secrets_key`]) its handle
//! seals with; for SQLite it is also written to the key file beside the
//! database, so a binary started on the same file uses it too (on
//! PostgreSQL, give it `SECRETS_KEY`).

use sea_orm::{ConnectionTrait, Database, DatabaseBackend};
use uuid::Uuid;

use crate::{
    Clock,
    credit_systems::{self, Kind, NewCreditSystem},
    customers::{self, NewCustomer},
    db::{Db, DbConfig},
    secrets::{self, Sealer, SecretsKey},
    tenants,
};

/// What most ledger tests start from: a tenant with the credit system
/// `tokens` and the customer `acme` ([`seed_tenant`]).
#[derive(Debug, Clone, Copy)]
pub struct Seeded {
    pub tenant_id: Uuid,
    pub credit_system_id: crate::ids::CreditSystemId,
    pub customer_id: crate::ids::CustomerId,
}

/// Creates tenant `name`, its credit system `tokens` ("AI tokens", units,
/// `precision` decimals) and its customer `acme` (billing@acme.test),
/// through the domain's own functions.
pub async fn seed_tenant(db: &Db, clock: &dyn Clock, name: &str, precision: i32) -> Seeded {
    let tenant = tenants::create(db, clock, name).await.unwrap();
    let cs = credit_systems::create(db, clock, tenant.id, &tokens(precision))
        .await
        .unwrap();
    let customer = customers::create(db, clock, tenant.id, &customer("acme"))
        .await
        .unwrap();
    Seeded {
        tenant_id: tenant.id,
        credit_system_id: cs.id,
        customer_id: customer.id,
    }
}

/// The credit system `tokens`: "AI tokens", units, `precision` decimals.
pub fn tokens(precision: i32) -> NewCreditSystem {
    NewCreditSystem {
        key: "tokens".into(),
        name: "AI tokens".into(),
        description: String::new(),
        unit_singular: "token".into(),
        unit_plural: "tokens".into(),
        precision,
        kind: Kind::Units,
        currency: None,
    }
}

/// A top-level customer `external_id`, named after it capitalised
/// (`acme`: "Acme", billing@acme.test).
pub fn customer(external_id: &str) -> NewCustomer {
    let mut name = external_id.to_owned();
    if let Some(first) = name.get_mut(..1) {
        first.make_ascii_uppercase();
    }
    NewCustomer {
        external_id: external_id.into(),
        name,
        email: Some(format!("billing@{external_id}.test")),
        metadata: None,
        parent: None,
    }
}

/// A migrated database that exists for one test.
pub struct TestDb {
    pub db: Db,
    /// The URL it was created at (to connect a second process to it).
    pub url: String,
    secrets_key: SecretsKey,
    cleanup: Cleanup,
}

enum Cleanup {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

impl TestDb {
    /// A fresh database: PostgreSQL when `TEST_DATABASE_URL` is set, else SQLite.
    pub async fn new() -> Self {
        Self::create(true).await
    }

    /// A fresh, empty database with no migrations applied.
    pub async fn unmigrated() -> Self {
        Self::create(false).await
    }

    async fn create(migrate: bool) -> Self {
        let (url, cleanup) = match std::env::var("TEST_DATABASE_URL") {
            Ok(admin_url) if !admin_url.is_empty() => {
                let name = format!("credits_test_{}", Uuid::now_v7().simple());
                let admin = Database::connect(&admin_url)
                    .await
                    .expect("connect to TEST_DATABASE_URL");
                assert_eq!(
                    admin.get_database_backend(),
                    DatabaseBackend::Postgres,
                    "TEST_DATABASE_URL must be a postgres:// URL"
                );
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create test database");
                admin.close().await.ok();
                (
                    replace_database(&admin_url, &name),
                    Cleanup::Postgres { admin_url, name },
                )
            }
            _ => {
                let dir = tempfile::tempdir().expect("temporary folder");
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
                (url, Cleanup::Sqlite(dir))
            }
        };
        let secrets_key = SecretsKey::generate();
        if let Some(path) = secrets::key_file_for(&url) {
            secrets::create_key_file(&path, &secrets_key).expect("write the secrets key file");
        }
        let config = DbConfig::new(url.clone());
        let db = if migrate {
            Db::connect_and_migrate(&config).await
        } else {
            Db::connect(&config).await
        }
        .expect("connect to the test database")
        .with_sealer(Sealer::new(&secrets_key));
        Self {
            db,
            url,
            secrets_key,
            cleanup,
        }
    }

    /// The key its handle seals secrets with (`SECRETS_KEY` for a process
    /// started on it: [`SecretsKey::to_base64`]).
    pub fn secrets_key(&self) -> &SecretsKey {
        &self.secrets_key
    }

    /// Another handle on the same database (its own pools), with the same
    /// secrets key.
    pub async fn connect_again(&self) -> Db {
        Db::connect(&DbConfig::new(self.url.clone()))
            .await
            .expect("connect to the test database")
            .with_sealer(Sealer::new(&self.secrets_key))
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.cleanup, Cleanup::Postgres { .. })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Cleanup::Postgres { admin_url, name } = &self.cleanup {
            let (admin_url, db_name) = (admin_url.clone(), name.clone());
            // Drop runs inside the test's runtime: use a thread of our own.
            let dropped = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    let admin = Database::connect(&admin_url).await?;
                    admin
                        .execute_unprepared(&format!(
                            "DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"
                        ))
                        .await?;
                    admin.close().await
                })
            })
            .join();
            if !matches!(dropped, Ok(Ok(()))) {
                eprintln!("could not drop test database {name}");
            }
        }
    }
}

/// `postgres://u@h:p/old?x` → `postgres://u@h:p/new?x`
fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{host_part}/{name}?{q}"),
        None => format!("{host_part}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn replace_database_keeps_host_and_query() {
        use super::replace_database as r;
        assert_eq!(r("postgres://p@h:1/x", "n"), "postgres://p@h:1/n");
        assert_eq!(r("postgres://p@h:1", "n"), "postgres://p@h:1/n");
        assert_eq!(r("postgres://p@h:1/x?s=1", "n"), "postgres://p@h:1/n?s=1");
    }
}
