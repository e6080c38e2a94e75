//! Idempotency first (DESIGN "Ledger rules", 5): a replay with the same key
//! and input returns the original result whatever changed since — time
//! passed, the grant expired or was voided, the hold captured, released or
//! lapsed, the plan archived — and writes nothing; only a new key is
//! validated against the present. Each scenario: do it, change the world,
//! replay (same ids, same amounts, no new entry), then a new key with the
//! same input (refused where it should be), then the ledger audit.

mod common;

use chrono::{DateTime, Duration, Utc};
use common::{World, d};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use service::{
    Clock,
    catalog::{self, Ref},
    credit_systems::CreditSystemRef,
    customers::{self, CustomerPatch, CustomerRef, NewCustomer},
    error::{Code, DomainError},
    expiry,
    ledger::{
        self, Attribution, EntryType, HoldStatus,
        allocations::{self, AllocateInput},
    },
    subscriptions::{self, SubscribeInput},
};

/// Every ledger entry of the tenant.
async fn entries(w: &World) -> u64 {
    entity::ledger_entry::Entity::find()
        .filter(entity::ledger_entry::Column::TenantId.eq(w.tenant_id))
        .count(w.t.db.reader())
        .await
        .unwrap()
}

async fn sweep(w: &World) {
    expiry::sweep(&w.t.db, &w.clock, 100).await.unwrap();
}

fn hold_input(w: &World, amount: &str, expires_at: DateTime<Utc>) -> ledger::HoldInput {
    ledger::HoldInput {
        wallet: w.wallet(),
        amount: d(amount),
        expires_at,
        attribution: Attribution {
            feature: Some("render".into()),
            ..Attribution::default()
        },
        idempotency_key: w.key(),
    }
}

#[tokio::test]
async fn a_grant_replayed_after_its_expiry_is_the_original() {
    let w = World::new(0).await;
    let (db, clock, t) = (&w.t.db, &w.clock, w.tenant_id);
    let mut input = w.grant_input("10");
    input.expires_at = Some(clock.now() + Duration::hours(1));
    let first = ledger::grant(db, clock, t, &input).await.unwrap();
    let written = entries(&w).await;

    // Past the expiry, before and after the sweep booked it.
    clock.advance(Duration::hours(2));
    let replay = ledger::grant(db, clock, t, &input).await.unwrap();
    assert_eq!(replay.entry, first.entry);
    assert_eq!(replay.grant.id, first.grant.id);
    assert_eq!(replay.grant.amount, d("10"));
    assert_eq!(replay.grant.expires_at, input.expires_at);
    assert_eq!(entries(&w).await, written, "a replay writes nothing");
    sweep(&w).await;
    let written = entries(&w).await;
    assert_eq!(written, 2, "GRANT, then the sweep's EXPIRY");
    let replay = ledger::grant(db, clock, t, &input).await.unwrap();
    assert_eq!(replay.entry, first.entry);
    assert_eq!(replay.grant.id, first.grant.id);
    assert_eq!(
        replay.grant.remaining,
        d("0"),
        "the grant as it is now: expired"
    );
    assert_eq!(entries(&w).await, written);

    // A new key with the same input is checked against the present.
    input.idempotency_key = w.key();
    let err = ledger::grant(db, clock, t, &input).await.unwrap_err();
    assert_eq!(
        (err.code(), err.field()),
        (Code::Validation, Some("expiresAt"))
    );
    // The same key with other parameters is still a conflict.
    let mut other = w.grant_input("11");
    other.idempotency_key = "key-0".into();
    let err = ledger::grant(db, clock, t, &other).await.unwrap_err();
    assert_eq!(err.code(), Code::IdempotencyConflict);
    assert_eq!(entries(&w).await, written);
    w.verify().await;
}

