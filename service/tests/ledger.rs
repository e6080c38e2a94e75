//! The ledger rules against a real database (SQLite, or PostgreSQL with
//! `TEST_DATABASE_URL`). Every scenario ends by auditing the wallet.

mod common;

use chrono::Duration;
use common::{World, d};
use service::{
    Code, DomainError,
    ledger::{self, Attribution, EntryType, HoldStatus, read},
    pagination::PageRequest,
};

#[tokio::test]
async fn grant_then_consume_in_burn_order() {
    let w = World::new(2).await;
    let never = w.grant("100", None).await;
    let soon = w.grant("30", Some(Duration::days(7))).await;
    let later = w.grant("50", Some(Duration::days(30))).await;
    let out = w.consume("60").await.unwrap();
    assert_eq!(out.entry.entry_type, EntryType::Usage);
    assert_eq!(out.entry.amount, d("-60"));
    assert_eq!(out.entry.balance_after, d("120"));
    let drawn: Vec<_> = out.splits.iter().map(|s| (s.grant_id, s.amount)).collect();
    assert_eq!(drawn, vec![(soon.id, d("-30")), (later.id, d("-30"))]);
    let balance = w.balance().await;
    assert_eq!(balance.available, d("120"));
    assert_eq!(balance.promotional, d("120"));
    assert_eq!(balance.pending, d("0"));
    let _ = never;
    w.verify().await;
}

#[tokio::test]
async fn insufficient_credits_change_nothing() {
    let w = World::new(0).await;
    w.grant("10", None).await;
    let err = w.consume("11").await.unwrap_err();
    assert_eq!(err.code(), Code::InsufficientCredits);
    let details = err.details();
    assert!(details.contains(&("requested", "11".into())), "{details:?}");
    assert!(details.contains(&("available", "10".into())), "{details:?}");
    assert_eq!(w.balance().await.available, d("10"));
    // A wallet that never received anything: nothing to spend, nothing created.
    let err = ledger::consume(
        &w.t.db,
        &w.clock,
        w.tenant_id,
        &ledger::ConsumeInput {
            wallet: ledger::WalletRef {
                customer: service::customers::CustomerRef::ExternalId("acme".into()),
                credit_system: service::credit_systems::CreditSystemRef::Key("nope".into()),
            },
            ..w.consume_input("1")
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    w.verify().await;
}

#[tokio::test]
async fn an_expired_grant_is_never_spent_and_the_next_write_books_its_expiry() {
    let w = World::new(0).await;
    let expiring = w.grant("5", Some(Duration::hours(1))).await;
    w.grant("3", None).await;
    // At exactly expires_at the grant is dead ([start, end)).
    w.clock.advance(Duration::hours(1));
    assert_eq!(w.balance().await.available, d("3"));
    let err = w.consume("4").await.unwrap_err();
    assert_eq!(err.code(), Code::InsufficientCredits);
    let out = w.consume("2").await.unwrap();
    assert!(out.splits.iter().all(|s| s.grant_id != expiring.id));
    // The consume first booked the expiry: EXPIRY -5, then USAGE -2.
    let wallet_id = w.wallet_id().await;
    let page = read::entry_pages(
        &w.t.db,
        w.tenant_id,
        &[wallet_id],
        &read::EntryFilter::default(),
        PageRequest::new(Some(10), None).unwrap(),
    )
    .await
    .unwrap()
    .remove(&wallet_id)
    .unwrap();
    let kinds: Vec<_> = page
        .items
        .iter()
        .map(|e| (e.entry_type, e.amount, e.balance_after))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (EntryType::Usage, d("-2"), d("1")),
            (EntryType::Expiry, d("-5"), d("3")),
            (EntryType::Grant, d("3"), d("8")),
            (EntryType::Grant, d("5"), d("5")),
        ]
    );
    w.verify().await;
}

/// The wallet's entries, newest first: (type, amount, balance after).
async fn entries(w: &World) -> Vec<(EntryType, rust_decimal::Decimal, rust_decimal::Decimal)> {
    let wallet_id = w.wallet_id().await;
    read::entry_pages(
        &w.t.db,
        w.tenant_id,
        &[wallet_id],
        &read::EntryFilter::default(),
        PageRequest::new(Some(50), None).unwrap(),
    )
    .await
    .unwrap()
    .remove(&wallet_id)
    .map(|p| {
        p.items
            .iter()
            .map(|e| (e.entry_type, e.amount, e.balance_after))
            .collect()
    })
    .unwrap_or_default()
}

