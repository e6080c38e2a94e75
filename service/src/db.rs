//! Connecting to SQLite or PostgreSQL, and the write discipline of each.
//!
//! - **SQLite** (embedded): WAL, `synchronous=FULL` (unless the operator
//!   opts out: [`SqliteSynchronous`]), a busy timeout and foreign keys on
//!   every connection. Writes funnel through a pool of ONE connection and
//!   start `BEGIN IMMEDIATE`, so writers queue instead of failing with
//!   `database is locked`; reads use a separate pool of several connections
//!   and never wait for a writer (WAL).
//! - **PostgreSQL** (production): one pool for both; rows are locked inside
//!   the write transaction where the rules need it.
//!
//! On both, a connection goes back to its pool only outside any
//! transaction (`release_outside_transaction`): one whose COMMIT or
//! ROLLBACK failed is closed, and the pool opens a fresh one.

use std::{fmt, str::FromStr, time::Duration};

use futures_util::future::BoxFuture;
use tracing::Instrument as _;

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ActiveModelTrait, ConnectOptions, ConnectionTrait, Database, DatabaseBackend,
    DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait, ExecResult, QueryResult,
    QueryTrait, SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait, Value,
    sea_query::{CaseStatement, Expr},
};

pub use migration::DEFAULT_DATABASE_URL;

/// How long an SQLite connection waits for another process's write lock
/// before failing (`UNAVAILABLE`: retry with the same key). Long enough for
/// any batch of a separate worker process (which holds the lock ~100 ms at
/// a time and pauses between: `allowances::Pacer`), short enough that a
/// file locked by something else is reported within 3 s, as an outage is
/// on PostgreSQL. Waits within this process are the writer queue's
/// (`SQLITE_WRITER_ACQUIRE_TIMEOUT`), not this.
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_millis(2_500);
/// Reader connections on SQLite when not configured.
const SQLITE_READERS_DEFAULT: u32 = 4;
/// Pool size on PostgreSQL when not configured.
const POSTGRES_POOL_DEFAULT: u32 = 10;
/// See [`Db::parallel_writers`].
const PARALLEL_WRITERS_POSTGRES: usize = 4;

/// Connection settings.
#[derive(Debug, Clone)]
pub struct DbConfig {
    pub url: String,
    /// Pool size (PostgreSQL) or reader pool size (SQLite).
    pub max_connections: Option<u32>,
    /// `PRAGMA synchronous` of every SQLite connection (ignored on
    /// PostgreSQL). Default [`SqliteSynchronous::Full`].
    pub sqlite_synchronous: SqliteSynchronous,
}

impl DbConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: None,
            sqlite_synchronous: SqliteSynchronous::default(),
        }
    }
}

/// How far an SQLite commit goes before it is acknowledged: `PRAGMA
/// synchronous`, set on every connection (writer, readers, and so the job
/// queue's, which shares the writer). Operators set it with
/// `SQLITE_SYNCHRONOUS=FULL|NORMAL`.
///
/// - `FULL` (default): each COMMIT fsyncs the write-ahead log before it
///   returns, so an acknowledged write survives a power loss or an OS
///   crash.
/// - `NORMAL`: the log is fsynced only at checkpoints. Still consistent
///   (never corrupt) and safe against a crash of the process, but the
///   last writes acknowledged before a power loss or OS crash can be lost.
///   Faster on disks where fsync is slow; an opt-out for data that can be
///   replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SqliteSynchronous {
    #[default]
    Full,
    Normal,
}

impl SqliteSynchronous {
    /// The pragma's value, as `PRAGMA synchronous` reads it back (`2`, `1`).
    pub fn pragma_value(self) -> i64 {
        match self {
            SqliteSynchronous::Full => 2,
            SqliteSynchronous::Normal => 1,
        }
    }

    fn sqlx(self) -> sea_orm::sqlx::sqlite::SqliteSynchronous {
        match self {
            SqliteSynchronous::Full => sea_orm::sqlx::sqlite::SqliteSynchronous::Full,
            SqliteSynchronous::Normal => sea_orm::sqlx::sqlite::SqliteSynchronous::Normal,
        }
    }
}

