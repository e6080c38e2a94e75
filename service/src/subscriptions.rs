//! Subscriptions: a customer on a published plan, with a billing anchor and
//! a current period; the plan's allowances granted per period. Metering
//! usage by the plans' entitlements is [`crate::entitlements`].
//!
//! - `subscribe` creates the customer's wallets for the plan's credit
//!   systems and grants the first allowance period of each (category
//!   `INCLUDED`, expiring at the period's end; rollover, when the plan has
//!   it, is done at the reset by carrying credits into a new grant).
//!   A subscription starting in the future gets its first allowance as a
//!   scheduled grant. A backdated start grants only the period containing
//!   now.
//! - `cancel` ends the subscription at an instant (default now): from then
//!   on it meters nothing and gets no new allowance; credits already
//!   granted live out their own expiry.
//! - Changing plan is not a single operation yet: cancel, then subscribe to
//!   the new plan (both take effect at the instant you give).

use chrono::{DateTime, Utc};
use entity::{allowance_period, subscription};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel,
    QueryFilter, QueryOrder,
};
use uuid::Uuid;

use crate::ids::{CustomerId, SubscriptionId};
pub use crate::subscription_state::{Error, Subscription, SubscriptionStatus, get, of_customers};
use crate::{
    Clock, Db,
    catalog::{self, PlanStatus, Ref},
    customers::{self, CustomerRef},
    error::Invalid,
    idempotency::{self, IdempotencyKey, Request},
    ledger::{self, Grant},
    periods,
    subscription_state::{interval_of, load},
};

#[derive(Debug, Clone)]
pub struct SubscribeInput {
    pub customer: CustomerRef,
    pub plan: Ref,
    /// Default: now.
    pub start_at: Option<DateTime<Utc>>,
    pub idempotency_key: String,
}

#[derive(Debug, Clone)]
pub struct SubscribeOutcome {
    pub subscription: Subscription,
    /// The first allowance of each of the plan's credit systems.
    pub grants: Vec<Grant>,
}

/// A start within the input range that leaves a year for the first
/// periods (an annual period must end by [`crate::input::TIME_MAX`]).
fn parse_start(start_at: Option<DateTime<Utc>>) -> Result<Option<DateTime<Utc>>, Invalid> {
    let Some(start) = crate::input::time_opt("startAt", start_at)? else {
        return Ok(None);
    };
    let year_later = periods::start_of(start, periods::Interval::Annually, 1);
    if year_later > crate::input::TIME_MAX {
        return Err(Invalid::new(
            "startAt",
            "must be at most 9998-12-31T23:59:59.999999Z: the first periods must end before 10000",
        ));
    }
    Ok(Some(start))
}