#[tokio::test]
async fn future_grants_wait_until_effective() {
    let w = World::new(0).await;
    w.grant("2", None).await;
    let mut input = w.grant_input("10");
    input.effective_at = Some(common::t0() + Duration::days(1));
    let scheduled = ledger::grant(&w.t.db, &w.clock, w.tenant_id, &input)
        .await
        .unwrap();
    // Scheduled: no GRANT entry yet, so balance_after counts only what is
    // spendable (rule 2 at every instant).
    assert!(scheduled.entry.is_none());
    assert_eq!(scheduled.grant.remaining, d("10"));
    assert_eq!(entries(&w).await, vec![(EntryType::Grant, d("2"), d("2"))]);
    let balance = w.balance().await;
    assert_eq!((balance.available, balance.scheduled), (d("2"), d("10")));
    assert_eq!(
        w.consume("3").await.unwrap_err().code(),
        Code::InsufficientCredits
    );
    w.verify().await;
    // A replay names the same grant, still without an entry.
    let replay = ledger::grant(&w.t.db, &w.clock, w.tenant_id, &input)
        .await
        .unwrap();
    assert_eq!(replay.grant.id, scheduled.grant.id);
    assert!(replay.entry.is_none());
    // Effective: reads count it at once, before anything is written...
    w.clock.advance(Duration::days(1));
    assert_eq!(w.balance().await.available, d("12"));
    // ...and the first write books its GRANT entry, dated now, before it.
    w.consume("3").await.unwrap();
    assert_eq!(
        entries(&w).await,
        vec![
            (EntryType::Usage, d("-3"), d("9")),
            (EntryType::Grant, d("10"), d("12")),
            (EntryType::Grant, d("2"), d("2")),
        ]
    );
    assert_eq!(w.balance().await.available, d("9"));
    // The replay now shows the entry that was booked.
    let replay = ledger::grant(&w.t.db, &w.clock, w.tenant_id, &input)
        .await
        .unwrap();
    assert_eq!(
        replay.entry.map(|e| (e.entry_type, e.amount)),
        Some((EntryType::Grant, d("10")))
    );
    w.verify().await;
}

#[tokio::test]
async fn the_sweep_books_scheduled_grants_of_idle_wallets_and_voiding_one_nets_to_nothing() {
    let w = World::new(0).await;
    let mut input = w.grant_input("10");
    input.effective_at = Some(common::t0() + Duration::hours(2));
    ledger::grant(&w.t.db, &w.clock, w.tenant_id, &input)
        .await
        .unwrap();
    let mut later = w.grant_input("4");
    later.effective_at = Some(common::t0() + Duration::days(3));
    let voided = ledger::grant(&w.t.db, &w.clock, w.tenant_id, &later)
        .await
        .unwrap();
    assert!(entries(&w).await.is_empty());
    // Nobody writes to the wallet: the sweep books the first when due.
    service::expiry::sweep(&w.t.db, &w.clock, 100)
        .await
        .unwrap();
    assert!(entries(&w).await.is_empty());
    w.clock.advance(Duration::hours(2));
    service::expiry::sweep(&w.t.db, &w.clock, 100)
        .await
        .unwrap();
    assert_eq!(
        entries(&w).await,
        vec![(EntryType::Grant, d("10"), d("10"))]
    );
    // A second sweep finds nothing to book.
    service::expiry::sweep(&w.t.db, &w.clock, 100)
        .await
        .unwrap();
    assert_eq!(entries(&w).await.len(), 1);
    w.verify().await;
    // Voiding a scheduled grant books it and takes it back at once: the
    // balance never counts it.
    let out = ledger::void_grant(
        &w.t.db,
        &w.clock,
        w.tenant_id,
        voided.grant.id,
        "cancelled",
        &w.key(),
    )
    .await
    .unwrap();
    assert_eq!(
        (out.entry.amount, out.entry.balance_after),
        (d("-4"), d("10"))
    );
    assert_eq!(
        entries(&w).await,
        vec![
            (EntryType::Void, d("-4"), d("10")),
            (EntryType::Grant, d("4"), d("14")),
            (EntryType::Grant, d("10"), d("10")),
        ]
    );
    let balance = w.balance().await;
    assert_eq!((balance.available, balance.scheduled), (d("10"), d("0")));
    w.clock.advance(Duration::days(3));
    assert_eq!(w.balance().await.available, d("10"));
    w.verify().await;
}

