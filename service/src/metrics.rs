//! What an operator watches (issue 19): the names of the engine's metrics
//! and the points that record them, through the `metrics` facade. The
//! processes that serve them (`api`, `worker`) install a Prometheus
//! recorder; without one (tests, tools) every call here does nothing.
//!
//! Labels are bounded: an entry type, an outcome, a pool state, a job —
//! never a tenant, customer or key.
//!
//! Recording only: this sits below [`crate::db`], which records its
//! writes here. The gauges read from the database at scrape time are
//! [`crate::gauges`].

use std::{
    collections::HashMap,
    sync::{LazyLock, Mutex},
    time::Duration,
};

use sea_orm::DatabaseTransaction;

/// GraphQL root fields run, by `operation` (the root field) and `outcome`
/// (`ok` or the error code).
pub const GRAPHQL_REQUESTS: &str = "credits_graphql_requests_total";
/// Seconds a GraphQL operation took, by `operation`.
pub const GRAPHQL_REQUEST_DURATION: &str = "credits_graphql_request_duration_seconds";
/// Ledger entries committed, by `type` (GRANT, USAGE, EXPIRY, …).
pub const LEDGER_ENTRIES: &str = "credits_ledger_entries_total";
/// Outbox events not dispatched yet.
pub const OUTBOX_PENDING: &str = "credits_outbox_pending";
/// Age of the oldest undispatched outbox event (0 when there is none).
pub const OUTBOX_OLDEST_PENDING_AGE: &str = "credits_outbox_oldest_pending_age_seconds";
/// Webhook delivery attempts, by `outcome`: `delivered`, `retrying` (failed,
/// another attempt is scheduled) or `failed` (failed for good).
pub const WEBHOOK_DELIVERIES: &str = "credits_webhook_deliveries_total";
/// Seconds a webhook attempt's HTTP request took.
pub const WEBHOOK_DELIVERY_DURATION: &str = "credits_webhook_delivery_duration_seconds";
/// Email send attempts, by `outcome`: `sent`, `retrying` or `failed`.
pub const EMAIL_DELIVERIES: &str = "credits_email_deliveries_total";
/// Database connections by `pool` (SQLite: `read`, `write`; PostgreSQL:
/// `main`) and `state` (`idle`, `in_use`).
pub const DB_POOL_CONNECTIONS: &str = "credits_db_pool_connections";
/// Seconds to start a write transaction: waiting for a pooled connection
/// and its `BEGIN`.
pub const DB_POOL_ACQUIRE_DURATION: &str = "credits_db_pool_acquire_duration_seconds";
/// Requests refused by a rate limit (429), by `limit`.
pub const RATE_LIMITED: &str = "credits_rate_limited_total";
/// Scheduled job runs, by `job` and `status`.
pub const JOB_RUNS: &str = "credits_job_runs_total";
/// Duration of a job's latest finished run.
pub const JOB_LAST_DURATION: &str = "credits_job_last_duration_seconds";
/// Start of a job's latest successful run (Unix seconds).
pub const JOB_LAST_SUCCESS: &str = "credits_job_last_success_timestamp_seconds";

/// Every metric the engine serves, with its help text (the README's list
/// and the dashboard's names are checked against it).
pub const ALL: [(&str, &str); 15] = [
    (
        GRAPHQL_REQUESTS,
        "GraphQL root fields run, by operation and outcome (ok or the error code).",
    ),
    (
        GRAPHQL_REQUEST_DURATION,
        "Seconds a GraphQL operation took, by operation.",
    ),
    (LEDGER_ENTRIES, "Ledger entries committed, by entry type."),
    (OUTBOX_PENDING, "Outbox events not dispatched yet."),
    (
        OUTBOX_OLDEST_PENDING_AGE,
        "Age in seconds of the oldest undispatched outbox event (0: none).",
    ),
    (
        WEBHOOK_DELIVERIES,
        "Webhook delivery attempts, by outcome (delivered, retrying, failed).",
    ),
    (
        WEBHOOK_DELIVERY_DURATION,
        "Seconds a webhook attempt's HTTP request took.",
    ),
    (
        EMAIL_DELIVERIES,
        "Email send attempts, by outcome (sent, retrying, failed).",
    ),
    (
        DB_POOL_CONNECTIONS,
        "Database connections, by pool (SQLite: read, write; PostgreSQL: main) and state (idle, in_use).",
    ),
    (
        DB_POOL_ACQUIRE_DURATION,
        "Seconds to start a write transaction (pool wait and BEGIN).",
    ),
    (
        RATE_LIMITED,
        "Requests refused by a rate limit (429), by limit.",
    ),
    (JOB_RUNS, "Scheduled job runs, by job and status."),
    (
        JOB_LAST_DURATION,
        "Duration in seconds of a job's latest finished run.",
    ),
    (
        JOB_LAST_SUCCESS,
        "Start of a job's latest successful run (Unix seconds).",
    ),
    ("credits_up", "1 while the process serves metrics."),
];

