//! Allowance resets: at each period boundary a subscription's plan credits
//! get their next period's INCLUDED credits (the last period's remainder
//! expires at its end; with a rollover cap, up to the cap of it carries into
//! the new period as a grant of its own, source `rollover`).
//!
//! Exactly once by construction: each period's grants carry idempotency
//! keys derived from (subscription, plan credit, period start), and a
//! unique `allowance_period` row records it; the subscription row is
//! locked (`FOR UPDATE SKIP LOCKED` on PostgreSQL) so two workers split the
//! work instead of doing it twice. A worker that was down catches up period
//! by period — each missed period is granted and expired in order, so the
//! ledger tells what every period held — at most [`PERIODS_PER_RUN_MAX`]
//! periods per plan credit per run (the next run goes on).
//!
//! Due subscriptions are reset [`RESET_CHUNK`] to a transaction (one commit
//! per chunk, plans loaded once per chunk). A chunk that fails (e.g. chosen
//! as a deadlock victim on PostgreSQL) rolls back whole and is retried by
//! the next run; nothing in it is half-granted.

use std::collections::{HashMap, hash_map::Entry};

use chrono::{DateTime, Utc};
use entity::{allowance_period, ledger_entry, subscription};
use futures_util::{StreamExt, stream};
use rust_decimal::Decimal;
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbErr, EntityTrait, IntoActiveModel,
    QueryFilter, QueryOrder, QuerySelect,
    sea_query::{LockBehavior, LockType, OnConflict},
};
use uuid::Uuid;

use crate::{
    Clock, Db,
    amount::{from_micros, to_micros},
    catalog::{self, PlanCredit, Rollover},
    credit_systems::CreditSystemRef,
    customers::CustomerRef,
    ledger::{self, Category, EntryType, Grant, WalletRef},
    outbox::{self, EventType},
    periods,
    subscriptions::Error,
};

/// Periods one run grants per plan credit at most.
pub const PERIODS_PER_RUN_MAX: u32 = 400;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResetReport {
    pub subscriptions: u64,
    pub periods: u64,
}

/// Grants every allowance period that has started by now, for at most
/// `limit` due subscriptions.
pub async fn reset_due(db: &Db, clock: &dyn Clock, limit: u64) -> Result<ResetReport, Error> {
    let now = clock.now();
    let due: Vec<Uuid> = subscription::Entity::find()
        .filter(subscription::Column::NextResetAt.lte(now))
        .order_by_asc(subscription::Column::NextResetAt)
        .limit(limit)
        .all(db.reader())
        .await?
        .into_iter()
        .map(|s| s.id)
        .collect();
    let mut report = ResetReport::default();
    // On PostgreSQL chunks run side by side (each locks its own
    // subscriptions; a chunk that loses a deadlock rolls back and is retried
    // by the next run). Every chunk runs to its end before the first error
    // is returned.
    // (The futures are built first: a `map` closure in the stream's type
    // trips the compiler's `Send` check in the worker.)
    let chunks: Vec<_> = due
        .chunks(RESET_CHUNK)
        .map(|chunk| reset_chunk(db, clock, chunk, now))
        .collect();
    let done: Vec<Result<(u64, u64), Error>> = stream::iter(chunks)
        .buffer_unordered(db.parallel_writers())
        .collect()
        .await;
    for chunk in done {
        let (subscriptions, periods) = chunk?;
        report.subscriptions += subscriptions;
        report.periods += periods;
    }
    Ok(report)
}

/// Subscriptions reset per transaction: one commit per chunk instead of
/// per subscription, while a transaction stays short.
const RESET_CHUNK: usize = 20;

/// Resets a chunk of due subscriptions in one transaction; subscriptions
/// another worker holds are skipped (`SKIP LOCKED`). Returns (subscriptions,
/// periods).
async fn reset_chunk(
    db: &Db,
    clock: &dyn Clock,
    ids: &[Uuid],
    now: DateTime<Utc>,
) -> Result<(u64, u64), Error> {
    let txn = db.begin_write().await?;
    let subs = subscription::Entity::find()
        .filter(subscription::Column::Id.is_in(ids.iter().copied()))
        .order_by_asc(subscription::Column::Id)
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .all(&txn)
        .await?;
    let (mut subscriptions, mut periods) = (0, 0);
    let mut plans: HashMap<Uuid, (Vec<PlanCredit>, periods::Interval)> = HashMap::new();
    for sub in subs {
        if sub.next_reset_at.is_none_or(|at| at > now) {
            continue; // done meanwhile
        }
        let (plan_credits, billing) = match plans.entry(sub.plan_id) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(slot) => {
                let plan_credits =
                    catalog::plan_credits_of(&txn, sub.tenant_id, &[sub.plan_id]).await?;
                let billing =
                    catalog::find_plan(&txn, sub.tenant_id, &catalog::Ref::Id(sub.plan_id))
                        .await?
                        .map(|p| catalog::Plan::from(p).billing_interval.interval())
                        .unwrap_or(periods::Interval::Monthly);
                slot.insert((plan_credits, billing))
            }
        };
        periods += reset_one(&txn, clock, &sub, plan_credits, *billing, now).await?;
        subscriptions += 1;
    }
    txn.commit().await?;
    Ok((subscriptions, periods))
}

