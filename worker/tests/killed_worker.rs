//! A worker process killed with SIGKILL in the middle of an allowance
//! reset: its run is shown `ABANDONED` once its lease runs out, and the
//! next worker process marks it so and does exactly the work it left
//! undone (issue 14, item 6). Real processes (the `worker` binary) on a
//! real database of the kind under test, with a 2-second lease
//! (`JOB_LEASE_SECONDS`) so the test need not wait a minute.

#[path = "../../service/tests/common/mod.rs"]
mod common;

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use chrono::{Months, Utc};
use common::World;
use entity::{allowance_period, job_run, ledger_entry};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder};
use service::{
    catalog::Ref,
    customers::{self, CustomerRef, NewCustomer},
    jobs::{self, Job},
    ledger::audit,
    subscriptions::{self, SubscribeInput},
};

/// Subscriptions, each with [`MONTHS`] monthly periods due: enough work
/// for the run to have a middle to be killed in on either database.
const SUBSCRIPTIONS: usize = 300;
const MONTHS: u32 = 6;
const LEASE_SECONDS: u64 = 2;

fn start_worker(w: &World, mail: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_worker"))
        .env("DATABASE_URL", &w.t.url)
        .env("SECRETS_KEY", w.t.secrets_key().to_base64())
        .env("JOB_LEASE_SECONDS", LEASE_SECONDS.to_string())
        .env("MAIL_DIR", mail)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the worker binary")
}

async fn periods(w: &World) -> u64 {
    allowance_period::Entity::find()
        .count(w.t.db.reader())
        .await
        .unwrap()
}

async fn reset_runs(w: &World) -> Vec<job_run::Model> {
    job_run::Entity::find()
        .filter(job_run::Column::Job.eq(Job::AllowanceReset.as_str()))
        .order_by_asc(job_run::Column::StartedAt)
        .all(w.t.db.reader())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_process_is_abandoned_and_the_next_does_its_work_once() {
    let w = World::new(0).await;
    // Subscribed six months and a day ago (the binary runs on the system
    // clock): six periods of each are due.
    let start =
        Utc::now().checked_sub_months(Months::new(MONTHS)).unwrap() - chrono::Duration::days(1);
    w.clock.set(start);
    let (db, clock, t) = (&w.t.db, &w.clock, w.tenant_id);
    w.monthly_plan().await;
    for i in 0..SUBSCRIPTIONS {
        let c = customers::create(
            db,
            clock,
            t,
            &NewCustomer {
                external_id: format!("c{i}"),
                name: format!("c{i}"),
                email: None,
                metadata: None,
                parent: None,
            },
        )
        .await
        .unwrap();
        subscriptions::subscribe(
            db,
            clock,
            t,
            &SubscribeInput {
                customer: CustomerRef::Id(c.id),
                plan: Ref::Key("monthly".into()),
                start_at: None,
                idempotency_key: format!("s{i}"),
            },
        )
        .await
        .unwrap();
    }
    let before = periods(&w).await;
    let all = before + (SUBSCRIPTIONS as u64) * u64::from(MONTHS);
    let mail = tempfile::tempdir().unwrap();

    // The first worker starts resetting at once; kill -9 it midway.
    let mut first = start_worker(&w, mail.path());
    let deadline = Instant::now() + Duration::from_secs(120);
    let midway = loop {
        let n = periods(&w).await;
        if n > before && n < all {
            break n;
        }
        assert!(n < all, "the run finished before it could be killed");
        assert!(
            Instant::now() < deadline,
            "the worker did not start resetting"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    first.kill().unwrap();
    first.wait().unwrap();
    let runs = reset_runs(&w).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, "RUNNING", "as the killed worker left it");
    let left = periods(&w).await;
    assert!(left < all, "killed midway: {midway} then {left} of {all}");

    // Once its lease has run out, the jobs query says what it is.
    tokio::time::sleep(Duration::from_secs(LEASE_SECONDS) + Duration::from_millis(500)).await;
    let shown: Vec<String> = jobs::recent(&w.t.db, Job::AllowanceReset, 10, Utc::now())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(shown, ["ABANDONED"]);

    // The next worker marks it so and does the rest.
    let mut second = start_worker(&w, mail.path());
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let runs = reset_runs(&w).await;
        if runs.iter().any(|r| r.status == "SUCCEEDED") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the second worker did not finish: {runs:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    second.kill().unwrap();
    second.wait().unwrap();
    let stored: Vec<String> = reset_runs(&w).await.into_iter().map(|r| r.status).collect();
    assert_eq!(stored, ["ABANDONED", "SUCCEEDED"]);

    // Exactly once: every period granted once, not twice; the ledger
    // agrees with itself in every wallet.
    assert_eq!(periods(&w).await, all);
    let grants = ledger_entry::Entity::find()
        .filter(ledger_entry::Column::TenantId.eq(t))
        .filter(ledger_entry::Column::EntryType.eq("GRANT"))
        .count(w.t.db.reader())
        .await
        .unwrap();
    assert_eq!(grants, all, "one GRANT per period");
    let mut after = None;
    loop {
        let page = audit::audit_page(w.t.db.reader(), t, after, 500)
            .await
            .unwrap();
        assert!(page.reports.is_empty(), "{:?}", page.reports);
        if !page.has_more {
            break;
        }
        after = page.last_wallet_id;
    }
}