impl FromStr for SqliteSynchronous {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "FULL" => Ok(SqliteSynchronous::Full),
            "NORMAL" => Ok(SqliteSynchronous::Normal),
            _ => Err(format!(
                "SQLITE_SYNCHRONOUS must be FULL or NORMAL, got {s:?}"
            )),
        }
    }
}

impl fmt::Display for SqliteSynchronous {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SqliteSynchronous::Full => "FULL",
            SqliteSynchronous::Normal => "NORMAL",
        })
    }
}

/// How long a request waits for a connection (or for a new one to be
/// made) before it is answered `UNAVAILABLE`: a database that is down or
/// cut off is reported within 3 s, not after the 30 s sqlx would wait.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_millis(2_500);

/// SQLite's single writer connection: the wait includes the writes queued
/// before this one (one fsync each with `synchronous=FULL`).
pub const SQLITE_WRITER_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// The database handle every service function takes.
#[derive(Debug, Clone)]
pub struct Db {
    read: DatabaseConnection,
    write: DatabaseConnection,
    /// Seals and opens secrets at rest ([`Db::with_sealer`]).
    sealer: Option<crate::sealing::Sealer>,
}

impl Db {
    /// Connects (creating an SQLite file if `mode=rwc`), without migrating.
    pub async fn connect(config: &DbConfig) -> Result<Self, DbErr> {
        if config.url.starts_with("sqlite:") {
            let in_memory = config.url.contains(":memory:") || config.url.contains("mode=memory");
            let write = Database::connect(sqlite_options(config, 1)).await?;
            if in_memory {
                // Every connection to `:memory:` is a database of its own:
                // one connection serves reads and writes. (Were its COMMIT
                // to fail, the fresh connection replacing it would be an
                // empty database.)
                return Ok(Self {
                    read: write.clone(),
                    write,
                    sealer: None,
                });
            }
            let readers = config.max_connections.unwrap_or(SQLITE_READERS_DEFAULT);
            let read = Database::connect(sqlite_options(config, readers)).await?;
            Ok(Self {
                read,
                write,
                sealer: None,
            })
        } else if config.url.starts_with("postgres:") || config.url.starts_with("postgresql:") {
            let mut options = ConnectOptions::new(config.url.clone());
            options
                .max_connections(config.max_connections.unwrap_or(POSTGRES_POOL_DEFAULT))
                .connect_timeout(ACQUIRE_TIMEOUT)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .sqlx_logging(false)
                .map_sqlx_postgres_pool_opts(|pool| {
                    pool.after_release(release_outside_transaction::<sea_orm::sqlx::Postgres>)
                });
            let conn = Database::connect(options).await?;
            Ok(Self {
                read: conn.clone(),
                write: conn,
                sealer: None,
            })
        } else {
            Err(DbErr::Custom(format!(
                "DATABASE_URL must start with sqlite: or postgres:, got {:?}",
                config.url.split(':').next().unwrap_or_default()
            )))
        }
    }

