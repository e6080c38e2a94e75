//! Usage-% alerts: `wallet.usage_threshold_crossed`, off the hot path.
//!
//! **Usage %** of a wallet is the part of what is granted to it now that
//! has been used. Over the wallet's grants live now (not voided, effective,
//! not expired — fully spent ones included):
//! `granted = Σ amount`, `used = Σ (amount − remaining)`, and
//! `usage % = used ÷ granted × 100`, truncated to 2 places (0 when nothing
//! is granted). For an allowance wallet that is the current period's
//! allowance (plus live top-ups); for a child wallet, its live allocation
//! (its TRANSFER grants). Credits an active hold reserves count as used
//! (they are out of `remaining`) until it is released.
//!
//! **Thresholds** (each 0 < p ≤ 1000, at most 10, `[]`: off) come from the
//! wallet's own setting (`configureWallet(usageAlertPercents)`), else from
//! the plan credits of the customer's active subscriptions for the credit
//! system (several: the lowest list — compared threshold by threshold, so
//! the plan that warns earliest wins; an empty list only when every plan
//! says off), else [`DEFAULT_PERCENTS`].
//!
//! **When**: the dispatch transaction that marks a batch's `credits.consumed`
//! events dispatched queues a check per wallet ([`super::wallet_checks`]:
//! `wallet_check` rows, retried until done); running the due checks
//! [`evaluate`]s them first (one usage
//! query per tenant in the batch). When usage reached a threshold above the
//! level already told, one short write transaction moves the wallet's
//! alert state — conditionally on the state read, so two workers never both
//! tell — and writes the event. Only the highest threshold reached is told
//! per evaluation, and each once.
//!
//! **Re-arming**: the state is (level told, granted measured against, and
//! which live grants those were). When the live grants differ — a new
//! period's allowance, a new allocation or top-up, an expiry or a void —
//! the level counts as 0 again before comparing.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use entity::{plan_credit, subscription, wallet};
use rust_decimal::{Decimal, RoundingStrategy};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Value,
    sea_query::Expr,
};
use uuid::Uuid;

use crate::{
    Clock, Db,
    amount::from_micros,
    ids::{CreditSystemId, CustomerId, PlanCreditId, WalletId},
    outbox::{self, EventType},
};

/// Thresholds when neither the wallet nor a plan sets any.
pub const DEFAULT_PERCENTS: [Decimal; 3] = [
    Decimal::from_parts(75, 0, 0, false, 0),
    Decimal::from_parts(90, 0, 0, false, 0),
    Decimal::from_parts(100, 0, 0, false, 0),
];

pub use crate::alert_percents::{PERCENT_MAX, PERCENTS_MAX, from_json, to_json, validate_percents};

/// Where a wallet's thresholds come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Wallet,
    Plan,
    Default,
}

/// A wallet's thresholds in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Ascending; empty: alerts are off.
    pub percents: Vec<Decimal>,
    pub source: Source,
}

/// The thresholds in force: the wallet's own, else the lowest of its
/// plans' lists (see the module docs), else the default.
pub fn effective(own: Option<Vec<Decimal>>, plans: &[Vec<Decimal>]) -> Settings {
    if let Some(percents) = own {
        return Settings {
            percents,
            source: Source::Wallet,
        };
    }
    let mut lists: Vec<Vec<Decimal>> = plans.to_vec();
    for l in &mut lists {
        l.sort();
    }
    // Lowest first; an empty list (off) only when all are.
    let lowest = lists.iter().filter(|l| !l.is_empty()).min().cloned();
    match (lowest, lists.is_empty()) {
        (Some(percents), _) => Settings {
            percents,
            source: Source::Plan,
        },
        (None, false) => Settings {
            percents: Vec::new(),
            source: Source::Plan,
        },
        (None, true) => Settings {
            percents: DEFAULT_PERCENTS.to_vec(),
            source: Source::Default,
        },
    }
}

/// What a wallet's live grants add up to (micro-credits), and which they
/// are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub granted_micros: i64,
    pub used_micros: i64,
    /// `<count>/<newest created_at>` of the live grants: which they are.
    pub grants: String,
}

impl Usage {
    /// The usage of grants given as `(amount, remaining)` micros.
    pub fn of(grants: impl IntoIterator<Item = (i64, i64)>) -> Self {
        let (granted_micros, used_micros) = grants
            .into_iter()
            .fold((0i64, 0i64), |(g, u), (amount, remaining)| {
                (g + amount, u + (amount - remaining))
            });
        Self {
            granted_micros,
            used_micros,
            grants: String::new(),
        }
    }

