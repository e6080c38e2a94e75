//! Scratch databases: one per backend per run, dropped at the end.

use std::time::Duration;

use anyhow::Context as _;
use sea_orm::{ConnectionTrait, Database, DatabaseBackend, Statement, Value};
use service::{
    Db,
    db::DbConfig,
    secrets::{Sealer, SecretsKey},
};

/// Which database a measurement ran on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

/// A database that exists for one part of one run.
pub struct Scratch {
    pub backend: Backend,
    pub url: String,
    /// The key its secrets are sealed with (`SECRETS_KEY` of the API
    /// started on it, and of [`Scratch::connect`]'s handle).
    pub secrets_key: SecretsKey,
    cleanup: Cleanup,
}

enum Cleanup {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

impl Scratch {
    /// A new empty SQLite file in a temporary folder.
    pub fn sqlite() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("credits-bench-")
            .tempdir()
            .context("temporary folder")?;
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("bench.db").display()
        );
        Ok(Self {
            backend: Backend::Sqlite,
            url,
            secrets_key: SecretsKey::generate(),
            cleanup: Cleanup::Sqlite(dir),
        })
    }

    /// A new empty PostgreSQL database `credits_bench_<pid>_<label>`.
    pub async fn postgres(admin_url: &str, label: &str) -> anyhow::Result<Self> {
        let name = format!("credits_bench_{}_{label}", std::process::id());
        let admin = Database::connect(admin_url)
            .await
            .with_context(|| format!("connect to {admin_url}"))?;
        admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await?;
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .context("create the scratch database")?;
        admin.close().await.ok();
        Ok(Self {
            backend: Backend::Postgres,
            url: replace_database(admin_url, &name),
            secrets_key: SecretsKey::generate(),
            cleanup: Cleanup::Postgres {
                admin_url: admin_url.to_owned(),
                name,
            },
        })
    }

    /// Connects (and migrates) a service handle to it.
    pub async fn connect(&self) -> anyhow::Result<Db> {
        let mut config = DbConfig::new(self.url.clone());
        if self.backend == Backend::Postgres {
            config.max_connections = Some(16);
        }
        Ok(Db::connect_and_migrate(&config)
            .await
            .context("connect to and migrate the scratch database")?
            .with_sealer(Sealer::new(&self.secrets_key)))
    }

    /// Drops it (PostgreSQL) or deletes the folder (SQLite).
    pub async fn drop_now(self) {
        if let Cleanup::Postgres { admin_url, name } = &self.cleanup {
            let done = async {
                let admin = Database::connect(admin_url).await?;
                admin
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await?;
                admin.close().await
            };
            match tokio::time::timeout(Duration::from_secs(60), done).await {
                Ok(Ok(())) => {}
                _ => eprintln!("bench: could not drop scratch database {name}"),
            }
        }
    }
}

/// `postgres://u@h:p/old?x` → `postgres://u@h:p/new?x`
pub fn replace_database(url: &str, name: &str) -> String {
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

/// A statement written with `$1, $2…` placeholders, turned into `?` for
/// SQLite (the placeholders must appear in order, each once).
pub fn stmt(backend: DatabaseBackend, sql: &str, values: Vec<Value>) -> Statement {
    if backend == DatabaseBackend::Sqlite {
        let mut out = String::with_capacity(sql.len());
        let mut chars = sql.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '$' && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
                while chars.peek().is_some_and(|d| d.is_ascii_digit()) {
                    chars.next();
                }
                out.push('?');
            } else {
                out.push(c);
            }
        }
        Statement::from_sql_and_values(backend, out, values)
    } else {
        Statement::from_sql_and_values(backend, sql, values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_and_urls() {
        let s = stmt(
            DatabaseBackend::Sqlite,
            "SELECT $1, $2, $10",
            vec![1.into(), 2.into(), 3.into()],
        );
        assert_eq!(s.sql, "SELECT ?, ?, ?");
        assert_eq!(
            replace_database("postgres://p@h:1/x?s=1", "n"),
            "postgres://p@h:1/n?s=1"
        );
    }
}