    /// Connects and applies pending migrations (idempotent).
    pub async fn connect_and_migrate(config: &DbConfig) -> Result<Self, DbErr> {
        let db = Self::connect(config).await?;
        db.migrate().await?;
        Ok(db)
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<(), DbErr> {
        Migrator::up(&self.write, None).await
    }

    /// Names of migrations not yet applied.
    pub async fn pending_migrations(&self) -> Result<Vec<String>, DbErr> {
        Ok(Migrator::get_pending_migrations(&self.read)
            .await?
            .iter()
            .map(|m| m.name().to_owned())
            .collect())
    }

    /// The connection for reads.
    pub fn reader(&self) -> &DatabaseConnection {
        &self.read
    }

    /// The connection for writes outside an explicit transaction (rare:
    /// prefer [`Db::begin_write`]).
    pub fn writer(&self) -> &DatabaseConnection {
        &self.write
    }

    /// Starts a write transaction: `BEGIN IMMEDIATE` on SQLite (take the
    /// write lock now, not at the first write), a plain `BEGIN` on
    /// PostgreSQL. Its commit records the running mutation in the audit
    /// trail ([`WriteTxn`]).
    pub async fn begin_write(&self) -> Result<WriteTxn, DbErr> {
        let mut options = TransactionOptions::default();
        if self.backend() == DatabaseBackend::Sqlite {
            options.sqlite_transaction_mode = Some(SqliteTransactionMode::Immediate);
        }
        // A span per write transaction (a child of the request's, job's or
        // delivery's span in traces), open until it commits or drops.
        let span = tracing::info_span!("db.transaction", otel.kind = "client");
        let started = std::time::Instant::now();
        let inner = self
            .write
            .begin_with_options(options)
            .instrument(span.clone())
            .await?;
        crate::metrics::write_acquired(started.elapsed());
        crate::audit_scope::on_begin();
        Ok(WriteTxn {
            inner: Some(Box::new(inner)),
            _span: span,
        })
    }

    /// How many write transactions a batch job runs side by side:
    /// PostgreSQL locks rows, so chunks of disjoint rows commit in parallel
    /// (bounded well under the pool size); SQLite has one writer.
    pub fn parallel_writers(&self) -> usize {
        match self.backend() {
            DatabaseBackend::Sqlite => 1,
            _ => PARALLEL_WRITERS_POSTGRES,
        }
    }

    /// This handle, sealing and opening secrets at rest with `sealer`
    /// (the process's secrets key: see [`crate::secrets`]).
    pub fn with_sealer(mut self, sealer: crate::sealing::Sealer) -> Self {
        self.sealer = Some(sealer);
        self
    }

    /// What seals and opens secrets at rest; an error if this handle was
    /// made without a key.
    pub fn sealer(&self) -> Result<&crate::sealing::Sealer, crate::sealing::Error> {
        self.sealer.as_ref().ok_or(crate::sealing::Error::NoKey)
    }

    pub fn backend(&self) -> DatabaseBackend {
        self.write.get_database_backend()
    }

    /// Succeeds when the database answers a trivial query.
    pub async fn ping(&self) -> Result<(), DbErr> {
        self.read.ping().await
    }

    /// Counts every statement either pool runs from now on (for tests that
    /// show a query's cost does not grow with its data).
    #[cfg(feature = "testing")]
    pub fn count_statements(&mut self) -> std::sync::Arc<std::sync::atomic::AtomicU64> {
        use std::sync::{
            Arc,
            atomic::{AtomicU64, Ordering},
        };
        let counter = Arc::new(AtomicU64::new(0));
        // PRINT_STATEMENTS=1: each statement to stderr, to see what a count is.
        let print = std::env::var_os("PRINT_STATEMENTS").is_some();
        for conn in [&mut self.read, &mut self.write] {
            let counter = counter.clone();
            conn.set_metric_callback(move |info| {
                counter.fetch_add(1, Ordering::Relaxed);
                if print {
                    eprintln!("SQL {}", info.statement.sql);
                }
            });
        }
        counter
    }

    /// Closes both pools.
    pub async fn close(self) -> Result<(), DbErr> {
        self.read.close().await?;
        self.write.close().await
    }
}

/// A write transaction ([`Db::begin_write`]): a [`DatabaseTransaction`]
/// (it derefs to one and runs statements as one) whose [`commit`] first
/// inserts the audit row of the mutation it runs for, when a request's
/// audit scope is active and has not been recorded yet
/// ([`crate::audit_log`]). The row is part of the transaction: if the
/// COMMIT fails, the row goes with the change. Outside a scope (jobs,
/// tests) it is a plain transaction.
///
/// Why here rather than a parameter of every service function: every
/// write of a mutation goes through `begin_write`, so no service function
/// can forget the audit row, and none needs to know about it.
///
/// [`commit`]: WriteTxn::commit
///
/// The transaction is boxed so its address stays put while it is open:
/// the ledger entries it writes are counted by that address and reach the
/// `credits_ledger_entries_total` metric only when it commits
/// ([`crate::metrics`]).
#[derive(Debug)]
pub struct WriteTxn {
    /// `None` only once committed or rolled back.
    inner: Option<Box<DatabaseTransaction>>,
    /// The `db.transaction` span, closed with the transaction.
    _span: tracing::Span,
}

impl WriteTxn {
    fn txn(&self) -> &DatabaseTransaction {
        self.inner
            .as_deref()
            .expect("a WriteTxn is open until commit or rollback consumes it")
    }