    /// `used ÷ granted × 100`, truncated to 2 places; 0 when nothing is
    /// granted.
    pub fn percent(&self) -> Decimal {
        if self.granted_micros <= 0 {
            return Decimal::ZERO;
        }
        (Decimal::from(self.used_micros) * Decimal::ONE_HUNDRED
            / Decimal::from(self.granted_micros))
        .round_dp_with_strategy(2, RoundingStrategy::ToZero)
        .normalize()
    }
}

/// A wallet's alert state as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    pub level_micros: i64,
    pub granted_micros: Option<i64>,
    pub grants: Option<String>,
}

/// The threshold to tell now, if any: the highest of `percents` that usage
/// reached and that is above the level told — which counts as 0 when the
/// live grants are not the ones it was measured against.
pub fn crossed(percents: &[Decimal], usage: &Usage, state: &State) -> Option<Decimal> {
    let same_grants = state.granted_micros == Some(usage.granted_micros)
        && state.grants.as_deref() == Some(usage.grants.as_str());
    let level = if same_grants {
        Decimal::new(state.level_micros, 6)
    } else {
        Decimal::ZERO
    };
    let percent = usage.percent();
    percents
        .iter()
        .copied()
        .filter(|p| *p <= percent && *p > level)
        .max()
}

fn percent_micros(p: Decimal) -> i64 {
    i64::try_from((p * Decimal::from(1_000_000)).trunc()).unwrap_or(i64::MAX)
}

/// Live grants' usage per wallet of one tenant, in one query.
async fn usages(
    conn: &impl ConnectionTrait,
    tenant_id: Uuid,
    wallet_ids: &[Uuid],
    now: DateTime<Utc>,
) -> Result<HashMap<Uuid, Usage>, DbErr> {
    let mut values: Vec<Value> = vec![tenant_id.into()];
    values.extend(wallet_ids.iter().map(|id| Value::from(*id)));
    // Current grants, spent out or not: what was granted and used of them.
    let current = crate::ledger::live::GrantSql::new(None).current(now, &mut values);
    let sql = format!(
        "SELECT wallet_id, CAST(SUM(amount_micros) AS BIGINT) AS granted, \
           CAST(SUM(amount_micros - remaining_micros) AS BIGINT) AS used, \
           CAST(COUNT(*) AS BIGINT) AS n, CAST(MAX(created_at) AS TEXT) AS newest \
         FROM credit_grant \
         WHERE tenant_id = ? AND wallet_id IN ({}) AND {current} \
         GROUP BY wallet_id",
        vec!["?"; wallet_ids.len()].join(", ")
    );
    let mut out = HashMap::new();
    for row in conn
        .query_all_raw(crate::db::statement(
            conn.get_database_backend(),
            &sql,
            values,
        ))
        .await?
    {
        let n: i64 = row.try_get("", "n")?;
        let newest: Option<String> = row.try_get("", "newest")?;
        out.insert(
            row.try_get::<Uuid>("", "wallet_id")?,
            Usage {
                granted_micros: row.try_get("", "granted")?,
                used_micros: row.try_get("", "used")?,
                grants: format!("{n}/{}", newest.unwrap_or_default()),
            },
        );
    }
    Ok(out)
}

