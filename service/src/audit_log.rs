//! The audit trail: who changed what, when, and with which outcome. (Not
//! to be confused with [`crate::ledger::audit`], which checks that
//! balances add up.)
//!
//! # What is recorded
//!
//! One row per mutation a request runs with an API key (any role: a READ
//! key's attempt is recorded too, as `FORBIDDEN`), and per API key created
//! outside any request (the bootstrap key, the CLI's `keys create`: actor
//! `SYSTEM`). A row says who (the key, or a customer token's customer, or
//! the system; and the role), what (the operation — the mutation's field
//! name — and its targets: the ids and references it named, and the ids of
//! what it created), when (the instant the mutation started) and the
//! outcome (`OK`, or the error code it answered). Targets are ids and
//! identifiers only (never request bodies, amounts, URLs or secrets: see
//! [`Scope::new`]). Jobs (resets, sweeps, deliveries) record nothing: they
//! run no [`Scope`].
//!
//! # How a row joins the change it records
//!
//! The transport runs each mutation inside a [`Scope`] (a tokio task-local,
//! so no service function takes a parameter for it). Every write
//! transaction is a [`WriteTxn`](crate::db::WriteTxn); its `commit` inserts
//! the scope's row into the same transaction just before `COMMIT`, so the
//! row exists exactly when the change does: a COMMIT that fails takes the
//! row with it, and a change can't commit without its row (a failed
//! insert aborts the commit). Service functions only report what they
//! created ([`note_created`]) and whether a keyed write was a replay (in
//! [`crate::idempotency::replay_or`]).
//!
//! The hot path saves that INSERT's round trip: `consumeCredits` hands the
//! row to the ledger's combined write
//! ([`Session::finish_last`](crate::ledger::Session::finish_last)), and
//! its transaction's commit then inserts none; if that transaction does
//! not commit, the row is due again as if never written.
//!
//! - A mutation that commits several transactions gets one row, written by
//!   its first commit; later commits add none.
//! - A mutation that fails writes one row with the error's code in a small
//!   transaction of its own ([`Scope::finish`]), after the failure — only
//!   what had committed before it is in the database, normally nothing.
//!   (If something had committed, its `OK` row stays, and the error row
//!   follows it.)
//! - A mutation that succeeds without committing anything (an idempotent
//!   replay answered from a read, a customer token, which is signed rather
//!   than stored) gets its row the same way, with outcome `OK`.
//! - Replays are recorded like any mutation, with `replayed` set.
//! - A request cut off before its mutation finishes (its timeout, a
//!   dropped connection) records what committed — nothing, or the change
//!   with its `OK` row — and never an error row.
//!
//! Append-only: no function here or elsewhere updates or deletes a row,
//! and a trigger on each database refuses `UPDATE` and `DELETE` on the
//! table. There is no retention yet: rows are kept forever.

use chrono::{DateTime, Utc};
use entity::audit_log;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, sea_query::Expr,
};
use uuid::Uuid;

pub(crate) use crate::audit_scope::note_replay;
pub use crate::audit_scope::{
    Actor, Mutation, OK, Scope, TARGET_LEN_MAX, TARGETS_MAX, note_created,
};
use crate::{
    Clock, Db,
    error::{Code, DomainError, Invalid},
    pagination::{Page, PageRequest},
    principal::Role,
};

impl Actor {
    fn from_columns(row: &audit_log::Model) -> Result<Self, Error> {
        let corrupt = |what: &str| Error::Corrupt {
            id: row.id,
            what: what.to_owned(),
        };
        match (row.actor_kind.as_str(), &row.actor_id) {
            ("API_KEY", Some(id)) => {
                let role = row
                    .actor_role
                    .as_deref()
                    .and_then(Role::parse)
                    .ok_or_else(|| corrupt("actor_role"))?;
                Ok(Actor::ApiKey {
                    id: id.clone(),
                    role,
                })
            }
            ("CUSTOMER_TOKEN", Some(id)) => Ok(Actor::CustomerToken {
                customer: id.clone(),
            }),
            ("SYSTEM", None) => Ok(Actor::System),
            _ => Err(corrupt("actor_kind")),
        }
    }
}

impl Scope {
    /// After the mutation: records its outcome (`Err(code)` for an error)
    /// in a transaction of its own, unless a commit already recorded its
    /// success. Call it outside [`Scope::run`].
    pub async fn finish(&self, db: &Db, outcome: Result<(), &str>) -> Result<(), DbErr> {
        let row = {
            let state = self.lock();
            match outcome {
                Ok(()) if state.recorded => return Ok(()),
                Ok(()) => state.row(OK),
                Err(code) => state.row(code),
            }
        };
        let txn = db.begin_write().await?;
        audit_log::Entity::insert(row)
            .exec_without_returning(&*txn)
            .await?;
        txn.commit().await?;
        self.lock().recorded = true;
        Ok(())
    }
}

