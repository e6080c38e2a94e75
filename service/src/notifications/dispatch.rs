//! Outbox → deliveries, exactly once: a batch of undispatched events
//! becomes webhook deliveries and emails, and is marked dispatched, in one
//! transaction (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so workers split
//! batches). [`drain`] repeats it until the outbox is empty or a bound
//! (batches, time) is hit.

use std::{collections::HashMap, time::Duration};

use futures_util::StreamExt;

use entity::{customer, outbox_event, webhook_endpoint};
use rust_decimal::Decimal;
use sea_orm::{
    ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, LockBehavior, LockType},
};
use uuid::Uuid;

use super::{email, webhooks};
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
pub async fn drain(
    db: &Db,
    clock: &dyn Clock,
    limits: DrainLimits,
) -> Result<u64, webhooks::Error> {
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

/// Auto top-up checks run side by side (on the reader pool).
const AUTO_TOP_UP_CONCURRENCY: usize = 8;

/// Dispatches at most `limit` events; returns how many.
pub async fn dispatch(db: &Db, clock: &dyn Clock, limit: u64) -> Result<u64, webhooks::Error> {
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
    let mut deliveries = Vec::new();
    let mut emails = Vec::new();
    for event in &events {
        let Some(kind) = EventType::parse(&event.event_type) else {
            continue;
        };
        let body = serde_json::json!({
            "id": event.id,
            "type": event.event_type,
            "createdAt": event.created_at,
            "tenant": event.tenant_id,
            "data": event.payload,
        })
        .to_string();
        for endpoint in by_tenant.get(&event.tenant_id).into_iter().flatten() {
            if endpoint.events.contains(&kind) {
                deliveries.push(webhooks::new_delivery(
                    event.tenant_id,
                    endpoint.id,
                    event.id,
                    &event.event_type,
                    body.clone(),
                    now,
                ));
            }
        }
        if matches!(
            kind,
            EventType::WalletBalanceLow | EventType::WalletBalanceDepleted
        ) && let Some(email) = low_balance_email(&txn, event, kind, now).await?
        {
            emails.push(email);
        }
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
    let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
    outbox_event::Entity::update_many()
        .col_expr(outbox_event::Column::DispatchedAt, Expr::value(now))
        .filter(outbox_event::Column::Id.is_in(ids))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    // Consumption may have crossed an auto top-up trigger.
    let mut consumed: Vec<(Uuid, Uuid)> = events
        .iter()
        .filter(|e| e.event_type == EventType::CreditsConsumed.as_str())
        .filter_map(|e| Some((e.tenant_id, e.wallet_id?)))
        .collect();
    consumed.sort();
    consumed.dedup();
    futures_util::stream::iter(consumed)
        .for_each_concurrent(
            AUTO_TOP_UP_CONCURRENCY,
            |(tenant_id, wallet_id)| async move {
                if let Err(e) = crate::purchases::auto_top_up(db, clock, tenant_id, wallet_id).await
                {
                    tracing::warn!(error = %e, %wallet_id, "auto top-up failed");
                }
            },
        )
        .await;
    Ok(events.len() as u64)
}

async fn low_balance_email(
    txn: &sea_orm::DatabaseTransaction,
    event: &outbox_event::Model,
    kind: EventType,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<entity::email_delivery::ActiveModel>, webhooks::Error> {
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
    let cs = match credit_systems::resolve(txn, event.tenant_id, &CreditSystemRef::Id(cs_id)).await
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
