//! Outbox → deliveries, exactly once: a batch of undispatched events
//! becomes webhook deliveries and emails, and is marked dispatched, in one
//! transaction (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so workers split
//! batches). [`drain`] repeats it until the outbox is empty or a bound
//! (batches, time) is hit.

use std::{collections::HashMap, time::Duration};

use entity::{customer, outbox_event, top_up_order, webhook_endpoint};
use rust_decimal::Decimal;
use sea_orm::{
    ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, LockBehavior, LockType},
};
use uuid::Uuid;

use super::{Error, email, payloads, webhooks};
use crate::ids::CreditSystemId;
use crate::{
    Clock, Db,
    credit_systems::{self, CreditSystemRef},
    outbox::EventType,
};

/// How much one [`drain`] does at most.
#[derive(Debug, Clone, Copy)]
pub struct DrainLimits {
    /// Events per transaction.
    pub batch: u64,
    /// Transactions per drain.
    pub batches_max: u32,
    /// No batch starts after this long.
    pub time_max: Duration,
}

impl Default for DrainLimits {
    /// 1,000 events a transaction, 50 transactions or 10 s.
    fn default() -> Self {
        Self {
            batch: 1_000,
            batches_max: 50,
            time_max: Duration::from_secs(10),
        }
    }
}

/// Dispatches batches until the outbox is empty or `limits` are reached;
/// returns how many events.
pub async fn drain(db: &Db, clock: &dyn Clock, limits: DrainLimits) -> Result<u64, Error> {
    let started = std::time::Instant::now();
    let mut total = 0;
    for _ in 0..limits.batches_max {
        let n = dispatch(db, clock, limits.batch).await?;
        total += n;
        if n < limits.batch || started.elapsed() >= limits.time_max {
            break;
        }
    }
    Ok(total)
}

/// Dispatches at most `limit` events ([`dispatch_batch`]), then runs at
/// most `limit` due wallet checks ([`super::wallet_checks::run_due`]: auto
/// top-up and usage alerts) — also when there was nothing to dispatch, so
/// a check that failed is retried on every tick until it is done. Returns
/// how many events.
pub async fn dispatch(db: &Db, clock: &dyn Clock, limit: u64) -> Result<u64, Error> {
    let dispatched = dispatch_batch(db, clock, limit).await?;
    super::wallet_checks::run_due(db, clock, limit).await?;
    Ok(dispatched)
}

/// The dispatch transaction alone: at most `limit` events become
/// deliveries and emails and are marked dispatched, and each wallet whose
/// `credits.consumed` they include gets its checks queued
/// ([`super::wallet_checks::request`]) — all committed together, so no
/// consumption's checks are lost after the commit. Returns how many events.
pub async fn dispatch_batch(db: &Db, clock: &dyn Clock, limit: u64) -> Result<u64, Error> {
    let now = clock.now();
    let txn = db.begin_write().await?;
    let events = outbox_event::Entity::find()
        .filter(outbox_event::Column::DispatchedAt.is_null())
        .order_by_asc(outbox_event::Column::Id)
        .limit(limit)
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .all(&txn)
        .await?;
    if events.is_empty() {
        return Ok(0);
    }
    let tenants: Vec<Uuid> = events.iter().map(|e| e.tenant_id).collect();
    let endpoints = webhook_endpoint::Entity::find()
        .filter(webhook_endpoint::Column::TenantId.is_in(tenants))
        .filter(webhook_endpoint::Column::Enabled.eq(true))
        .all(&txn)
        .await?;
    let mut by_tenant: HashMap<Uuid, Vec<webhooks::Endpoint>> = HashMap::new();
    for e in endpoints {
        by_tenant.entry(e.tenant_id).or_default().push(e.into());
    }
    let names = payloads::Names::load(&txn, &events).await?;
    let mut deliveries = Vec::new();
    let mut emails = Vec::new();
    for event in &events {
        let Some(kind) = EventType::parse(&event.event_type) else {
            continue;
        };
        // The public shape: prefixed ids, customers and credit systems named.
        let body = payloads::body(event, &names).to_string();
        for endpoint in by_tenant.get(&event.tenant_id).into_iter().flatten() {
            if endpoint.events.contains(&kind) {
                deliveries.push(webhooks::new_delivery(
                    event.tenant_id,
                    endpoint.id.uuid(),
                    event.id,
                    &event.event_type,
                    body.clone(),
                    now,
                ));
            }
        }
        let email = match kind {
            EventType::WalletBalanceLow | EventType::WalletBalanceDepleted => {
                low_balance_email(&txn, event, kind, now).await?
            }
            EventType::TopupPaid => receipt_email(&txn, event, now).await?,
            EventType::UsageThresholdCrossed => usage_threshold_email(&txn, event, now).await?,
            _ => None,
        };
        emails.extend(email);
    }
    for chunk in deliveries.chunks(500) {
        entity::webhook_delivery::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(&txn)
            .await?;
    }
    for chunk in emails.chunks(500) {
        entity::email_delivery::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(&txn)
            .await?;
    }
    // Consumption may have crossed an auto top-up trigger or a usage-%
    // alert threshold: the checks are queued with the dispatch.
    let mut consumed: Vec<(Uuid, Uuid)> = events
        .iter()
        .filter(|e| e.event_type == EventType::CreditsConsumed.as_str())
        .filter_map(|e| Some((e.tenant_id, e.wallet_id?)))
        .collect();
    consumed.sort();
    consumed.dedup();
    super::wallet_checks::request(&*txn, &consumed, now).await?;
    let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
    outbox_event::Entity::update_many()
        .col_expr(outbox_event::Column::DispatchedAt, Expr::value(now))
        .filter(outbox_event::Column::Id.is_in(ids))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(events.len() as u64)
}

