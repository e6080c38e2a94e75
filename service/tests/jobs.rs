//! The scheduled jobs' effects: allowance resets through month ends and
//! downtime, exactly once however they are run; the expiry sweep.

mod common;

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::{World, d};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use service::ids::{CustomerId, SubscriptionId};
use service::{
    Clock, allowances,
    catalog::{self, Allowance, BillingInterval, PlanCreditTerms, Ref, Rollover},
    credit_systems::CreditSystemRef,
    customers::{self, CustomerRef, NewCustomer},
    expiry,
    jobs::{self, Job},
    ledger::{self, audit},
    periods::Interval,
    subscriptions::{self, SubscribeInput},
};

fn jan31() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2027, 1, 31, 10, 0, 0).unwrap()
}

/// A published monthly plan including 100 tokens a month.
async fn plan(w: &World, key: &str, rollover: Rollover) {
    let (db, clock, t) = (&w.t.db, &w.clock, w.tenant_id);
    catalog::create_product(db, clock, t, "p", "Product", "")
        .await
        .unwrap();
    catalog::create_plan(
        db,
        clock,
        t,
        &Ref::Key("p".into()),
        key,
        "Plan",
        BillingInterval::Monthly,
    )
    .await
    .unwrap();
    catalog::attach_credit_system(
        db,
        clock,
        t,
        &Ref::Key(key.into()),
        &CreditSystemRef::Id(w.credit_system_id),
        &PlanCreditTerms {
            included: Some(Allowance {
                amount: d("100"),
                reset_interval: Interval::Monthly,
                rollover,
            }),
            pricing: None,
            usage_alert_percents: None,
        },
    )
    .await
    .unwrap();
    catalog::publish_plan(db, clock, t, &Ref::Key(key.into()))
        .await
        .unwrap();
}

async fn subscribe(w: &World, customer: CustomerId, key: &str) -> SubscriptionId {
    subscriptions::subscribe(
        &w.t.db,
        &w.clock,
        w.tenant_id,
        &SubscribeInput {
            customer: CustomerRef::Id(customer),
            plan: Ref::Key("monthly".into()),
            start_at: None,
            idempotency_key: key.into(),
        },
    )
    .await
    .unwrap()
    .subscription
    .id
}

/// The wallet's ledger with times left out: (type, amount, balance after),
/// and its grants (amount, effective, expires).
async fn ledger_of(
    w: &World,
    customer: CustomerId,
) -> (
    Vec<(String, i64, i64)>,
    Vec<(i64, DateTime<Utc>, Option<DateTime<Utc>>)>,
) {
    let wallet = ledger::read::wallet_of(&w.t.db, w.tenant_id, customer, w.credit_system_id)
        .await
        .unwrap()
        .unwrap();
    let problems = audit::verify_wallet(w.t.db.reader(), w.tenant_id, wallet.id)
        .await
        .unwrap();
    assert!(problems.is_empty(), "{problems:#?}");
    let entries = entity::ledger_entry::Entity::find()
        .filter(entity::ledger_entry::Column::WalletId.eq(wallet.id))
        .order_by_asc(entity::ledger_entry::Column::Seq)
        .all(w.t.db.reader())
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.entry_type, e.amount_micros, e.balance_after_micros))
        .collect();
    let mut grants: Vec<_> = entity::credit_grant::Entity::find()
        .filter(entity::credit_grant::Column::WalletId.eq(wallet.id))
        .all(w.t.db.reader())
        .await
        .unwrap()
        .into_iter()
        .map(|g| (g.amount_micros, g.effective_at, g.expires_at))
        .collect();
    grants.sort();
    (entries, grants)
}

async fn balance_of(w: &World, customer: CustomerId) -> ledger::Balance {
    let wallet = ledger::read::wallet_of(&w.t.db, w.tenant_id, customer, w.credit_system_id)
        .await
        .unwrap()
        .unwrap();
    ledger::read::balances(&w.t.db, w.tenant_id, &[wallet.id], w.clock.now())
        .await
        .unwrap()
        .remove(&wallet.id)
        .unwrap()
}

