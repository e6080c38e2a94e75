//! What a partner sees of its customer tree: its own totals, and per child
//! what was allocated to it, used and left, as a percentage and a status.
//!
//! For one credit system:
//! - **allocated**: credits received by TRANSFER_IN (from ancestors);
//! - **used**: credits spent (USAGE, less refunds) by the child and every
//!   customer below it — a client's budget is used when its events spend
//!   it; what it merely passed down is not "used". **own used**: by the
//!   customer itself. (A customer's own summary counts its subtree only
//!   when asked to; a child's row always does.) The subtree is a
//!   recursive CTE ([`crate::customers::subtree_cte`]): one statement for
//!   a page of children, whatever the depth below them;
//! - **remaining**: its available balance now;
//! - **usage %** = used ÷ allocated × 100 (0 when nothing was allocated),
//!   and the status: `HEALTHY` below the tenant's watch threshold (75 %),
//!   `WATCH` up to the critical one (90 %), `CRITICAL` from it on.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use entity::tenant;
use rust_decimal::Decimal;
use sea_orm::{ConnectionTrait, DbErr, EntityTrait, Value};
use serde::Serialize;
use uuid::Uuid;

use super::read;
use crate::db::statement;
use crate::{
    Db,
    amount::from_micros,
    error::Invalid,
    ids::{CreditSystemId, CustomerId, WalletId},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Health {
    Healthy,
    Watch,
    Critical,
}

/// The tenant's thresholds (usage %): WATCH from `watch`, CRITICAL from
/// `critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub watch: Decimal,
    pub critical: Decimal,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            watch: Decimal::from(75),
            critical: Decimal::from(90),
        }
    }
}

impl Thresholds {
    pub fn new(watch: Decimal, critical: Decimal) -> Result<Self, Invalid> {
        if watch <= Decimal::ZERO || critical <= watch || critical > Decimal::from(1000) {
            return Err(Invalid::new(
                "criticalPercent",
                "thresholds must satisfy 0 < watchPercent < criticalPercent",
            ));
        }
        Ok(Self { watch, critical })
    }

    /// Pure: the status of a usage percentage.
    pub fn health(&self, usage_percent: Decimal) -> Health {
        if usage_percent >= self.critical {
            Health::Critical
        } else if usage_percent >= self.watch {
            Health::Watch
        } else {
            Health::Healthy
        }
    }
}

