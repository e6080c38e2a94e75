//! Section 3, unattended jobs, timed by calling the job code in-process with a
//! fixed clock: allowance reset of due subscriptions, expiry sweep of
//! expired grants.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use anyhow::Context as _;
use chrono::{DateTime, Duration, TimeZone, Utc};
use entity::{plan, subscription, wallet};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use serde_json::json;
use service::{Db, FixedClock};
use uuid::Uuid;

use crate::{
    consume::{self, credit_system_id},
    load::Stats,
    seed,
    server::Api,
};

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

/// Subscriptions seeded and given their first period, the measured pass
/// not yet run ([`prepare_reset`]).
pub struct PreparedReset {
    n: usize,
    tenant_id: Uuid,
    customers: Vec<seed::Customer>,
    /// Set to the measured pass's instant (a month after the start).
    pub clock: FixedClock,
    seed_secs: f64,
    first_secs: f64,
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
    let prefix = format!("r{n}-");
    let prepared = prepare_reset(db, tenant_id, plan_id, n, start, &prefix).await?;
    let measured = Instant::now();
    let done = drain_resets(db, &prepared.clock).await?;
    let reset_secs = measured.elapsed().as_secs_f64();
    finish_reset(db, prepared, reset_secs, done).await
}

/// Seeds `n` subscriptions due at `start` (customers `<prefix><i>`) and
/// runs their first reset (first period, wallet created); the clock is left
/// a month later, where the measured pass runs ([`drain_resets`]).
pub async fn prepare_reset(
    db: &Db,
    tenant_id: Uuid,
    plan_id: Uuid,
    n: usize,
    start: DateTime<Utc>,
    prefix: &str,
) -> anyhow::Result<PreparedReset> {
    let seeded = Instant::now();
    let customers = seed::customers(db, tenant_id, prefix, n, start).await?;
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
    if db.backend() == sea_orm::DatabaseBackend::Postgres {
        // The seed and the first pass wrote ~10 rows per subscription; in
        // production autovacuum would have vacuumed and analyzed them since
        // (this machine's PostgreSQL runs with autovacuum off, its CI
        // configuration): without it the measured pass plans on tables
        // whose statistics say they are empty and walks their dead rows.
        use sea_orm::ConnectionTrait;
        db.writer().execute_unprepared("VACUUM ANALYZE").await?;
    }

    // The first period ends a calendar month after the anchor.
    let next = start
        .checked_add_months(chrono::Months::new(1))
        .context("month")?;
    clock.set(next);
    Ok(PreparedReset {
        n,
        tenant_id,
        customers,
        clock,
        seed_secs,
        first_secs,
    })
}

/// Audits a sample of the reset's wallets; `done` is what the measured
/// pass reset (subscriptions, periods).
pub async fn finish_reset(
    db: &Db,
    prepared: PreparedReset,
    reset_secs: f64,
    (subscriptions, periods): (u64, u64),
) -> anyhow::Result<ResetFigures> {
    let PreparedReset {
        n,
        tenant_id,
        customers,
        seed_secs,
        first_secs,
        ..
    } = prepared;
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

/// Resets until nothing is due: (subscriptions, periods).
pub async fn drain_resets(db: &Db, clock: &FixedClock) -> anyhow::Result<(u64, u64)> {
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

/// Expired grants seeded, not yet swept ([`prepare_sweep`]).
pub struct PreparedSweep {
    tenant_id: Uuid,
    wallet_ids: Vec<Uuid>,
    grants: u64,
    /// At the sweep's instant.
    pub clock: FixedClock,
    seed_secs: f64,
    pre_audited: usize,
    pre_problems: Vec<String>,
}

/// `grants` expired grants (10 per wallet) swept until nothing is left.
pub async fn sweep(
    db: &Db,
    tenant_id: Uuid,
    grants: usize,
    now: DateTime<Utc>,
) -> anyhow::Result<SweepFigures> {
    let prefix = format!("s{grants}-");
    let prepared = prepare_sweep(db, tenant_id, grants, now, &prefix).await?;
    let swept = Instant::now();
    let wallets = drain_sweep(db, &prepared.clock).await?;
    let sweep_secs = swept.elapsed().as_secs_f64();
    finish_sweep(db, prepared, sweep_secs, wallets).await
}

/// Seeds `grants` grants expired at `now` (10 per wallet, customers
/// `<prefix><i>`), audited before the sweep.
pub async fn prepare_sweep(
    db: &Db,
    tenant_id: Uuid,
    grants: usize,
    now: DateTime<Utc>,
    prefix: &str,
) -> anyhow::Result<PreparedSweep> {
    let cs = credit_system_id(db, tenant_id, "tokens").await?;
    let seeded = Instant::now();
    let n_wallets = grants.div_ceil(GRANTS_PER_WALLET as usize);
    let customers = seed::customers(db, tenant_id, prefix, n_wallets, now).await?;
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
    let wallet_ids: Vec<Uuid> = wallets.iter().map(|w| w.id).collect();
    let (pre_audited, pre_problems) = seed::verify(db, tenant_id, &wallet_ids, 10).await?;
    Ok(PreparedSweep {
        tenant_id,
        wallet_ids,
        grants: (n_wallets * GRANTS_PER_WALLET as usize) as u64,
        clock: FixedClock::new(now),
        seed_secs,
        pre_audited,
        pre_problems,
    })
}

/// Sweeps until a pass settles no wallet: the wallets settled.
pub async fn drain_sweep(db: &Db, clock: &FixedClock) -> anyhow::Result<u64> {
    let mut wallets = 0;
    loop {
        let r = service::expiry::sweep(db, clock, SWEEP_BATCH).await?;
        if r.wallets == 0 {
            return Ok(wallets);
        }
        wallets += r.wallets;
    }
}

/// Audits the swept wallets.
pub async fn finish_sweep(
    db: &Db,
    prepared: PreparedSweep,
    sweep_secs: f64,
    wallets: u64,
) -> anyhow::Result<SweepFigures> {
    let (audited, mut problems) =
        seed::verify(db, prepared.tenant_id, &prepared.wallet_ids, 20).await?;
    problems.extend(prepared.pre_problems);
    Ok(SweepFigures {
        grants: prepared.grants,
        wallets,
        seed_secs: prepared.seed_secs,
        sweep_secs,
        audited: audited + prepared.pre_audited,
        problems,
    })
}

/// What consume load beside a job saw: the job's own time and result, and
/// the load's figures (the load starts as the job does and stops when it
/// ends, or after `max`, whichever is first).
pub struct Alongside<T> {
    pub job: T,
    pub job_secs: f64,
    pub load: Stats,
}

/// Runs `job` with `clients` closed-loop consume clients over the first
/// `over` of `targets` beside it.
pub async fn with_consume_load<T>(
    job: impl Future<Output = anyhow::Result<T>>,
    api: &Api,
    targets: &consume::Targets,
    clients: usize,
    over: usize,
    max: std::time::Duration,
    label: &str,
) -> anyhow::Result<Alongside<T>> {
    let stop = Arc::new(AtomicBool::new(false));
    let timed = async {
        let started = Instant::now();
        let done = job.await;
        let secs = started.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        (done, secs)
    };
    let load = consume::api_run_until(api, targets, clients, over, max, label, stop.clone());
    let ((done, job_secs), load) = tokio::join!(timed, load);
    Ok(Alongside {
        job: done?,
        job_secs,
        load,
    })
}