async fn reset_one(
    txn: &DatabaseTransaction,
    clock: &dyn Clock,
    sub: &subscription::Model,
    plan_credits: &[PlanCredit],
    billing: periods::Interval,
    now: DateTime<Utc>,
) -> Result<u64, Error> {
    let mut periods = 0;
    let mut last_ends = Vec::new();
    for pc in plan_credits.iter().filter(|pc| pc.included.is_some()) {
        let mut last = last_period(txn, sub, pc).await?;
        for _ in 0..PERIODS_PER_RUN_MAX {
            match grant_next_period(txn, clock, sub, pc, last.as_ref(), now).await? {
                Some(granted) => last = Some(granted),
                None => break,
            }
            periods += 1;
        }
        last_ends.extend(last.map(|l| l.period_end));
    }
    let (start, end) = periods::period_at(sub.billing_anchor, billing, now.max(sub.started_at));
    if sub.cancel_at.is_none_or(|c| start < c) {
        for pc in plan_credits {
            crate::purchases::recurring_order_in(txn, clock, sub, pc, start).await?;
        }
    }
    let next = next_reset_from(sub, plan_credits, billing, now, &last_ends);
    let mut active = sub.clone().into_active_model();
    active.next_reset_at = Set(next);
    active.current_period_start = Set(start);
    active.current_period_end = Set(end);
    active.updated_at = Set(now);
    active.update(txn).await?;
    Ok(periods)
}

