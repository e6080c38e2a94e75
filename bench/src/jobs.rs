//! Section 3, unattended jobs, timed by calling the job code in-process with a
//! fixed clock: allowance reset of due subscriptions, expiry sweep of
//! expired grants.

use std::time::Instant;

use anyhow::Context as _;
use chrono::{DateTime, Duration, TimeZone, Utc};
use entity::{plan, subscription, wallet};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use serde_json::json;
use service::{Db, FixedClock};
use uuid::Uuid;

use crate::{consume::credit_system_id, seed, server::Api};

/// Batch sizes the worker uses (worker/src/lib.rs RESET_BATCH, SWEEP_BATCH).
pub const RESET_BATCH: u64 = 500;
pub const SWEEP_BATCH: u64 = 1_000;
/// Grants per wallet in the sweep seed.
pub const GRANTS_PER_WALLET: u32 = 10;

/// The instant the reset scenario starts at.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 15, 0, 0, 0)
        .single()
        .expect("valid")
}

/// A plan with 10,000 tokens included every month (through the API).
pub async fn setup_plan(api: &Api, db: &Db, tenant_id: Uuid) -> anyhow::Result<Uuid> {
    api.gql(
        r#"mutation {
  createCreditSystem(input: {key: "tokens", name: "Tokens", unitSingular: "token", unitPlural: "tokens", precision: 2}) { creditSystem { id } }
  createFeature(input: {key: "api.call", name: "API call", unit: "call"}) { feature { id } }
  createProduct(input: {key: "bench", name: "Bench"}) { product { id } }
  createPlan(input: {product: {key: "bench"}, key: "bench-plan", name: "Bench plan", billingInterval: MONTHLY}) { plan { id } }
  attachCreditSystem(input: {plan: {key: "bench-plan"}, creditSystem: {key: "tokens"}, included: {amount: "10000", resetInterval: MONTHLY}}) { planCredit { id } }
  publishPlan(input: {plan: {key: "bench-plan"}}) { plan { status } }
}"#,
        json!({}),
    )
    .await?;
    Ok(plan::Entity::find()
        .filter(plan::Column::TenantId.eq(tenant_id))
        .filter(plan::Column::Key.eq("bench-plan"))
        .one(db.reader())
        .await?
        .context("the bench plan")?
        .id)
}

/// What one reset scale measured.
pub struct ResetFigures {
    pub subscriptions: u64,
    pub seed_secs: f64,
    /// First pass: each subscription's first period (wallet created).
    pub first_secs: f64,
    /// The measured pass a month later: expire the old period, grant the new.
    pub reset_secs: f64,
    pub periods: u64,
    pub audited: usize,
    pub problems: Vec<String>,
}

/// `n` subscriptions due at `start`, reset once (first period), then again
/// a month later (the measured pass).
pub async fn reset(
    db: &Db,
    tenant_id: Uuid,
    plan_id: Uuid,
    n: usize,
    start: DateTime<Utc>,
) -> anyhow::Result<ResetFigures> {
    let seeded = Instant::now();
    let customers = seed::customers(db, tenant_id, &format!("r{n}-"), n, start).await?;
    for batch in customers.chunks(10_000) {
        let txn = db.begin_write().await?;
        for chunk in batch.chunks(1_000) {
            subscription::Entity::insert_many(chunk.iter().map(|c| subscription::ActiveModel {
                id: Set(Uuid::now_v7()),
                tenant_id: Set(tenant_id),
                customer_id: Set(c.id),
                plan_id: Set(plan_id),
                billing_anchor: Set(start),
                started_at: Set(start),
                current_period_start: Set(start),
                current_period_end: Set(start + Duration::days(31)),
                cancel_at: Set(None),
                next_reset_at: Set(Some(start)),
                created_at: Set(start),
                updated_at: Set(start),
            }))
            .exec_without_returning(&txn)
            .await?;
        }
        txn.commit().await?;
    }
    let seed_secs = seeded.elapsed().as_secs_f64();

    let clock = FixedClock::new(start);
    let first = Instant::now();
    drain_resets(db, &clock).await?;
    let first_secs = first.elapsed().as_secs_f64();

    // The first period ends a calendar month after the anchor.
    let next = start
        .checked_add_months(chrono::Months::new(1))
        .context("month")?;
    clock.set(next);
    let measured = Instant::now();
    let (subscriptions, periods) = drain_resets(db, &clock).await?;
    let reset_secs = measured.elapsed().as_secs_f64();

    let sample: Vec<Uuid> = customers
        .iter()
        .step_by((n / 20).max(1))
        .map(|c| c.id)
        .collect();
    let wallet_ids: Vec<Uuid> = wallet::Entity::find()
        .filter(wallet::Column::TenantId.eq(tenant_id))
        .filter(wallet::Column::CustomerId.is_in(sample))
        .all(db.reader())
        .await?
        .into_iter()
        .map(|w| w.id)
        .collect();
    let (audited, problems) = seed::verify(db, tenant_id, &wallet_ids, 20).await?;
    Ok(ResetFigures {
        subscriptions,
        seed_secs,
        first_secs,
        reset_secs,
        periods,
        audited,
        problems,
    })
}

