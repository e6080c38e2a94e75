//! Bulk seeding that respects the ledger invariants: every grant is filled
//! by a GRANT entry (with its split), every usage is a USAGE entry drawn
//! from a grant (with its split), `seq` runs 1, 2, 3…, `balance_after` is
//! the running sum and the wallet caches it (`verify` checks a sample with
//! the service's own audit).

use chrono::{DateTime, Duration, Utc};
use entity::{credit_grant, customer, entry_split, ledger_entry, wallet};
use sea_orm::{ActiveValue::Set, EntityTrait};
use service::Db;
use uuid::Uuid;

/// Rows per INSERT (under SQLite's bound-parameter limit).
const CHUNK: usize = 1000;
/// Rows collected before they are written in one transaction.
const BATCH_ROWS: usize = 20_000;

/// A seeded customer.
#[derive(Debug, Clone)]
pub struct Customer {
    pub id: Uuid,
    pub external_id: String,
}

/// A seeded wallet.
#[derive(Debug, Clone)]
pub struct Wallet {
    pub id: Uuid,
    pub customer: Customer,
    pub grant_ids: Vec<Uuid>,
}

/// What each wallet gets.
#[derive(Debug, Clone)]
pub struct WalletSpec {
    pub credit_system_id: Uuid,
    /// Grants, each filled by a GRANT entry.
    pub grants: u32,
    pub grant_micros: i64,
    pub effective_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    /// USAGE entries after the grants, all drawn from the first grant.
    pub usages: u32,
    pub usage_micros: i64,
    /// When the first usage happened, and the time between two.
    pub usage_from: DateTime<Utc>,
    pub usage_step: Duration,
    pub features: &'static [&'static str],
}

