//! Online backups of an SQLite database: a consistent copy taken while
//! the engine keeps running (`VACUUM INTO`, which reads one snapshot and
//! writes a compact, self-contained file). PostgreSQL is backed up with
//! its own tools (`pg_dump`, or base backups with WAL archiving).

use std::path::Path;

use sea_orm::{ConnectionTrait, DatabaseBackend, DbErr};

use crate::Db;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("backups of PostgreSQL are made with pg_dump (see README \"Failure and recovery\")")]
    NotSqlite,
    #[error("{0} already exists; choose a new file")]
    Exists(String),
    #[error("the backup path must be valid UTF-8 without quotes")]
    BadPath,
    #[error("backup failed: {0}")]
    Db(#[from] DbErr),
}

/// Writes a consistent copy of the database to `to` (a new file).
pub async fn sqlite(db: &Db, to: &Path) -> Result<(), Error> {
    if db.backend() != DatabaseBackend::Sqlite {
        return Err(Error::NotSqlite);
    }
    if to.exists() {
        return Err(Error::Exists(to.display().to_string()));
    }
    let path = to
        .to_str()
        .filter(|p| !p.contains('\''))
        .ok_or(Error::BadPath)?;
    // On the writer: the copy then includes every committed write.
    db.writer()
        .execute_unprepared(&format!("VACUUM INTO '{path}'"))
        .await?;
    Ok(())
}