#[tokio::test]
async fn overage_goes_negative_and_the_next_grant_repays_it_first() {
    let w = World::new(0).await;
    w.grant("5", None).await;
    ledger::configure_wallet(
        &w.t.db,
        &w.clock,
        w.tenant_id,
        &w.wallet(),
        &ledger::WalletOptions {
            allow_overage: Some(true),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let out = w.consume("8").await.unwrap();
    assert_eq!(out.entry.balance_after, d("-3"));
    assert_eq!(w.balance().await.available, d("-3"));
    assert_eq!(w.balance().await.debt, d("3"));
    let g = w.grant("10", Some(Duration::days(1))).await;
    assert_eq!((g.remaining, g.debt_repaid), (d("7"), d("3")));
    let balance = w.balance().await;
    assert_eq!((balance.available, balance.debt), (d("7"), d("0")));
    // When that grant expires, only what was left of it goes: the debt stays repaid.
    w.clock.advance(Duration::days(1));
    w.grant("1", None).await;
    assert_eq!(w.balance().await.available, d("1"));
    w.verify().await;
}

#[tokio::test]
async fn idempotency_replays_and_refuses_reuse() {
    let w = World::new(0).await;
    let mut grant = w.grant_input("10");
    grant.idempotency_key = "g-1".into();
    let first = ledger::grant(&w.t.db, &w.clock, w.tenant_id, &grant)
        .await
        .unwrap();
    let again = ledger::grant(&w.t.db, &w.clock, w.tenant_id, &grant)
        .await
        .unwrap();
    assert_eq!(first.entry.unwrap().id, again.entry.unwrap().id);
    assert_eq!(w.balance().await.available, d("10"));

    let mut consume = w.consume_input("4");
    consume.idempotency_key = "c-1".into();
    let first = ledger::consume(&w.t.db, &w.clock, w.tenant_id, &consume)
        .await
        .unwrap();
    // Even after the balance changed, the replay returns the original.
    w.consume("6").await.unwrap();
    let again = ledger::consume(&w.t.db, &w.clock, w.tenant_id, &consume)
        .await
        .unwrap();
    assert_eq!(first.entry, again.entry);
    assert_eq!(first.splits, again.splits);
    assert_eq!(w.balance().await.available, d("0"));

    // Same key, different request: refused, nothing changes.
    consume.amount = d("5");
    let err = ledger::consume(&w.t.db, &w.clock, w.tenant_id, &consume)
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.field()),
        (Code::IdempotencyConflict, Some("idempotencyKey"))
    );
    grant.idempotency_key = "c-1".into();
    let err = ledger::grant(&w.t.db, &w.clock, w.tenant_id, &grant)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::IdempotencyConflict);
    assert_eq!(w.balance().await.available, d("0"));
    w.verify().await;
}

#[tokio::test]
async fn void_removes_what_remains_and_spent_stays_spent() {
    let w = World::new(0).await;
    let g = w.grant("10", None).await;
    w.consume("4").await.unwrap();
    let out = ledger::void_grant(&w.t.db, &w.clock, w.tenant_id, g.id, "fraud", "v-1")
        .await
        .unwrap();
    assert_eq!(
        (out.entry.entry_type, out.entry.amount),
        (EntryType::Void, d("-6"))
    );
    assert!(out.grant.voided_at.is_some());
    assert_eq!(out.grant.remaining, d("0"));
    assert_eq!(w.balance().await.available, d("0"));
    // Replay returns the same entry; a new key is a conflict.
    let again = ledger::void_grant(&w.t.db, &w.clock, w.tenant_id, g.id, "fraud", "v-1")
        .await
        .unwrap();
    assert_eq!(again.entry.id, out.entry.id);
    let err = ledger::void_grant(&w.t.db, &w.clock, w.tenant_id, g.id, "fraud", "v-2")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Conflict);
    w.verify().await;
}

