//! Random sequences of grant / consume / void / refund / hold / capture /
//! release / time-advance keep the ledger's invariants, never create or
//! lose a credit relative to what was asked, and keep the balance's parts
//! by category (less debt) equal to what is available.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::Duration;
use common::World;
use proptest::prelude::*;
use rust_decimal::Decimal;
use service::{
    Clock, Code, DomainError,
    ids::WalletId,
    ledger::{self, Attribution, Category, EntryType, HoldStatus, read},
    pagination::PageRequest,
};
use uuid::Uuid;

#[derive(Debug, Clone)]
enum Op {
    Grant {
        amount: i64,
        expires_h: Option<i64>,
        effective_h: i64,
        priority: i32,
        /// Any a grant may have (TRANSFER comes only from allocations).
        category: Category,
    },
    Consume {
        amount: i64,
    },
    Void {
        pick: usize,
    },
    Refund {
        pick: usize,
        amount: Option<i64>,
    },
    Hold {
        amount: i64,
        deadline_h: i64,
    },
    Capture {
        pick: usize,
        amount: i64,
    },
    Release {
        pick: usize,
    },
    Advance {
        hours: i64,
    },
    Overage {
        on: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1..100i64, prop::option::of(1..72i64), prop_oneof![Just(0i64), 0..24i64], 0..3i32, prop::sample::select(GRANTABLE.to_vec()))
            .prop_map(|(amount, expires_h, effective_h, priority, category)| Op::Grant { amount, expires_h, effective_h, priority, category }),
        4 => (1..80i64).prop_map(|amount| Op::Consume { amount }),
        1 => any::<usize>().prop_map(|pick| Op::Void { pick }),
        1 => (any::<usize>(), prop::option::of(1..40i64)).prop_map(|(pick, amount)| Op::Refund { pick, amount }),
        2 => (1..50i64, 1..48i64).prop_map(|(amount, deadline_h)| Op::Hold { amount, deadline_h }),
        1 => (any::<usize>(), 1..60i64).prop_map(|(pick, amount)| Op::Capture { pick, amount }),
        1 => any::<usize>().prop_map(|pick| Op::Release { pick }),
        2 => (1..30i64).prop_map(|hours| Op::Advance { hours }),
        1 => any::<bool>().prop_map(|on| Op::Overage { on }),
    ]
}

const GRANTABLE: [Category; 5] = [
    Category::Promotional,
    Category::Admin,
    Category::Purchased,
    Category::Included,
    Category::Refund,
];

fn dec(n: i64) -> Decimal {
    Decimal::from(n)
}

fn pick<T: Copy>(items: &[T], i: usize) -> Option<T> {
    (!items.is_empty()).then(|| items[i % items.len()])
}

async fn entries_total(w: &World, wallet_id: WalletId, types: Vec<EntryType>) -> Decimal {
    let mut total = Decimal::ZERO;
    let mut after = None;
    loop {
        let page = read::entry_pages(
            &w.t.db,
            w.tenant_id,
            &[wallet_id],
            &read::EntryFilter {
                types: Some(types.clone()),
                ..Default::default()
            },
            PageRequest::new(Some(200), after).unwrap(),
        )
        .await
        .unwrap()
        .remove(&wallet_id)
        .unwrap();
        total += page.items.iter().map(|e| e.amount).sum::<Decimal>();
        after = page.items.last().map(|e| e.id.uuid());
        if !page.has_next_page {
            return total;
        }
    }
}

/// Credits in grants still scheduled (their GRANT entry not yet booked).
async fn scheduled_total(w: &World, wallet_id: Uuid) -> Decimal {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    entity::credit_grant::Entity::find()
        .filter(entity::credit_grant::Column::WalletId.eq(wallet_id))
        .filter(entity::credit_grant::Column::Booked.eq(false))
        .all(w.t.db.reader())
        .await
        .unwrap()
        .iter()
        .map(|g| service::amount::from_micros(g.remaining_micros))
        .sum()
}

static CASE: AtomicU64 = AtomicU64::new(0);

