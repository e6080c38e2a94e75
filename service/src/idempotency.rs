//! Idempotency keys: a retried write returns the original result; the same
//! key with different parameters is refused. Keys are scoped per tenant and
//! kept forever (they are small, and a ledger is forever too).
//!
//! Callers check and record inside the same write transaction, after taking
//! the lock that serializes the write (the wallet's), so concurrent retries
//! of one key see each other's record.

use entity::idempotency_record;
use sea_orm::{ConnectionTrait, DbErr, EntityTrait, IntoActiveModel, sea_query::OnConflict};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{Clock, error::Invalid};

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
    let found = idempotency_record::Entity::find_by_id((tenant_id, key.0.clone()))
        .one(conn)
        .await?;
    Ok(match found {
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
#[must_use = "a false answer means the caller's writes must be rolled back"]
pub async fn record(
    conn: &impl ConnectionTrait,
    clock: &dyn Clock,
    tenant_id: Uuid,
    key: &IdempotencyKey,
    operation: &str,
    request_hash: &str,
    result_id: Uuid,
) -> Result<bool, DbErr> {
    let record = idempotency_record::Model {
        tenant_id,
        key: key.0.clone(),
        operation: operation.to_owned(),
        request_hash: request_hash.to_owned(),
        result_id,
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
    for chunk in records.chunks(crate::db::INSERT_CHUNK) {
        inserted += idempotency_record::Entity::insert_many(
            chunk
                .iter()
                .cloned()
                .map(IntoActiveModel::into_active_model),
        )
        .on_conflict(
            OnConflict::columns([
                idempotency_record::Column::TenantId,
                idempotency_record::Column::Key,
            ])
            .do_nothing()
            .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
    }
    Ok(inserted)
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
