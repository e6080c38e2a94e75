//! The catalog's own rules, one aggregate at a time (products, features,
//! plans, plan credits, entitlements), on a fresh database (SQLite, or
//! PostgreSQL with `TEST_DATABASE_URL`).

mod common;

use common::{World, d};
use service::{
    Clock, Code, DomainError,
    catalog::{
        self, Allowance, BillingInterval, Commitment, Error, LowCreditAction, NewPlan, PlanChanges,
        PlanCreditTerms, PlanPricing, PlanStatus, RecurringPrice, Ref, Rollover,
    },
    credit_systems::CreditSystemRef,
    pagination::PageRequest,
    periods::Interval,
    pricing::{Price, PriceModel, PricingType, Tier},
};

fn key(k: &str) -> Ref {
    Ref::Key(k.into())
}

/// The code and field of a refusal.
fn refused<T: std::fmt::Debug>(r: Result<T, Error>) -> (Code, String) {
    let e = r.expect_err("refused");
    (e.code(), e.field().unwrap_or_default().to_owned())
}

fn allowance(amount: &str) -> Allowance {
    Allowance {
        amount: d(amount),
        reset_interval: Interval::Monthly,
        rollover: Rollover::None,
    }
}

fn price(amount: &str) -> Price {
    Price {
        pricing_type: PricingType::Graduated,
        model: PriceModel::PerUnit,
        tiers: vec![Tier {
            first_unit: d("1"),
            last_unit: None,
            amount: d(amount),
            base: None,
        }],
        currency: "EUR".into(),
        tax_rate: d("0.27"),
    }
}

fn pricing() -> PlanPricing {
    PlanPricing {
        commitment: Commitment::PayAsYouGo,
        top_up_price: Some(price("0.1")),
        recurring: None,
        min_quantity: None,
        max_quantity: None,
        expiration: None,
        low_credit_limit: None,
        mandatory_purchase: false,
        auto_top_up: None,
    }
}