/// Records a change to credentials made outside any request (the
/// bootstrap key, the command line's `keys create`) as done by `SYSTEM`,
/// in `txn`, the transaction of the change. Inside a request's scope it
/// does nothing: the scope records the request's mutation.
pub async fn record_system(
    txn: &impl ConnectionTrait,
    clock: &dyn Clock,
    tenant_id: Uuid,
    operation: &str,
    targets: Vec<String>,
) -> Result<(), DbErr> {
    if crate::audit_scope::in_scope() {
        return Ok(());
    }
    let scope = Scope::new(Mutation {
        tenant_id,
        actor: Actor::System,
        operation: operation.to_owned(),
        targets,
        at: clock.now(),
    });
    let row = scope.lock().row(OK);
    audit_log::Entity::insert(row)
        .exec_without_returning(txn)
        .await?;
    Ok(())
}

/// One recorded mutation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub actor: Actor,
    pub operation: String,
    pub targets: Vec<String>,
    pub outcome: String,
    pub replayed: bool,
}

impl TryFrom<audit_log::Model> for Entry {
    type Error = Error;

    fn try_from(row: audit_log::Model) -> Result<Self, Error> {
        let actor = Actor::from_columns(&row)?;
        let targets = serde_json::from_str(&row.targets).map_err(|_| Error::Corrupt {
            id: row.id,
            what: "targets".into(),
        })?;
        Ok(Self {
            id: row.id,
            at: row.created_at,
            actor,
            operation: row.operation,
            targets,
            outcome: row.outcome,
            replayed: row.replayed,
        })
    }
}

/// Which entries to list; every condition given must hold.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// The actor's API id (`key_…`, `cus_…`).
    pub actor: Option<String>,
    pub operation: Option<String>,
    /// One of the entry's targets, exactly.
    pub target: Option<String>,
    /// `[since, until)` on when the mutation started.
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// `OK` or an error code.
    pub outcome: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("audit_log row {id} has an unreadable {what}")]
    Corrupt { id: Uuid, what: String },
    #[error("database error")]
    Db(#[from] DbErr),
}

impl DomainError for Error {
    fn code(&self) -> Code {
        match self {
            Error::Invalid(_) => Code::Validation,
            Error::Corrupt { .. } | Error::Db(_) => Code::Internal,
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            Error::Invalid(e) => Some(&e.field),
            _ => None,
        }
    }
}

/// The tenant's entries, newest first (by when they were written).
///
/// Actor and operation are indexed; the target and outcome conditions are
/// checked on the rows the others leave, newest first, until the page is
/// full — narrow a rare target with `since`/`until`.
pub async fn list(
    db: &Db,
    tenant_id: Uuid,
    filter: &Filter,
    page: PageRequest,
) -> Result<Page<Entry>, Error> {
    let text = |field: &str, v: &Option<String>| {
        v.as_deref()
            .map(|v| crate::input::key(field, v))
            .transpose()
    };
    let actor = text("filter.actor", &filter.actor)?;
    let operation = text("filter.operation", &filter.operation)?;
    let target = text("filter.target", &filter.target)?;
    let outcome = text("filter.outcome", &filter.outcome)?;
    let since = crate::input::time_opt("filter.since", filter.since)?;
    let until = crate::input::time_opt("filter.until", filter.until)?;

    let mut query = audit_log::Entity::find().filter(audit_log::Column::TenantId.eq(tenant_id));
    if let Some(after) = page.after {
        query = query.filter(audit_log::Column::Id.lt(after));
    }
    if let Some(actor) = actor {
        query = query.filter(audit_log::Column::ActorId.eq(actor));
    }
    if let Some(operation) = operation {
        query = query.filter(audit_log::Column::Operation.eq(operation));
    }
    if let Some(outcome) = outcome {
        query = query.filter(audit_log::Column::Outcome.eq(outcome));
    }
    if let Some(since) = since {
        query = query.filter(audit_log::Column::CreatedAt.gte(since));
    }
    if let Some(until) = until {
        query = query.filter(audit_log::Column::CreatedAt.lt(until));
    }
    if let Some(target) = target {
        // An element of the JSON array, quotes included: exact, and
        // case-sensitive on both databases (unlike SQLite's LIKE).
        let needle = serde_json::to_string(&target).unwrap_or_default();
        let contains = match db.backend() {
            DatabaseBackend::Postgres => "strpos(\"audit_log\".\"targets\", $1) > 0",
            _ => "instr(\"audit_log\".\"targets\", ?) > 0",
        };
        query = query.filter(Expr::cust_with_values(contains, [needle]));
    }
    let rows = query
        .order_by_desc(audit_log::Column::Id)
        .limit(page.fetch_limit())
        .all(db.reader())
        .await?
        .into_iter()
        .map(Entry::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(page.finish(rows))
}