#[tokio::test]
async fn a_grant_replayed_after_it_was_voided_is_the_original() {
    let w = World::new(0).await;
    let (db, clock, t) = (&w.t.db, &w.clock, w.tenant_id);
    let input = w.grant_input("10");
    let first = ledger::grant(db, clock, t, &input).await.unwrap();
    w.consume("3").await.unwrap();
    let void_key = w.key();
    let voided = ledger::void_grant(db, clock, t, first.grant.id, "fraud", &void_key)
        .await
        .unwrap();
    assert_eq!(voided.entry.entry_type, EntryType::Void);
    assert_eq!(voided.entry.amount, d("-7"));
    let written = entries(&w).await;

    let replay = ledger::grant(db, clock, t, &input).await.unwrap();
    assert_eq!(replay.entry, first.entry);
    assert_eq!(replay.grant.id, first.grant.id);
    assert!(replay.grant.voided_at.is_some(), "as it is now: voided");

    // The void itself, replayed a day later.
    clock.advance(Duration::days(1));
    let again = ledger::void_grant(db, clock, t, first.grant.id, "fraud", &void_key)
        .await
        .unwrap();
    assert_eq!(again.entry, voided.entry);
    assert_eq!(again.grant.id, first.grant.id);
    assert_eq!(entries(&w).await, written);

    // A new key: the grant is voided already.
    let err = ledger::void_grant(db, clock, t, first.grant.id, "fraud", &w.key())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Conflict);
    let err = ledger::void_grant(db, clock, t, first.grant.id, "other", &void_key)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::IdempotencyConflict);
    assert_eq!(entries(&w).await, written);
    w.verify().await;
}

#[tokio::test]
async fn a_void_replayed_after_the_grant_expired_is_the_original() {
    let w = World::new(0).await;
    let (db, clock, t) = (&w.t.db, &w.clock, w.tenant_id);
    let g = w.grant("10", Some(Duration::hours(1))).await;
    let key = w.key();
    let voided = ledger::void_grant(db, clock, t, g.id, "mistake", &key)
        .await
        .unwrap();
    clock.advance(Duration::hours(2));
    sweep(&w).await;
    let written = entries(&w).await;
    let again = ledger::void_grant(db, clock, t, g.id, "mistake", &key)
        .await
        .unwrap();
    assert_eq!(again.entry, voided.entry);
    assert_eq!(entries(&w).await, written);
    w.verify().await;
}

#[tokio::test]
async fn a_hold_replayed_after_its_deadline_is_the_original() {
    let w = World::new(0).await;
    let (db, clock, t) = (&w.t.db, &w.clock, w.tenant_id);
    w.grant("100", None).await;
    let input = hold_input(&w, "30", clock.now() + Duration::hours(1));
    let first = ledger::create_hold(db, clock, t, &input).await.unwrap();
    let written = entries(&w).await;

    clock.advance(Duration::hours(2));
    let replay = ledger::create_hold(db, clock, t, &input).await.unwrap();
    assert_eq!(replay.entry, first.entry);
    assert_eq!(replay.hold.id, first.hold.id);
    assert_eq!(
        (replay.hold.amount, replay.hold.expires_at),
        (d("30"), input.expires_at)
    );
    assert_eq!(replay.hold.status_at(clock.now()), HoldStatus::Released);
    assert_eq!(entries(&w).await, written);

    // The sweep releases it; the replay still answers the original HOLD.
    sweep(&w).await;
    let written = entries(&w).await;
    let replay = ledger::create_hold(db, clock, t, &input).await.unwrap();
    assert_eq!(replay.entry, first.entry);
    assert_eq!(replay.hold.id, first.hold.id);
    assert_eq!(replay.hold.status, HoldStatus::Released);
    assert_eq!(entries(&w).await, written);

    let mut again = input.clone();
    again.idempotency_key = w.key();
    let err = ledger::create_hold(db, clock, t, &again).await.unwrap_err();
    assert_eq!(
        (err.code(), err.field()),
        (Code::Validation, Some("expiresAt"))
    );
    assert_eq!(entries(&w).await, written);
    assert_eq!(w.balance().await.available, d("100"));
    w.verify().await;
}

