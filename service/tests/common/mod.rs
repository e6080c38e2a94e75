//! A tenant with a credit system and a customer on a fresh test database.
#![allow(dead_code)]

use std::str::FromStr;

use chrono::{DateTime, Duration, TimeZone, Utc};
use rust_decimal::Decimal;
use service::{
    Clock, FixedClock,
    credit_systems::CreditSystemRef,
    customers::CustomerRef,
    ids::{CreditSystemId, CustomerId, WalletId},
    ledger::{self, Attribution, Category, WalletRef, audit},
    testing::TestDb,
};
use uuid::Uuid;

pub fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 31, 12, 0, 0).unwrap()
}

pub struct World {
    pub t: TestDb,
    pub clock: FixedClock,
    pub tenant_id: Uuid,
    pub customer_id: CustomerId,
    pub credit_system_id: CreditSystemId,
    next_key: std::sync::atomic::AtomicU64,
}

impl World {
    /// A credit system `tokens` with `precision` places and customer `acme`.
    pub async fn new(precision: i32) -> Self {
        let t = TestDb::new().await;
        let clock = FixedClock::new(t0());
        let (tenant_id, credit_system_id, customer_id) =
            tenant_with_wallet(&t, &clock, "acme-corp", precision).await;
        Self {
            t,
            clock,
            tenant_id,
            customer_id,
            credit_system_id,
            next_key: Default::default(),
        }
    }

    /// Another tenant on the same database, set up like this one (its own
    /// `tokens` and `acme`): its id and its customer's wallet.
    pub async fn other_tenant(&self, name: &str, precision: i32) -> (Uuid, WalletRef) {
        let (tenant_id, credit_system_id, customer_id) =
            tenant_with_wallet(&self.t, &self.clock, name, precision).await;
        (
            tenant_id,
            WalletRef {
                customer: CustomerRef::Id(customer_id),
                credit_system: CreditSystemRef::Id(credit_system_id),
            },
        )
    }

    /// Product `p` with a published plan `monthly` including 100 credits
    /// of this world's credit system a month (no rollover).
    pub async fn monthly_plan(&self) {
        use service::{
            catalog::{self, Allowance, BillingInterval, PlanCreditTerms, Ref, Rollover},
            periods::Interval,
        };
        let (db, clock, t) = (&self.t.db, &self.clock, self.tenant_id);
        catalog::create_product(db, clock, t, "p", "Product", "")
            .await
            .unwrap();
        catalog::create_plan(
            db,
            clock,
            t,
            &Ref::Key("p".into()),
            "monthly",
            "Monthly",
            BillingInterval::Monthly,
        )
        .await
        .unwrap();
        catalog::attach_credit_system(
            db,
            clock,
            t,
            &Ref::Key("monthly".into()),
            &CreditSystemRef::Id(self.credit_system_id),
            &PlanCreditTerms {
                included: Some(Allowance {
                    amount: d("100"),
                    reset_interval: Interval::Monthly,
                    rollover: Rollover::None,
                }),
                pricing: None,
                usage_alert_percents: None,
            },
        )
        .await
        .unwrap();
        catalog::publish_plan(db, clock, t, &Ref::Key("monthly".into()))
            .await
            .unwrap();
    }

    pub fn key(&self) -> String {
        let n = self
            .next_key
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("key-{n}")
    }

    pub fn wallet(&self) -> WalletRef {
        WalletRef {
            customer: CustomerRef::Id(self.customer_id),
            credit_system: CreditSystemRef::Id(self.credit_system_id),
        }
    }

    pub fn grant_input(&self, amount: &str) -> ledger::GrantInput {
        ledger::GrantInput {
            wallet: self.wallet(),
            amount: d(amount),
            category: Category::Promotional,
            effective_at: None,
            expires_at: None,
            priority: None,
            cost_basis: None,
            reason: "test".into(),
            metadata: None,
            idempotency_key: self.key(),
        }
    }

    pub async fn grant(&self, amount: &str, expires_in: Option<Duration>) -> ledger::Grant {
        let mut input = self.grant_input(amount);
        input.expires_at = expires_in.map(|d| self.clock.now() + d);
        ledger::grant(&self.t.db, &self.clock, self.tenant_id, &input)
            .await
            .unwrap()
            .grant
    }

    pub fn consume_input(&self, amount: &str) -> ledger::ConsumeInput {
        ledger::ConsumeInput {
            wallet: self.wallet(),
            amount: d(amount),
            attribution: Attribution::default(),
            idempotency_key: self.key(),
        }
    }

    pub async fn consume(&self, amount: &str) -> Result<ledger::ConsumeOutcome, ledger::Error> {
        ledger::consume(
            &self.t.db,
            &self.clock,
            self.tenant_id,
            &self.consume_input(amount),
        )
        .await
    }

    pub async fn wallet_id(&self) -> WalletId {
        ledger::read::wallet_of(
            &self.t.db,
            self.tenant_id,
            self.customer_id,
            self.credit_system_id,
        )
        .await
        .unwrap()
        .expect("wallet exists")
        .id
    }

    pub async fn balance(&self) -> ledger::Balance {
        let id = self.wallet_id().await;
        ledger::read::balances(&self.t.db, self.tenant_id, &[id], self.clock.now())
            .await
            .unwrap()
            .remove(&id)
            .unwrap()
    }

    /// The wallet's ledger keeps every invariant.
    pub async fn verify(&self) {
        let id = self.wallet_id().await;
        let problems = audit::verify_wallet(self.t.db.reader(), self.tenant_id, id)
            .await
            .unwrap();
        assert!(
            problems.is_empty(),
            "ledger invariants broken: {problems:#?}"
        );
    }
}

/// A tenant `name` with credit system `tokens` and customer `acme`:
/// (tenant, credit system, customer).
async fn tenant_with_wallet(
    t: &TestDb,
    clock: &FixedClock,
    name: &str,
    precision: i32,
) -> (Uuid, CreditSystemId, CustomerId) {
    let s = service::testing::seed_tenant(&t.db, clock, name, precision).await;
    (s.tenant_id, s.credit_system_id, s.customer_id)
}
