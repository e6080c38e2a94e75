//! Checks a wallet's ledger against its invariants (DESIGN.md, "Ledger
//! rules"). Tests end every scenario with it; operators can run it too.
//! An empty list means the wallet is consistent.

use std::collections::HashMap;

use entity::{credit_grant, credit_hold, entry_split, hold_split, ledger_entry, wallet};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use super::{EntryType, HoldStatus};

/// Everything wrong with one wallet, in words.
pub async fn verify_wallet(
    conn: &impl ConnectionTrait,
    tenant_id: Uuid,
    wallet_id: crate::ids::WalletId,
) -> Result<Vec<String>, DbErr> {
    let mut problems = Vec::new();
    let Some(wallet) = wallet::Entity::find_by_id(wallet_id.uuid())
        .filter(wallet::Column::TenantId.eq(tenant_id))
        .one(conn)
        .await?
    else {
        return Ok(vec![format!("wallet {wallet_id} not found")]);
    };
    let entries = ledger_entry::Entity::find()
        .filter(ledger_entry::Column::TenantId.eq(tenant_id))
        .filter(ledger_entry::Column::WalletId.eq(wallet_id))
        .order_by_asc(ledger_entry::Column::Seq)
        .all(conn)
        .await?;
    let grants = credit_grant::Entity::find()
        .filter(credit_grant::Column::TenantId.eq(tenant_id))
        .filter(credit_grant::Column::WalletId.eq(wallet_id))
        .all(conn)
        .await?;
    let entry_ids: Vec<Uuid> = entries.iter().map(|e| e.id).collect();
    let mut splits = Vec::new();
    for chunk in entry_ids.chunks(500) {
        splits.extend(
            entry_split::Entity::find()
                .filter(entry_split::Column::TenantId.eq(tenant_id))
                .filter(entry_split::Column::EntryId.is_in(chunk.iter().copied()))
                .all(conn)
                .await?,
        );
    }

    // 1. balance_after is the running sum, seq is 1, 2, 3…
    let mut running = 0i64;
    for (i, e) in entries.iter().enumerate() {
        running += e.amount_micros;
        if e.seq != i as i64 + 1 {
            problems.push(format!(
                "entry {} has seq {}, expected {}",
                e.id,
                e.seq,
                i + 1
            ));
        }
        if e.balance_after_micros != running {
            problems.push(format!(
                "entry {} (seq {}) has balance_after {}, running sum is {running}",
                e.id, e.seq, e.balance_after_micros
            ));
        }
    }
    // 2. the cache equals the ledger and the grants.
    if wallet.balance_micros != running {
        problems.push(format!(
            "wallet balance {} != last balance_after {running}",
            wallet.balance_micros
        ));
    }
    if wallet.last_seq != entries.len() as i64 {
        problems.push(format!(
            "wallet last_seq {} != {} entries",
            wallet.last_seq,
            entries.len()
        ));
    }
    // Scheduled grants (not yet booked) hold their amount outside the
    // ledger until they become spendable.
    let remaining: i64 = grants
        .iter()
        .filter(|g| g.booked)
        .map(|g| g.remaining_micros)
        .sum();
    if remaining - wallet.debt_micros != wallet.balance_micros {
        problems.push(format!(
            "Σ booked grant remaining {remaining} − debt {} != wallet balance {}",
            wallet.debt_micros, wallet.balance_micros
        ));
    }
    if wallet.debt_micros < 0 {
        problems.push(format!("negative debt {}", wallet.debt_micros));
    }
    // 3. every grant's remaining is what its splits put in, less repaid debt.
    let mut by_grant: HashMap<Uuid, i64> = HashMap::new();
    let mut by_entry: HashMap<Uuid, i64> = HashMap::new();
    for s in &splits {
        *by_grant.entry(s.grant_id).or_default() += s.amount_micros;
        *by_entry.entry(s.entry_id).or_default() += s.amount_micros;
    }
    for g in &grants {
        if g.remaining_micros < 0 || g.remaining_micros > g.amount_micros {
            problems.push(format!(
                "grant {} remaining {} outside 0..={}",
                g.id, g.remaining_micros, g.amount_micros
            ));
        }
        if g.voided_at.is_some() && g.remaining_micros != 0 {
            problems.push(format!(
                "voided grant {} still holds {}",
                g.id, g.remaining_micros
            ));
        }
        let from_splits = by_grant.get(&g.id).copied().unwrap_or(0) - g.debt_repaid_micros;
        if !g.booked {
            if from_splits != 0 || g.remaining_micros != g.amount_micros || g.voided_at.is_some() {
                problems.push(format!(
                    "scheduled grant {} holds {} of {} with splits {from_splits}{}",
                    g.id,
                    g.remaining_micros,
                    g.amount_micros,
                    if g.voided_at.is_some() {
                        ", voided"
                    } else {
                        ""
                    }
                ));
            }
        } else if from_splits != g.remaining_micros {
            problems.push(format!(
                "grant {} remaining {} but its splits say {from_splits}",
                g.id, g.remaining_micros
            ));
        }
    }
    // 4. each entry's splits add up to its amount (usage into debt: less).
    for e in &entries {
        let sum = by_entry.get(&e.id).copied().unwrap_or(0);
        let spends = e.entry_type == EntryType::Usage.as_str()
            || e.entry_type == EntryType::Adjustment.as_str();
        let ok = if spends && e.amount_micros < 0 {
            sum <= 0 && sum >= e.amount_micros
        } else {
            sum == e.amount_micros
        };
        if !ok {
            problems.push(format!(
                "entry {} ({}) amount {} but splits sum {sum}",
                e.id, e.entry_type, e.amount_micros
            ));
        }
    }
    // 5. active holds hold exactly their amount.
    let holds = credit_hold::Entity::find()
        .filter(credit_hold::Column::TenantId.eq(tenant_id))
        .filter(credit_hold::Column::WalletId.eq(wallet_id))
        .filter(credit_hold::Column::Status.eq(HoldStatus::Active.as_str()))
        .all(conn)
        .await?;
    for h in holds {
        let held: i64 = hold_split::Entity::find()
            .filter(hold_split::Column::TenantId.eq(tenant_id))
            .filter(hold_split::Column::HoldId.eq(h.id))
            .all(conn)
            .await?
            .iter()
            .map(|s| s.amount_micros)
            .sum();
        if held != h.amount_micros {
            problems.push(format!(
                "hold {} holds {held}, not {}",
                h.id, h.amount_micros
            ));
        }
    }
    Ok(problems)
}