/// Describes every metric to the installed recorder (HELP lines).
pub fn describe() {
    for (name, help) in ALL {
        match name {
            GRAPHQL_REQUEST_DURATION | WEBHOOK_DELIVERY_DURATION | DB_POOL_ACQUIRE_DURATION => {
                metrics::describe_histogram!(name, metrics::Unit::Seconds, help);
            }
            GRAPHQL_REQUESTS | LEDGER_ENTRIES | WEBHOOK_DELIVERIES | EMAIL_DELIVERIES
            | RATE_LIMITED | JOB_RUNS => metrics::describe_counter!(name, help),
            _ => metrics::describe_gauge!(name, help),
        }
    }
    metrics::gauge!("credits_up").set(1);
    // Outcomes start at 0, so a rate of failures is a number from the
    // start rather than a missing series.
    for outcome in ["delivered", "retrying", "failed"] {
        metrics::counter!(WEBHOOK_DELIVERIES, "outcome" => outcome).increment(0);
    }
    for outcome in ["sent", "retrying", "failed"] {
        metrics::counter!(EMAIL_DELIVERIES, "outcome" => outcome).increment(0);
    }
    for limit in ["api-key", "customer-token", "auth-failures"] {
        metrics::counter!(RATE_LIMITED, "limit" => limit).increment(0);
    }
}

/// A GraphQL root field ran.
pub fn graphql_operation(operation: &str, outcome: &str, took: Duration) {
    metrics::counter!(GRAPHQL_REQUESTS, "operation" => operation.to_owned(), "outcome" => outcome.to_owned())
        .increment(1);
    metrics::histogram!(GRAPHQL_REQUEST_DURATION, "operation" => operation.to_owned())
        .record(took.as_secs_f64());
}

/// A webhook attempt finished with `outcome` (and its attempt row
/// committed).
pub fn webhook_attempt(outcome: &'static str) {
    metrics::counter!(WEBHOOK_DELIVERIES, "outcome" => outcome).increment(1);
}

/// A webhook attempt's HTTP request took `took`.
pub fn webhook_duration(took: Duration) {
    metrics::histogram!(WEBHOOK_DELIVERY_DURATION).record(took.as_secs_f64());
}

/// An email attempt finished with `outcome`.
pub fn email_attempt(outcome: &'static str) {
    metrics::counter!(EMAIL_DELIVERIES, "outcome" => outcome).increment(1);
}

/// A request was refused by the `limit` rate limit.
pub fn rate_limited(limit: &'static str) {
    metrics::counter!(RATE_LIMITED, "limit" => limit).increment(1);
}

/// Starting a write transaction took `took`.
pub(crate) fn write_acquired(took: Duration) {
    metrics::histogram!(DB_POOL_ACQUIRE_DURATION).record(took.as_secs_f64());
}

/// Ledger entries written in a transaction not yet committed, by the
/// transaction's address (stable: [`crate::db::WriteTxn`] boxes it), so
/// that only committed entries are counted ([`entries_committed`]) and a
/// rolled-back transaction's are forgotten ([`entries_dropped`]).
type Pending = HashMap<usize, Vec<(String, u64)>>;
static PENDING_ENTRIES: LazyLock<Mutex<Pending>> = LazyLock::new(Default::default);

/// An open write transaction by its address: stable while it is open
/// ([`crate::db::WriteTxn`] boxes it). The entries counted here and the
/// audit row a write carries ([`crate::audit_scope`]) name it by this key.
pub(crate) fn txn_key(txn: &DatabaseTransaction) -> usize {
    std::ptr::from_ref(txn) as usize
}

/// `txn` wrote entries of these types (counted when it commits).
pub(crate) fn entries_written<'a>(
    txn: &DatabaseTransaction,
    types: impl IntoIterator<Item = &'a str>,
) {
    let mut pending = PENDING_ENTRIES.lock().unwrap_or_else(|e| e.into_inner());
    let counts = pending.entry(txn_key(txn)).or_default();
    for t in types {
        match counts.iter_mut().find(|(k, _)| k == t) {
            Some((_, n)) => *n += 1,
            None => counts.push((t.to_owned(), 1)),
        }
    }
}

/// The transaction at `key` committed: its entries count.
pub(crate) fn entries_committed(key: usize) {
    let taken = {
        let mut pending = PENDING_ENTRIES.lock().unwrap_or_else(|e| e.into_inner());
        if pending.is_empty() {
            return;
        }
        pending.remove(&key)
    };
    for (entry_type, n) in taken.into_iter().flatten() {
        metrics::counter!(LEDGER_ENTRIES, "type" => entry_type).increment(n);
    }
}

/// The transaction at `key` ended without committing: its entries don't
/// count.
pub(crate) fn entries_dropped(key: usize) {
    let mut pending = PENDING_ENTRIES.lock().unwrap_or_else(|e| e.into_inner());
    if !pending.is_empty() {
        pending.remove(&key);
    }
}