/// The thresholds of the plan credits of each customer's subscriptions
/// active at `now`, per (customer, credit system) of `pairs` (two
/// statements).
async fn plan_lists(
    conn: &impl ConnectionTrait,
    tenant_id: Uuid,
    pairs: &[(Uuid, Uuid)],
    now: DateTime<Utc>,
) -> Result<HashMap<(Uuid, Uuid), Vec<Vec<Decimal>>>, DbErr> {
    let mut out: HashMap<(Uuid, Uuid), Vec<Vec<Decimal>>> = HashMap::new();
    if pairs.is_empty() {
        return Ok(out);
    }
    let subs = subscription::Entity::find()
        .filter(subscription::Column::TenantId.eq(tenant_id))
        .filter(subscription::Column::CustomerId.is_in(pairs.iter().map(|p| p.0)))
        .filter(subscription::Column::StartedAt.lte(now))
        .filter(
            Condition::any()
                .add(subscription::Column::CancelAt.is_null())
                .add(subscription::Column::CancelAt.gt(now)),
        )
        .all(conn)
        .await?;
    if subs.is_empty() {
        return Ok(out);
    }
    let credits = plan_credit::Entity::find()
        .filter(plan_credit::Column::TenantId.eq(tenant_id))
        .filter(plan_credit::Column::PlanId.is_in(subs.iter().map(|s| s.plan_id)))
        .filter(plan_credit::Column::CreditSystemId.is_in(pairs.iter().map(|p| p.1)))
        .all(conn)
        .await?;
    let mut by_plan: HashMap<Uuid, Vec<&plan_credit::Model>> = HashMap::new();
    for pc in &credits {
        by_plan.entry(pc.plan_id).or_default().push(pc);
    }
    for s in &subs {
        for pc in by_plan.get(&s.plan_id).into_iter().flatten() {
            if let Some(v) = &pc.usage_alert_percents {
                out.entry((s.customer_id, pc.credit_system_id))
                    .or_default()
                    .push(from_json("plan_credit", PlanCreditId::from_uuid(pc.id), v)?);
            }
        }
    }
    Ok(out)
}

/// The thresholds in force for wallets that set none of their own, per
/// (customer, credit system): their plans', else the default (for reads:
/// `Wallet.usageAlerts`; two statements however many).
pub async fn inherited(
    db: &Db,
    tenant_id: Uuid,
    pairs: &[(CustomerId, CreditSystemId)],
    now: DateTime<Utc>,
) -> Result<HashMap<(CustomerId, CreditSystemId), Settings>, DbErr> {
    let columns: Vec<(Uuid, Uuid)> = pairs.iter().map(|(c, cs)| (c.uuid(), cs.uuid())).collect();
    let plans = plan_lists(db.reader(), tenant_id, &columns, now).await?;
    Ok(pairs
        .iter()
        .map(|&(customer, cs)| {
            let lists = plans
                .get(&(customer.uuid(), cs.uuid()))
                .map(Vec::as_slice)
                .unwrap_or_default();
            ((customer, cs), effective(None, lists))
        })
        .collect())
}

/// Tells the usage thresholds these wallets crossed (see the module
/// docs); answers how many events were written. Reads on the reader pool;
/// writes only when a threshold was crossed.
pub async fn evaluate(db: &Db, clock: &dyn Clock, wallets: &[(Uuid, Uuid)]) -> Result<u64, DbErr> {
    let now = clock.now();
    let mut by_tenant: BTreeMap<Uuid, Vec<Uuid>> = BTreeMap::new();
    for (tenant_id, wallet_id) in wallets {
        by_tenant.entry(*tenant_id).or_default().push(*wallet_id);
    }
    let mut told = 0;
    for (tenant_id, ids) in by_tenant {
        for ids in ids.chunks(500) {
            told += evaluate_tenant(db, now, tenant_id, ids).await?;
        }
    }
    Ok(told)
}

async fn evaluate_tenant(
    db: &Db,
    now: DateTime<Utc>,
    tenant_id: Uuid,
    ids: &[Uuid],
) -> Result<u64, DbErr> {
    let conn = db.reader();
    let wallets = wallet::Entity::find()
        .filter(wallet::Column::TenantId.eq(tenant_id))
        .filter(wallet::Column::Id.is_in(ids.iter().copied()))
        .all(conn)
        .await?;
    let usages = usages(conn, tenant_id, ids, now).await?;
    let inheriting: Vec<(Uuid, Uuid)> = wallets
        .iter()
        .filter(|w| w.usage_alert_percents.is_none())
        .map(|w| (w.customer_id, w.credit_system_id))
        .collect();
    let plans = plan_lists(conn, tenant_id, &inheriting, now).await?;
    let mut told = 0;
    for w in &wallets {
        let own = w
            .usage_alert_percents
            .as_ref()
            .map(|v| from_json("wallet", WalletId::from_uuid(w.id), v))
            .transpose()?;
        let settings = effective(
            own,
            plans
                .get(&(w.customer_id, w.credit_system_id))
                .map(Vec::as_slice)
                .unwrap_or_default(),
        );
        let usage = usages.get(&w.id).cloned().unwrap_or_default();
        let state = State {
            level_micros: w.usage_alert_level_micros,
            granted_micros: w.usage_alert_granted_micros,
            grants: w.usage_alert_grants.clone(),
        };
        let Some(threshold) = crossed(&settings.percents, &usage, &state) else {
            continue;
        };
        if tell(db, now, w, &state, &usage, threshold).await? {
            told += 1;
        }
    }
    Ok(told)
}