/// The most wallets one [`audit_page`] checks.
pub const AUDIT_PAGE_MAX: u64 = 500;

/// One wallet with something wrong.
#[derive(Debug, Clone)]
pub struct WalletReport {
    pub wallet_id: Uuid,
    pub customer_id: Uuid,
    pub credit_system_id: Uuid,
    pub problems: Vec<String>,
}

/// One page of a tenant's audit: its wallets in id order after `after`.
#[derive(Debug, Clone)]
pub struct AuditPage {
    /// Wallets checked on this page.
    pub checked: u64,
    /// Only the wallets with problems.
    pub reports: Vec<WalletReport>,
    /// The last wallet checked: pass it as `after` for the next page.
    pub last_wallet_id: Option<Uuid>,
    pub has_more: bool,
}

/// Audits up to `limit` (≤ [`AUDIT_PAGE_MAX`]) of a tenant's wallets with
/// [`verify_wallet`]. An operator walks every page (`api audit`, the
/// `ledgerAudit` query); nothing is changed.
pub async fn audit_page(
    conn: &impl ConnectionTrait,
    tenant_id: Uuid,
    after: Option<Uuid>,
    limit: u64,
) -> Result<AuditPage, DbErr> {
    use sea_orm::QuerySelect;
    let limit = limit.clamp(1, AUDIT_PAGE_MAX);
    let mut query = wallet::Entity::find()
        .filter(wallet::Column::TenantId.eq(tenant_id))
        .order_by_asc(wallet::Column::Id)
        .limit(limit + 1);
    if let Some(after) = after {
        query = query.filter(wallet::Column::Id.gt(after));
    }
    let mut wallets = query.all(conn).await?;
    let has_more = wallets.len() as u64 > limit;
    wallets.truncate(limit as usize);
    let mut reports = Vec::new();
    for w in &wallets {
        let problems =
            verify_wallet(conn, tenant_id, crate::ids::WalletId::from_uuid(w.id)).await?;
        if !problems.is_empty() {
            reports.push(WalletReport {
                wallet_id: w.id,
                customer_id: w.customer_id,
                credit_system_id: w.credit_system_id,
                problems,
            });
        }
    }
    Ok(AuditPage {
        checked: wallets.len() as u64,
        reports,
        last_wallet_id: wallets.last().map(|w| w.id),
        has_more,
    })
}

/// Every tenant's id, for an operator's audit of the whole database.
pub async fn tenant_ids(conn: &impl ConnectionTrait) -> Result<Vec<Uuid>, DbErr> {
    Ok(entity::tenant::Entity::find()
        .order_by_asc(entity::tenant::Column::Id)
        .all(conn)
        .await?
        .into_iter()
        .map(|t| t.id)
        .collect())
}