/// used ÷ allocated × 100, to 2 places (0 without an allocation).
pub fn usage_percent(used: Decimal, allocated: Decimal) -> Decimal {
    if allocated <= Decimal::ZERO {
        return Decimal::ZERO;
    }
    (used * Decimal::from(100) / allocated).round_dp(2)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeSummary {
    pub customer_id: CustomerId,
    pub allocated: Decimal,
    pub allocated_out: Decimal,
    /// By the customer and, when the summary includes them, its
    /// descendants.
    pub used: Decimal,
    /// By the customer itself.
    pub own_used: Decimal,
    pub purchased: Decimal,
    pub remaining: Decimal,
    pub usage_percent: Decimal,
    pub health: Health,
}

pub async fn thresholds(db: &Db, tenant_id: Uuid) -> Result<Thresholds, DbErr> {
    let t = tenant::Entity::find_by_id(tenant_id)
        .one(db.reader())
        .await?;
    Ok(match t {
        Some(t) => match (t.watch_percent_micros, t.critical_percent_micros) {
            (Some(w), Some(c)) => Thresholds {
                watch: from_micros(w),
                critical: from_micros(c),
            },
            _ => Thresholds::default(),
        },
        None => Thresholds::default(),
    })
}

/// Sums per customer in one credit system, in one statement (plus the
/// balances', and one for the subtrees' usage with `include_descendants`).
pub async fn summaries(
    db: &Db,
    tenant_id: Uuid,
    credit_system_id: CreditSystemId,
    customer_ids: &[CustomerId],
    include_descendants: bool,
    now: DateTime<Utc>,
) -> Result<HashMap<CustomerId, TreeSummary>, super::Error> {
    if customer_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let conn = db.reader();
    let sql = format!(
        "SELECT w.customer_id AS customer_id, w.id AS wallet_id, \
           CAST(COALESCE(SUM(CASE WHEN e.entry_type = 'TRANSFER_IN' THEN e.amount_micros ELSE 0 END), 0) AS BIGINT) AS allocated, \
           CAST(COALESCE(SUM(CASE WHEN e.entry_type = 'TRANSFER_OUT' THEN -e.amount_micros ELSE 0 END), 0) AS BIGINT) AS allocated_out, \
           CAST(COALESCE(SUM(CASE WHEN e.entry_type IN ('USAGE', 'REFUND') THEN -e.amount_micros ELSE 0 END), 0) AS BIGINT) AS used, \
           CAST(COALESCE((SELECT SUM(g.amount_micros) FROM credit_grant g WHERE g.wallet_id = w.id AND g.category = 'PURCHASED'), 0) AS BIGINT) AS purchased \
         FROM wallet w LEFT JOIN ledger_entry e ON e.wallet_id = w.id AND e.tenant_id = w.tenant_id \
         WHERE w.tenant_id = ? AND w.credit_system_id = ? AND w.customer_id IN ({}) \
         GROUP BY w.customer_id, w.id",
        vec!["?"; customer_ids.len()].join(", ")
    );
    let mut values: Vec<Value> = vec![tenant_id.into(), credit_system_id.into()];
    values.extend(customer_ids.iter().map(|id| Value::from(*id)));
    let rows = conn
        .query_all_raw(statement(conn.get_database_backend(), &sql, values))
        .await?;
    let mut sums = Vec::new();
    for row in rows {
        sums.push((
            CustomerId::from_uuid(row.try_get("", "customer_id")?),
            WalletId::from_uuid(row.try_get("", "wallet_id")?),
            row.try_get::<i64>("", "allocated")?,
            row.try_get::<i64>("", "allocated_out")?,
            row.try_get::<i64>("", "used")?,
            row.try_get::<i64>("", "purchased")?,
        ));
    }
    let wallet_ids: Vec<WalletId> = sums.iter().map(|s| s.1).collect();
    let balances = read::balances(db, tenant_id, &wallet_ids, now).await?;
    let thresholds = thresholds(db, tenant_id).await?;
    let subtree_used = if include_descendants {
        Some(subtrees_used(db, tenant_id, credit_system_id, customer_ids).await?)
    } else {
        None
    };
    let mut out: HashMap<CustomerId, TreeSummary> = customer_ids
        .iter()
        .map(|id| (*id, empty(*id, &thresholds)))
        .collect();
    for (customer_id, wallet_id, allocated, allocated_out, own_used, purchased) in sums {
        let (allocated, own_used) = (from_micros(allocated), from_micros(own_used));
        let used = match &subtree_used {
            Some(by_root) => by_root.get(&customer_id).copied().unwrap_or_default(),
            None => own_used,
        };
        let percent = usage_percent(used, allocated);
        out.insert(
            customer_id,
            TreeSummary {
                customer_id,
                allocated,
                allocated_out: from_micros(allocated_out),
                used,
                own_used,
                purchased: from_micros(purchased),
                remaining: balances
                    .get(&wallet_id)
                    .map(|b| b.available)
                    .unwrap_or_default(),
                usage_percent: percent,
                health: thresholds.health(percent),
            },
        );
    }
    // A customer without a wallet in this credit system may still have
    // descendants who spent in it (nothing allocated to it: 0 %).
    if let Some(by_root) = subtree_used {
        for (customer_id, used) in by_root {
            if let Some(summary) = out.get_mut(&customer_id) {
                summary.used = used;
            }
        }
    }
    Ok(out)
}

/// Credits used (USAGE less refunds) in each root's subtree, in one
/// credit system: one statement for all roots, whatever the depth.
async fn subtrees_used(
    db: &Db,
    tenant_id: Uuid,
    credit_system_id: CreditSystemId,
    roots: &[CustomerId],
) -> Result<HashMap<CustomerId, Decimal>, DbErr> {
    let (cte, mut values) = crate::customers::subtree_cte(tenant_id, roots);
    let sql = format!(
        "WITH RECURSIVE {cte} \
         SELECT s.root_id AS root_id, CAST(COALESCE(SUM(-e.amount_micros), 0) AS BIGINT) AS used \
         FROM (SELECT DISTINCT root_id, id FROM subtree) s \
           JOIN wallet w ON w.customer_id = s.id AND w.tenant_id = ? AND w.credit_system_id = ? \
           JOIN ledger_entry e ON e.wallet_id = w.id AND e.tenant_id = ? AND e.entry_type IN ('USAGE', 'REFUND') \
         GROUP BY s.root_id"
    );
    values.extend([tenant_id.into(), credit_system_id.into(), tenant_id.into()]);
    let conn = db.reader();
    let mut out = HashMap::new();
    for row in conn
        .query_all_raw(statement(conn.get_database_backend(), &sql, values))
        .await?
    {
        out.insert(
            CustomerId::from_uuid(row.try_get("", "root_id")?),
            from_micros(row.try_get::<i64>("", "used")?),
        );
    }
    Ok(out)
}

fn empty(customer_id: CustomerId, thresholds: &Thresholds) -> TreeSummary {
    TreeSummary {
        customer_id,
        allocated: Decimal::ZERO,
        allocated_out: Decimal::ZERO,
        used: Decimal::ZERO,
        own_used: Decimal::ZERO,
        purchased: Decimal::ZERO,
        remaining: Decimal::ZERO,
        usage_percent: Decimal::ZERO,
        health: thresholds.health(Decimal::ZERO),
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    #[test]
    fn statuses_at_the_thresholds() {
        let t = Thresholds::default();
        let d = |s: &str| Decimal::from_str(s).unwrap();
        for (percent, health) in [
            ("0", Health::Healthy),
            ("74.9", Health::Healthy),
            ("75", Health::Watch),
            ("89.9", Health::Watch),
            ("90", Health::Critical),
            ("120", Health::Critical),
        ] {
            assert_eq!(t.health(d(percent)), health, "{percent}");
        }
        assert_eq!(usage_percent(d("749"), d("1000")), d("74.9"));
        assert_eq!(usage_percent(d("1"), d("3")), d("33.33"));
        assert_eq!(usage_percent(d("5"), d("0")), d("0"));
        assert!(Thresholds::new(d("90"), d("75")).is_err());
        assert!(Thresholds::new(d("60"), d("80")).is_ok());
    }
}