async fn drain_resets(db: &Db, clock: &FixedClock) -> anyhow::Result<(u64, u64)> {
    let (mut subs, mut periods) = (0, 0);
    loop {
        let r = service::allowances::reset_due(db, clock, RESET_BATCH).await?;
        if r.subscriptions == 0 {
            return Ok((subs, periods));
        }
        subs += r.subscriptions;
        periods += r.periods;
    }
}

/// What one sweep scale measured.
pub struct SweepFigures {
    pub grants: u64,
    pub wallets: u64,
    pub seed_secs: f64,
    pub sweep_secs: f64,
    pub audited: usize,
    pub problems: Vec<String>,
}

/// `grants` expired grants (10 per wallet) swept until nothing is left.
pub async fn sweep(
    db: &Db,
    tenant_id: Uuid,
    grants: usize,
    now: DateTime<Utc>,
) -> anyhow::Result<SweepFigures> {
    let cs = credit_system_id(db, tenant_id, "tokens").await?;
    let seeded = Instant::now();
    let n_wallets = grants.div_ceil(GRANTS_PER_WALLET as usize);
    let customers = seed::customers(db, tenant_id, &format!("s{grants}-"), n_wallets, now).await?;
    let spec = seed::WalletSpec {
        credit_system_id: cs,
        grants: GRANTS_PER_WALLET,
        grant_micros: 5_000_000,
        effective_at: now - Duration::days(60),
        expires_at: Some(now - Duration::days(1)),
        usages: 0,
        usage_micros: 0,
        usage_from: now,
        usage_step: Duration::zero(),
        features: &["x"],
    };
    let wallets = seed::wallets(db, tenant_id, &customers, &spec, now).await?;
    let seed_secs = seeded.elapsed().as_secs_f64();
    let ids: Vec<Uuid> = wallets.iter().map(|w| w.id).collect();
    let (pre_audited, pre_problems) = seed::verify(db, tenant_id, &ids, 10).await?;

    let clock = FixedClock::new(now);
    let swept = Instant::now();
    let mut wallets_done = 0;
    loop {
        let r = service::expiry::sweep(db, &clock, SWEEP_BATCH).await?;
        if r.wallets == 0 {
            break;
        }
        wallets_done += r.wallets;
    }
    let sweep_secs = swept.elapsed().as_secs_f64();
    let (audited, mut problems) = seed::verify(db, tenant_id, &ids, 20).await?;
    problems.extend(pre_problems);
    Ok(SweepFigures {
        grants: (n_wallets * GRANTS_PER_WALLET as usize) as u64,
        wallets: wallets_done,
        seed_secs,
        sweep_secs,
        audited: audited + pre_audited,
        problems,
    })
}