/// Puts a customer on a published plan. A replay returns the original
/// subscription (as it is now) and its first allowance, whatever the plan's
/// status today.
pub async fn subscribe(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    input: &SubscribeInput,
) -> Result<SubscribeOutcome, Error> {
    let key = IdempotencyKey::parse(&input.idempotency_key)?;
    let now = clock.now();
    let start = parse_start(input.start_at)?.unwrap_or(now);
    let txn = db.begin_write().await?;
    let customer = customers::resolve(&txn, tenant_id, &input.customer).await?;
    let plan = catalog::find_plan(&txn, tenant_id, &input.plan)
        .await?
        .map(catalog::Plan::try_from)
        .transpose()?
        .ok_or_else(|| catalog::Error::NotFound("plan", "with this id or key".into()))?;
    let request = Request::new(key, "subscribe", &(customer.id, plan.id, input.start_at));
    let out = idempotency::replay_or::<_, Error>(
        &txn,
        tenant_id,
        &request,
        async |id| replay(&txn, tenant_id, id).await,
        async || {
            match plan.status {
                PlanStatus::Published => {}
                PlanStatus::Draft => {
                    return Err(Error::Conflict(
                        format!("plan {:?} is a draft: publish it first", plan.key),
                        "plan",
                    ));
                }
                PlanStatus::Archived => {
                    return Err(Error::Conflict(
                        format!(
                            "plan {:?} is archived and takes no new subscriptions",
                            plan.key
                        ),
                        "plan",
                    ));
                }
            }
            let (period_start, period_end) =
                periods::period_at(start, plan.billing_interval.interval(), now.max(start));
            let model = subscription::ActiveModel {
                id: Set(Uuid::now_v7()),
                tenant_id: Set(tenant_id),
                customer_id: Set(customer.id),
                plan_id: Set(plan.id.uuid()),
                billing_anchor: Set(start),
                started_at: Set(start),
                current_period_start: Set(period_start),
                current_period_end: Set(period_end),
                cancel_at: Set(None),
                next_reset_at: Set(None),
                created_at: Set(now),
                updated_at: Set(now),
            }
            .insert(&txn)
            .await?;
            let plan_credits = catalog::plan_credits_of(&txn, tenant_id, &[plan.id]).await?;
            let mut grants = Vec::new();
            for pc in &plan_credits {
                ledger::ensure_wallet_in(
                    &txn,
                    tenant_id,
                    CustomerId::from_uuid(customer.id),
                    pc.credit_system_id,
                    now,
                )
                .await?;
                if let Some(allowance) = &pc.included {
                    let period =
                        periods::period_at(start, allowance.reset_interval, now.max(start));
                    if let Some((_, grant, _)) = crate::allowances::grant_period(
                        &mut ledger::Session::new(&txn),
                        clock,
                        &model,
                        pc,
                        period,
                        (0, None),
                        crate::allowances::Writes::Now,
                    )
                    .await?
                    {
                        grants.push(grant);
                    }
                }
                crate::purchases::recurring_order_in(&txn, clock, &model, pc, period_start).await?;
            }
            let next = crate::allowances::next_reset_at(
                &txn,
                &model,
                &plan_credits,
                plan.billing_interval.interval(),
                now,
            )
            .await?;
            let mut active = model.clone().into_active_model();
            active.next_reset_at = Set(next);
            let model = active.update(&txn).await?;
            if !request
                .record(&txn, clock, tenant_id, SubscriptionId::from_uuid(model.id))
                .await?
            {
                return Err(Error::IdempotencyConflict);
            }
            let mut subscription = Subscription::from_model(model, plan.billing_interval);
            subscription.as_of = Some(now);
            Ok(SubscribeOutcome {
                subscription,
                grants,
            })
        },
    )
    .await;
    let mut out = match out {
        Ok(out) => {
            txn.commit().await?;
            out
        }
        Err(Error::IdempotencyConflict) => {
            // A concurrent request with this key may have committed first:
            // answer as a retry of it would be answered.
            txn.rollback().await?;
            let conn = db.reader();
            idempotency::replay_or::<_, Error>(
                conn,
                tenant_id,
                &request,
                async |id| replay(conn, tenant_id, id).await,
                async || Err(Error::IdempotencyConflict),
            )
            .await?
        }
        Err(e) => return Err(e),
    };
    // A replay is read as of now (after the original was written).
    if out.subscription.as_of.is_none() {
        out.subscription.as_of = Some(clock.now().max(now));
    }
    Ok(out)
}

/// A subscribe's original answer: the subscription as it is now, and the
/// grants of its first allowance period of each plan credit (in the plan's
/// order), not those of the periods since.
async fn replay(
    conn: &impl ConnectionTrait,
    tenant_id: Uuid,
    subscription_id: Uuid,
) -> Result<SubscribeOutcome, Error> {
    let subscription = load(conn, tenant_id, subscription_id).await?;
    let periods = allowance_period::Entity::find()
        .filter(allowance_period::Column::TenantId.eq(tenant_id))
        .filter(allowance_period::Column::SubscriptionId.eq(subscription_id))
        .order_by_asc(allowance_period::Column::PeriodStart)
        .all(conn)
        .await?;
    let plan_credits = catalog::plan_credits_of(conn, tenant_id, &[subscription.plan_id]).await?;
    let mut grants = Vec::new();
    for pc in &plan_credits {
        let Some(first) = periods.iter().find(|p| p.plan_credit_id == pc.id) else {
            continue;
        };
        if let Some(g) = entity::credit_grant::Entity::find_by_id(first.grant_id)
            .filter(entity::credit_grant::Column::TenantId.eq(tenant_id))
            .one(conn)
            .await?
        {
            grants.push(g.try_into()?);
        }
    }
    Ok(SubscribeOutcome {
        subscription,
        grants,
    })
}

/// Ends a subscription at `at` (default now; not in the past). Cancelling
/// again keeps the earlier end.
pub async fn cancel(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    id: SubscriptionId,
    at: Option<DateTime<Utc>>,
) -> Result<Subscription, Error> {
    let now = clock.now();
    let at = crate::input::time_opt("at", at)?.unwrap_or(now);
    if at < now {
        return Err(Invalid::new("at", "can't cancel in the past").into());
    }
    let txn = db.begin_write().await?;
    let m = subscription::Entity::find_by_id(id.uuid())
        .filter(subscription::Column::TenantId.eq(tenant_id))
        .one(&txn)
        .await?
        .ok_or(Error::NotFound)?;
    let interval = interval_of(&txn, tenant_id, m.plan_id).await?;
    let answer = |m| Subscription {
        as_of: Some(now),
        ..Subscription::from_model(m, interval)
    };
    if m.cancel_at.is_some_and(|c| c <= at) {
        return Ok(answer(m));
    }
    let mut active = m.into_active_model();
    active.cancel_at = Set(Some(at.max(now)));
    active.updated_at = Set(now);
    let m = active.update(&txn).await?;
    txn.commit().await?;
    Ok(answer(m))
}