async fn customer(w: &World, external: &str) -> CustomerId {
    customers::create(
        &w.t.db,
        &w.clock,
        w.tenant_id,
        &NewCustomer {
            external_id: external.into(),
            name: external.into(),
            email: None,
            metadata: None,
            parent: None,
        },
    )
    .await
    .unwrap()
    .id
}

#[tokio::test]
async fn monthly_resets_follow_month_ends_for_14_months() {
    fourteen_months(Rollover::None).await;
}

#[tokio::test]
async fn monthly_resets_with_a_rollover_cap_for_14_months() {
    fourteen_months(Rollover::Capped(d("30"))).await;
}

async fn fourteen_months(rollover: Rollover) {
    let w = World::new(0).await;
    w.clock.set(jan31());
    plan(&w, "monthly", rollover).await;
    let c = customer(&w, "c").await;
    subscribe(&w, c, "s").await;
    let mut starts = Vec::new();
    for month in 0..14u32 {
        let at = jan31()
            .checked_add_months(chrono::Months::new(month))
            .unwrap();
        w.clock.set(at);
        // Twice per tick: the second run finds nothing to do.
        allowances::reset_due(&w.t.db, &w.clock, 100).await.unwrap();
        let again = allowances::reset_due(&w.t.db, &w.clock, 100).await.unwrap();
        assert_eq!(again.periods, 0, "month {month}");
        starts.push(at);
    }
    let (_, all_grants) = ledger_of(&w, c).await;
    // The allowances (rollover grants, when any, carry unused credits).
    let grants: Vec<_> = all_grants
        .iter()
        .filter(|g| g.0 == 100_000_000)
        .cloned()
        .collect();
    let rolled: Vec<_> = all_grants.iter().filter(|g| g.0 != 100_000_000).collect();
    match rollover {
        Rollover::None => assert!(rolled.is_empty()),
        // Nothing was used: every month after the first carries the cap.
        Rollover::Capped(_) => {
            assert_eq!(rolled.len(), 13);
            assert!(rolled.iter().all(|g| g.0 == 30_000_000));
        }
    }
    let effective: Vec<String> = grants
        .iter()
        .map(|g| g.1.date_naive().to_string())
        .collect();
    let mut expected: Vec<String> = starts.iter().map(|s| s.date_naive().to_string()).collect();
    expected.sort();
    assert_eq!(effective, expected);
    assert_eq!(effective[1], "2027-02-28");
    assert_eq!(effective[2], "2027-03-31");
    assert_eq!(effective[13], "2028-02-29");
    assert!(grants.iter().all(|g| g.0 == 100_000_000));
    // Each grant expires when the next period starts.
    for pair in grants.windows(2) {
        assert_eq!(pair[0].2, Some(pair[1].1));
    }
    // Only the current period's allowance (and carry-over) is spendable.
    let expected = match rollover {
        Rollover::None => d("100"),
        Rollover::Capped(cap) => d("100") + cap,
    };
    assert_eq!(balance_of(&w, c).await.available, expected);
}

#[tokio::test]
async fn rollover_carries_unused_allowance_up_to_the_cap() {
    let w = World::new(0).await;
    w.clock.set(jan31());
    plan(&w, "monthly", Rollover::Capped(d("30"))).await;
    let c = customer(&w, "c").await;
    subscribe(&w, c, "s").await;
    // Use 50 of January's 100; 50 unused, 30 carried.
    let mut input = w.consume_input("50");
    input.wallet.customer = CustomerRef::Id(c);
    ledger::consume(&w.t.db, &w.clock, w.tenant_id, &input)
        .await
        .unwrap();
    w.clock
        .set(Utc.with_ymd_and_hms(2027, 2, 28, 10, 0, 0).unwrap());
    allowances::reset_due(&w.t.db, &w.clock, 100).await.unwrap();
    assert_eq!(balance_of(&w, c).await.available, d("130"));
    // February unused entirely: 130 unused, capped at 30 again.
    w.clock
        .set(Utc.with_ymd_and_hms(2027, 3, 31, 10, 0, 0).unwrap());
    allowances::reset_due(&w.t.db, &w.clock, 100).await.unwrap();
    assert_eq!(balance_of(&w, c).await.available, d("130"));
    ledger_of(&w, c).await;
}