pub async fn customers(
    db: &Db,
    tenant_id: Uuid,
    prefix: &str,
    n: usize,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<Customer>> {
    let names: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    named_customers(db, tenant_id, &names, now).await
}

/// Customers with exactly these external ids.
pub async fn named_customers(
    db: &Db,
    tenant_id: Uuid,
    names: &[String],
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<Customer>> {
    let list: Vec<Customer> = names
        .iter()
        .map(|name| Customer {
            id: Uuid::now_v7(),
            external_id: name.clone(),
        })
        .collect();
    for batch in list.chunks(BATCH_ROWS) {
        let txn = db.begin_write().await?;
        for chunk in batch.chunks(CHUNK) {
            customer::Entity::insert_many(chunk.iter().map(|c| customer::ActiveModel {
                id: Set(c.id),
                tenant_id: Set(tenant_id),
                external_id: Set(c.external_id.clone()),
                name: Set(format!("Bench customer {}", c.external_id)),
                email: Set(None),
                metadata: Set(None),
                parent_id: Set(None),
                created_at: Set(now),
                updated_at: Set(now),
            }))
            .exec_without_returning(&txn)
            .await?;
        }
        txn.commit().await?;
    }
    Ok(list)
}

#[derive(Default)]
struct Rows {
    wallets: Vec<wallet::ActiveModel>,
    grants: Vec<credit_grant::ActiveModel>,
    entries: Vec<ledger_entry::ActiveModel>,
    splits: Vec<entry_split::ActiveModel>,
}

impl Rows {
    fn len(&self) -> usize {
        self.wallets.len() + self.grants.len() + self.entries.len() + self.splits.len()
    }

    async fn flush(&mut self, db: &Db) -> anyhow::Result<()> {
        let txn = db.begin_write().await?;
        macro_rules! write {
            ($entity:path, $rows:expr) => {
                for chunk in std::mem::take(&mut $rows).chunks(CHUNK) {
                    <$entity>::insert_many(chunk.iter().cloned())
                        .exec_without_returning(&txn)
                        .await?;
                }
            };
        }
        write!(wallet::Entity, self.wallets);
        write!(credit_grant::Entity, self.grants);
        write!(ledger_entry::Entity, self.entries);
        write!(entry_split::Entity, self.splits);
        txn.commit().await?;
        Ok(())
    }
}

/// One wallet per customer in `spec.credit_system_id`, filled per `spec`.
pub async fn wallets(
    db: &Db,
    tenant_id: Uuid,
    customers: &[Customer],
    spec: &WalletSpec,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<Wallet>> {
    assert!(spec.grants >= 1, "a wallet needs a grant to draw from");
    assert!(
        spec.grant_micros >= i64::from(spec.usages) * spec.usage_micros,
        "the first grant must cover every usage"
    );
    let mut rows = Rows::default();
    let mut out = Vec::with_capacity(customers.len());
    for c in customers {
        let wallet_id = Uuid::now_v7();
        let mut seq = 0i64;
        let mut balance = 0i64;
        let mut grant_ids = Vec::with_capacity(spec.grants as usize);
        let entry = |seq: i64,
                     entry_type: &str,
                     amount: i64,
                     balance: i64,
                     grant_id: Option<Uuid>,
                     feature: Option<String>,
                     at: DateTime<Utc>| {
            ledger_entry::ActiveModel {
                id: Set(Uuid::now_v7()),
                tenant_id: Set(tenant_id),
                wallet_id: Set(wallet_id),
                seq: Set(seq),
                entry_type: Set(entry_type.to_owned()),
                amount_micros: Set(amount),
                balance_after_micros: Set(balance),
                grant_id: Set(grant_id),
                hold_id: Set(None),
                refund_of_entry_id: Set(None),
                quantity_micros: Set(feature.as_ref().map(|_| 1_000_000)),
                feature: Set(feature),
                event_ref: Set(None),
                user_ref: Set(None),
                dimensions: Set(None),
                description: Set(None),
                idempotency_key: Set(None),
                created_at: Set(at),
            }
        };
        let mut grants = Vec::new();
        let mut entries = Vec::new();
        let mut splits = Vec::new();
        for g in 0..spec.grants {
            let grant_id = Uuid::now_v7();
            grant_ids.push(grant_id);
            seq += 1;
            balance += spec.grant_micros;
            let remaining = if g == 0 {
                spec.grant_micros - i64::from(spec.usages) * spec.usage_micros
            } else {
                spec.grant_micros
            };
            grants.push(credit_grant::ActiveModel {
                id: Set(grant_id),
                tenant_id: Set(tenant_id),
                wallet_id: Set(wallet_id),
                category: Set("PURCHASED".to_owned()),
                amount_micros: Set(spec.grant_micros),
                remaining_micros: Set(remaining),
                debt_repaid_micros: Set(0),
                effective_at: Set(spec.effective_at),
                // Distinct instants, so the spending order is total.
                expires_at: Set(spec.expires_at.map(|at| at + Duration::seconds(g.into()))),
                priority: Set(0),
                cost_basis: Set(None),
                reason: Set("bench seed".to_owned()),
                metadata: Set(None),
                source_kind: Set(None),
                source_id: Set(None),
                voided_at: Set(None),
                expiry_notified_at: Set(None),
                created_at: Set(spec.effective_at),
                booked: Set(true),
            });
            let e = entry(
                seq,
                "GRANT",
                spec.grant_micros,
                balance,
                Some(grant_id),
                None,
                spec.effective_at,
            );
            splits.push(split(tenant_id, &e, grant_id, spec.grant_micros));
            entries.push(e);
        }
        for u in 0..spec.usages {
            seq += 1;
            balance -= spec.usage_micros;
            let feature = spec.features[u as usize % spec.features.len()].to_owned();
            let at = spec.usage_from + spec.usage_step * (u as i32);
            let e = entry(
                seq,
                "USAGE",
                -spec.usage_micros,
                balance,
                None,
                Some(feature),
                at,
            );
            splits.push(split(tenant_id, &e, grant_ids[0], -spec.usage_micros));
            entries.push(e);
        }
        rows.wallets.push(wallet::ActiveModel {
            id: Set(wallet_id),
            tenant_id: Set(tenant_id),
            customer_id: Set(c.id),
            credit_system_id: Set(spec.credit_system_id),
            balance_micros: Set(balance),
            debt_micros: Set(0),
            last_seq: Set(seq),
            allow_overage: Set(false),
            low_balance_threshold_micros: Set(None),
            low_balance_state: Set("OK".to_owned()),
            usage_alert_percents: Set(None),
            usage_alert_level_micros: Set(0),
            usage_alert_granted_micros: Set(None),
            usage_alert_grants: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        });
        rows.grants.extend(grants);
        rows.entries.extend(entries);
        rows.splits.extend(splits);
        out.push(Wallet {
            id: wallet_id,
            customer: c.clone(),
            grant_ids,
        });
        if rows.len() >= BATCH_ROWS {
            rows.flush(db).await?;
        }
    }
    if rows.len() > 0 {
        rows.flush(db).await?;
    }
    Ok(out)
}

fn split(
    tenant_id: Uuid,
    entry: &ledger_entry::ActiveModel,
    grant_id: Uuid,
    amount: i64,
) -> entry_split::ActiveModel {
    let entry_id = match &entry.id {
        Set(id) => *id,
        _ => unreachable!("entries are built with an id"),
    };
    entry_split::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(tenant_id),
        entry_id: Set(entry_id),
        grant_id: Set(grant_id),
        amount_micros: Set(amount),
    }
}

/// Runs the service's ledger audit on up to `sample` wallets spread over
/// `wallet_ids`; the problems found (empty: consistent).
pub async fn verify(
    db: &Db,
    tenant_id: Uuid,
    wallet_ids: &[Uuid],
    sample: usize,
) -> anyhow::Result<(usize, Vec<String>)> {
    if wallet_ids.is_empty() {
        return Ok((0, Vec::new()));
    }
    let step = (wallet_ids.len() / sample.max(1)).max(1);
    let mut checked = 0;
    let mut problems = Vec::new();
    for id in wallet_ids.iter().step_by(step).take(sample) {
        problems.extend(
            service::ledger::audit::verify_wallet(
                db.reader(),
                tenant_id,
                service::ids::WalletId::from_uuid(*id),
            )
            .await?,
        );
        checked += 1;
    }
    Ok((checked, problems))
}
