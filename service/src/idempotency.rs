//! Idempotency keys: a retried write returns the original result; the same
//! key with different parameters is refused. Keys are scoped per tenant and
//! kept forever (they are small, and a ledger is forever too).
//!
//! **Idempotency first.** Every keyed write takes its steps in one order,
//! and [`replay_or`] is where that order is spelled:
//!
//! 1. Parse the input. Only checks that depend on neither time nor state
//!    come before the lookup (malformed amounts, lengths, an expiry before
//!    the given start), so they answer a replay as they answered the first
//!    request.
//! 2. Resolve what the input names to ids (customers and credit systems are
//!    never deleted, and a reference always resolves to the same id) and
//!    fingerprint the request: a [`Request`].
//! 3. Take the lock that serializes the write (the wallet's), then look the
//!    key up. A replay answers from the record, whatever happened since:
//!    time passed, the grant expired or was voided, the hold was captured,
//!    released or lapsed, the plan was archived, the subscription
//!    cancelled, the customer moved in the tree.
//! 4. Only for a new key: validate against the present (an expiry already
//!    past, the hold's status, the balance, the plan, the tree), write, and
//!    record the key, all in that one transaction — concurrent retries of
//!    one key see each other's record.
//!
//! `consumeCredits`, the hot path, takes steps 3 and 4 the other way round
//! and gives the same answers ([`replay_after`]): it records the key with
//! its writes, and only when that fails — the key was taken, or the present
//! refused the write — rolls back and answers from the key's record.
//!
//! **What a replay returns.** The original's ids and what it wrote, which
//! never changes: the ledger entry as booked (amount, `balance_after`,
//! attribution, splits) and the terms of the grant, hold, order or
//! subscription it created (amount, category, expiry, price). The mutable
//! state of those objects is shown as it is *now*, as a read would show
//! it: a grant's `remaining` and `voidedAt`, a hold's status, an order's,
//! an invoice's and a subscription's status and dates. Per operation:
//! grant, adjust, void, refund → the original entry and its grant(s) as they
//! are now; consume, capture, release, allocate → the original entries (and
//! splits), holds and grants as they are now; hold → the original HOLD entry
//! and the hold as it is now; purchase → the original order as it is now;
//! subscribe → the subscription as it is now and the grants of its first
//! allowance (not later periods'); invoice application → the invoice as it
//! is now. A replay never writes.
//!
//! Metered usage (`trackUsage`) is the one write whose fingerprint needs
//! state: the plan picks the credit system and the amount. Its replay is
//! looked up before the plan is read, fingerprinted with the original
//! entry's credit system and amount ([`crate::ledger::replay_usage`]).
//! Confirming or failing a payment takes no key: the order is its own
//! (a paid order confirmed again with its payment id returns it).

use entity::idempotency_record;
use sea_orm::{
    ConnectionTrait, DatabaseBackend, DbErr, EntityTrait, IntoActiveModel, QueryTrait, Statement,
    sea_query::OnConflict,
};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{Clock, error::Invalid, ids::TypedId};

/// A validated idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// An identifier by [`crate::input::key`]: trimmed, 1–255
    /// characters, no control characters.
    pub fn parse(key: &str) -> Result<Self, Invalid> {
        crate::input::key("idempotencyKey", key).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// First use of the key.
    New,
    /// Same operation, same parameters: here is the original result.
    Replay(Uuid),
    /// Used before for another operation or other parameters.
    Conflict,
}

/// The key was used before for another operation or other parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conflict;

/// A keyed write's request: its key, its operation and the fingerprint of
/// its (parsed, resolved) parameters.
#[derive(Debug, Clone)]
pub struct Request {
    key: IdempotencyKey,
    operation: &'static str,
    hash: String,
}

impl Request {
    /// `params` must not change meaning over time: the fingerprints of
    /// recorded keys are kept forever.
    pub fn new(key: IdempotencyKey, operation: &'static str, params: &impl Serialize) -> Self {
        Self {
            key,
            operation,
            hash: fingerprint(params),
        }
    }