/// When the next period of any allowance, or (with a recurring price) the
/// next billing period, starts (None: canceled before it, or nothing to
/// reset).
pub(crate) async fn next_reset_at(
    conn: &impl ConnectionTrait,
    sub: &subscription::Model,
    plan_credits: &[PlanCredit],
    billing: periods::Interval,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, DbErr> {
    let mut last_ends = Vec::new();
    for pc in plan_credits.iter().filter(|pc| pc.included.is_some()) {
        last_ends.extend(last_period(conn, sub, pc).await?.map(|l| l.period_end));
    }
    Ok(next_reset_from(sub, plan_credits, billing, now, &last_ends))
}

/// [`next_reset_at`] given when each allowance's last granted period ends.
fn next_reset_from(
    sub: &subscription::Model,
    plan_credits: &[PlanCredit],
    billing: periods::Interval,
    now: DateTime<Utc>,
    last_ends: &[DateTime<Utc>],
) -> Option<DateTime<Utc>> {
    let mut next: Option<DateTime<Utc>> = last_ends.iter().min().copied();
    let mut earliest =
        |at: DateTime<Utc>| next = Some(next.map_or(at, |n: DateTime<Utc>| n.min(at)));
    // Recurring prices order again at each billing period's start.
    if plan_credits
        .iter()
        .any(|pc| pc.pricing.as_ref().is_some_and(|p| p.recurring.is_some()))
    {
        earliest(periods::period_at(sub.billing_anchor, billing, now.max(sub.started_at)).1);
    }
    next.filter(|at| sub.cancel_at.is_none_or(|c| *at < c))
}

async fn last_period(
    conn: &impl ConnectionTrait,
    sub: &subscription::Model,
    pc: &PlanCredit,
) -> Result<Option<allowance_period::Model>, DbErr> {
    allowance_period::Entity::find()
        .filter(allowance_period::Column::TenantId.eq(sub.tenant_id))
        .filter(allowance_period::Column::SubscriptionId.eq(sub.id))
        .filter(allowance_period::Column::PlanCreditId.eq(pc.id))
        .order_by_desc(allowance_period::Column::PeriodStart)
        .one(conn)
        .await
}

/// What a period's INCLUDED grants left unused: what remains in them plus
/// what already expired from them.
async fn unused(
    conn: &impl ConnectionTrait,
    tenant_id: Uuid,
    grant_ids: &[Uuid],
) -> Result<i64, DbErr> {
    let mut total = 0;
    for id in grant_ids {
        if let Some(g) = entity::credit_grant::Entity::find_by_id(*id)
            .one(conn)
            .await?
        {
            if g.voided_at.is_some() {
                continue;
            }
            total += g.remaining_micros;
        }
        let expired: i64 = ledger_entry::Entity::find()
            .filter(ledger_entry::Column::TenantId.eq(tenant_id))
            .filter(ledger_entry::Column::GrantId.eq(*id))
            .filter(ledger_entry::Column::EntryType.eq(EntryType::Expiry.as_str()))
            .all(conn)
            .await?
            .iter()
            .map(|e| -e.amount_micros)
            .sum();
        total += expired;
    }
    Ok(total)
}

/// Grants one allowance period exactly once per (subscription, plan
/// credit, period start) — the idempotency keys are derived from them and
/// the `allowance_period` row records it: the INCLUDED allowance expiring at
/// the period's end and, when `carry` > 0, the credits rolled over from the
/// grant `carried_from`. A repeat returns the grants made the first time.
/// `None` when the plan credit includes no allowance.
pub(crate) async fn grant_period(
    txn: &DatabaseTransaction,
    clock: &dyn Clock,
    sub: &subscription::Model,
    pc: &PlanCredit,
    (start, end): (DateTime<Utc>, DateTime<Utc>),
    carry: i64,
    carried_from: Option<Uuid>,
) -> Result<Option<(allowance_period::Model, Grant, Option<Grant>)>, Error> {
    let Some(allowance) = &pc.included else {
        return Ok(None);
    };
    let key = |what: &str| {
        format!(
            "{what}:{}:{}:{}",
            sub.id.simple(),
            pc.id.simple(),
            start.timestamp_micros()
        )
    };
    let grant = |amount: Decimal, reason: String, idempotency_key: String| ledger::GrantInput {
        wallet: WalletRef {
            customer: CustomerRef::Id(sub.customer_id),
            credit_system: CreditSystemRef::Id(pc.credit_system_id),
        },
        amount,
        category: Category::Included,
        effective_at: Some(start),
        expires_at: Some(end),
        priority: None,
        cost_basis: None,
        reason,
        metadata: None,
        idempotency_key,
    };
    let period = format!("{} – {}", start.format("%Y-%m-%d"), end.format("%Y-%m-%d"));
    let allowance_grant = ledger::grant_in(
        txn,
        clock,
        sub.tenant_id,
        &grant(
            allowance.amount,
            format!("allowance {period}"),
            key("allowance"),
        ),
        Some(("allowance", sub.id.to_string())),
        true,
    )
    .await?
    .grant;
    let rollover_grant = if carry > 0 {
        Some(
            ledger::grant_in(
                txn,
                clock,
                sub.tenant_id,
                &grant(
                    from_micros(carry),
                    format!("rollover into {period}"),
                    key("rollover"),
                ),
                Some((
                    "rollover",
                    carried_from.map(|id| id.to_string()).unwrap_or_default(),
                )),
                true,
            )
            .await?
            .grant,
        )
    } else {
        None
    };
    let period = allowance_period::Model {
        id: Uuid::now_v7(),
        tenant_id: sub.tenant_id,
        subscription_id: sub.id,
        plan_credit_id: pc.id,
        period_start: start,
        period_end: end,
        grant_id: allowance_grant.id,
        rollover_grant_id: rollover_grant.as_ref().map(|g| g.id),
        created_at: clock.now(),
    };
    allowance_period::Entity::insert(period.clone().into_active_model())
        .on_conflict(
            OnConflict::columns([
                allowance_period::Column::TenantId,
                allowance_period::Column::SubscriptionId,
                allowance_period::Column::PlanCreditId,
                allowance_period::Column::PeriodStart,
            ])
            .do_nothing()
            .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    Ok(Some((period, allowance_grant, rollover_grant)))
}

/// Grants the period after `last` (the last one granted), if it has
/// started and the subscription still runs then, and returns it. `None`:
/// nothing (more) to grant.
async fn grant_next_period(
    txn: &DatabaseTransaction,
    clock: &dyn Clock,
    sub: &subscription::Model,
    pc: &PlanCredit,
    last: Option<&allowance_period::Model>,
    now: DateTime<Utc>,
) -> Result<Option<allowance_period::Model>, Error> {
    let Some(allowance) = &pc.included else {
        return Ok(None);
    };
    let interval = allowance.reset_interval;
    let start = match last {
        Some(p) => p.period_end,
        None => periods::period_at(sub.billing_anchor, interval, now.max(sub.started_at)).0,
    };
    if start > now || sub.cancel_at.is_some_and(|c| c <= start) {
        return Ok(None);
    }
    let n = periods::index_at(sub.billing_anchor, interval, start);
    let end = periods::start_of(sub.billing_anchor, interval, n + 1);
    let carry = match (allowance.rollover, last) {
        (Rollover::Capped(cap), Some(last)) => {
            let mut previous = vec![last.grant_id];
            previous.extend(last.rollover_grant_id);
            let cap = to_micros(cap, 6, "rolloverCap").map_err(Error::Invalid)?;
            unused(txn, sub.tenant_id, &previous).await?.min(cap)
        }
        _ => 0,
    };
    let carried_from = last.map(|l| l.grant_id);
    let Some((period, allowance_grant, _)) =
        grant_period(txn, clock, sub, pc, (start, end), carry, carried_from).await?
    else {
        return Ok(None);
    };
    outbox::write(
        txn,
        vec![outbox::event(
            sub.tenant_id,
            EventType::AllowanceReset,
            Some(allowance_grant.wallet_id),
            serde_json::json!({
                "subscriptionId": sub.id,
                "customerId": sub.customer_id,
                "creditSystemId": pc.credit_system_id,
                "periodStart": start,
                "periodEnd": end,
                "granted": allowance.amount.to_string(),
                "rolledOver": from_micros(carry).to_string(),
            }),
            now,
        )],
    )
    .await?;
    Ok(Some(period))
}
