//! Auto top-up through the durable wallet checks: queued by the dispatch
//! transaction, run after it and on every later tick, kept and retried
//! when the database refuses, given up (visibly) when spent or unpriced.
//! Same tests on SQLite and, with TEST_DATABASE_URL, PostgreSQL.

mod common;

use chrono::Duration;
use common::{World, d};
use entity::{outbox_event, top_up_order, wallet_check};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use service::{
    Clock,
    catalog::{self, AutoTopUp, BillingInterval, Commitment, PlanCreditTerms, PlanPricing, Ref},
    credit_systems::CreditSystemRef,
    customers::CustomerRef,
    notifications::wallet_checks::{Ran, run_due},
    notifications::{dispatch, dispatch::dispatch_batch},
    pricing::{Price, PriceModel, PricingType, Tier},
    subscriptions,
};

/// `acme` on plan `auto`: top-ups at 0.04 EUR, an automatic order of 500
/// below 50 available (`max_quantity`: the plan's bound on one purchase);
/// 100 granted.
async fn world(max_quantity: Option<&str>) -> World {
    let w = World::new(0).await;
    let (db, c, t) = (&w.t.db, &w.clock, w.tenant_id);
    catalog::create_product(db, c, t, "p", "Product", "")
        .await
        .unwrap();
    catalog::create_plan(
        db,
        c,
        t,
        &Ref::Key("p".into()),
        "auto",
        "Auto",
        BillingInterval::Monthly,
    )
    .await
    .unwrap();
    catalog::attach_credit_system(
        db,
        c,
        t,
        &Ref::Key("auto".into()),
        &CreditSystemRef::Id(w.credit_system_id),
        &PlanCreditTerms {
            included: None,
            pricing: Some(PlanPricing {
                commitment: Commitment::PayAsYouGo,
                top_up_price: Some(Price {
                    pricing_type: PricingType::Volume,
                    model: PriceModel::PerUnit,
                    tiers: vec![Tier {
                        first_unit: d("0"),
                        last_unit: None,
                        amount: d("0.04"),
                        base: None,
                    }],
                    currency: "EUR".into(),
                    tax_rate: d("0"),
                }),
                recurring: None,
                min_quantity: None,
                max_quantity: max_quantity.map(d),
                expiration: None,
                low_credit_limit: None,
                mandatory_purchase: false,
                auto_top_up: Some(AutoTopUp {
                    below: d("50"),
                    quantity: d("500"),
                }),
            }),
            usage_alert_percents: None,
        },
    )
    .await
    .unwrap();
    catalog::publish_plan(db, c, t, &Ref::Key("auto".into()))
        .await
        .unwrap();
    subscriptions::subscribe(
        db,
        c,
        t,
        &subscriptions::SubscribeInput {
            customer: CustomerRef::Id(w.customer_id),
            plan: Ref::Key("auto".into()),
            start_at: None,
            idempotency_key: w.key(),
        },
    )
    .await
    .unwrap();
    w.grant("100", None).await;
    tick(&w).await; // the outbox empty: what follows dispatches consumptions only
    w
}

/// The automatic orders of this world's tenant: (quantity micros, total micros).
async fn orders(w: &World) -> Vec<(i64, i64, bool)> {
    top_up_order::Entity::find()
        .filter(top_up_order::Column::TenantId.eq(w.tenant_id))
        .all(w.t.db.reader())
        .await
        .unwrap()
        .into_iter()
        .map(|o| (o.quantity_micros, o.total_micros, o.automatic))
        .collect()
}

async fn requested_events(w: &World) -> usize {
    outbox_event::Entity::find()
        .filter(outbox_event::Column::TenantId.eq(w.tenant_id))
        .filter(outbox_event::Column::EventType.eq("topup.requested"))
        .all(w.t.db.reader())
        .await
        .unwrap()
        .len()
}

async fn checks(w: &World) -> Vec<wallet_check::Model> {
    wallet_check::Entity::find()
        .filter(wallet_check::Column::TenantId.eq(w.tenant_id))
        .all(w.t.db.reader())
        .await
        .unwrap()
}

/// One dispatcher tick: the dispatch transaction, then the due checks.
async fn tick(w: &World) {
    dispatch(&w.t.db, &w.clock, 100).await.unwrap();
}

/// The order of 500 at 0.04: 20.00 EUR.
const ORDER: (i64, i64, bool) = (500_000_000, 20_000_000, true);

/// Makes the database refuse the auto top-up's writes (its order table
/// is not there) and lets it accept them again: a real failure of the
/// real statements, on both databases.
async fn orders_table(w: &World, present: bool) {
    let (from, to) = if present {
        ("top_up_order_away", "top_up_order")
    } else {
        ("top_up_order", "top_up_order_away")
    };
    w.t.db
        .writer()
        .execute_unprepared(&format!("ALTER TABLE {from} RENAME TO {to}"))
        .await
        .unwrap();
}

