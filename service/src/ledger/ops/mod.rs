//! The ledger's writes. Each one: parse the input, resolve the wallet, lock
//! it, replay or refuse a used idempotency key ([`idempotency::replay_or`]:
//! before anything is checked against the present), book what time has
//! done, validate against the present, apply the change, record the key,
//! commit. All or nothing. One file per verb; what they share is here.

mod adjust;
mod consume;
mod grant;
mod hold;
mod refund;
mod settle;
mod void;
mod wallet_options;

pub use adjust::*;
pub use consume::*;
pub use grant::*;
pub use hold::*;
pub use refund::*;
pub use settle::*;
pub use void::*;
pub use wallet_options::*;

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use entity::{credit_grant, credit_hold, credit_system, entry_split, ledger_entry, wallet};
use rust_decimal::Decimal;
use sea_orm::DatabaseTransaction;
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect,
    sea_query::{LockBehavior, LockType},
};
use serde_json::Value as Json;
use uuid::Uuid;

use super::{
    Attribution, Category, Entry, EntryType, Error, Grant, Hold, HoldStatus, Split, Wallet,
    WalletRef,
    book::{Links, NewGrant, Refusal, Session},
    burn,
};
use crate::{
    Clock, Db,
    amount::{from_micros, positive_micros, to_micros},
    audit_log, credit_systems, customers,
    error::{Invalid, NotFound, known},
    idempotency::{self, IdempotencyKey, Request},
    ids::{CreditSystemId, CustomerId, EntryId, GrantId, HoldId, WalletId},
};

/// The longest a hold may reserve credits.
pub const HOLD_DURATION_MAX: Duration = Duration::days(90);

fn parse_reason(reason: &str) -> Result<String, Invalid> {
    crate::input::reason("reason", reason)
}

fn parse_metadata(metadata: &Option<Json>) -> Result<Option<Json>, Invalid> {
    crate::input::json_object(
        "metadata",
        metadata.as_ref(),
        crate::input::METADATA_BYTES_MAX,
    )
}

async fn resolve(
    conn: &impl ConnectionTrait,
    tenant_id: Uuid,
    wallet: &WalletRef,
) -> Result<(CustomerId, credit_system::Model), Error> {
    let customer = customers::resolve(conn, tenant_id, &wallet.customer).await?;
    let credit_system = credit_systems::resolve(conn, tenant_id, &wallet.credit_system).await?;
    Ok((CustomerId::from_uuid(customer.id), credit_system))
}

fn precision(cs: &credit_system::Model) -> u32 {
    cs.precision.clamp(0, 6) as u32
}

async fn precision_of_wallet(
    conn: &impl ConnectionTrait,
    wallet: &wallet::Model,
) -> Result<u32, Error> {
    let cs = credit_system::Entity::find_by_id(wallet.credit_system_id)
        .one(conn)
        .await?
        .ok_or(Error::Missing("credit system", "creditSystem"))?;
    Ok(precision(&cs))
}

fn insufficient(requested: i64, available: i64) -> Error {
    Error::InsufficientCredits {
        requested: from_micros(requested),
        available: from_micros(available),
    }
}

pub(super) fn refused(requested: i64, refusal: Refusal) -> Error {
    match refusal {
        Refusal::Insufficient { available } => insufficient(requested, available),
        Refusal::BelowFloor { available, floor } => Error::LowCreditLimit {
            requested: from_micros(requested),
            available: from_micros(available),
            limit: from_micros(floor),
        },
    }
}

// ---------------------------------------------------------------- loading

async fn load_entry(
    conn: &impl ConnectionTrait,
    tenant_id: Uuid,
    id: EntryId,
) -> Result<ledger_entry::Model, Error> {
    ledger_entry::Entity::find_by_id(id.uuid())
        .filter(ledger_entry::Column::TenantId.eq(tenant_id))
        .one(conn)
        .await?
        .ok_or_else(|| NotFound::of(id, "entry").into())
}

async fn load_grant(
    conn: &impl ConnectionTrait,
    tenant_id: Uuid,
    id: GrantId,
) -> Result<credit_grant::Model, Error> {
    credit_grant::Entity::find_by_id(id.uuid())
        .filter(credit_grant::Column::TenantId.eq(tenant_id))
        .one(conn)
        .await?
        .ok_or_else(|| NotFound::of(id, "grant").into())
}

async fn load_hold(
    conn: &impl ConnectionTrait,
    tenant_id: Uuid,
    id: HoldId,
) -> Result<credit_hold::Model, Error> {
    credit_hold::Entity::find_by_id(id.uuid())
        .filter(credit_hold::Column::TenantId.eq(tenant_id))
        .one(conn)
        .await?
        .ok_or_else(|| NotFound::of(id, "hold").into())
}

async fn load_splits(
    conn: &impl ConnectionTrait,
    tenant_id: Uuid,
    entry_id: Uuid,
) -> Result<Vec<entry_split::Model>, Error> {
    Ok(entry_split::Entity::find()
        .filter(entry_split::Column::TenantId.eq(tenant_id))
        .filter(entry_split::Column::EntryId.eq(entry_id))
        .order_by_asc(entry_split::Column::Id)
        .all(conn)
        .await?)
}

async fn grants_of_splits(
    conn: &impl ConnectionTrait,
    tenant_id: Uuid,
    splits: &[entry_split::Model],
) -> Result<Vec<Grant>, Error> {
    let mut grants = Vec::with_capacity(splits.len());
    for s in splits {
        grants.push(
            load_grant(conn, tenant_id, GrantId::from_uuid(s.grant_id))
                .await?
                .try_into()?,
        );
    }
    Ok(grants)
}