#[tokio::test]
async fn adjustments_go_both_ways() {
    let w = World::new(1).await;
    let up = ledger::adjust(
        &w.t.db,
        &w.clock,
        w.tenant_id,
        &ledger::AdjustInput {
            wallet: w.wallet(),
            amount: d("2.5"),
            reason: "goodwill".into(),
            idempotency_key: "a-1".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(up.entry.entry_type, EntryType::Adjustment);
    assert!(up.grant.as_ref().is_some_and(|g| g.expires_at.is_none()));
    let down = ledger::adjust(
        &w.t.db,
        &w.clock,
        w.tenant_id,
        &ledger::AdjustInput {
            wallet: w.wallet(),
            amount: d("-1.5"),
            reason: "correction".into(),
            idempotency_key: "a-2".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(down.entry.balance_after, d("1"));
    let err = ledger::adjust(
        &w.t.db,
        &w.clock,
        w.tenant_id,
        &ledger::AdjustInput {
            wallet: w.wallet(),
            amount: d("-5"),
            reason: "too much".into(),
            idempotency_key: "a-3".into(),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InsufficientCredits);
    w.verify().await;
}

#[tokio::test]
async fn refunds_keep_the_original_expiry_and_are_bounded() {
    let w = World::new(0).await;
    let soon = w.grant("5", Some(Duration::days(3))).await;
    let never = w.grant("10", None).await;
    let usage = w.consume("8").await.unwrap();
    let refund = |amount: Option<&str>, key: &str| ledger::RefundInput {
        entry_id: usage.entry.id,
        amount: amount.map(d),
        reason: "job failed".into(),
        idempotency_key: key.into(),
    };
    // The last-drawn credits come back first: 3 from `never`, then 2 from `soon`.
    let out = ledger::refund_usage(&w.t.db, &w.clock, w.tenant_id, &refund(Some("5"), "r-1"))
        .await
        .unwrap();
    assert_eq!(
        (out.entry.entry_type, out.entry.amount),
        (EntryType::Refund, d("5"))
    );
    let made: Vec<_> = out
        .grants
        .iter()
        .map(|g| (g.amount, g.expires_at))
        .collect();
    assert_eq!(
        made,
        vec![(d("3"), never.expires_at), (d("2"), soon.expires_at)]
    );
    let err = ledger::refund_usage(&w.t.db, &w.clock, w.tenant_id, &refund(Some("4"), "r-2"))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.field()),
        (Code::Validation, Some("amount"))
    );
    // The rest (3), after `soon` expired: those credits come back expired.
    w.clock.advance(Duration::days(3));
    let out = ledger::refund_usage(&w.t.db, &w.clock, w.tenant_id, &refund(None, "r-3"))
        .await
        .unwrap();
    assert_eq!(out.entry.amount, d("3"));
    assert_eq!(w.balance().await.available, d("10"));
    let err = ledger::refund_usage(&w.t.db, &w.clock, w.tenant_id, &refund(None, "r-4"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Conflict);
    w.verify().await;
}

#[tokio::test]
async fn holds_reserve_then_capture_or_release() {
    let w = World::new(0).await;
    w.grant("10", None).await;
    let hold = |amount: &str, key: &str| ledger::HoldInput {
        wallet: w.wallet(),
        amount: d(amount),
        expires_at: common::t0() + Duration::hours(1),
        attribution: Attribution {
            feature: Some("image.generate".into()),
            ..Default::default()
        },
        idempotency_key: key.into(),
    };
    let h = ledger::create_hold(&w.t.db, &w.clock, w.tenant_id, &hold("6", "h-1"))
        .await
        .unwrap();
    let b = w.balance().await;
    assert_eq!((b.available, b.pending, b.total), (d("4"), d("6"), d("10")));
    assert_eq!(
        ledger::create_hold(&w.t.db, &w.clock, w.tenant_id, &hold("5", "h-2"))
            .await
            .unwrap_err()
            .code(),
        Code::InsufficientCredits
    );
    let captured = ledger::capture_hold(&w.t.db, &w.clock, w.tenant_id, h.hold.id, d("4"), "cap-1")
        .await
        .unwrap();
    assert_eq!(captured.hold.status, HoldStatus::Captured);
    let usage = captured.entry.unwrap();
    assert_eq!(
        (usage.entry_type, usage.amount),
        (EntryType::Usage, d("-4"))
    );
    assert_eq!(usage.attribution.feature.as_deref(), Some("image.generate"));
    let b = w.balance().await;
    assert_eq!((b.available, b.pending), (d("6"), d("0")));

    // Over-capture is refused; a captured hold can't be released.
    let h2 = ledger::create_hold(&w.t.db, &w.clock, w.tenant_id, &hold("3", "h-3"))
        .await
        .unwrap();
    let err = ledger::capture_hold(&w.t.db, &w.clock, w.tenant_id, h2.hold.id, d("4"), "cap-2")
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.field()),
        (Code::Validation, Some("amount"))
    );
    let err = ledger::release_hold(&w.t.db, &w.clock, w.tenant_id, h.hold.id, "rel-0")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Conflict);
    let released = ledger::release_hold(&w.t.db, &w.clock, w.tenant_id, h2.hold.id, "rel-1")
        .await
        .unwrap();
    assert_eq!(released.hold.status, HoldStatus::Released);
    assert_eq!(w.balance().await.available, d("6"));
    w.verify().await;
}

#[tokio::test]
async fn a_hold_past_its_deadline_reserves_nothing_even_before_its_release_is_booked() {
    let w = World::new(0).await;
    w.grant("10", None).await;
    let h = ledger::create_hold(
        &w.t.db,
        &w.clock,
        w.tenant_id,
        &ledger::HoldInput {
            wallet: w.wallet(),
            amount: d("7"),
            expires_at: common::t0() + Duration::minutes(5),
            attribution: Attribution::default(),
            idempotency_key: "h".into(),
        },
    )
    .await
    .unwrap();
    w.clock.advance(Duration::minutes(5));
    let b = w.balance().await;
    assert_eq!((b.available, b.pending), (d("10"), d("0")));
    let err = ledger::capture_hold(&w.t.db, &w.clock, w.tenant_id, h.hold.id, d("1"), "c")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Conflict);
    // The next write booked the RELEASE.
    w.consume("10").await.unwrap();
    w.verify().await;
}

