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
//! Due subscriptions are reset in chunks, one transaction each (one commit
//! per chunk, plans loaded once per chunk). On PostgreSQL a chunk is
//! [`RESET_CHUNK`] subscriptions, chunks side by side. On SQLite, whose
//! write lock covers the whole file (and another process, the API, waits
//! for it), a chunk is a budget of periods sized by time ([`Pacer`], about
//! 50–100 ms a transaction), however many periods one subscription missed
//! (the budget may stop it partway: the next transaction goes on where it
//! stopped), with a pause ([`WRITE_PAUSE`]) after each. A chunk that fails
//! (e.g. chosen as a deadlock victim on PostgreSQL) rolls back whole and is
//! retried by the next run; nothing in it is half-granted.

use std::{
    collections::{HashMap, VecDeque, hash_map::Entry},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use entity::{allowance_period, credit_system, ledger_entry, subscription};
use futures_util::{StreamExt, stream};
use rust_decimal::Decimal;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect,
    sea_query::{Expr, LockBehavior, LockType, OnConflict},
};
use uuid::Uuid;

use crate::ids::{CustomerId, PlanId};
use crate::{
    Clock, Db,
    amount::{from_micros, to_micros},
    catalog::{self, PlanCredit, Rollover},
    credit_systems::CreditSystemRef,
    customers::CustomerRef,
    db::by_id,
    ledger::{self, Category, EntryType, Grant, Made, Session, WalletRef},
    outbox::{self, EventType},
    periods,
    subscription_state::Error,
};

/// Periods one run grants per plan credit at most.
pub const PERIODS_PER_RUN_MAX: u32 = 400;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResetReport {
    pub subscriptions: u64,
    pub periods: u64,
    /// Write transactions the run committed.
    pub transactions: u64,
    /// The longest of them, from holding the write lock to committing.
    pub longest_transaction: Duration,
    /// The periods that longest transaction granted: few means its time
    /// was the disk's commit, not the size of its work.
    pub longest_transaction_periods: u64,
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
    if db.parallel_writers() > 1 {
        // PostgreSQL: chunks run side by side (each locks its own
        // subscriptions; a chunk that loses a deadlock rolls back and is
        // retried by the next run). Every chunk runs to its end before the
        // first error is returned.
        // (The futures are built first: a `map` closure in the stream's type
        // trips the compiler's `Send` check in the worker.)
        let chunks: Vec<_> = due
            .chunks(RESET_CHUNK)
            .map(|chunk| reset_chunk(db, clock, chunk, now, usize::MAX, HashMap::new()))
            .collect();
        let done: Vec<Result<Chunk, Error>> = stream::iter(chunks)
            .buffer_unordered(db.parallel_writers())
            .collect()
            .await;
        // The chunks' events, told to other processes once (see
        // `Session::notify_after_run`).
        if !done.is_empty() {
            crate::outbox::notify(db).await?;
        }
        for chunk in done {
            report.add(&chunk?);
        }
        return Ok(report);
    }
    // SQLite: one writer for the whole file, shared with other processes
    // (the API). Each transaction is sized by time ([`Pacer`]), however many
    // periods a subscription has missed, and a pause after it lets another
    // process's writer take the lock.
    let mut pacer = Pacer::new(RESET_CHUNK, PERIODS_PER_TRANSACTION_MAX, WRITE_TARGET);
    let mut queue: VecDeque<Uuid> = due.into();
    let mut run = HashMap::new();
    while !queue.is_empty() {
        let budget = pacer.size();
        let ids: Vec<Uuid> = queue
            .drain(..queue.len().min(budget).min(RESET_SUBSCRIPTIONS_MAX))
            .collect();
        let chunk = reset_chunk(db, clock, &ids, now, budget, run).await?;
        pacer.record(chunk.units(), chunk.took);
        report.add(&chunk);
        // What the budget cut short goes first next time.
        for id in chunk.left.iter().rev() {
            queue.push_front(*id);
        }
        run = chunk.run;
        if !queue.is_empty() {
            tokio::time::sleep(WRITE_PAUSE).await;
        }
    }
    Ok(report)
}

/// Subscriptions reset per transaction on PostgreSQL (and the first
/// transaction's periods on SQLite): one commit per chunk instead of per
/// subscription, while a transaction stays short.
const RESET_CHUNK: usize = 20;