    /// Writes the scope's audit row (if due), then commits.
    pub async fn commit(mut self) -> Result<(), DbErr> {
        let audited = crate::audit_scope::before_commit(self.txn()).await?;
        let inner = self.inner.take().expect("open until consumed");
        let key = crate::metrics::txn_key(&inner);
        let result = inner.commit().await;
        match result {
            Ok(()) => crate::metrics::entries_committed(key),
            Err(_) => {
                crate::metrics::entries_dropped(key);
                crate::audit_scope::not_committed(key);
            }
        }
        result?;
        crate::audit_scope::after_commit(audited);
        Ok(())
    }

    /// Rolls back (dropping the transaction does too, on the connection's
    /// next use).
    pub async fn rollback(mut self) -> Result<(), DbErr> {
        let inner = self.inner.take().expect("open until consumed");
        let key = crate::metrics::txn_key(&inner);
        crate::metrics::entries_dropped(key);
        crate::audit_scope::not_committed(key);
        inner.rollback().await
    }
}

impl Drop for WriteTxn {
    fn drop(&mut self) {
        if let Some(inner) = &self.inner {
            let key = crate::metrics::txn_key(inner);
            crate::metrics::entries_dropped(key);
            crate::audit_scope::not_committed(key);
        }
    }
}

impl std::ops::Deref for WriteTxn {
    type Target = DatabaseTransaction;