#[tokio::test]
async fn amounts_are_exact_through_grant_consume_and_balance() {
    let w = World::new(6).await;
    w.grant("1000000000000.5", None).await;
    w.grant("0.000001", None).await;
    w.consume("0.1").await.unwrap();
    w.consume("0.2").await.unwrap();
    let b = w.balance().await;
    assert_eq!(b.available, d("1000000000000.200001"));
    let out = w.consume("1000000000000.2").await.unwrap();
    assert_eq!(out.entry.balance_after, d("0.000001"));
    // More decimals than the precision are refused, never rounded.
    let coarse = World::new(2).await;
    let err = ledger::grant(
        &coarse.t.db,
        &coarse.clock,
        coarse.tenant_id,
        &coarse.grant_input("1.001"),
    )
    .await
    .unwrap_err();
    assert_eq!(
        (err.code(), err.field()),
        (Code::Validation, Some("amount"))
    );
    for bad in ["0", "-1"] {
        let err = ledger::grant(
            &coarse.t.db,
            &coarse.clock,
            coarse.tenant_id,
            &coarse.grant_input(bad),
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), Code::Validation, "{bad}");
    }
    w.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_consumers_never_overdraw() {
    let w = World::new(0).await;
    w.grant("20", None).await;
    let w = std::sync::Arc::new(w);
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let w = w.clone();
            tokio::spawn(async move {
                let mut input = w.consume_input("1");
                input.idempotency_key = format!("c-{i}");
                ledger::consume(&w.t.db, &w.clock, w.tenant_id, &input).await
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.code(), Code::InsufficientCredits, "{e:?}"),
        }
    }
    assert_eq!(ok, 20);
    assert_eq!(w.balance().await.available, d("0"));
    let wallet_id = w.wallet_id().await;
    let usage = read::entry_pages(
        &w.t.db,
        w.tenant_id,
        &[wallet_id],
        &read::EntryFilter {
            types: Some(vec![EntryType::Usage]),
            ..Default::default()
        },
        PageRequest::new(Some(200), None).unwrap(),
    )
    .await
    .unwrap()
    .remove(&wallet_id)
    .unwrap();
    assert_eq!(usage.items.len(), 20);
    w.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_retries_of_one_key_have_one_effect() {
    let w = World::new(0).await;
    w.grant("20", None).await;
    let w = std::sync::Arc::new(w);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let w = w.clone();
            tokio::spawn(async move {
                let mut input = w.consume_input("1");
                input.idempotency_key = "the-one".into();
                ledger::consume(&w.t.db, &w.clock, w.tenant_id, &input).await
            })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap().unwrap().entry.id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1);
    assert_eq!(w.balance().await.available, d("19"));
    w.verify().await;
}

