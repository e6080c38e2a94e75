//! Idempotency keys: a retried write returns the original result; the same
//! key with different parameters is refused. Keys are scoped per tenant and
//! kept forever (they are small, and a ledger is forever too).
//!
//! Callers check and record inside the same write transaction, after taking
//! the lock that serializes the write (the wallet's), so concurrent retries
//! of one key see each other's record.

use entity::idempotency_record;
use sea_orm::{ActiveValue::Set, ConnectionTrait, DbErr, EntityTrait, sea_query::OnConflict};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{Clock, error::Invalid};

const KEY_LEN_MAX: usize = 255;

/// A validated idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(key: &str) -> Result<Self, Invalid> {
        let key = key.trim();
        if key.is_empty() || key.len() > KEY_LEN_MAX {
            return Err(Invalid::new(
                "idempotencyKey",
                format!("must be 1 to {KEY_LEN_MAX} characters"),
            ));
        }
        Ok(Self(key.to_owned()))
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
    let inserted = idempotency_record::Entity::insert(idempotency_record::ActiveModel {
        tenant_id: Set(tenant_id),
        key: Set(key.0.clone()),
        operation: Set(operation.to_owned()),
        request_hash: Set(request_hash.to_owned()),
        result_id: Set(result_id),
        created_at: Set(clock.now()),
    })
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
    Ok(inserted == 1)
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
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
    }

    #[test]
    fn fingerprints_differ_with_parameters() {
        assert_eq!(fingerprint(&("a", 1)), fingerprint(&("a", 1)));
        assert_ne!(fingerprint(&("a", 1)), fingerprint(&("a", 2)));
    }
}