async fn run(ops: Vec<Op>) {
    let w = World::new(0).await;
    let key = || format!("p-{}", CASE.fetch_add(1, Ordering::Relaxed));
    let (mut grants, mut usages, mut holds) = (Vec::new(), Vec::new(), Vec::new());
    // What was asked and accepted: credits in, credits spent.
    let (mut granted, mut spent) = (Decimal::ZERO, Decimal::ZERO);
    let db = &w.t.db;
    // Start with a wallet (the ops may come in any order).
    grants.push(w.grant("50", None).await.id);
    granted += dec(50);
    for op in ops {
        let now = w.clock.now();
        match op {
            Op::Grant {
                amount,
                expires_h,
                effective_h,
                priority,
                category,
            } => {
                let mut input = w.grant_input(&amount.to_string());
                input.category = category;
                input.effective_at = Some(now + Duration::hours(effective_h));
                input.expires_at = expires_h.map(|h| now + Duration::hours(effective_h + h));
                input.priority = Some(priority);
                input.idempotency_key = key();
                let out = ledger::grant(db, &w.clock, w.tenant_id, &input)
                    .await
                    .unwrap();
                grants.push(out.grant.id);
                granted += dec(amount);
            }
            Op::Consume { amount } => {
                let before = w.balance().await.available;
                let mut input = w.consume_input(&amount.to_string());
                input.idempotency_key = key();
                match ledger::consume(db, &w.clock, w.tenant_id, &input).await {
                    Ok(out) => {
                        usages.push(out.entry.id);
                        spent += dec(amount);
                        assert_eq!(w.balance().await.available, before - dec(amount));
                    }
                    Err(e) => {
                        assert_eq!(e.code(), Code::InsufficientCredits);
                        assert!(
                            before < dec(amount),
                            "refused {amount} with {before} available"
                        );
                    }
                }
            }
            Op::Void { pick: i } => {
                if let Some(id) = pick(&grants, i) {
                    let r =
                        ledger::void_grant(db, &w.clock, w.tenant_id, id, "random", &key()).await;
                    if let Err(e) = r {
                        assert_eq!(e.code(), Code::Conflict, "{e:?}");
                    }
                }
            }
            Op::Refund { pick: i, amount } => {
                if let Some(id) = pick(&usages, i) {
                    let input = ledger::RefundInput {
                        entry_id: id,
                        amount: amount.map(dec),
                        reason: "random".into(),
                        idempotency_key: key(),
                    };
                    match ledger::refund_usage(db, &w.clock, w.tenant_id, &input).await {
                        Ok(out) => spent -= out.entry.amount,
                        Err(e) => assert!(
                            matches!(e.code(), Code::Conflict | Code::Validation),
                            "{e:?}"
                        ),
                    }
                }
            }
            Op::Hold { amount, deadline_h } => {
                let input = ledger::HoldInput {
                    wallet: w.wallet(),
                    amount: dec(amount),
                    expires_at: now + Duration::hours(deadline_h),
                    attribution: Attribution::default(),
                    idempotency_key: key(),
                };
                match ledger::create_hold(db, &w.clock, w.tenant_id, &input).await {
                    Ok(out) => holds.push(out.hold.id),
                    Err(e) => assert_eq!(e.code(), Code::InsufficientCredits),
                }
            }
            Op::Capture { pick: i, amount } => {
                if let Some(id) = pick(&holds, i) {
                    match ledger::capture_hold(db, &w.clock, w.tenant_id, id, dec(amount), &key())
                        .await
                    {
                        Ok(out) => {
                            assert_eq!(out.hold.status, HoldStatus::Captured);
                            spent += dec(amount);
                        }
                        Err(e) => assert!(
                            matches!(e.code(), Code::Conflict | Code::Validation),
                            "{e:?}"
                        ),
                    }
                }
            }
            Op::Release { pick: i } => {
                if let Some(id) = pick(&holds, i)
                    && let Err(e) =
                        ledger::release_hold(db, &w.clock, w.tenant_id, id, &key()).await
                {
                    assert_eq!(e.code(), Code::Conflict, "{e:?}");
                }
            }
            Op::Advance { hours } => w.clock.advance(Duration::hours(hours)),
            Op::Overage { on } => {
                ledger::configure_wallet(
                    db,
                    &w.clock,
                    w.tenant_id,
                    &w.wallet(),
                    &ledger::WalletOptions {
                        allow_overage: Some(on),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            }
        }
        // The ledger's own invariants.
        w.verify().await;
        // Reads agree with themselves.
        let b = w.balance().await;
        assert_eq!(b.total, b.available + b.pending);
        assert!(b.pending >= Decimal::ZERO && b.debt >= Decimal::ZERO);
        // The parts by category, less debt, are what is available.
        let parts = b.included + b.purchased + b.promotional + b.admin + b.refund + b.transfer;
        assert_eq!(parts - b.debt, b.available, "{b:?}");
        assert_eq!(b.parts_total(), b.available);
        // Nothing created or lost: what was granted is what is booked, spent,
        // held, expired or voided.
        let wallet_id = w.wallet_id().await;
        let booked = entries_total(&w, wallet_id, EntryType::ALL.to_vec()).await;
        let gone = -entries_total(&w, wallet_id, vec![EntryType::Expiry, EntryType::Void]).await;
        let held = -entries_total(&w, wallet_id, vec![EntryType::Hold, EntryType::Release]).await;
        let scheduled = scheduled_total(&w, wallet_id.uuid()).await;
        assert_eq!(
            granted - spent,
            booked + gone + held + scheduled,
            "credits created or lost"
        );
        // Rule 2 at every instant: once the wallet is settled (as the next
        // write or the sweep does), the last balance_after is what is live.
        ledger::settle_wallets(db, &w.clock, &[wallet_id])
            .await
            .unwrap();
        w.verify().await;
        let b = w.balance().await;
        let last = read::entry_pages(
            db,
            w.tenant_id,
            &[wallet_id],
            &read::EntryFilter::default(),
            PageRequest::new(Some(1), None).unwrap(),
        )
        .await
        .unwrap()
        .remove(&wallet_id)
        .and_then(|p| p.items.into_iter().next());
        let last_balance = last.map(|e| e.balance_after).unwrap_or_default();
        assert_eq!(
            last_balance, b.available,
            "balance_after disagrees with what is spendable: {b:?}"
        );
    }
}

/// Fewer cases on PostgreSQL, where each statement is a network round trip.
fn cases() -> u32 {
    if std::env::var("TEST_DATABASE_URL").is_ok_and(|u| !u.is_empty()) {
        24
    } else {
        64
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 50,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_sequences_keep_the_ledger_whole(ops in prop::collection::vec(op(), 1..30)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run(ops));
    }
}