    pub fn key(&self) -> &IdempotencyKey {
        &self.key
    }

    /// What the key's record says of this request.
    pub async fn check(&self, conn: &impl ConnectionTrait, tenant_id: Uuid) -> Result<Seen, DbErr> {
        check(conn, tenant_id, &self.key, self.operation, &self.hash).await
    }

    /// Records the key's first use; see [`record`].
    #[must_use = "a false answer means the caller's writes must be rolled back"]
    pub async fn record<T: TypedId>(
        &self,
        conn: &impl ConnectionTrait,
        clock: &dyn Clock,
        tenant_id: Uuid,
        result_id: T,
    ) -> Result<bool, DbErr> {
        record(
            conn,
            clock,
            tenant_id,
            &self.key,
            self.operation,
            &self.hash,
            result_id,
        )
        .await
    }

    /// The record of the key's first use, for a batch that writes its
    /// records together.
    pub(crate) fn record_model(
        &self,
        tenant_id: Uuid,
        result_id: Uuid,
        created_at: chrono::DateTime<chrono::Utc>,
    ) -> idempotency_record::Model {
        idempotency_record::Model {
            tenant_id,
            key: self.key.0.clone(),
            operation: self.operation.to_owned(),
            request_hash: self.hash.clone(),
            result_id,
            created_at,
        }
    }
}

/// The one order of every keyed write (see the module doc): looks the key
/// up first, and answers a replay with `replay(result_id)` — before anything
/// about the present is checked. A key used for something else is
/// [`Conflict`]. Only a new key runs `first`, which validates against the
/// present, writes and records the key.
///
/// Call it holding the lock that serializes the write, in the transaction
/// `first` writes in.
pub async fn replay_or<T, E>(
    conn: &impl ConnectionTrait,
    tenant_id: Uuid,
    request: &Request,
    replay: impl AsyncFnOnce(Uuid) -> Result<T, E>,
    first: impl AsyncFnOnce() -> Result<T, E>,
) -> Result<T, E>
where
    E: From<DbErr> + From<Conflict>,
{
    answer(request.check(conn, tenant_id).await?, replay, first).await
}

/// [`replay_or`] for a key already checked (`seen`), e.g. among many read
/// at once.
pub async fn answer<T, E>(
    seen: Seen,
    replay: impl AsyncFnOnce(Uuid) -> Result<T, E>,
    first: impl AsyncFnOnce() -> Result<T, E>,
) -> Result<T, E>
where
    E: From<Conflict>,
{
    match seen {
        Seen::Replay(result_id) => {
            crate::audit_log::note_replay();
            replay(result_id).await
        }
        Seen::Conflict => Err(Conflict.into()),
        Seen::New => first().await,
    }
}