/// Subscriptions per transaction on SQLite at most, whatever the time
/// allows.
const RESET_SUBSCRIPTIONS_MAX: usize = 200;

/// Periods per transaction on SQLite at most, whatever the time allows.
const PERIODS_PER_TRANSACTION_MAX: usize = 2_000;

/// Periods granted this run so far, by (subscription, plan credit): a run
/// grants at most [`PERIODS_PER_RUN_MAX`] of each, over however many
/// transactions.
type RunCounts = HashMap<(Uuid, Uuid), u32>;

/// What one transaction did.
struct Chunk {
    /// Subscriptions brought up to date (or to this run's limit).
    subscriptions: u64,
    periods: u64,
    /// From holding the write lock to committing.
    took: Duration,
    /// Subscriptions the period budget cut short or did not reach, in order.
    left: Vec<Uuid>,
    run: RunCounts,
}

impl Chunk {
    /// The work the [`Pacer`] weighs: a period each, at least one per
    /// subscription touched.
    fn units(&self) -> usize {
        (self.periods.max(self.subscriptions) as usize).max(1)
    }
}

impl ResetReport {
    fn add(&mut self, chunk: &Chunk) {
        self.subscriptions += chunk.subscriptions;
        self.periods += chunk.periods;
        self.transactions += 1;
        if chunk.took > self.longest_transaction {
            self.longest_transaction = chunk.took;
            self.longest_transaction_periods = chunk.periods;
        }
    }
}

/// What a chunk knows of one plan: its plan credits, billing interval and
/// the credit systems they name.
struct PlanInfo {
    credits: Vec<PlanCredit>,
    billing: periods::Interval,
    systems: HashMap<Uuid, credit_system::Model>,
}

/// A chunk's writes besides the ledger's (its [`Session`] gathers those):
/// the periods granted and the subscriptions' new schedule, written
/// together when it ends.
#[derive(Default)]
struct ChunkWrites {
    periods: Vec<allowance_period::Model>,
    subscriptions: Vec<subscription::Model>,
}

/// How [`grant_period`] writes its period row: at once (a new
/// subscription), or gathered into a reset chunk's writes.
pub(crate) enum Writes<'a> {
    Now,
    Gather(&'a mut Vec<allowance_period::Model>),
}

impl Writes<'_> {
    fn reborrow(&mut self) -> Writes<'_> {
        match self {
            Writes::Now => Writes::Now,
            Writes::Gather(periods) => Writes::Gather(periods),
        }
    }
}

fn period_conflict() -> OnConflict {
    OnConflict::columns([
        allowance_period::Column::TenantId,
        allowance_period::Column::SubscriptionId,
        allowance_period::Column::PlanCreditId,
        allowance_period::Column::PeriodStart,
    ])
    .do_nothing()
    .to_owned()
}

