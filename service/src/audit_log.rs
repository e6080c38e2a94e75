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

use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use entity::audit_log;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseBackend, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, sea_query::Expr,
};
use uuid::Uuid;

use crate::{
    Clock, Db,
    error::{Code, DomainError, Invalid},
    pagination::{Page, PageRequest},
    principal::Role,
};

/// The outcome of a mutation that succeeded.
pub const OK: &str = "OK";
/// At most this many targets per row (the rest are dropped).
pub const TARGETS_MAX: usize = 32;
/// A target longer than this is dropped (identifiers are at most 255
/// characters, and an id less).
pub const TARGET_LEN_MAX: usize = 300;

tokio::task_local! {
    static SCOPE: Scope;
}

/// Who did it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// An API key: its API id (`key_…`) and role.
    ApiKey { id: String, role: Role },
    /// A customer token: the API id of its customer (`cus_…`).
    CustomerToken { customer: String },
    /// The engine itself (bootstrap, the command line).
    System,
}

impl Actor {
    fn kind(&self) -> &'static str {
        match self {
            Actor::ApiKey { .. } => "API_KEY",
            Actor::CustomerToken { .. } => "CUSTOMER_TOKEN",
            Actor::System => "SYSTEM",
        }
    }

    fn id(&self) -> Option<&str> {
        match self {
            Actor::ApiKey { id, .. } => Some(id),
            Actor::CustomerToken { customer } => Some(customer),
            Actor::System => None,
        }
    }

    fn role(&self) -> Option<Role> {
        match self {
            Actor::ApiKey { role, .. } => Some(*role),
            Actor::CustomerToken { .. } => Some(Role::Read),
            Actor::System => None,
        }
    }

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

/// What a scope records: a mutation of one tenant by one actor.
#[derive(Debug, Clone)]
pub struct Mutation {
    pub tenant_id: Uuid,
    pub actor: Actor,
    /// The operation (the mutation's field name, `grantCredits`).
    pub operation: String,
    /// Ids and references named by the request (see [`Scope::new`]).
    pub targets: Vec<String>,
    /// When the mutation started.
    pub at: DateTime<Utc>,
}

/// What kind of thing a mutation created, for [`note_created`]. Each
/// kind's prefix is the API's (`api::graphql::ids`; a test there holds
/// the two equal), so a target reads as the id clients see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    ApiKey,
    Customer,
    Grant,
    Entry,
    WebhookEndpoint,
}

impl Created {
    /// The prefix of this kind's API ids.
    pub fn prefix(self) -> &'static str {
        match self {
            Created::ApiKey => "key",
            Created::Customer => "cus",
            Created::Grant => "grt",
            Created::Entry => "ent",
            Created::WebhookEndpoint => "whe",
        }
    }

    /// The API id of `id`: `key_0193…`.
    pub fn api_id(self, id: Uuid) -> String {
        format!("{}_{}", self.prefix(), id.simple())
    }
}

/// The audit scope of one mutation (see the module doc). Cheap to clone:
/// clones share their state.
#[derive(Debug, Clone)]
pub struct Scope(Arc<Mutex<State>>);

#[derive(Debug)]
struct State {
    mutation: Mutation,
    created: Vec<String>,
    replayed: bool,
    /// A row was committed (by a write transaction or by `finish`).
    recorded: bool,
}

impl Scope {
    /// A scope for `mutation`. Targets are kept only if they look like
    /// identifiers: 1–[`TARGET_LEN_MAX`] characters, no control characters
    /// or whitespace, nothing shaped like a credential (an API key, a
    /// customer token, a webhook secret), at most [`TARGETS_MAX`],
    /// duplicates once.
    pub fn new(mut mutation: Mutation) -> Self {
        let mut targets = Vec::new();
        for t in std::mem::take(&mut mutation.targets) {
            push_target(&mut targets, t);
        }
        mutation.targets = targets;
        Self(Arc::new(Mutex::new(State {
            mutation,
            created: Vec::new(),
            replayed: false,
            recorded: false,
        })))
    }

    /// Runs `fut` (the mutation) inside this scope: its write transactions
    /// record the mutation when they commit.
    pub async fn run<F: Future>(&self, fut: F) -> F::Output {
        SCOPE.scope(self.clone(), fut).await
    }

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