/// The other order, for a hot path that must not pay a lookup per write:
/// the write runs first, under its lock, and records its key with its
/// writes (refused, with nothing written, when the key is taken). Call this
/// when that attempt `failed` — refused by the present, or the key was
/// recorded before — after rolling it back: the answer is then what
/// [`replay_or`] would have given, from the key's record (a replay, or
/// [`Conflict`]), or else the attempt's own error. A new key that
/// succeeds never reads its record.
pub async fn replay_after<T, E>(
    conn: &impl ConnectionTrait,
    tenant_id: Uuid,
    request: &Request,
    failed: E,
    replay: impl AsyncFnOnce(Uuid) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<DbErr> + From<Conflict>,
{
    match request.check(conn, tenant_id).await? {
        Seen::Replay(result_id) => {
            crate::audit_log::note_replay();
            replay(result_id).await
        }
        Seen::Conflict => Err(Conflict.into()),
        Seen::New => Err(failed),
    }
}

/// The record of a key, whatever it was used for.
pub async fn find(
    conn: &impl ConnectionTrait,
    tenant_id: Uuid,
    key: &IdempotencyKey,
) -> Result<Option<idempotency_record::Model>, DbErr> {
    idempotency_record::Entity::find_by_id((tenant_id, key.0.clone()))
        .one(conn)
        .await
}

/// A stable fingerprint of an operation's parameters.
pub fn fingerprint(params: &impl Serialize) -> String {
    let json = serde_json::to_vec(params).unwrap_or_default();
    hex::encode(Sha256::digest(&json))
}

pub async fn check(
    conn: &impl ConnectionTrait,
    tenant_id: Uuid,
    key: &IdempotencyKey,
    operation: &str,
    request_hash: &str,
) -> Result<Seen, DbErr> {
    Ok(match find(conn, tenant_id, key).await? {
        None => Seen::New,
        Some(r) if r.operation == operation && r.request_hash == request_hash => {
            Seen::Replay(r.result_id)
        }
        Some(_) => Seen::Conflict,
    })
}

/// Records the key's first use. `false`: another transaction recorded the
/// key first (a concurrent request that no lock serialized with this one);
/// the caller must roll back and answer from that record instead.
///
/// `result_id` is what the operation made (an entry, an order, a refund, a
/// subscription, …), so its kind is the caller's: any typed id, stored as
/// its bare UUID (a replay reads it back as the operation's kind).
#[must_use = "a false answer means the caller's writes must be rolled back"]
pub async fn record<T: TypedId>(
    conn: &impl ConnectionTrait,
    clock: &dyn Clock,
    tenant_id: Uuid,
    key: &IdempotencyKey,
    operation: &str,
    request_hash: &str,
    result_id: T,
) -> Result<bool, DbErr> {
    let record = idempotency_record::Model {
        tenant_id,
        key: key.0.clone(),
        operation: operation.to_owned(),
        request_hash: request_hash.to_owned(),
        result_id: result_id.uuid(),
        created_at: clock.now(),
    };
    Ok(record_many(conn, vec![record]).await? == 1)
}

/// Records keys in multi-row INSERTs; returns how many were new (a key
/// already recorded, by this request or another, is left as it is).
pub(crate) async fn record_many(
    conn: &impl ConnectionTrait,
    records: Vec<idempotency_record::Model>,
) -> Result<u64, DbErr> {
    let mut inserted = 0;
    for insert in record_statements(conn.get_database_backend(), records) {
        inserted += conn.execute_raw(insert).await?.rows_affected();
    }
    Ok(inserted)
}

/// The INSERTs [`record_many`] runs (… ON CONFLICT DO NOTHING), built but
/// not run: for a caller that sends them with its other writes.
pub(crate) fn record_statements(
    backend: DatabaseBackend,
    records: Vec<idempotency_record::Model>,
) -> Vec<Statement> {
    let mut statements = Vec::new();
    let mut records = records.into_iter().peekable();
    while records.peek().is_some() {
        let chunk = records
            .by_ref()
            .take(crate::db::INSERT_CHUNK)
            .map(IntoActiveModel::into_active_model);
        statements.push(
            idempotency_record::Entity::insert_many(chunk)
                .on_conflict(
                    OnConflict::columns([
                        idempotency_record::Column::TenantId,
                        idempotency_record::Column::Key,
                    ])
                    .do_nothing()
                    .to_owned(),
                )
                .build(backend),
        );
    }
    statements
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_bounded() {
        assert!(IdempotencyKey::parse("order-1").is_ok());
        assert_eq!(
            IdempotencyKey::parse(" ").unwrap_err().field,
            "idempotencyKey"
        );
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
        assert!(IdempotencyKey::parse("k\0").is_err());
    }

    #[test]
    fn fingerprints_differ_with_parameters() {
        assert_eq!(fingerprint(&("a", 1)), fingerprint(&("a", 1)));
        assert_ne!(fingerprint(&("a", 1)), fingerprint(&("a", 2)));
    }
}
