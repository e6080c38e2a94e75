//! The audit scope of one mutation: what the running mutation records
//! (its actor, operation and targets, what it created, whether it was a
//! replay) and the hooks every write transaction calls
//! ([`crate::db::WriteTxn`]) to put the mutation's row in the same
//! transaction as its change. How and why: [`crate::audit_log`], which
//! re-exports these names and reads the log.
//!
//! Below [`crate::db`] (which calls the hooks) and knowing nothing of it;
//! what needs a database handle (`Scope::finish`, the listing) is in
//! `audit_log`, above.

use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use entity::audit_log;
use sea_orm::{ActiveValue::Set, DatabaseTransaction, DbErr, EntityTrait};
use uuid::Uuid;

use crate::ids::TypedId;
use crate::metrics::txn_key;
use crate::principal::Role;

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
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Actor::ApiKey { .. } => "API_KEY",
            Actor::CustomerToken { .. } => "CUSTOMER_TOKEN",
            Actor::System => "SYSTEM",
        }
    }

    pub(crate) fn id(&self) -> Option<&str> {
        match self {
            Actor::ApiKey { id, .. } => Some(id),
            Actor::CustomerToken { customer } => Some(customer),
            Actor::System => None,
        }
    }

    pub(crate) fn role(&self) -> Option<Role> {
        match self {
            Actor::ApiKey { role, .. } => Some(*role),
            Actor::CustomerToken { .. } => Some(Role::Read),
            Actor::System => None,
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

/// The audit scope of one mutation (see the module doc). Cheap to clone:
/// clones share their state.
#[derive(Debug, Clone)]
pub struct Scope(Arc<Mutex<State>>);

#[derive(Debug)]
pub(crate) struct State {
    mutation: Mutation,
    created: Vec<String>,
    replayed: bool,
    /// A row was committed (by a write transaction or by `finish`).
    pub(crate) recorded: bool,
    /// The open write transaction (by address: [`txn_key`]) whose last
    /// write carries the row ([`row_with_last_write`]), so its commit does
    /// not insert it again.
    written_by: Option<usize>,
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
            written_by: None,
        })))
    }

    /// Runs `fut` (the mutation) inside this scope: its write transactions
    /// record the mutation when they commit.
    pub async fn run<F: Future>(&self, fut: F) -> F::Output {
        SCOPE.scope(self.clone(), fut).await
    }

    /// What the commit of transaction `txn` ([`txn_key`]) does for the
    /// scope's row (see [`Commit`]).
    fn at_commit(&self, txn: usize) -> Commit {
        let state = self.lock();
        match state.written_by {
            _ if state.recorded => Commit::Nothing,
            None => Commit::Insert(Box::new(state.row(OK))),
            Some(carrier) if carrier == txn => Commit::Carried,
            Some(_) => Commit::Nothing,
        }
    }

    /// See [`not_committed`].
    fn not_committed(&self, txn: usize) {
        let mut state = self.lock();
        if state.written_by == Some(txn) {
            state.written_by = None;
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // The lock is never held across an await or a panic-prone call.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    pub(crate) fn row(&self, outcome: &str) -> audit_log::ActiveModel {
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

/// What a transaction's commit does for the scope's row.
#[derive(Debug)]
enum Commit {
    /// Insert it: the scope's first commit, and no write carried it.
    Insert(Box<audit_log::ActiveModel>),
    /// A write of this transaction carried it ([`row_with_last_write`]):
    /// mark it recorded once the commit succeeds.
    Carried,
    /// Recorded already, or another open transaction carries it: that
    /// one's commit records it, or, if it does not commit, the next commit
    /// or `Scope::finish` does. (Nothing inserts it twice.)
    Nothing,
}

/// A write transaction's commit hook ([`crate::db::WriteTxn::commit`]):
/// inserts the current scope's row into `txn` if this is its first commit
/// and no write carried it ([`row_with_last_write`]), and returns the
/// scope to mark once the commit succeeded.
pub(crate) async fn before_commit(txn: &DatabaseTransaction) -> Result<Option<Scope>, DbErr> {
    let Some((scope, commit)) = SCOPE
        .try_with(|s| (s.clone(), s.at_commit(txn_key(txn))))
        .ok()
    else {
        return Ok(None);
    };
    match commit {
        Commit::Insert(row) => {
            audit_log::Entity::insert(*row)
                .exec_without_returning(txn)
                .await?;
            Ok(Some(scope))
        }
        Commit::Carried => Ok(Some(scope)),
        Commit::Nothing => Ok(None),
    }
}

/// The scope's row, for the last write of `txn` to carry in the same
/// statement (the ledger's combined write: one round trip less than an
/// INSERT of its own at commit); `txn`'s commit then does not insert it.
/// `None` outside a scope, once recorded, or if a write of this
/// transaction carries it already. The row is as the scope is now: what
/// the mutation notes after ([`note_created`]) does not reach it, so the
/// caller notes first. If `txn` rolls back, the next transaction's commit
/// (or `Scope::finish`) writes the row as before.
pub(crate) fn row_with_last_write(txn: &DatabaseTransaction) -> Option<audit_log::ActiveModel> {
    SCOPE
        .try_with(|s| {
            let mut state = s.lock();
            if state.recorded || state.written_by.is_some() {
                return None;
            }
            state.written_by = Some(txn_key(txn));
            Some(state.row(OK))
        })
        .ok()
        .flatten()
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

/// Transaction `txn` ([`txn_key`]) ended without committing (rolled back,
/// dropped, or its COMMIT failed): if a write of it carried the scope's
/// row, the row is due again, at the next transaction's commit.
pub(crate) fn not_committed(txn: usize) {
    let _ = SCOPE.try_with(|s| s.not_committed(txn));
}

/// See [`before_commit`].
pub(crate) fn after_commit(scope: Option<Scope>) {
    if let Some(scope) = scope {
        scope.lock().recorded = true;
    }
}

/// Reports that the running mutation created `id` (a target of its row,
/// in its public form, `key_0193…`: the id clients see). Any kind: a
/// mutation creates a customer, a grant, an entry, a key, an endpoint.
/// Outside a scope (a job) it does nothing.
pub fn note_created<T: TypedId>(id: T) {
    let _ = SCOPE.try_with(|s| s.lock().created.push(id.to_string()));
}

/// Reports that the running mutation is an idempotent replay.
pub(crate) fn note_replay() {
    let _ = SCOPE.try_with(|s| s.lock().replayed = true);
}

/// Whether a mutation's scope is running (a request, not a job or a tool).
pub(crate) fn in_scope() -> bool {
    SCOPE.try_with(|_| ()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::EntryId;

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
        let id = EntryId::new_v7();
        s.lock().created.push(id.to_string());
        let targets = |row: &audit_log::ActiveModel| -> Vec<String> {
            serde_json::from_str(row.targets.as_ref()).unwrap()
        };
        let row = s.lock().row(OK);
        assert_eq!(
            targets(&row),
            ["idempotencyKey=k".to_owned(), id.to_string()]
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
    fn the_first_commit_inserts_the_row_and_later_ones_nothing() {
        let s = scope(&[]);
        assert!(matches!(s.at_commit(1), Commit::Insert(_)));
        after_commit(Some(s.clone()));
        assert!(matches!(s.at_commit(1), Commit::Nothing));
    }

    #[test]
    fn a_row_carried_by_a_write_is_inserted_by_no_commit() {
        let s = scope(&[]);
        s.lock().written_by = Some(1);
        assert!(
            matches!(s.at_commit(1), Commit::Carried),
            "its own commit marks it"
        );
        assert!(
            matches!(s.at_commit(2), Commit::Nothing),
            "another open transaction's commit leaves it to the carrier"
        );
        s.not_committed(2);
        assert!(matches!(s.at_commit(2), Commit::Nothing), "not the carrier");
        s.not_committed(1);
        assert!(matches!(s.at_commit(2), Commit::Insert(_)), "due again");
    }
}