/// Product `p` and a draft monthly plan `pro` of it.
async fn draft(w: &World) {
    let (db, clock, t) = (&w.t.db, &w.clock, w.tenant_id);
    catalog::create_product(db, clock, t, "p", "Product", "")
        .await
        .unwrap();
    catalog::create_plan(
        db,
        clock,
        t,
        &key("p"),
        "pro",
        "Pro",
        BillingInterval::Monthly,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn products_are_created_once_by_key_and_listed_in_pages() {
    let w = World::new(2).await;
    let (db, clock, t) = (&w.t.db, &w.clock, w.tenant_id);
    let p = catalog::create_product(db, clock, t, "api", "API", "Calls")
        .await
        .unwrap();
    // The same again is the same product; other details are a conflict.
    let again = catalog::create_product(db, clock, t, "api", "API", "Calls")
        .await
        .unwrap();
    assert_eq!(again, p);
    assert_eq!(
        refused(catalog::create_product(db, clock, t, "api", "Other", "").await),
        (Code::Conflict, "key".into())
    );
    assert_eq!(
        refused(catalog::create_product(db, clock, t, "Not A Key", "X", "").await),
        (Code::Validation, "key".into())
    );
    assert_eq!(
        catalog::get_product(db, t, &Ref::Id(p.id.uuid()))
            .await
            .unwrap(),
        p
    );
    // A key the input rules refuse is simply not found.
    assert_eq!(
        refused(catalog::get_product(db, t, &key("bad key\0")).await),
        (Code::NotFound, "product".into())
    );
    for k in ["b", "c"] {
        catalog::create_product(db, clock, t, k, k, "")
            .await
            .unwrap();
    }
    let first = catalog::list_products(db, t, PageRequest::new(Some(2), None).unwrap())
        .await
        .unwrap();
    assert_eq!(first.items.len(), 2);
    assert!(first.has_next_page);
    let rest = catalog::list_products(
        db,
        t,
        PageRequest::new(Some(2), Some(first.items[1].id.uuid())).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!((rest.items.len(), rest.has_next_page), (1, false));
    let ids = [p.id, rest.items[0].id];
    assert_eq!(
        catalog::products_by_ids(db, t, &ids).await.unwrap().len(),
        2
    );
    // Another tenant sees none of them.
    let (other, _) = w.other_tenant("other", 2).await;
    assert_eq!(
        refused(catalog::get_product(db, other, &key("api")).await),
        (Code::NotFound, "product".into())
    );
}

#[tokio::test]
async fn features_are_created_once_by_key() {
    let w = World::new(2).await;
    let (db, clock, t) = (&w.t.db, &w.clock, w.tenant_id);
    let f = catalog::create_feature(db, clock, t, "chat", "Chat", "message")
        .await
        .unwrap();
    assert_eq!(
        catalog::create_feature(db, clock, t, "chat", "Chat", "message")
            .await
            .unwrap(),
        f
    );
    assert_eq!(
        refused(catalog::create_feature(db, clock, t, "chat", "Chat", "token").await),
        (Code::Conflict, "key".into())
    );
    assert_eq!(
        refused(catalog::create_feature(db, clock, t, "x", "X", " ").await),
        (Code::Validation, "unit".into())
    );
    assert_eq!(catalog::get_feature(db, t, &key("chat")).await.unwrap(), f);
    let page = catalog::list_features(db, t, PageRequest::new(None, None).unwrap())
        .await
        .unwrap();
    assert_eq!(page.items, vec![f.clone()]);
    assert_eq!(
        catalog::features_by_ids(db, t, &[f.id]).await.unwrap(),
        vec![f]
    );
}

#[tokio::test]
async fn plans_move_from_draft_to_published_to_archived() {
    let w = World::new(2).await;
    let (db, clock, t) = (&w.t.db, &w.clock, w.tenant_id);
    draft(&w).await;
    let plan = catalog::get_plan(db, t, &key("pro")).await.unwrap();
    assert_eq!(plan.status, PlanStatus::Draft);
    assert_eq!(plan.published_at, None);
    // Creating it again with the same fields returns it.
    let again = catalog::create_plan_with(
        db,
        clock,
        t,
        &NewPlan {
            product: &key("p"),
            key: "pro",
            name: "Pro",
            description: "",
            billing_interval: BillingInterval::Monthly,
        },
    )
    .await
    .unwrap();
    assert_eq!(again, plan);
    assert_eq!(
        refused(
            catalog::create_plan(
                db,
                clock,
                t,
                &key("p"),
                "pro",
                "Pro",
                BillingInterval::Annually
            )
            .await
        ),
        (Code::Conflict, "key".into())
    );
    assert_eq!(
        refused(
            catalog::create_plan(
                db,
                clock,
                t,
                &key("nope"),
                "x",
                "X",
                BillingInterval::Monthly
            )
            .await
        ),
        (Code::NotFound, "product".into())
    );

    let published = catalog::publish_plan(db, clock, t, &key("pro"))
        .await
        .unwrap();
    assert_eq!(published.status, PlanStatus::Published);
    assert_eq!(published.published_at, Some(clock.now()));
    // Publishing again changes nothing.
    assert_eq!(
        catalog::publish_plan(db, clock, t, &key("pro"))
            .await
            .unwrap(),
        published
    );
    // Name and description change in any status; terms only on drafts.
    let renamed = catalog::update_plan(
        db,
        clock,
        t,
        &key("pro"),
        &PlanChanges {
            name: Some("Pro 2".into()),
            description: Some("For teams".into()),
        },
    )
    .await
    .unwrap();
    assert_eq!(
        (renamed.name.as_str(), renamed.description.as_str()),
        ("Pro 2", "For teams")
    );
    let terms = PlanCreditTerms {
        included: Some(allowance("100")),
        ..Default::default()
    };
    let tokens = CreditSystemRef::Id(w.credit_system_id);
    assert_eq!(
        refused(catalog::attach_credit_system(db, clock, t, &key("pro"), &tokens, &terms).await),
        (Code::Conflict, "plan".into())
    );

    let archived = catalog::archive_plan(db, clock, t, &key("pro"))
        .await
        .unwrap();
    assert_eq!(archived.status, PlanStatus::Archived);
    assert_eq!(
        refused(catalog::publish_plan(db, clock, t, &key("pro")).await),
        (Code::Conflict, "plan".into())
    );
    let by_status = |s| {
        catalog::list_plans(
            db,
            t,
            Some(plan.product_id),
            Some(s),
            PageRequest::new(None, None).unwrap(),
        )
    };
    assert_eq!(
        by_status(PlanStatus::Archived).await.unwrap().items.len(),
        1
    );
    assert!(by_status(PlanStatus::Draft).await.unwrap().items.is_empty());
    assert_eq!(
        catalog::plans_by_ids(db, t, &[plan.id]).await.unwrap()[0].status,
        PlanStatus::Archived
    );
}

#[tokio::test]
async fn plan_credits_are_checked_against_the_credit_system_and_each_other() {
    let w = World::new(2).await;
    let (db, clock, t) = (&w.t.db, &w.clock, w.tenant_id);
    draft(&w).await;
    let tokens = CreditSystemRef::Key("tokens".into());
    let attach = |terms: PlanCreditTerms| {
        let tokens = tokens.clone();
        async move { catalog::attach_credit_system(db, clock, t, &key("pro"), &tokens, &terms).await }
    };
    let with = |f: fn(&mut PlanPricing)| {
        let mut p = pricing();
        f(&mut p);
        PlanCreditTerms {
            pricing: Some(p),
            ..Default::default()
        }
    };
    for (terms, field) in [
        (PlanCreditTerms::default(), "included"),
        (
            PlanCreditTerms {
                included: Some(allowance("0.001")),
                ..Default::default()
            },
            "included.amount",
        ),
        (
            with(|p| {
                p.recurring = Some(RecurringPrice {
                    quantity: d("10"),
                    price: price("1"),
                })
            }),
            "pricing.recurringPrice",
        ),
        (
            with(|p| (p.min_quantity, p.max_quantity) = (Some(d("10")), Some(d("5")))),
            "pricing.maxQuantity",
        ),
        (
            with(|p| (p.top_up_price, p.mandatory_purchase) = (None, true)),
            "pricing.mandatoryPurchase",
        ),
        (
            with(|p| p.low_credit_limit = Some((d("-1"), LowCreditAction::Block))),
            "pricing.lowCreditLimit",
        ),
    ] {
        assert_eq!(
            refused(attach(terms).await),
            (Code::Validation, field.into()),
            "{field}"
        );
    }

    let pc = attach(PlanCreditTerms {
        included: Some(Allowance {
            amount: d("100.5"),
            reset_interval: Interval::Monthly,
            rollover: Rollover::Capped(d("50")),
        }),
        pricing: Some(PlanPricing {
            low_credit_limit: Some((d("5"), LowCreditAction::Block)),
            ..pricing()
        }),
        usage_alert_percents: None,
    })
    .await
    .unwrap();
    assert_eq!(pc.credit_system_id, w.credit_system_id);
    assert_eq!(pc.spend_floor(), Some(d("5")));
    assert_eq!(catalog::plan_credit(db, t, pc.id).await.unwrap(), pc);
    assert_eq!(
        refused(attach(with(|_| {})).await),
        (Code::Conflict, "creditSystem".into())
    );
    // Replaced as a whole.
    let updated = catalog::update_plan_credit(
        db,
        clock,
        t,
        pc.id,
        &PlanCreditTerms {
            included: Some(allowance("20")),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(updated.included, Some(allowance("20")));
    assert_eq!(updated.pricing, None);
    assert_eq!(updated.spend_floor(), None);
    let plan = catalog::get_plan(db, t, &key("pro")).await.unwrap();
    assert_eq!(
        catalog::plan_credits_of(db.reader(), t, &[plan.id])
            .await
            .unwrap(),
        vec![updated]
    );
    // Unknown credit systems are not found, on the field the input named.
    assert_eq!(
        refused(
            catalog::attach_credit_system(
                db,
                clock,
                t,
                &key("pro"),
                &CreditSystemRef::Key("nope".into()),
                &PlanCreditTerms::default()
            )
            .await
        ),
        (Code::NotFound, "creditSystem".into())
    );
}

#[tokio::test]
async fn entitlements_price_features_in_an_attached_credit_system() {
    let w = World::new(2).await;
    let (db, clock, t) = (&w.t.db, &w.clock, w.tenant_id);
    draft(&w).await;
    catalog::create_feature(db, clock, t, "chat", "Chat", "message")
        .await
        .unwrap();
    let tokens = CreditSystemRef::Key("tokens".into());
    let set = |cost: &str| {
        let tokens = tokens.clone();
        let cost = d(cost);
        async move {
            catalog::set_entitlement(db, clock, t, &key("pro"), &key("chat"), &tokens, cost).await
        }
    };
    // Not before the credit system is on the plan.
    assert_eq!(
        refused(set("2").await),
        (Code::Validation, "creditSystem".into())
    );
    catalog::attach_credit_system(
        db,
        clock,
        t,
        &key("pro"),
        &tokens,
        &PlanCreditTerms {
            included: Some(allowance("100")),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        refused(set("0.001").await),
        (Code::Validation, "creditCost".into())
    );
    let first = set("2").await.unwrap();
    // Setting it again replaces the cost, on the same entitlement.
    let second = set("2.5").await.unwrap();
    assert_eq!((second.id, second.credit_cost), (first.id, d("2.5")));
    assert_eq!(
        refused(
            catalog::set_entitlement(db, clock, t, &key("pro"), &key("nope"), &tokens, d("1"))
                .await
        ),
        (Code::NotFound, "feature".into())
    );
    let plan = catalog::get_plan(db, t, &key("pro")).await.unwrap();
    assert_eq!(
        catalog::entitlements_of(db.reader(), t, &[plan.id])
            .await
            .unwrap(),
        vec![second.clone()]
    );

    // A duplicate copies plan credits and entitlements into a new draft.
    catalog::publish_plan(db, clock, t, &key("pro"))
        .await
        .unwrap();
    let copy = catalog::duplicate_plan(db, clock, t, &key("pro"), "pro-2", "Pro 2")
        .await
        .unwrap();
    assert_eq!(
        (copy.status, copy.copied_from_plan_id),
        (PlanStatus::Draft, Some(plan.id))
    );
    let copied = catalog::entitlements_of(db.reader(), t, &[copy.id])
        .await
        .unwrap();
    assert_eq!(copied.len(), 1);
    assert_eq!(copied[0].credit_cost, d("2.5"));
    assert_ne!(copied[0].id, second.id);
    assert_eq!(
        catalog::plan_credits_of(db.reader(), t, &[copy.id])
            .await
            .unwrap()
            .len(),
        1
    );
    // Removing, and detaching the credit system (with its entitlements),
    // are for drafts.
    assert_eq!(
        refused(catalog::remove_entitlement(db, t, &key("pro"), &key("chat")).await),
        (Code::Conflict, "plan".into())
    );
    catalog::detach_credit_system(db, t, &key("pro-2"), &tokens)
        .await
        .unwrap();
    assert!(
        catalog::entitlements_of(db.reader(), t, &[copy.id])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        refused(catalog::detach_credit_system(db, t, &key("pro-2"), &tokens).await),
        (Code::NotFound, "creditSystem".into())
    );
}