/// Resets a chunk of due subscriptions in one transaction, granting at
/// most `budget` periods; subscriptions another worker holds are skipped
/// (`SKIP LOCKED`). Reads what the chunk needs in a few statements (plans,
/// credit systems, plans' low-credit limits) and writes what it did
/// together at the end, so a subscription costs five statements of its own
/// (its last period, wallet, grants, holds and key).
async fn reset_chunk(
    db: &Db,
    clock: &dyn Clock,
    ids: &[Uuid],
    now: DateTime<Utc>,
    mut budget: usize,
    mut run: RunCounts,
) -> Result<Chunk, Error> {
    let txn = db.begin_write().await?;
    let started = Instant::now();
    // The ledger's writes of the whole chunk, gathered and written together;
    // what the chunk loads is given to the books it opens. Every statement
    // of the chunk is planned for its own parameters (see
    // `Session::plan_each_statement`).
    let mut session = Session::gathering(&txn);
    session.notify_after_run();
    session.plan_each_statement().await?;
    let subs: Vec<subscription::Model> = subscription::Entity::find()
        .filter(subscription::Column::Id.is_in(ids.iter().copied()))
        .order_by_asc(subscription::Column::Id)
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .all(&txn)
        .await?
        .into_iter()
        // Others were reset meanwhile.
        .filter(|sub| sub.next_reset_at.is_some_and(|at| at <= now))
        .collect();
    if subs.is_empty() {
        txn.rollback().await?;
        return Ok(Chunk {
            subscriptions: 0,
            periods: 0,
            took: started.elapsed(),
            left: Vec::new(),
            run,
        });
    }
    let mut plans: HashMap<Uuid, PlanInfo> = HashMap::new();
    for sub in &subs {
        if let Entry::Vacant(slot) = plans.entry(sub.plan_id) {
            let credits =
                catalog::plan_credits_of(&txn, sub.tenant_id, &[PlanId::from_uuid(sub.plan_id)])
                    .await?;
            let plan = catalog::find_plan(&txn, sub.tenant_id, &catalog::Ref::Id(sub.plan_id))
                .await?
                .ok_or_else(|| {
                    DbErr::RecordNotFound(format!(
                        "plan {} of subscription {}",
                        sub.plan_id, sub.id
                    ))
                })?;
            let billing = catalog::Plan::try_from(plan)?.billing_interval.interval();
            let systems = credit_system::Entity::find()
                .filter(credit_system::Column::TenantId.eq(sub.tenant_id))
                .filter(
                    credit_system::Column::Id.is_in(credits.iter().map(|pc| pc.credit_system_id)),
                )
                .all(&txn)
                .await?
                .into_iter()
                .map(|cs| (cs.id, cs))
                .collect();
            slot.insert(PlanInfo {
                credits,
                billing,
                systems,
            });
        }
    }
    let customers: Vec<(Uuid, Uuid)> = subs.iter().map(|s| (s.tenant_id, s.customer_id)).collect();
    let limits = ledger::read::plans_low_credit_limits_of(&txn, &customers, now).await?;
    for plan in plans.values() {
        for cs in plan.systems.values() {
            session.knows_credit_system(cs);
        }
    }
    for sub in &subs {
        for pc in &plans[&sub.plan_id].credits {
            let key = (sub.customer_id, pc.credit_system_id.uuid());
            let found = limits.get(&key).copied().unwrap_or_default();
            session.knows_plan_limits(CustomerId::from_uuid(key.0), pc.credit_system_id, found);
        }
    }

    // One indexed lookup per allowance (`ux_allowance_period`, newest
    // first). Reading the chunk's periods in one statement
    // (`subscription_id IN (…)`) measured slower and grew with the table
    // on PostgreSQL.
    let mut lasts: Vec<Vec<Option<allowance_period::Model>>> = Vec::with_capacity(subs.len());
    for sub in &subs {
        let mut known = Vec::new();
        for pc in &plans[&sub.plan_id].credits {
            known.push(match pc.included {
                Some(_) => last_period(&txn, sub, pc).await?,
                None => None,
            });
        }
        lasts.push(known);
    }
    // The chunk's wallets and the keys of the periods due next, read ahead
    // in a few statements: what each grant would read on its own.
    let mut wallets = Vec::new();
    let mut keys = Vec::new();
    for (sub, known) in subs.iter().zip(&lasts) {
        for (pc, last) in plans[&sub.plan_id].credits.iter().zip(known) {
            let Some(allowance) = &pc.included else {
                continue;
            };
            wallets.push((sub.tenant_id, sub.customer_id, pc.credit_system_id.uuid()));
            if let Some(start) = next_start(sub, allowance.reset_interval, last.as_ref(), now) {
                for what in ["allowance", "rollover"] {
                    keys.push((sub.tenant_id, period_key(what, sub, pc, start)));
                }
            }
        }
    }
    session.preload(&wallets, now).await?;
    session.preload_keys(&keys).await?;

    let mut writes = ChunkWrites::default();
    let (mut subscriptions, mut periods) = (0, 0);
    let mut left = Vec::new();
    for (sub, known) in subs.iter().zip(lasts) {
        if budget == 0 {
            left.push(sub.id);
            continue;
        }
        let plan = &plans[&sub.plan_id];
        let limits = Limits {
            budget: &mut budget,
            run: &mut run,
        };
        let (granted, whole) = reset_one(
            &mut session,
            clock,
            sub,
            plan,
            known,
            limits,
            &mut writes,
            now,
        )
        .await?;
        periods += granted;
        if whole {
            subscriptions += 1;
        } else {
            left.push(sub.id);
        }
    }
    session.close().await?;
    for chunk in writes.periods.chunks(500) {
        allowance_period::Entity::insert_many(
            chunk
                .iter()
                .cloned()
                .map(IntoActiveModel::into_active_model),
        )
        .on_conflict(period_conflict())
        .exec_without_returning(&txn)
        .await?;
    }
    for chunk in writes.subscriptions.chunks(200) {
        let id = |s: &subscription::Model| subscription::Column::Id.eq(s.id);
        subscription::Entity::update_many()
            .col_expr(
                subscription::Column::NextResetAt,
                by_id(chunk, id, |s| s.next_reset_at.into()),
            )
            .col_expr(
                subscription::Column::CurrentPeriodStart,
                by_id(chunk, id, |s| s.current_period_start.into()),
            )
            .col_expr(
                subscription::Column::CurrentPeriodEnd,
                by_id(chunk, id, |s| s.current_period_end.into()),
            )
            .col_expr(subscription::Column::UpdatedAt, Expr::value(now))
            .filter(subscription::Column::Id.is_in(chunk.iter().map(|s| s.id)))
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(Chunk {
        subscriptions,
        periods,
        took: started.elapsed(),
        left,
        run,
    })
}

/// How far [`reset_one`] may go: the periods left in this transaction's
/// budget, and what this run granted so far.
struct Limits<'a> {
    budget: &'a mut usize,
    run: &'a mut RunCounts,
}