#[tokio::test]
async fn a_wallet_holds_at_most_four_trillion_credits() {
    let w = World::new(0).await;
    w.grant("2000000000000", None).await;
    w.grant("2000000000000", None).await;
    let before = w.balance().await;
    assert_eq!(before.available, d("4000000000000"));
    // One more credit would pass the cap (and, unchecked, overflow i64
    // micro-credits a few grants later): refused, nothing changes.
    let err = ledger::grant(&w.t.db, &w.clock, w.tenant_id, &w.grant_input("1"))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.field()),
        (Code::Validation, Some("amount"))
    );
    let mut adjust = ledger::AdjustInput {
        wallet: w.wallet(),
        amount: d("1"),
        reason: "correction".into(),
        idempotency_key: w.key(),
    };
    let err = ledger::adjust(&w.t.db, &w.clock, w.tenant_id, &adjust)
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.field()),
        (Code::Validation, Some("amount"))
    );
    // Spending makes room again.
    w.consume("10").await.unwrap();
    adjust.amount = d("10");
    ledger::adjust(&w.t.db, &w.clock, w.tenant_id, &adjust)
        .await
        .unwrap();
    assert_eq!(w.balance().await.available, d("4000000000000"));
    w.verify().await;
}

/// One key sent at once for two different wallets (no wallet lock puts the
/// two in order): one wins, the other is told `IDEMPOTENCY_CONFLICT`,
/// never an internal error, and only the winner's credits exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_key_raced_on_two_wallets_is_a_conflict_not_an_error() {
    let w = World::new(0).await;
    let other = service::customers::create(
        &w.t.db,
        &w.clock,
        w.tenant_id,
        &service::customers::NewCustomer {
            external_id: "other".into(),
            name: "Other".into(),
            email: None,
            metadata: None,
            parent: None,
        },
    )
    .await
    .unwrap();
    let w = std::sync::Arc::new(w);
    for round in 0..10 {
        let key = format!("raced-{round}");
        let tasks: Vec<_> = [w.customer_id, other.id]
            .into_iter()
            .map(|customer| {
                let w = w.clone();
                let key = key.clone();
                tokio::spawn(async move {
                    let mut input = w.grant_input("5");
                    input.wallet.customer = service::customers::CustomerRef::Id(customer);
                    input.idempotency_key = key;
                    ledger::grant(&w.t.db, &w.clock, w.tenant_id, &input).await
                })
            })
            .collect();
        let mut won = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => won += 1,
                Err(e) => assert_eq!(e.code(), Code::IdempotencyConflict, "{e:?}"),
            }
        }
        assert_eq!(won, 1, "round {round}: exactly one grant took the key");
    }
    let mine = w.balance().await.available;
    let theirs = read::balances(
        &w.t.db,
        w.tenant_id,
        read::wallet_of(&w.t.db, w.tenant_id, other.id, w.credit_system_id)
            .await
            .unwrap()
            .map(|wallet| wallet.id)
            .as_slice(),
        service::Clock::now(&w.clock),
    )
    .await
    .unwrap()
    .into_values()
    .next()
    .map(|b| b.available)
    .unwrap_or_default();
    assert_eq!(mine + theirs, d("50"), "ten keys, ten grants of 5");
    w.verify().await;
}