    /// The row a commit of this scope writes, if it is the scope's first.
    fn pending(&self) -> Option<audit_log::ActiveModel> {
        let state = self.lock();
        (!state.recorded).then(|| state.row(OK))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The lock is never held across an await or a panic-prone call.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    fn row(&self, outcome: &str) -> audit_log::ActiveModel {
        let m = &self.mutation;
        let mut targets = m.targets.clone();
        // What a failure or a replay noted as created was rolled back.
        if outcome == OK && !self.replayed {
            for c in &self.created {
                push_target(&mut targets, c.clone());
            }
        }
        audit_log::ActiveModel {
            id: Set(Uuid::now_v7()),
            tenant_id: Set(m.tenant_id),
            created_at: Set(m.at),
            actor_kind: Set(m.actor.kind().to_owned()),
            actor_id: Set(m.actor.id().map(str::to_owned)),
            actor_role: Set(m.actor.role().map(|r| r.as_str().to_owned())),
            operation: Set(m.operation.clone()),
            targets: Set(serde_json::to_string(&targets).unwrap_or_else(|_| "[]".into())),
            outcome: Set(outcome.to_owned()),
            replayed: Set(self.replayed && outcome == OK),
        }
    }
}

fn push_target(targets: &mut Vec<String>, t: String) {
    let shaped = !t.is_empty()
        && t.chars().count() <= TARGET_LEN_MAX
        && !t.chars().any(|c| c.is_control() || c.is_whitespace());
    if shaped && !looks_like_secret(&t) && targets.len() < TARGETS_MAX && !targets.contains(&t) {
        targets.push(t);
    }
}

/// Whether a string has the shape of a credential this engine issues: an
/// API key (`ck_live_…`), a customer token (`ct_…`) or a webhook signing
/// secret (`whsec_…`), anywhere in it. (`tests` hold these prefixes to
/// what is issued.)
fn looks_like_secret(s: &str) -> bool {
    let s = s.to_ascii_lowercase();
    s.contains("ck_live_") || s.contains("whsec_") || s.starts_with("ct_") || s.contains("=ct_")
}

/// A write transaction's commit hook ([`crate::db::WriteTxn::commit`]):
/// inserts the current scope's row into `txn` if this is its first commit,
/// and returns the scope to mark once the commit succeeded.
pub(crate) async fn before_commit(txn: &impl ConnectionTrait) -> Result<Option<Scope>, DbErr> {
    let Some((scope, row)) = SCOPE
        .try_with(|s| s.pending().map(|row| (s.clone(), row)))
        .ok()
        .flatten()
    else {
        return Ok(None);
    };
    audit_log::Entity::insert(row)
        .exec_without_returning(txn)
        .await?;
    Ok(Some(scope))
}

/// A write transaction began ([`crate::db::Db::begin_write`]): what an
/// earlier transaction of the scope noted and did not commit (it rolled
/// back) is forgotten.
pub(crate) fn on_begin() {
    let _ = SCOPE.try_with(|s| {
        let mut state = s.lock();
        if !state.recorded {
            state.created.clear();
            state.replayed = false;
        }
    });
}

/// See [`before_commit`].
pub(crate) fn after_commit(scope: Option<Scope>) {
    if let Some(scope) = scope {
        scope.lock().recorded = true;
    }
}

/// Reports that the running mutation created `id` (a target of its row).
/// Outside a scope (a job) it does nothing.
pub fn note_created(kind: Created, id: Uuid) {
    let _ = SCOPE.try_with(|s| s.lock().created.push(kind.api_id(id)));
}

/// Reports that the running mutation is an idempotent replay.
pub(crate) fn note_replay() {
    let _ = SCOPE.try_with(|s| s.lock().replayed = true);
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
    if SCOPE.try_with(|_| ()).is_ok() {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(targets: &[&str]) -> Scope {
        Scope::new(Mutation {
            tenant_id: Uuid::nil(),
            actor: Actor::System,
            operation: "op".into(),
            targets: targets.iter().map(|t| (*t).to_owned()).collect(),
            at: DateTime::<Utc>::UNIX_EPOCH,
        })
    }

    #[test]
    fn targets_keep_identifiers_only() {
        let long = "x".repeat(TARGET_LEN_MAX + 1);
        let s = scope(&[
            "cus_0193",
            "externalId=acme",
            "cus_0193",
            "",
            "two words",
            "nul\0",
            &long,
            "ck_live_0193_abcd",
            "whsec_abc",
            "ct_eyJ0.sig",
            "token=ct_eyJ0.sig",
        ]);
        assert_eq!(s.lock().mutation.targets, ["cus_0193", "externalId=acme"]);
        let many: Vec<String> = (0..TARGETS_MAX + 5).map(|i| format!("t{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(scope(&many).lock().mutation.targets.len(), TARGETS_MAX);
    }

    #[test]
    fn rows_carry_created_ids_only_when_ok_and_new() {
        let s = scope(&["idempotencyKey=k"]);
        let id = Uuid::now_v7();
        s.lock().created.push(Created::Entry.api_id(id));
        let targets = |row: &audit_log::ActiveModel| -> Vec<String> {
            serde_json::from_str(row.targets.as_ref()).unwrap()
        };
        let row = s.lock().row(OK);
        assert_eq!(
            targets(&row),
            ["idempotencyKey=k".to_owned(), Created::Entry.api_id(id)]
        );
        assert_eq!(row.replayed.as_ref(), &false);
        assert_eq!(row.actor_kind.as_ref(), "SYSTEM");
        assert_eq!(row.actor_id.as_ref(), &None);
        let failed = s.lock().row("CONFLICT");
        assert_eq!(targets(&failed), ["idempotencyKey=k"]);
        s.lock().replayed = true;
        let replay = s.lock().row(OK);
        assert_eq!(targets(&replay), ["idempotencyKey=k"]);
        assert_eq!(replay.replayed.as_ref(), &true);
        assert_eq!(s.lock().row("CONFLICT").replayed.as_ref(), &false);
    }

    #[test]
    fn pending_is_the_first_commit_only() {
        let s = scope(&[]);
        assert!(s.pending().is_some());
        after_commit(Some(s.clone()));
        assert!(s.pending().is_none());
    }
}