#[tokio::test]
async fn one_order_below_the_trigger_and_no_check_left_behind() {
    let w = world(None).await;
    // Above the trigger: the check runs and is done, nothing ordered.
    w.consume("30").await.unwrap();
    tick(&w).await;
    assert_eq!(orders(&w).await, []);
    assert_eq!(checks(&w).await, []);
    // Below it: one automatic order, however many consumptions follow.
    for amount in ["30", "5", "5"] {
        w.consume(amount).await.unwrap();
        tick(&w).await;
    }
    assert_eq!(orders(&w).await, [ORDER]);
    assert_eq!(requested_events(&w).await, 1);
    assert_eq!(checks(&w).await, []);
    w.verify().await;
}

#[tokio::test]
async fn a_committed_dispatch_whose_follow_up_never_ran_orders_on_the_next_tick() {
    let w = world(None).await;
    w.consume("60").await.unwrap();
    // The dispatch transaction commits; the process dies before its
    // follow-up runs the checks.
    assert_eq!(dispatch_batch(&w.t.db, &w.clock, 100).await.unwrap(), 1);
    assert_eq!(orders(&w).await, []);
    let queued = checks(&w).await;
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].wallet_id, w.wallet_id().await);
    assert_eq!(queued[0].next_attempt_at, w.clock.now());
    // The next tick (nothing left to dispatch) runs it.
    assert_eq!(dispatch(&w.t.db, &w.clock, 100).await.unwrap(), 0);
    assert_eq!(orders(&w).await, [ORDER]);
    assert_eq!(checks(&w).await, []);
    w.verify().await;
}

#[tokio::test]
async fn a_failed_check_is_kept_backed_off_and_retried_into_exactly_one_order() {
    let w = world(None).await;
    w.consume("60").await.unwrap();
    dispatch_batch(&w.t.db, &w.clock, 100).await.unwrap();
    orders_table(&w, false).await;
    let ran = run_due(&w.t.db, &w.clock, 100).await.unwrap();
    assert_eq!(
        ran,
        Ran {
            retrying: 1,
            ..Ran::default()
        }
    );
    let kept = checks(&w).await;
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].attempts, 1);
    assert_eq!(kept[0].given_up_at, None);
    assert!(kept[0].next_attempt_at > w.clock.now());
    let error = kept[0].last_error.clone().unwrap();
    assert!(
        error.starts_with("auto top-up: database error: "),
        "{error}"
    );
    // Backing off: not run again before its time, even once the database
    // is back.
    orders_table(&w, true).await;
    assert_eq!(
        run_due(&w.t.db, &w.clock, 100).await.unwrap(),
        Ran::default()
    );
    assert_eq!(orders(&w).await, []);
    // Its time: ordered, once, and the check is gone.
    w.clock.set(kept[0].next_attempt_at);
    tick(&w).await;
    assert_eq!(orders(&w).await, [ORDER]);
    assert_eq!(checks(&w).await, []);
    w.clock.advance(Duration::hours(1));
    tick(&w).await;
    assert_eq!(orders(&w).await, [ORDER]);
    assert_eq!(requested_events(&w).await, 1);
    w.verify().await;
}

#[tokio::test]
async fn a_check_that_keeps_failing_is_given_up_visibly_and_re_armed_by_the_next_consumption() {
    let w = world(None).await;
    w.consume("60").await.unwrap();
    dispatch_batch(&w.t.db, &w.clock, 100).await.unwrap();
    orders_table(&w, false).await;
    let mut ran = Ran::default();
    for _ in 0..20 {
        let r = run_due(&w.t.db, &w.clock, 100).await.unwrap();
        ran.retrying += r.retrying;
        ran.given_up += r.given_up;
        w.clock.advance(Duration::hours(2));
    }
    // 8 runs: 7 retries, then given up — and then left alone.
    assert_eq!((ran.retrying, ran.given_up), (7, 1));
    let kept = checks(&w).await;
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].attempts, 8);
    assert!(kept[0].given_up_at.is_some());
    assert!(
        kept[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("top_up_order")
    );
    // The next consumption re-arms it.
    orders_table(&w, true).await;
    w.consume("1").await.unwrap();
    tick(&w).await;
    assert_eq!(orders(&w).await, [ORDER]);
    assert_eq!(checks(&w).await, []);
    w.verify().await;
}

#[tokio::test]
async fn an_order_the_plan_cannot_price_is_given_up_with_its_reason() {
    // The plan sells at most 100 per purchase; the auto top-up asks 500.
    let w = world(Some("100")).await;
    w.consume("60").await.unwrap();
    dispatch_batch(&w.t.db, &w.clock, 100).await.unwrap();
    let ran = run_due(&w.t.db, &w.clock, 100).await.unwrap();
    assert_eq!(
        ran,
        Ran {
            given_up: 1,
            ..Ran::default()
        }
    );
    assert_eq!(orders(&w).await, []);
    let kept = checks(&w).await;
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].attempts, 0);
    assert_eq!(kept[0].given_up_at, Some(w.clock.now()));
    assert_eq!(
        kept[0].last_error.as_deref(),
        Some("auto top-up can't be priced: quantity: the plan sells at most 100 per purchase")
    );
    w.clock.advance(Duration::hours(5));
    assert_eq!(
        run_due(&w.t.db, &w.clock, 100).await.unwrap(),
        Ran::default()
    );
    w.verify().await;
}