async fn low_balance_email(
    txn: &sea_orm::DatabaseTransaction,
    event: &outbox_event::Model,
    kind: EventType,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<entity::email_delivery::ActiveModel>, Error> {
    let p = &event.payload;
    let id = |k: &str| {
        p.get(k)
            .and_then(|v| v.as_str())
            .and_then(|s| Uuid::try_parse(s).ok())
    };
    let amount = |k: &str| {
        p.get(k)
            .and_then(|v| v.as_str())
            .and_then(|s| s.parse::<Decimal>().ok())
    };
    let (Some(customer_id), Some(cs_id), Some(available)) =
        (id("customerId"), id("creditSystemId"), amount("available"))
    else {
        return Ok(None);
    };
    let Some(customer) = customer::Entity::find_by_id(customer_id)
        .filter(customer::Column::TenantId.eq(event.tenant_id))
        .one(txn)
        .await?
    else {
        return Ok(None);
    };
    let Some(to) = customer.email.as_deref() else {
        return Ok(None); // no address: the webhook still tells the tenant
    };
    let cs = match credit_systems::resolve(
        txn,
        event.tenant_id,
        &CreditSystemRef::Id(CreditSystemId::from_uuid(cs_id)),
    )
    .await
    {
        Ok(cs) => credit_systems::CreditSystem::try_from(cs)?,
        Err(_) => return Ok(None),
    };
    let Some((subject, body)) =
        email::low_balance_message(kind, &customer.name, &cs, available, amount("threshold"))
    else {
        return Ok(None);
    };
    let kind_name = if kind == EventType::WalletBalanceLow {
        "balance_low"
    } else {
        "balance_depleted"
    };
    Ok(Some(email::new_email(
        event.tenant_id,
        Some(event.id),
        kind_name,
        to,
        subject,
        body,
        now,
    )))
}

/// The customer of an event's payload (`customerId`), tenant-filtered, and
/// the address to write to; `None`: no such customer or no address (the
/// webhook still tells the tenant).
async fn addressee(
    txn: &sea_orm::DatabaseTransaction,
    event: &outbox_event::Model,
    customer_id: Option<Uuid>,
) -> Result<Option<(customer::Model, String)>, Error> {
    let Some(customer_id) = customer_id else {
        return Ok(None);
    };
    let Some(customer) = customer::Entity::find_by_id(customer_id)
        .filter(customer::Column::TenantId.eq(event.tenant_id))
        .one(txn)
        .await?
    else {
        return Ok(None);
    };
    Ok(customer.email.clone().map(|to| (customer, to)))
}

async fn credit_system_of(
    txn: &sea_orm::DatabaseTransaction,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<Option<credit_systems::CreditSystem>, Error> {
    Ok(
        match credit_systems::resolve(
            txn,
            tenant_id,
            &CreditSystemRef::Id(CreditSystemId::from_uuid(id)),
        )
        .await
        {
            Ok(cs) => Some(credit_systems::CreditSystem::try_from(cs)?),
            Err(_) => None,
        },
    )
}

fn payload_id(p: &serde_json::Value, k: &str) -> Option<Uuid> {
    p.get(k)
        .and_then(|v| v.as_str())
        .and_then(|s| Uuid::try_parse(s).ok())
}

fn payload_decimal(p: &serde_json::Value, k: &str) -> Option<Decimal> {
    p.get(k)
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse::<Decimal>().ok())
}

/// The purchase confirmation of a `topup.paid` event, from its order
/// (loaded here, tenant-filtered): `kind` `receipt`.
async fn receipt_email(
    txn: &sea_orm::DatabaseTransaction,
    event: &outbox_event::Model,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<entity::email_delivery::ActiveModel>, Error> {
    let Some(order_id) = payload_id(&event.payload, "orderId") else {
        return Ok(None);
    };
    let Some(order) = top_up_order::Entity::find_by_id(order_id)
        .filter(top_up_order::Column::TenantId.eq(event.tenant_id))
        .one(txn)
        .await?
    else {
        return Ok(None);
    };
    let order = crate::purchases::TopUpOrder::try_from(order)?;
    let Some(paid_at) = order.paid_at else {
        return Ok(None);
    };
    let Some((customer, to)) = addressee(txn, event, Some(order.customer_id.uuid())).await? else {
        return Ok(None);
    };
    let Some(cs) = credit_system_of(txn, event.tenant_id, order.credit_system_id.uuid()).await?
    else {
        return Ok(None);
    };
    let q = &order.quote;
    let facts = email::ReceiptFacts {
        order_id: order.id.to_string(),
        quantity: order.quantity,
        unit_price: Some(q.unit_price).filter(|p| *p > Decimal::ZERO),
        subtotal: q.subtotal,
        tax: q.tax,
        total: q.total,
        currency: q.currency.clone(),
        gateway: order.gateway.clone(),
        payment_id: order.payment_id.clone(),
        paid_at,
    };
    let Some((subject, body)) = email::receipt_message(&customer.name, &cs, &facts) else {
        return Ok(None);
    };
    Ok(Some(email::new_email(
        event.tenant_id,
        Some(event.id),
        email::RECEIPT.name,
        &to,
        subject,
        body,
        now,
    )))
}

/// The email of a `wallet.usage_threshold_crossed` event: `kind`
/// `usage_threshold`.
async fn usage_threshold_email(
    txn: &sea_orm::DatabaseTransaction,
    event: &outbox_event::Model,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<entity::email_delivery::ActiveModel>, Error> {
    let p = &event.payload;
    let (Some(cs_id), Some(threshold), Some(percent), Some(used), Some(granted)) = (
        payload_id(p, "creditSystemId"),
        payload_decimal(p, "threshold"),
        payload_decimal(p, "usagePercent"),
        payload_decimal(p, "used"),
        payload_decimal(p, "granted"),
    ) else {
        return Ok(None);
    };
    let Some((customer, to)) = addressee(txn, event, payload_id(p, "customerId")).await? else {
        return Ok(None);
    };
    let Some(cs) = credit_system_of(txn, event.tenant_id, cs_id).await? else {
        return Ok(None);
    };
    let Some((subject, body)) =
        email::usage_threshold_message(&customer.name, &cs, threshold, percent, used, granted)
    else {
        return Ok(None);
    };
    Ok(Some(email::new_email(
        event.tenant_id,
        Some(event.id),
        email::USAGE_THRESHOLD.name,
        &to,
        subject,
        body,
        now,
    )))
}