#[tokio::test]
async fn a_capture_replayed_after_the_deadline_is_the_original() {
    let w = World::new(0).await;
    let (db, clock, t) = (&w.t.db, &w.clock, w.tenant_id);
    w.grant("100", None).await;
    let input = hold_input(&w, "30", clock.now() + Duration::hours(1));
    let held = ledger::create_hold(db, clock, t, &input).await.unwrap();
    let key = w.key();
    let captured = ledger::capture_hold(db, clock, t, held.hold.id, d("20"), &key)
        .await
        .unwrap();
    let capture_entry = captured.entry.clone().unwrap();
    assert_eq!(capture_entry.amount, d("-20"));

    // The hold's deadline passes and the sweep runs.
    clock.advance(Duration::hours(2));
    sweep(&w).await;
    let written = entries(&w).await;
    let replay = ledger::capture_hold(db, clock, t, held.hold.id, d("20"), &key)
        .await
        .unwrap();
    assert_eq!(replay.entry, Some(capture_entry));
    assert_eq!(replay.hold.id, held.hold.id);
    assert_eq!(
        (replay.hold.status, replay.hold.captured),
        (HoldStatus::Captured, Some(d("20")))
    );
    // The create replays too, showing the hold as it is now.
    let create = ledger::create_hold(db, clock, t, &input).await.unwrap();
    assert_eq!(create.entry, held.entry);
    assert_eq!(create.hold.status, HoldStatus::Captured);
    assert_eq!(entries(&w).await, written);

    // New keys: captured already.
    let err = ledger::capture_hold(db, clock, t, held.hold.id, d("20"), &w.key())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Conflict);
    let err = ledger::release_hold(db, clock, t, held.hold.id, &w.key())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Conflict);
    let err = ledger::capture_hold(db, clock, t, held.hold.id, d("10"), &key)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::IdempotencyConflict);
    assert_eq!(entries(&w).await, written);
    assert_eq!(w.balance().await.available, d("80"));
    w.verify().await;
}

#[tokio::test]
async fn a_release_replayed_after_the_deadline_is_the_original() {
    let w = World::new(0).await;
    let (db, clock, t) = (&w.t.db, &w.clock, w.tenant_id);
    w.grant("100", None).await;
    let input = hold_input(&w, "30", clock.now() + Duration::hours(1));
    let held = ledger::create_hold(db, clock, t, &input).await.unwrap();
    let key = w.key();
    let released = ledger::release_hold(db, clock, t, held.hold.id, &key)
        .await
        .unwrap();
    let release_entry = released.entry.clone().unwrap();
    assert_eq!(release_entry.entry_type, EntryType::Release);

    clock.advance(Duration::hours(2));
    sweep(&w).await;
    let written = entries(&w).await;
    let replay = ledger::release_hold(db, clock, t, held.hold.id, &key)
        .await
        .unwrap();
    assert_eq!(replay.entry, Some(release_entry));
    assert_eq!(replay.hold.id, held.hold.id);
    assert_eq!(entries(&w).await, written);

    // A new key: releasing a released hold returns it as it is (no entry);
    // capturing it is refused.
    let again = ledger::release_hold(db, clock, t, held.hold.id, &w.key())
        .await
        .unwrap();
    assert_eq!(
        (again.entry, again.hold.status),
        (None, HoldStatus::Released)
    );
    let err = ledger::capture_hold(db, clock, t, held.hold.id, d("1"), &w.key())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Conflict);
    assert_eq!(entries(&w).await, written);
    assert_eq!(w.balance().await.available, d("100"));
    w.verify().await;
}

#[tokio::test]
async fn a_consume_replayed_after_its_credits_expired_is_the_original() {
    let w = World::new(0).await;
    let (db, clock, t) = (&w.t.db, &w.clock, w.tenant_id);
    let g = w.grant("10", Some(Duration::hours(1))).await;
    let input = w.consume_input("4");
    let first = ledger::consume(db, clock, t, &input).await.unwrap();
    assert_eq!(first.entry.balance_after, d("6"));

    clock.advance(Duration::hours(2));
    sweep(&w).await;
    let written = entries(&w).await;
    let replay = ledger::consume(db, clock, t, &input).await.unwrap();
    assert_eq!(replay.entry, first.entry);
    assert_eq!(replay.splits, first.splits);
    assert_eq!(replay.splits[0].grant_id, g.id);
    assert_eq!(entries(&w).await, written);

    let mut again = input.clone();
    again.idempotency_key = w.key();
    let err = ledger::consume(db, clock, t, &again).await.unwrap_err();
    assert_eq!(err.code(), Code::InsufficientCredits);
    assert_eq!(entries(&w).await, written);
    w.verify().await;
}