#[tokio::test]
async fn downtime_is_caught_up_period_by_period_like_running_every_month() {
    // World A runs every month; world B's worker is down for three months.
    let a = World::new(0).await;
    let b = World::new(0).await;
    for w in [&a, &b] {
        w.clock.set(jan31());
        plan(w, "monthly", Rollover::Capped(d("30"))).await;
    }
    let ca = customer(&a, "c").await;
    let cb = customer(&b, "c").await;
    subscribe(&a, ca, "s").await;
    subscribe(&b, cb, "s").await;
    for month in 1..=3u32 {
        a.clock.set(
            jan31()
                .checked_add_months(chrono::Months::new(month))
                .unwrap(),
        );
        allowances::reset_due(&a.t.db, &a.clock, 100).await.unwrap();
    }
    b.clock.set(a.clock.now());
    let report = allowances::reset_due(&b.t.db, &b.clock, 100).await.unwrap();
    assert_eq!(report.periods, 3);
    let (entries_a, grants_a) = ledger_of(&a, ca).await;
    let (entries_b, grants_b) = ledger_of(&b, cb).await;
    assert_eq!(grants_a, grants_b, "the same grants, period by period");
    let balance = |e: &Vec<(String, i64, i64)>| e.last().unwrap().2;
    assert_eq!(balance(&entries_a), balance(&entries_b));
    // Every missed period was granted and expired: nothing lost, nothing extra.
    let granted = |e: &Vec<(String, i64, i64)>| {
        e.iter()
            .filter(|x| x.0 == "GRANT")
            .map(|x| x.1)
            .sum::<i64>()
    };
    assert_eq!(granted(&entries_a), granted(&entries_b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_at_once_grant_once() {
    let w = Arc::new(World::new(0).await);
    w.clock.set(jan31());
    plan(&w, "monthly", Rollover::Capped(d("30"))).await;
    let mut customers = Vec::new();
    for i in 0..10 {
        let c = customer(&w, &format!("c{i}")).await;
        subscribe(&w, c, &format!("s{i}")).await;
        customers.push(c);
    }
    for month in 1..=4u32 {
        w.clock.set(
            jan31()
                .checked_add_months(chrono::Months::new(month))
                .unwrap(),
        );
        let runs: Vec<_> = (0..2)
            .map(|_| {
                let w = w.clone();
                tokio::spawn(async move { allowances::reset_due(&w.t.db, &w.clock, 100).await })
            })
            .collect();
        let mut periods = 0;
        for r in runs {
            periods += r.await.unwrap().unwrap().periods;
        }
        assert_eq!(periods, 10, "month {month}: each subscription reset once");
    }
    // The same story run by one worker, once per tick.
    let single = World::new(0).await;
    single.clock.set(jan31());
    plan(&single, "monthly", Rollover::Capped(d("30"))).await;
    let c0 = customer(&single, "c0").await;
    subscribe(&single, c0, "s0").await;
    for month in 1..=4u32 {
        single.clock.set(
            jan31()
                .checked_add_months(chrono::Months::new(month))
                .unwrap(),
        );
        allowances::reset_due(&single.t.db, &single.clock, 100)
            .await
            .unwrap();
    }
    let reference = ledger_of(&single, c0).await;
    for c in customers {
        assert_eq!(
            ledger_of(&w, c).await,
            reference,
            "two workers at once = one worker"
        );
    }
}

#[tokio::test]
async fn a_worker_killed_mid_run_is_abandoned_and_its_work_done_once() {
    // More chunks (of 20) than PostgreSQL runs side by side (4), so a run
    // has a visible middle to be killed in, however fast the waves commit.
    const SUBSCRIPTIONS: usize = 120;
    let w = Arc::new(World::new(0).await);
    w.clock.set(jan31());
    plan(&w, "monthly", Rollover::None).await;
    let mut customers = Vec::new();
    for i in 0..SUBSCRIPTIONS {
        let c = customer(&w, &format!("c{i}")).await;
        subscribe(&w, c, &format!("s{i}")).await;
        customers.push(c);
    }
    let periods = || async {
        entity::allowance_period::Entity::find()
            .all(w.t.db.reader())
            .await
            .unwrap()
            .len()
    };
    let before = periods().await;
    w.clock
        .set(jan31().checked_add_months(chrono::Months::new(6)).unwrap());
    // Start a recorded run and kill it once some, not all, subscriptions
    // are done (as a worker killed mid-run: nothing after it runs).
    let run = {
        let w = w.clone();
        tokio::spawn(async move {
            jobs::record(
                &w.t.db,
                &w.clock,
                Job::AllowanceReset,
                jobs::Lease::DEFAULT,
                async {
                    allowances::reset_due(&w.t.db, &w.clock, 1_000)
                        .await
                        .map(|r| r.periods)
                },
            )
            .await
        })
    };
    let mut partial = false;
    for _ in 0..5_000 {
        let n = periods().await;
        if n > before && n < before + SUBSCRIPTIONS * 6 {
            partial = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    run.abort();
    let _ = run.await;
    assert!(partial, "the run was stopped midway");
    settle_aborted_sessions(&w).await;
    let status = |runs: Vec<jobs::JobRun>| runs.into_iter().map(|r| r.status).collect::<Vec<_>>();
    let recent = || jobs::recent(&w.t.db, Job::AllowanceReset, 10, w.clock.now());
    assert_eq!(
        status(recent().await.unwrap()),
        ["RUNNING"],
        "within its lease"
    );
    // Past the lease without a heartbeat, the jobs query calls it what it is.
    w.clock
        .advance(jobs::Lease::DEFAULT.duration() + Duration::seconds(1));
    assert_eq!(status(recent().await.unwrap()), ["ABANDONED"]);
    // The next worker marks it so and finishes the job. (A task aborted
    // while its COMMIT was on the wire may still commit on PostgreSQL
    // after the next run began; that run then fails and the one after it
    // catches up — seen once in many runs. Up to three runs, as the
    // scheduler would make.)
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        let run = jobs::record(
            &w.t.db,
            &w.clock,
            Job::AllowanceReset,
            jobs::Lease::DEFAULT,
            async {
                allowances::reset_due(&w.t.db, &w.clock, 1_000)
                    .await
                    .map(|r| r.periods)
            },
        )
        .await;
        let done = run.is_ok();
        outcomes.push(run.map_err(|e| e.to_string()));
        if done {
            break;
        }
    }
    assert!(outcomes.last().unwrap().is_ok(), "{outcomes:?}");
    let stored: Vec<String> = entity::job_run::Entity::find()
        .order_by_asc(entity::job_run::Column::StartedAt)
        .all(w.t.db.reader())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(stored.first().map(String::as_str), Some("ABANDONED"));
    assert_eq!(stored.last().map(String::as_str), Some("SUCCEEDED"));
    assert!(
        stored[1..stored.len() - 1].iter().all(|s| s == "FAILED"),
        "{stored:?}"
    );
    assert_eq!(stored.len(), outcomes.len() + 1, "{stored:?}");
    assert_eq!(
        allowances::reset_due(&w.t.db, &w.clock, 1_000)
            .await
            .unwrap()
            .periods,
        0
    );
    for c in customers {
        let (_, grants) = ledger_of(&w, c).await;
        assert_eq!(grants.len(), 7, "January plus six caught-up months");
    }
}

/// A killed worker's connections die with it, and PostgreSQL rolls its
/// open transaction back at once. An aborted task's connection instead
/// finishes its statement in flight and is rolled back by the pool a
/// moment later — until then it holds the rows it locked, which the next
/// run's `SKIP LOCKED` passes over. Wait for that, as for the dead process.
async fn settle_aborted_sessions(w: &World) {
    use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
    let conn = w.t.db.reader();
    if conn.get_database_backend() != DatabaseBackend::Postgres {
        return;
    }
    for _ in 0..200 {
        let open = conn
            .query_one_raw(Statement::from_string(
                DatabaseBackend::Postgres,
                "SELECT count(*) AS n FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid() \
                   AND xact_start IS NOT NULL",
            ))
            .await
            .unwrap()
            .and_then(|row| row.try_get::<i64>("", "n").ok())
            .unwrap_or(0);
        if open == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the aborted run's transaction did not end within 10 s");
}

#[tokio::test]
async fn the_sweep_books_each_expiry_once() {
    let w = World::new(0).await;
    let g = w.grant("10", Some(Duration::hours(1))).await;
    w.grant("5", None).await;
    w.consume("3").await.unwrap();
    w.clock.advance(Duration::hours(1));
    // At the instant of expiry nothing of it is spendable, sweep or not.
    assert_eq!(w.balance().await.available, d("5"));
    let report = expiry::sweep(&w.t.db, &w.clock, 100).await.unwrap();
    assert_eq!(report.wallets, 1);
    assert_eq!(
        expiry::sweep(&w.t.db, &w.clock, 100).await.unwrap().wallets,
        0
    );
    let expiries: Vec<i64> = entity::ledger_entry::Entity::find()
        .filter(entity::ledger_entry::Column::GrantId.eq(g.id))
        .filter(entity::ledger_entry::Column::EntryType.eq("EXPIRY"))
        .all(w.t.db.reader())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.amount_micros)
        .collect();
    assert_eq!(expiries, vec![-7_000_000], "one EXPIRY for the remainder");
    assert_eq!(w.balance().await.available, d("5"));
    w.verify().await;
}

/// What a reset costs per subscription, in statements of its own: its last
/// period (one indexed lookup per allowance) and nothing else on the common
/// path — the chunk's wallets, their grants and holds and the period keys
/// are read for the whole chunk at once (`ledger::Session::preload`), and
/// its writes go out together. 5 and 15 subscriptions, one transaction each.
#[tokio::test]
async fn a_reset_costs_one_statement_per_subscription_of_its_own() {
    let mut counts = Vec::new();
    for n in [5u64, 15] {
        let mut w = World::new(0).await;
        w.clock.set(jan31());
        plan(&w, "monthly", Rollover::None).await;
        for i in 0..n {
            let c = customer(&w, &format!("c{i}")).await;
            subscribe(&w, c, &format!("s{i}")).await;
        }
        w.clock
            .set(Utc.with_ymd_and_hms(2027, 2, 28, 10, 0, 0).unwrap());
        let counter = w.t.db.count_statements();
        let report = allowances::reset_due(&w.t.db, &w.clock, 1_000)
            .await
            .unwrap();
        let statements = counter.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!((report.subscriptions, report.transactions), (n, 1));
        counts.push((n, statements));
        for i in [0, n - 1] {
            let c = customer_id(&w, &format!("c{i}")).await;
            assert_eq!(balance_of(&w, c).await.available, d("100"));
            ledger_of(&w, c).await;
        }
    }
    let ((small, at_small), (big, at_big)) = (counts[0], counts[1]);
    assert!(
        at_big - at_small <= big - small,
        "{small} subscriptions: {at_small} statements, {big}: {at_big} — more than one more per subscription"
    );
}

async fn customer_id(w: &World, external: &str) -> CustomerId {
    let found = customers::resolve(
        w.t.db.reader(),
        w.tenant_id,
        &CustomerRef::ExternalId(external.into()),
    )
    .await
    .unwrap();
    CustomerId::from_uuid(found.id)
}