/// Every write besides grant and consume (covered above) replays its key:
/// the second call returns the first call's entry and changes nothing; the
/// key with another request is refused and changes nothing.
#[tokio::test]
async fn adjust_refund_void_and_holds_replay_their_keys() {
    let w = World::new(0).await;
    let never = w.grant("20", None).await;
    let (db, clock, tenant) = (&w.t.db, &w.clock, w.tenant_id);

    let adjust = |amount: &str| ledger::AdjustInput {
        wallet: w.wallet(),
        amount: d(amount),
        reason: "goodwill".into(),
        idempotency_key: "k-adjust".into(),
    };
    let first = ledger::adjust(db, clock, tenant, &adjust("2"))
        .await
        .unwrap();
    let again = ledger::adjust(db, clock, tenant, &adjust("2"))
        .await
        .unwrap();
    assert_eq!(first.entry.id, again.entry.id);
    assert_eq!(w.balance().await.available, d("22"));
    let err = ledger::adjust(db, clock, tenant, &adjust("3"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::IdempotencyConflict);

    let usage = w.consume("5").await.unwrap();
    let refund = |amount: &str| ledger::RefundInput {
        entry_id: usage.entry.id,
        amount: Some(d(amount)),
        reason: "job failed".into(),
        idempotency_key: "k-refund".into(),
    };
    let first = ledger::refund_usage(db, clock, tenant, &refund("2"))
        .await
        .unwrap();
    let again = ledger::refund_usage(db, clock, tenant, &refund("2"))
        .await
        .unwrap();
    assert_eq!(first.entry.id, again.entry.id);
    assert_eq!(w.balance().await.available, d("19"));
    let err = ledger::refund_usage(db, clock, tenant, &refund("1"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::IdempotencyConflict);

    let hold = |amount: &str, key: &str| ledger::HoldInput {
        wallet: w.wallet(),
        amount: d(amount),
        expires_at: common::t0() + Duration::hours(1),
        attribution: Attribution::default(),
        idempotency_key: key.into(),
    };
    let h1 = ledger::create_hold(db, clock, tenant, &hold("4", "k-hold-1"))
        .await
        .unwrap();
    let again = ledger::create_hold(db, clock, tenant, &hold("4", "k-hold-1"))
        .await
        .unwrap();
    assert_eq!(h1.hold.id, again.hold.id);
    assert_eq!(w.balance().await.pending, d("4"));
    let err = ledger::create_hold(db, clock, tenant, &hold("5", "k-hold-1"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::IdempotencyConflict);

    let first = ledger::capture_hold(db, clock, tenant, h1.hold.id, d("3"), "k-capture")
        .await
        .unwrap();
    let again = ledger::capture_hold(db, clock, tenant, h1.hold.id, d("3"), "k-capture")
        .await
        .unwrap();
    assert_eq!(
        first.entry.as_ref().map(|e| e.id),
        again.entry.as_ref().map(|e| e.id)
    );
    assert_eq!(w.balance().await.available, d("16"));

    let h2 = ledger::create_hold(db, clock, tenant, &hold("2", "k-hold-2"))
        .await
        .unwrap();
    let first = ledger::release_hold(db, clock, tenant, h2.hold.id, "k-release")
        .await
        .unwrap();
    let again = ledger::release_hold(db, clock, tenant, h2.hold.id, "k-release")
        .await
        .unwrap();
    assert_eq!(
        first.entry.as_ref().map(|e| e.id),
        again.entry.as_ref().map(|e| e.id)
    );
    // The release key on another hold is another request.
    let h3 = ledger::create_hold(db, clock, tenant, &hold("1", "k-hold-3"))
        .await
        .unwrap();
    let err = ledger::release_hold(db, clock, tenant, h3.hold.id, "k-release")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::IdempotencyConflict);
    let b = w.balance().await;
    assert_eq!((b.available, b.pending), (d("15"), d("1")));
    ledger::release_hold(db, clock, tenant, h3.hold.id, "k-release-3")
        .await
        .unwrap();

    let first = ledger::void_grant(db, clock, tenant, never.id, "fraud", "k-void")
        .await
        .unwrap();
    let again = ledger::void_grant(db, clock, tenant, never.id, "fraud", "k-void")
        .await
        .unwrap();
    assert_eq!(first.entry.id, again.entry.id);
    w.verify().await;
}

/// Keys are scoped per tenant: another tenant's request with the same key
/// is its own request, and each tenant's replay returns its own result.
#[tokio::test]
async fn idempotency_keys_are_scoped_per_tenant() {
    let w = World::new(0).await;
    let (db, clock) = (&w.t.db, &w.clock);
    let (other, other_wallet) = w.other_tenant("other-corp", 0).await;
    let mut mine = w.grant_input("10");
    mine.idempotency_key = "shared-key".into();
    let mut theirs = mine.clone();
    theirs.wallet = other_wallet;
    theirs.amount = d("7");

    let a = ledger::grant(db, clock, w.tenant_id, &mine).await.unwrap();
    let b = ledger::grant(db, clock, other, &theirs).await.unwrap();
    let (a_entry, b_entry) = (a.entry.unwrap(), b.entry.unwrap());
    assert_ne!(a_entry.id, b_entry.id);
    assert_eq!((a_entry.amount, b_entry.amount), (d("10"), d("7")));
    let a_again = ledger::grant(db, clock, w.tenant_id, &mine).await.unwrap();
    let b_again = ledger::grant(db, clock, other, &theirs).await.unwrap();
    assert_eq!(
        (a_again.entry.unwrap().id, b_again.entry.unwrap().id),
        (a_entry.id, b_entry.id)
    );
    assert_eq!(w.balance().await.available, d("10"));
    w.verify().await;
}