/// Moves the wallet's alert state from `state` (as read) to `threshold`
/// and writes the event, in one transaction; `false` when another worker
/// moved it first.
async fn tell(
    db: &Db,
    now: DateTime<Utc>,
    w: &wallet::Model,
    state: &State,
    usage: &Usage,
    threshold: Decimal,
) -> Result<bool, DbErr> {
    let txn = db.begin_write().await?;
    let same = |column: wallet::Column, value: Option<Value>| match value {
        Some(v) => column.eq(v),
        None => column.is_null(),
    };
    let moved = wallet::Entity::update_many()
        .col_expr(
            wallet::Column::UsageAlertLevelMicros,
            Expr::value(percent_micros(threshold)),
        )
        .col_expr(
            wallet::Column::UsageAlertGrantedMicros,
            Expr::value(usage.granted_micros),
        )
        .col_expr(
            wallet::Column::UsageAlertGrants,
            Expr::value(usage.grants.clone()),
        )
        .filter(wallet::Column::TenantId.eq(w.tenant_id))
        .filter(wallet::Column::Id.eq(w.id))
        .filter(wallet::Column::UsageAlertLevelMicros.eq(state.level_micros))
        .filter(same(
            wallet::Column::UsageAlertGrantedMicros,
            state.granted_micros.map(Value::from),
        ))
        .filter(same(
            wallet::Column::UsageAlertGrants,
            state.grants.clone().map(Value::from),
        ))
        .exec(&txn)
        .await?;
    if moved.rows_affected != 1 {
        return Ok(false);
    }
    outbox::write(
        &txn,
        vec![outbox::event(
            w.tenant_id,
            EventType::UsageThresholdCrossed,
            Some(WalletId::from_uuid(w.id)),
            serde_json::json!({
                "walletId": w.id,
                "customerId": w.customer_id,
                "creditSystemId": w.credit_system_id,
                "threshold": threshold.normalize().to_string(),
                "usagePercent": usage.percent().to_string(),
                "used": from_micros(usage.used_micros).to_string(),
                "granted": from_micros(usage.granted_micros).to_string(),
            }),
            now,
        )],
    )
    .await?;
    txn.commit().await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn ds(s: &[&str]) -> Vec<Decimal> {
        s.iter().map(|x| d(x)).collect()
    }

    const M: i64 = 1_000_000;

    #[test]
    fn usage_percent_is_used_over_granted_of_live_grants() {
        // (amount, remaining) micros → percent
        let cases: &[(&[(i64, i64)], &str)] = &[
            (&[], "0"),
            (&[(1000 * M, 1000 * M)], "0"),
            (&[(1000 * M, 260 * M)], "74"),
            (&[(1000 * M, 75 * M)], "92.5"),
            (&[(1000 * M, 0)], "100"),
            // A fully spent grant still counts: 1000 + 500 granted, 1250 used.
            (&[(1000 * M, 0), (500 * M, 250 * M)], "83.33"),
            // Truncated, never rounded up to a threshold: 2/3 → 66.66.
            (&[(3 * M, M)], "66.66"),
            (&[(3 * M, 1)], "99.99"),
            (&[(M / 2, 0)], "100"),
        ];
        for (grants, want) in cases {
            let u = Usage::of(grants.iter().copied());
            assert_eq!(u.percent(), d(want), "{grants:?}");
        }
        let u = Usage::of([(1000 * M, 75 * M)]);
        assert_eq!((u.granted_micros, u.used_micros), (1000 * M, 925 * M));
    }

    fn usage(granted: i64, used: i64, grants: &str) -> Usage {
        Usage {
            granted_micros: granted * M,
            used_micros: used * M,
            grants: grants.into(),
        }
    }

    fn state(level: i64, granted: i64, grants: &str) -> State {
        State {
            level_micros: level * M,
            granted_micros: Some(granted * M),
            grants: Some(grants.into()),
        }
    }

    #[test]
    fn only_the_highest_new_threshold_is_told_and_grants_rearm() {
        let p = DEFAULT_PERCENTS.to_vec();
        let fresh = State::default();
        assert_eq!(crossed(&p, &usage(1000, 740, "1/a"), &fresh), None);
        assert_eq!(crossed(&p, &usage(1000, 760, "1/a"), &fresh), Some(d("75")));
        // Straight from 0 to 95 %: only 90 is told.
        assert_eq!(crossed(&p, &usage(1000, 950, "1/a"), &fresh), Some(d("90")));
        // Already told 75: 80 % says nothing, 95 % says 90, 100 % says 100.
        let told75 = state(75, 1000, "1/a");
        assert_eq!(crossed(&p, &usage(1000, 800, "1/a"), &told75), None);
        assert_eq!(
            crossed(&p, &usage(1000, 950, "1/a"), &told75),
            Some(d("90"))
        );
        assert_eq!(
            crossed(&p, &usage(1000, 1000, "1/a"), &state(90, 1000, "1/a")),
            Some(d("100"))
        );
        assert_eq!(
            crossed(&p, &usage(1000, 1000, "1/a"), &state(100, 1000, "1/a")),
            None
        );
        // Other grants (a new period's of the same size, a top-up): re-armed.
        assert_eq!(
            crossed(&p, &usage(1000, 760, "1/b"), &state(100, 1000, "1/a")),
            Some(d("75"))
        );
        assert_eq!(
            crossed(&p, &usage(1100, 1000, "2/b"), &state(100, 1000, "1/a")),
            Some(d("90"))
        );
        assert_eq!(
            crossed(&p, &usage(1100, 700, "2/b"), &state(100, 1000, "1/a")),
            None
        );
        // Off, and a wallet's own list.
        assert_eq!(crossed(&[], &usage(1000, 1000, "1/a"), &fresh), None);
        assert_eq!(
            crossed(&ds(&["50"]), &usage(1000, 500, "1/a"), &fresh),
            Some(d("50"))
        );
        assert_eq!(
            crossed(
                &ds(&["50"]),
                &usage(1000, 900, "1/a"),
                &state(50, 1000, "1/a")
            ),
            None
        );
    }

    #[test]
    fn the_wallets_list_wins_then_the_lowest_plan_list_then_the_default() {
        assert_eq!(
            effective(Some(ds(&["50"])), &[ds(&["10"])]),
            Settings {
                percents: ds(&["50"]),
                source: Source::Wallet
            }
        );
        assert_eq!(
            effective(Some(vec![]), &[]),
            Settings {
                percents: vec![],
                source: Source::Wallet
            }
        );
        assert_eq!(
            effective(None, &[ds(&["80", "95"]), ds(&["60", "100"]), vec![]]),
            Settings {
                percents: ds(&["60", "100"]),
                source: Source::Plan
            }
        );
        assert_eq!(
            effective(None, &[vec![]]),
            Settings {
                percents: vec![],
                source: Source::Plan
            }
        );
        assert_eq!(
            effective(None, &[]),
            Settings {
                percents: DEFAULT_PERCENTS.to_vec(),
                source: Source::Default
            }
        );
    }

    #[test]
    fn thresholds_are_bounded_and_the_error_names_the_field() {
        assert_eq!(
            validate_percents("usageAlertPercents", &ds(&["90", "50.5", "90", "1000"])).unwrap(),
            ds(&["50.5", "90", "1000"])
        );
        assert_eq!(validate_percents("f", &[]).unwrap(), vec![]);
        for (bad, field) in [
            (ds(&["0"]), "f[0]"),
            (ds(&["50", "-1"]), "f[1]"),
            (ds(&["1000.01"]), "f[0]"),
            (ds(&["33.333"]), "f[0]"),
            (vec![d("1"); 11], "f"),
        ] {
            assert_eq!(
                validate_percents("f", &bad).unwrap_err().field,
                field,
                "{bad:?}"
            );
        }
        let json = to_json(&ds(&["75", "90.5"]));
        assert_eq!(json, serde_json::json!(["75", "90.5"]));
        assert_eq!(
            from_json("wallet", WalletId::from_uuid(Uuid::nil()), &json).unwrap(),
            ds(&["75", "90.5"])
        );
        assert!(
            from_json(
                "wallet",
                WalletId::from_uuid(Uuid::nil()),
                &serde_json::json!([75])
            )
            .is_err()
        );
        assert_eq!(percent_micros(d("92.5")), 92_500_000);
    }
}