/// One subscription of a chunk; `known` holds, per plan credit, its last
/// granted period.
/// Returns the periods granted and whether the subscription is done for
/// this run (false: the budget ran out first).
#[allow(clippy::too_many_arguments)]
async fn reset_one(
    session: &mut Session<'_>,
    clock: &dyn Clock,
    sub: &subscription::Model,
    plan: &PlanInfo,
    known: Vec<Option<allowance_period::Model>>,
    limits: Limits<'_>,
    writes: &mut ChunkWrites,
    now: DateTime<Utc>,
) -> Result<(u64, bool), Error> {
    let mut periods = 0;
    let mut whole = true;
    let mut last_ends = Vec::new();
    for (pc, mut last) in plan.credits.iter().zip(known) {
        if pc.included.is_none() || !plan.systems.contains_key(&pc.credit_system_id.uuid()) {
            continue;
        }
        let count = limits.run.entry((sub.id, pc.id.uuid())).or_default();
        while *count < PERIODS_PER_RUN_MAX {
            if *limits.budget == 0 {
                // Perhaps nothing more is due: the next transaction tells.
                whole = false;
                break;
            }
            let gather = Writes::Gather(&mut writes.periods);
            let next = grant_next_period(session, clock, sub, pc, last.as_ref(), gather, now);
            match next.await? {
                Some(granted) => last = Some(granted),
                None => break,
            }
            *count += 1;
            *limits.budget -= 1;
            periods += 1;
        }
        last_ends.extend(last.map(|l| l.period_end));
    }
    let (start, end) =
        periods::period_at(sub.billing_anchor, plan.billing, now.max(sub.started_at));
    if whole
        && sub.cancel_at.is_none_or(|c| start < c)
        && plan
            .credits
            .iter()
            .any(|pc| pc.pricing.as_ref().is_some_and(|p| p.recurring.is_some()))
    {
        // Orders read keys the session may hold: it writes them first.
        let txn = session.read().await?;
        for pc in &plan.credits {
            crate::purchases::recurring_order_in(txn, clock, sub, pc, start).await?;
        }
    }
    let mut sub = sub.clone();
    sub.next_reset_at = next_reset_from(&sub, &plan.credits, plan.billing, now, &last_ends);
    sub.current_period_start = start;
    sub.current_period_end = end;
    sub.updated_at = now;
    writes.subscriptions.push(sub);
    Ok((periods, whole))
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
    session: &mut Session<'_>,
    clock: &dyn Clock,
    sub: &subscription::Model,
    pc: &PlanCredit,
    (start, end): (DateTime<Utc>, DateTime<Utc>),
    (carry, carried_from): (i64, Option<Uuid>),
    writes: Writes<'_>,
) -> Result<Option<(allowance_period::Model, Grant, Option<Grant>)>, Error> {
    let Some(allowance) = &pc.included else {
        return Ok(None);
    };
    let key = |what: &str| period_key(what, sub, pc, start);
    let grant = |amount: Decimal, reason: String, idempotency_key: String| ledger::GrantInput {
        wallet: WalletRef {
            customer: CustomerRef::Id(CustomerId::from_uuid(sub.customer_id)),
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
        session,
        clock,
        sub.tenant_id,
        &grant(
            allowance.amount,
            format!("allowance {period}"),
            key("allowance"),
        ),
        Made {
            source: Some(("allowance", sub.id.to_string())),
            catch_up: true,
        },
    )
    .await?
    .grant;
    let rollover_grant = if carry > 0 {
        Some(
            ledger::grant_in(
                session,
                clock,
                sub.tenant_id,
                &grant(
                    from_micros(carry),
                    format!("rollover into {period}"),
                    key("rollover"),
                ),
                Made {
                    source: Some((
                        "rollover",
                        carried_from.map(|id| id.to_string()).unwrap_or_default(),
                    )),
                    catch_up: true,
                },
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
        plan_credit_id: pc.id.uuid(),
        period_start: start,
        period_end: end,
        grant_id: allowance_grant.id.uuid(),
        rollover_grant_id: rollover_grant.as_ref().map(|g| g.id.uuid()),
        created_at: clock.now(),
    };
    match writes {
        Writes::Now => {
            allowance_period::Entity::insert(period.clone().into_active_model())
                .on_conflict(period_conflict())
                .exec_without_returning(session.outside_ledger())
                .await?;
        }
        Writes::Gather(periods) => periods.push(period.clone()),
    }
    Ok(Some((period, allowance_grant, rollover_grant)))
}

/// The idempotency key of one grant (`what`: allowance, rollover) of the
/// period starting at `start`.
fn period_key(
    what: &str,
    sub: &subscription::Model,
    pc: &PlanCredit,
    start: DateTime<Utc>,
) -> String {
    format!(
        "{what}:{}:{}:{}",
        sub.id.simple(),
        pc.id.uuid().simple(),
        start.timestamp_micros()
    )
}

/// When the period after `last` (the last one granted) starts, if it has
/// started by `now` and the subscription still runs then.
fn next_start(
    sub: &subscription::Model,
    interval: periods::Interval,
    last: Option<&allowance_period::Model>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let start = match last {
        Some(p) => p.period_end,
        None => periods::period_at(sub.billing_anchor, interval, now.max(sub.started_at)).0,
    };
    (start <= now && sub.cancel_at.is_none_or(|c| start < c)).then_some(start)
}

/// Grants the period after `last` (the last one granted), if it has
/// started and the subscription still runs then, and returns it. `None`:
/// nothing (more) to grant.
async fn grant_next_period(
    session: &mut Session<'_>,
    clock: &dyn Clock,
    sub: &subscription::Model,
    pc: &PlanCredit,
    last: Option<&allowance_period::Model>,
    mut writes: Writes<'_>,
    now: DateTime<Utc>,
) -> Result<Option<allowance_period::Model>, Error> {
    let Some(allowance) = &pc.included else {
        return Ok(None);
    };
    let interval = allowance.reset_interval;
    let Some(start) = next_start(sub, interval, last, now) else {
        return Ok(None);
    };
    let n = periods::index_at(sub.billing_anchor, interval, start);
    let end = periods::start_of(sub.billing_anchor, interval, n + 1);
    let carry = match (allowance.rollover, last) {
        (Rollover::Capped(cap), Some(last)) => {
            let mut previous = vec![last.grant_id];
            previous.extend(last.rollover_grant_id);
            let cap = to_micros(cap, 6, "rolloverCap").map_err(Error::Invalid)?;
            // The last period's grants may wait in the session: it writes
            // them before this read.
            unused(session.read().await?, sub.tenant_id, &previous)
                .await?
                .min(cap)
        }
        _ => 0,
    };
    let carried_from = last.map(|l| l.grant_id);
    let Some((period, allowance_grant, _)) = grant_period(
        session,
        clock,
        sub,
        pc,
        (start, end),
        (carry, carried_from),
        writes.reborrow(),
    )
    .await?
    else {
        return Ok(None);
    };
    let event = outbox::event(
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
    );
    session.event(event).await?;
    Ok(Some(period))
}

/// How long a batch job's write transaction should hold SQLite's write
/// lock at most: another process (the API) waiting for the lock waits this
/// long, plus [`WRITE_PAUSE`] at worst.
pub(crate) const WRITE_TARGET: Duration = Duration::from_millis(100);

/// The gap a batch job leaves between its write transactions on SQLite.
/// A writer of another process waiting for the lock sleeps in SQLite's
/// busy handler and retries after 1, 2, 5, 10, 15, 20, 25, 25, 25 ms,
/// then 50 ms: one that has waited up to [`WRITE_TARGET`] retries within
/// 25 ms, so it finds the lock free in this gap instead of losing it again
/// to the job's next `BEGIN IMMEDIATE`.
pub(crate) const WRITE_PAUSE: Duration = Duration::from_millis(30);

/// Sizes a batch job's write transactions by time (SQLite): each measured
/// transaction adapts the next one's size (periods, wallets) so that it
/// holds the write lock for about half of `target` to `target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pacer {
    size: usize,
    max: usize,
    target: Duration,
}

impl Pacer {
    /// Starts at `start` (at least 1), never above `max`.
    pub(crate) fn new(start: usize, max: usize, target: Duration) -> Self {
        let max = max.max(1);
        Self {
            size: start.clamp(1, max),
            max,
            target,
        }
    }

    /// How much the next transaction may do.
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// A transaction did `units` of work in `took`.
    pub(crate) fn record(&mut self, units: usize, took: Duration) {
        self.size = next_size(self.size, self.max, self.target, units, took);
    }
}

/// The next transaction's size after one of `size` did `units` in `took`:
/// - over `target`: scaled down to land at half the target, and at least
///   halved (never below 1);
/// - under half the target with its size used up: grown by a quarter (at
///   least 1), up to `max`;
/// - otherwise (in the band, or it ran out of work): unchanged.
fn next_size(size: usize, max: usize, target: Duration, units: usize, took: Duration) -> usize {
    if took > target {
        let units = units.max(1) as u128;
        let scaled = units * (target.as_micros() / 2) / took.as_micros().max(1);
        return (scaled.min(units / 2) as usize).clamp(1, max);
    }
    if took * 2 <= target && units >= size {
        return (size + (size / 4).max(1)).min(max);
    }
    size.min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_sizes_follow_their_time() {
        let ms = Duration::from_millis;
        // (size, max, units done, took) → next size; target 100 ms.
        let cases = [
            // In the band: unchanged.
            (100, 1000, 100, ms(80), 100),
            (100, 1000, 100, ms(50), 125),
            (100, 1000, 100, ms(51), 100),
            // Fast and full: a quarter more, at least one, up to max.
            (100, 1000, 100, ms(10), 125),
            (3, 1000, 3, ms(1), 4),
            (1, 1000, 1, ms(1), 2),
            (900, 1000, 900, ms(10), 1000),
            (1000, 1000, 1000, ms(10), 1000),
            // Fast because it ran out of work: no evidence, unchanged.
            (100, 1000, 7, ms(1), 100),
            // Slightly over: aimed at 50 ms.
            (100, 1000, 100, ms(110), 45),
            // Far over: scaled down, however many periods one did.
            (6000, 8000, 6000, ms(40_000), 7),
            (20, 1000, 20, ms(2_000), 1),
            // Over by a hair: at least halved.
            (100, 1000, 100, ms(101), 49),
            // Never below one, even for one unit far over.
            (1, 1000, 1, ms(5_000), 1),
            (1, 1000, 0, ms(5_000), 1),
        ];
        for (size, max, units, took, next) in cases {
            assert_eq!(
                next_size(size, max, ms(100), units, took),
                next,
                "size {size}, max {max}, {units} units in {took:?}"
            );
        }
    }

    #[test]
    fn a_pacer_starts_within_its_bounds_and_settles_in_the_band() {
        let ms = Duration::from_millis;
        assert_eq!(Pacer::new(0, 10, ms(100)).size(), 1);
        assert_eq!(Pacer::new(50, 10, ms(100)).size(), 10);
        assert_eq!(Pacer::new(5, 0, ms(100)).size(), 1);
        // 1 ms a unit: from 20 it grows to 50–100 units and stays there.
        let mut pacer = Pacer::new(20, 2_000, ms(100));
        for _ in 0..50 {
            let units = pacer.size();
            pacer.record(units, ms(units as u64));
        }
        assert!((50..=100).contains(&pacer.size()), "{}", pacer.size());
        // It turns 20 times slower: back under the target at once.
        let units = pacer.size();
        pacer.record(units, ms(20 * units as u64));
        assert!(pacer.size() * 20 <= 100, "{}", pacer.size());
    }
}