    fn deref(&self) -> &DatabaseTransaction {
        self.txn()
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for WriteTxn {
    fn get_database_backend(&self) -> DatabaseBackend {
        self.txn().get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.txn().execute_raw(stmt).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.txn().execute_unprepared(sql).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.txn().query_one_raw(stmt).await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.txn().query_all_raw(stmt).await
    }
}

fn sqlite_options(config: &DbConfig, max_connections: u32) -> ConnectOptions {
    let synchronous = config.sqlite_synchronous.sqlx();
    let mut options = ConnectOptions::new(config.url.clone());
    // The writer is a queue of one: waiting behind other writes is normal
    // under load, so it waits longer than a reader.
    let acquire = if max_connections == 1 {
        SQLITE_WRITER_ACQUIRE_TIMEOUT
    } else {
        ACQUIRE_TIMEOUT
    };
    options
        .max_connections(max_connections)
        .min_connections(1)
        .acquire_timeout(acquire)
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(move |opts| {
            opts.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(synchronous)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                .foreign_keys(true)
        })
        .map_sqlx_sqlite_pool_opts(|pool| {
            pool.after_release(release_outside_transaction::<sea_orm::sqlx::Sqlite>)
        });
    options
}

/// The pools' `after_release` check: a connection goes back to its pool
/// only if no transaction is open on it; otherwise the pool closes it
/// (which rolls back whatever it held) and opens a fresh one.
///
/// Why: sqlx counts a connection's open transactions itself
/// (`transaction_depth`) and lowers the count only when COMMIT or ROLLBACK
/// *succeeds*. On SQLite a COMMIT that fails (`database or disk is full`,
/// an I/O error) rolls the transaction back inside SQLite, so the ROLLBACK
/// that SeaORM then sends fails too ("no transaction is active") and the
/// count stays at 1. Returned to the pool like that, the connection turned
/// every later `BEGIN IMMEDIATE` into `SAVEPOINT` and every COMMIT into
/// `RELEASE`; after the first rolled-back request (`ROLLBACK TO SAVEPOINT`
/// keeps the transaction open) all writes were acknowledged inside one
/// transaction that never committed. See `tests/durability.rs`.
///
/// A transaction dropped without COMMIT queues its ROLLBACK for the
/// connection's next command, so a connection that still counts one is
/// pinged first (which runs the queued ROLLBACK) and judged after.
fn release_outside_transaction<DB: sea_orm::sqlx::Database>(
    conn: &mut DB::Connection,
    _: sea_orm::sqlx::pool::PoolConnectionMetadata,
) -> BoxFuture<'_, Result<bool, sea_orm::sqlx::Error>> {
    use sea_orm::sqlx::Connection;
    Box::pin(async move {
        if !conn.is_in_transaction() {
            return Ok(true);
        }
        conn.ping().await?;
        if !conn.is_in_transaction() {
            return Ok(true);
        }
        tracing::error!(
            "a database connection came back to its pool inside a transaction \
             (its COMMIT or ROLLBACK failed): closing it"
        );
        Ok(false)
    })
}

/// The new value of one column for each row of `rows`: the value itself
/// for one row, else `CASE WHEN id = … THEN … END` (every row is named, and
/// the statement's `WHERE id IN (…)` touches no other).
pub(crate) fn by_id<T>(rows: &[T], id: impl Fn(&T) -> Expr, value: impl Fn(&T) -> Expr) -> Expr {
    match rows {
        [one] => value(one),
        _ => rows
            .iter()
            .fold(CaseStatement::new(), |case, row| {
                case.case(id(row), value(row))
            })
            .into(),
    }
}

/// Rows per multi-row INSERT: keeps each statement under SQLite's
/// bound-parameter limit.
pub(crate) const INSERT_CHUNK: usize = 500;

/// Inserts rows (none is fine), [`INSERT_CHUNK`] to a statement.
pub(crate) async fn insert_chunked<A>(
    conn: &impl ConnectionTrait,
    rows: impl IntoIterator<Item = A>,
) -> Result<(), DbErr>
where
    A: ActiveModelTrait + Send,
{
    for insert in insert_statements(conn.get_database_backend(), rows) {
        conn.execute_raw(insert).await?;
    }
    Ok(())
}

/// The multi-row INSERTs of rows (none for none), [`INSERT_CHUNK`] to a
/// statement, built but not run: for a caller that sends them with others.
pub(crate) fn insert_statements<A>(
    backend: DatabaseBackend,
    rows: impl IntoIterator<Item = A>,
) -> Vec<Statement>
where
    A: ActiveModelTrait,
{
    let mut rows = rows.into_iter().peekable();
    let mut statements = Vec::new();
    while rows.peek().is_some() {
        let chunk: Vec<A> = rows.by_ref().take(INSERT_CHUNK).collect();
        statements.push(A::Entity::insert_many(chunk).build(backend));
    }
    statements
}

/// A raw statement written with `?` placeholders, which become `$1, $2, …`
/// on PostgreSQL (what hand-written SQL in `service` runs through).
pub fn statement(backend: DatabaseBackend, sql: &str, values: Vec<Value>) -> Statement {
    let sql = if backend == DatabaseBackend::Postgres {
        let mut out = String::with_capacity(sql.len() + 16);
        let mut n = 0;
        for c in sql.chars() {
            if c == '?' {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            } else {
                out.push(c);
            }
        }
        out
    } else {
        sql.to_owned()
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// `alias.col AS "prefix" || col` for every column of `E`, so rows of two
/// tables read in one statement part again with `from_query_result(row,
/// prefix)`.
pub fn columns_as<E: EntityTrait>(alias: &str, prefix: &str) -> String {
    use sea_orm::{IdenStatic, Iterable};
    E::Column::iter()
        .map(|c| format!("{alias}.\"{0}\" AS \"{prefix}{0}\"", c.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres() {
        let s = statement(DatabaseBackend::Postgres, "a = ? AND b IN (?, ?)", vec![]);
        assert_eq!(s.sql, "a = $1 AND b IN ($2, $3)");
        let s = statement(DatabaseBackend::Sqlite, "a = ?", vec![]);
        assert_eq!(s.sql, "a = ?");
    }
}