#[tokio::test]
async fn a_subscribe_replayed_after_resets_and_archiving_is_the_original() {
    let w = World::new(0).await;
    let (db, clock, t) = (&w.t.db, &w.clock, w.tenant_id);
    w.monthly_plan().await;
    let input = SubscribeInput {
        customer: CustomerRef::Id(w.customer_id),
        plan: Ref::Key("monthly".into()),
        start_at: None,
        idempotency_key: w.key(),
    };
    let first = subscriptions::subscribe(db, clock, t, &input)
        .await
        .unwrap();
    assert_eq!(first.grants.len(), 1);

    // Two months of resets expire the first allowance; the plan is archived.
    clock.advance(Duration::days(62));
    let report = service::allowances::reset_due(db, clock, 100)
        .await
        .unwrap();
    assert!(report.periods >= 2, "{report:?}");
    sweep(&w).await;
    catalog::archive_plan(db, clock, t, &Ref::Key("monthly".into()))
        .await
        .unwrap();
    let written = entries(&w).await;

    let replay = subscriptions::subscribe(db, clock, t, &input)
        .await
        .unwrap();
    assert_eq!(replay.subscription.id, first.subscription.id);
    assert_eq!(
        replay.subscription.started_at,
        first.subscription.started_at
    );
    let ids = |o: &subscriptions::SubscribeOutcome| -> Vec<_> {
        o.grants
            .iter()
            .map(|g| (g.id, g.amount, g.expires_at))
            .collect()
    };
    assert_eq!(ids(&replay), ids(&first), "the first allowance only");
    assert_eq!(entries(&w).await, written);

    let mut again = input.clone();
    again.idempotency_key = w.key();
    let err = subscriptions::subscribe(db, clock, t, &again)
        .await
        .unwrap_err();
    assert_eq!((err.code(), err.field()), (Code::Conflict, Some("plan")));
    assert_eq!(entries(&w).await, written);
    w.verify().await;
}

#[tokio::test]
async fn an_allocation_replayed_after_the_tree_moved_is_the_original() {
    let w = World::new(0).await;
    let (db, clock, t) = (&w.t.db, &w.clock, w.tenant_id);
    let event = customers::create(
        db,
        clock,
        t,
        &NewCustomer {
            external_id: "event-1".into(),
            name: "Event".into(),
            email: None,
            metadata: None,
            parent: Some(CustomerRef::Id(w.customer_id)),
        },
    )
    .await
    .unwrap();
    w.grant("50", Some(Duration::days(30))).await;
    let input = AllocateInput {
        from: CustomerRef::Id(w.customer_id),
        to: CustomerRef::Id(event.id),
        credit_system: CreditSystemRef::Id(w.credit_system_id),
        amount: d("20"),
        note: Some("wedding".into()),
        idempotency_key: w.key(),
    };
    let first = allocations::allocate(db, clock, t, &input).await.unwrap();

    // The event leaves the partner's tree, and the credits expire.
    customers::update(
        db,
        clock,
        t,
        &CustomerRef::Id(event.id),
        &CustomerPatch {
            parent: Some(None),
            ..CustomerPatch::default()
        },
    )
    .await
    .unwrap();
    clock.advance(Duration::days(31));
    sweep(&w).await;
    let written = entries(&w).await;
    let replay = allocations::allocate(db, clock, t, &input).await.unwrap();
    assert_eq!((&replay.out, &replay.r#in), (&first.out, &first.r#in));
    let ids = |o: &allocations::AllocateOutcome| -> Vec<_> {
        o.grants.iter().map(|g| (g.id, g.amount)).collect()
    };
    assert_eq!(ids(&replay), ids(&first));
    assert_eq!(entries(&w).await, written);

    let mut again = input.clone();
    again.idempotency_key = w.key();
    let err = allocations::allocate(db, clock, t, &again)
        .await
        .unwrap_err();
    assert_eq!((err.code(), err.field()), (Code::Validation, Some("to")));
    assert_eq!(entries(&w).await, written);
    w.verify().await;
    let event_wallet = ledger::read::wallet_of(db, t, event.id, w.credit_system_id)
        .await
        .unwrap()
        .unwrap();
    let problems = ledger::audit::verify_wallet(db.reader(), t, event_wallet.id)
        .await
        .unwrap();
    assert!(problems.is_empty(), "{problems:#?}");
}
