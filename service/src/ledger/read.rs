//! Batched reads for the API: each function answers for many wallets (or
//! entries, or grants) in a constant number of statements, so a nested
//! query costs the same for 1 customer as for 50. Balances are computed as
//! of `now` from grants and holds, so they are right before any sweep.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use entity::{credit_grant, credit_hold, entry_split, ledger_entry, wallet};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, Value};
use uuid::Uuid;

use super::{
    Balance, Category, Entry, EntryType, Grant, Hold, Split, Wallet, columns::FromColumns,
    live::GrantSql,
};
use crate::{
    Db,
    amount::from_micros,
    credit_systems::CreditSystem,
    db::{columns_as, statement},
    error::known,
    ids::{CreditSystemId, CustomerId, EntryId, GrantId, HoldId, TypedId, WalletId},
    pagination::{Page, PageRequest},
};

/// The highest `lowCreditLimit` among the customer's active plans for this
/// credit system: `block` among `BLOCK` limits (the spending floor), `any`
/// among all (the low-balance threshold when the wallet sets none).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PlanLimits {
    pub block: Option<i64>,
    pub any: Option<i64>,
}

fn list(n: usize) -> String {
    vec!["?"; n].join(", ")
}

fn uuids<T: TypedId>(ids: &[T]) -> impl Iterator<Item = Value> + '_ {
    ids.iter().map(|id| Value::from(id.uuid()))
}

/// The highest `lowCreditLimit` among the customer's subscriptions active
/// at `now` whose plan includes this credit system: among `BLOCK` limits
/// (the spending floor) and among all (the low-balance threshold), in one
/// statement.
pub(crate) async fn plans_low_credit_limits(
    conn: &impl ConnectionTrait,
    tenant_id: Uuid,
    customer_id: Uuid,
    credit_system_id: Uuid,
    now: DateTime<Utc>,
) -> Result<PlanLimits, DbErr> {
    let sql = format!(
        "SELECT {PLAN_LIMITS} {PLAN_LIMITS_FROM} \
         AND s.customer_id = ? AND pc.credit_system_id = ?"
    );
    let values = vec![
        tenant_id.into(),
        now.into(),
        now.into(),
        customer_id.into(),
        credit_system_id.into(),
    ];
    let row = conn
        .query_one_raw(statement(conn.get_database_backend(), &sql, values))
        .await?;
    Ok(match row {
        Some(row) => plan_limits_of_row(&row)?,
        None => PlanLimits::default(),
    })
}

/// What a write to a wallet reads once the wallet is locked, in one
/// statement ([`wallet_state`]).
pub(crate) struct WalletState {
    /// The wallet's grants that hold credits (`remaining > 0`).
    pub grants: Vec<credit_grant::Model>,
    /// Whether an active hold is past its deadline (the book must settle it).
    pub lapsed_holds: bool,
    /// [`plans_low_credit_limits`] of the wallet.
    pub limits: PlanLimits,
}

/// The state a write to a locked wallet needs, in one statement: its grants
/// that hold credits, whether an active hold has lapsed, and the plans'
/// low-credit limits. Call it after the wallet's lock is taken (on
/// PostgreSQL the statement's snapshot then sees every write the lock
/// waited for).
pub(crate) async fn wallet_state(
    conn: &impl ConnectionTrait,
    wallet: &wallet::Model,
    now: DateTime<Utc>,
) -> Result<WalletState, DbErr> {
    let sql = format!(
        "SELECT lim.block_micros, lim.any_micros, hl.lapsed_holds, {grants} \
         FROM (SELECT {PLAN_LIMITS} {PLAN_LIMITS_FROM} \
               AND s.customer_id = ? AND pc.credit_system_id = ?) lim \
         CROSS JOIN (SELECT COUNT(*) AS lapsed_holds FROM credit_hold h \
               WHERE h.tenant_id = ? AND h.wallet_id = ? AND h.status = ? AND h.expires_at <= ?) hl \
         LEFT JOIN credit_grant g \
               ON g.tenant_id = ? AND g.wallet_id = ? AND g.remaining_micros > 0",
        grants = columns_as::<credit_grant::Entity>("g", "g_"),
    );
    let values: Vec<Value> = vec![
        wallet.tenant_id.into(),
        now.into(),
        now.into(),
        wallet.customer_id.into(),
        wallet.credit_system_id.into(),
        wallet.tenant_id.into(),
        wallet.id.into(),
        super::HoldStatus::Active.as_str().into(),
        now.into(),
        wallet.tenant_id.into(),
        wallet.id.into(),
    ];
    let rows = conn
        .query_all_raw(statement(conn.get_database_backend(), &sql, values))
        .await?;
    let mut state = WalletState {
        grants: Vec::with_capacity(rows.len()),
        lapsed_holds: false,
        limits: PlanLimits::default(),
    };
    // The grant's columns follow the three above, read by position
    // (`super::columns`).
    const GRANT_AT: usize = 3;
    for (i, row) in rows.iter().enumerate() {
        if i == 0 {
            state.limits = plan_limits_of_row(row)?;
            state.lapsed_holds = row.try_get::<i64>("", "lapsed_holds")? > 0;
        }
        // The LEFT JOIN's one row of NULLs: no grant holds credits.
        if row.try_get_by_index::<Option<Uuid>>(GRANT_AT)?.is_some() {
            state
                .grants
                .push(credit_grant::Model::from_columns(row, GRANT_AT)?);
        }
    }
    Ok(state)
}

/// The two limits [`plans_low_credit_limits`] reads, as SQL aggregates.
const PLAN_LIMITS: &str = "\
    MAX(CASE WHEN pc.low_credit_action = 'BLOCK' THEN pc.low_credit_limit_micros END) AS block_micros, \
    MAX(pc.low_credit_limit_micros) AS any_micros";

/// A tenant's (`?`) subscriptions active at `now` (`?`, `?`) joined to
/// their plans' credits.
const PLAN_LIMITS_FROM: &str = "\
    FROM subscription s JOIN plan_credit pc ON pc.plan_id = s.plan_id AND pc.tenant_id = s.tenant_id \
    WHERE s.tenant_id = ? AND s.started_at <= ? AND (s.cancel_at IS NULL OR s.cancel_at > ?)";

fn plan_limits_of_row(row: &sea_orm::QueryResult) -> Result<PlanLimits, DbErr> {
    Ok(PlanLimits {
        block: row.try_get::<Option<i64>>("", "block_micros")?,
        any: row.try_get::<Option<i64>>("", "any_micros")?,
    })
}

/// [`plans_low_credit_limits`] for many (tenant, customer) pairs at once
/// (one statement per tenant and 500 customers), by (customer, credit
/// system); absent: no plan sets a limit.
pub(crate) async fn plans_low_credit_limits_of(
    conn: &impl ConnectionTrait,
    customers: &[(Uuid, Uuid)],
    now: DateTime<Utc>,
) -> Result<HashMap<(Uuid, Uuid), PlanLimits>, DbErr> {
    let mut by_tenant: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    for &(tenant_id, customer_id) in customers {
        by_tenant.entry(tenant_id).or_default().push(customer_id);
    }
    let mut out = HashMap::new();
    for (tenant_id, customer_ids) in by_tenant {
        for chunk in customer_ids.chunks(500) {
            let sql = format!(
                "SELECT s.customer_id AS customer_id, pc.credit_system_id AS credit_system_id, \
                   {PLAN_LIMITS} {PLAN_LIMITS_FROM} AND s.customer_id IN ({}) \
                 GROUP BY s.customer_id, pc.credit_system_id",
                list(chunk.len())
            );
            let mut values: Vec<Value> = vec![tenant_id.into(), now.into(), now.into()];
            values.extend(chunk.iter().map(|id| Value::from(*id)));
            let rows = conn
                .query_all_raw(statement(conn.get_database_backend(), &sql, values))
                .await?;
            for row in rows {
                out.insert(
                    (
                        row.try_get::<Uuid>("", "customer_id")?,
                        row.try_get::<Uuid>("", "credit_system_id")?,
                    ),
                    plan_limits_of_row(&row)?,
                );
            }
        }
    }
    Ok(out)
}

/// The wallets of these customers, oldest first per customer.
pub async fn wallets_of_customers(
    db: &Db,
    tenant_id: Uuid,
    customer_ids: &[CustomerId],
) -> Result<HashMap<CustomerId, Vec<Wallet>>, DbErr> {
    let rows = wallet::Entity::find()
        .filter(wallet::Column::TenantId.eq(tenant_id))
        .filter(wallet::Column::CustomerId.is_in(uuids(customer_ids)))
        .order_by_asc(wallet::Column::Id)
        .all(db.reader())
        .await?;
    let mut out: HashMap<CustomerId, Vec<Wallet>> = HashMap::new();
    for w in rows {
        let w = Wallet::from(w);
        out.entry(w.customer_id).or_default().push(w);
    }
    Ok(out)
}

/// [`wallets_of_customers`] with each wallet's credit system, in one
/// statement.
pub async fn wallets_with_credit_systems(
    db: &Db,
    tenant_id: Uuid,
    customer_ids: &[CustomerId],
) -> Result<HashMap<CustomerId, Vec<(Wallet, CreditSystem)>>, DbErr> {
    use entity::credit_system;
    if customer_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let conn = db.reader();
    let sql = format!(
        "SELECT {w}, {cs} FROM wallet w \
         JOIN credit_system cs ON cs.id = w.credit_system_id AND cs.tenant_id = w.tenant_id \
         WHERE w.tenant_id = ? AND w.customer_id IN ({}) ORDER BY w.id",
        list(customer_ids.len()),
        w = columns_as::<wallet::Entity>("w", "w_"),
        cs = columns_as::<credit_system::Entity>("cs", "cs_"),
    );
    let mut values: Vec<Value> = vec![tenant_id.into()];
    values.extend(uuids(customer_ids));
    let mut out: HashMap<CustomerId, Vec<_>> = HashMap::new();
    for row in conn
        .query_all_raw(statement(conn.get_database_backend(), &sql, values))
        .await?
    {
        use sea_orm::FromQueryResult;
        let w = Wallet::from(wallet::Model::from_query_result(&row, "w_")?);
        let cs = credit_system::Model::from_query_result(&row, "cs_")?.try_into()?;
        out.entry(w.customer_id).or_default().push((w, cs));
    }
    Ok(out)
}

/// Balances as of `now` (wallets with nothing get zeros), in one statement.
pub async fn balances(
    db: &Db,
    tenant_id: Uuid,
    wallet_ids: &[WalletId],
    now: DateTime<Utc>,
) -> Result<HashMap<WalletId, Balance>, DbErr> {
    Ok(balances_expiring(db, tenant_id, wallet_ids, now, None)
        .await?
        .into_iter()
        .map(|(id, (balance, _))| (id, balance))
        .collect())
}

/// [`balances`] and, with `until`, each wallet's live credits expiring in
/// `(now, until]` ([`expiring_between`]), in one statement: the wallets'
/// debt, their grants' parts by category, their active holds' parts, and
/// the expiring sum, as rows of one `UNION ALL` told apart by `kind`.
pub async fn balances_expiring(
    db: &Db,
    tenant_id: Uuid,
    wallet_ids: &[WalletId],
    now: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
) -> Result<HashMap<WalletId, (Balance, rust_decimal::Decimal)>, DbErr> {
    if wallet_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let conn = db.reader();
    let backend = conn.get_database_backend();
    let list = list(wallet_ids.len());
    let mut values: Vec<Value> = Vec::new();
    // 'W': the wallet and its debt.
    values.push(tenant_id.into());
    values.extend(uuids(wallet_ids));
    let wallets = format!(
        "SELECT 'W' AS kind, w.id AS wallet_id, CAST(NULL AS TEXT) AS category, \
           CAST(w.debt_micros AS BIGINT) AS a, CAST(0 AS BIGINT) AS b \
         FROM wallet w WHERE w.tenant_id = ? AND w.id IN ({list})"
    );
    // 'G': per grant category, live (a) and scheduled (b) credits.
    let grant = GrantSql::new(None);
    let live = grant.live(now, &mut values);
    let scheduled = grant.scheduled(now, &mut values);
    values.push(tenant_id.into());
    values.extend(uuids(wallet_ids));
    let grants = format!(
        "SELECT 'G', wallet_id, category, \
           CAST(COALESCE(SUM(CASE WHEN {live} THEN remaining_micros ELSE 0 END), 0) AS BIGINT), \
           CAST(COALESCE(SUM(CASE WHEN {scheduled} THEN remaining_micros ELSE 0 END), 0) AS BIGINT) \
         FROM credit_grant WHERE tenant_id = ? AND wallet_id IN ({list}) AND remaining_micros > 0 \
         GROUP BY wallet_id, category"
    );
    // 'H': active holds per category of the grants they reserve: pending
    // (a) while before their deadline; after it, what they return to
    // still-live grants (b) is available again (and counts in the part of
    // those grants' category).
    values.push(now.into());
    values.push(now.into());
    let current = GrantSql::new(Some("g")).current(now, &mut values);
    values.push(tenant_id.into());
    values.extend(uuids(wallet_ids));
    let holds = format!(
        "SELECT 'H', h.wallet_id, g.category, \
           CAST(COALESCE(SUM(CASE WHEN h.expires_at > ? THEN s.amount_micros ELSE 0 END), 0) AS BIGINT), \
           CAST(COALESCE(SUM(CASE WHEN h.expires_at <= ? AND {current} \
             THEN s.amount_micros ELSE 0 END), 0) AS BIGINT) \
         FROM credit_hold h JOIN hold_split s ON s.hold_id = h.id JOIN credit_grant g ON g.id = s.grant_id \
         WHERE h.tenant_id = ? AND h.wallet_id IN ({list}) AND h.status = 'ACTIVE' \
         GROUP BY h.wallet_id, g.category"
    );
    let mut sql = format!("{wallets} UNION ALL {grants} UNION ALL {holds}");
    // 'E': live and `expires_at <= until` (which a grant that never
    // expires is not).
    if let Some(until) = until {
        values.push(tenant_id.into());
        values.extend(uuids(wallet_ids));
        let live = GrantSql::new(None).live(now, &mut values);
        values.push(until.into());
        sql.push_str(&format!(
            " UNION ALL SELECT 'E', wallet_id, CAST(NULL AS TEXT), \
               CAST(SUM(remaining_micros) AS BIGINT), CAST(0 AS BIGINT) FROM credit_grant \
             WHERE tenant_id = ? AND wallet_id IN ({list}) AND {live} AND expires_at <= ? \
             GROUP BY wallet_id"
        ));
    }
    let rows = conn.query_all_raw(statement(backend, &sql, values)).await?;
    let mut parts = Vec::with_capacity(rows.len());
    // The balance and its available micros (live − debt) so far.
    let mut out: HashMap<WalletId, (Balance, i64, rust_decimal::Decimal)> = HashMap::new();
    for row in rows {
        let kind: String = row.try_get("", "kind")?;
        let wallet_id = WalletId::from_uuid(row.try_get("", "wallet_id")?);
        let a: i64 = row.try_get("", "a")?;
        let b: i64 = row.try_get("", "b")?;
        match kind.as_str() {
            "W" => {
                let balance = Balance {
                    debt: from_micros(a),
                    ..Balance::default()
                };
                out.insert(wallet_id, (balance, -a, rust_decimal::Decimal::ZERO));
            }
            "E" => parts.push((kind, wallet_id, None, a, b)),
            _ => {
                let category: String = row.try_get("", "category")?;
                parts.push((kind, wallet_id, Some(category), a, b));
            }
        }
    }
    for (kind, wallet_id, category, a, b) in parts {
        let Some((balance, available, expiring)) = out.get_mut(&wallet_id) else {
            continue; // not a wallet of the tenant
        };
        let category = match category {
            Some(stored) => Some(grant_category(conn, tenant_id, wallet_id, &stored).await?),
            None => None,
        };
        match (kind.as_str(), category) {
            ("G", Some(category)) => {
                *balance.part_mut(category) += from_micros(a);
                balance.scheduled += from_micros(b);
                *available += a;
            }
            ("H", Some(category)) => {
                balance.pending += from_micros(a);
                *balance.part_mut(category) += from_micros(b);
                *available += b;
            }
            _ => *expiring = from_micros(a),
        }
    }
    Ok(out
        .into_iter()
        .map(|(id, (mut balance, available, expiring))| {
            balance.available = from_micros(available);
            balance.total = balance.available + balance.pending;
            (id, (balance, expiring))
        })
        .collect())
}

/// A grant category as stored; an unknown one fails, naming a grant of
/// the wallet that holds it.
async fn grant_category(
    conn: &impl ConnectionTrait,
    tenant_id: Uuid,
    wallet_id: WalletId,
    stored: &str,
) -> Result<Category, DbErr> {
    if let Some(category) = Category::parse(stored) {
        return Ok(category);
    }
    let grant = credit_grant::Entity::find()
        .filter(credit_grant::Column::TenantId.eq(tenant_id))
        .filter(credit_grant::Column::WalletId.eq(wallet_id))
        .filter(credit_grant::Column::Category.eq(stored))
        .one(conn)
        .await?;
    let id = grant.map_or_else(
        || format!("(a grant of wallet {wallet_id})"),
        |g| g.id.to_string(),
    );
    known(None, "credit_grant", "category", id, stored)
}

/// Live credits expiring in `(now, until]`, per wallet.
pub async fn expiring_between(
    db: &Db,
    tenant_id: Uuid,
    wallet_ids: &[WalletId],
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<HashMap<WalletId, rust_decimal::Decimal>, DbErr> {
    if wallet_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let conn = db.reader();
    let mut values: Vec<Value> = vec![tenant_id.into()];
    values.extend(uuids(wallet_ids));
    // Live and `expires_at <= until` (which a grant that never expires is not).
    let live = GrantSql::new(None).live(now, &mut values);
    values.push(until.into());
    let sql = format!(
        "SELECT wallet_id, CAST(SUM(remaining_micros) AS BIGINT) AS amount FROM credit_grant \
         WHERE tenant_id = ? AND wallet_id IN ({}) AND {live} AND expires_at <= ? \
         GROUP BY wallet_id",
        list(wallet_ids.len())
    );
    let mut out = HashMap::new();
    for row in conn
        .query_all_raw(statement(conn.get_database_backend(), &sql, values))
        .await?
    {
        out.insert(
            WalletId::from_uuid(row.try_get("", "wallet_id")?),
            from_micros(row.try_get("", "amount")?),
        );
    }
    Ok(out)
}

/// The booked balance (last `balance_after`) at or before `at`, per wallet.
pub async fn balances_at(
    db: &Db,
    tenant_id: Uuid,
    wallet_ids: &[WalletId],
    at: DateTime<Utc>,
) -> Result<HashMap<WalletId, rust_decimal::Decimal>, DbErr> {
    if wallet_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let conn = db.reader();
    let sql = format!(
        "SELECT wallet_id, balance_after_micros FROM ( \
           SELECT wallet_id, balance_after_micros, \
             ROW_NUMBER() OVER (PARTITION BY wallet_id ORDER BY seq DESC) AS rn \
           FROM ledger_entry WHERE tenant_id = ? AND wallet_id IN ({}) AND created_at <= ? \
         ) t WHERE rn = 1",
        list(wallet_ids.len())
    );
    let mut values: Vec<Value> = vec![tenant_id.into()];
    values.extend(uuids(wallet_ids));
    values.push(at.into());
    let mut out: HashMap<WalletId, rust_decimal::Decimal> = wallet_ids
        .iter()
        .map(|id| (*id, rust_decimal::Decimal::ZERO))
        .collect();
    for row in conn
        .query_all_raw(statement(conn.get_database_backend(), &sql, values))
        .await?
    {
        out.insert(
            WalletId::from_uuid(row.try_get("", "wallet_id")?),
            from_micros(row.try_get("", "balance_after_micros")?),
        );
    }
    Ok(out)
}

/// Which grants a list shows.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct GrantFilter {
    /// `Some(true)`: only spendable now; `Some(false)`: only not.
    pub live: Option<bool>,
    /// Only grants of these categories (e.g. `PURCHASED` for a purchase
    /// history); an empty list shows none.
    pub categories: Option<Vec<super::Category>>,
}

/// A page of grants per wallet, newest first.
pub async fn grant_pages(
    db: &Db,
    tenant_id: Uuid,
    wallet_ids: &[WalletId],
    filter: &GrantFilter,
    page: PageRequest,
    now: DateTime<Utc>,
) -> Result<HashMap<WalletId, Page<Grant>>, DbErr> {
    if wallet_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let conn = db.reader();
    let mut values: Vec<Value> = vec![tenant_id.into()];
    values.extend(uuids(wallet_ids));
    let mut conditions = String::new();
    if let Some(wanted) = filter.live {
        let live = GrantSql::new(None).live(now, &mut values);
        let not = if wanted { "" } else { "NOT " };
        conditions.push_str(&format!(" AND {not}{live}"));
    }
    if let Some(categories) = &filter.categories {
        if categories.is_empty() {
            return Ok(wallet_ids
                .iter()
                .map(|id| (*id, page.finish(Vec::new())))
                .collect());
        }
        conditions.push_str(&format!(" AND category IN ({})", list(categories.len())));
        values.extend(categories.iter().map(|c| Value::from(c.as_str())));
    }
    if let Some(after) = page.after {
        conditions.push_str(" AND id < ?");
        values.push(after.into());
    }
    values.push((page.fetch_limit() as i64).into());
    let sql = format!(
        "SELECT * FROM ( \
           SELECT credit_grant.*, ROW_NUMBER() OVER (PARTITION BY wallet_id ORDER BY id DESC) AS rn \
           FROM credit_grant WHERE tenant_id = ? AND wallet_id IN ({}){conditions} \
         ) t WHERE rn <= ? ORDER BY wallet_id, id DESC",
        list(wallet_ids.len())
    );
    let rows = credit_grant::Entity::find()
        .from_raw_sql(statement(conn.get_database_backend(), &sql, values))
        .all(conn)
        .await?;
    let mut grouped: HashMap<WalletId, Vec<Grant>> = HashMap::new();
    for g in rows {
        let g = Grant::try_from(g)?;
        grouped.entry(g.wallet_id).or_default().push(g);
    }
    Ok(wallet_ids
        .iter()
        .map(|id| (*id, page.finish(grouped.remove(id).unwrap_or_default())))
        .collect())
}

/// Which entries a list shows.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct EntryFilter {
    pub types: Option<Vec<EntryType>>,
    /// `[from, to)` on `created_at`.
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub feature: Option<String>,
    pub event_ref: Option<String>,
    pub user_ref: Option<String>,
}

/// A page of entries per wallet, newest first (highest `seq`).
pub async fn entry_pages(
    db: &Db,
    tenant_id: Uuid,
    wallet_ids: &[WalletId],
    filter: &EntryFilter,
    page: PageRequest,
) -> Result<HashMap<WalletId, Page<Entry>>, DbErr> {
    let Some((sql, values)) = entry_pages_sql(tenant_id, wallet_ids, filter, page) else {
        return Ok(wallet_ids
            .iter()
            .map(|id| (*id, page.finish(Vec::new())))
            .collect());
    };
    let conn = db.reader();
    let rows = ledger_entry::Entity::find()
        .from_raw_sql(statement(conn.get_database_backend(), &sql, values))
        .all(conn)
        .await?;
    let mut grouped: HashMap<WalletId, Vec<Entry>> = HashMap::new();
    for e in rows {
        let e = Entry::try_from(e)?;
        grouped.entry(e.wallet_id).or_default().push(e);
    }
    Ok(wallet_ids
        .iter()
        .map(|id| (*id, page.finish(grouped.remove(id).unwrap_or_default())))
        .collect())
}

/// An entry with its splits, each with the grant it drew from or filled.
pub type EntryWithSplits = (Entry, Vec<(Split, Grant)>);

/// [`entry_pages`] with each entry's splits (in the order they were drawn)
/// and their grants, in one statement: the page joined to its splits and
/// their grants, one row per split (one with no split for an entry
/// without).
pub async fn entry_pages_with_splits(
    db: &Db,
    tenant_id: Uuid,
    wallet_ids: &[WalletId],
    filter: &EntryFilter,
    page: PageRequest,
) -> Result<HashMap<WalletId, Page<EntryWithSplits>>, DbErr> {
    let Some((pages, mut values)) = entry_pages_sql(tenant_id, wallet_ids, filter, page) else {
        return Ok(wallet_ids
            .iter()
            .map(|id| (*id, page.finish(Vec::new())))
            .collect());
    };
    let sql = format!(
        "SELECT {e}, {s}, {g} FROM ({pages}) e \
         LEFT JOIN entry_split s ON s.entry_id = e.id AND s.tenant_id = ? \
         LEFT JOIN credit_grant g ON g.id = s.grant_id AND g.tenant_id = ? \
         ORDER BY e.wallet_id, e.seq DESC, s.id",
        e = columns_as::<ledger_entry::Entity>("e", "e_"),
        s = columns_as::<entry_split::Entity>("s", "s_"),
        g = columns_as::<credit_grant::Entity>("g", "g_"),
    );
    values.push(tenant_id.into());
    values.push(tenant_id.into());
    let conn = db.reader();
    let rows = conn
        .query_all_raw(statement(conn.get_database_backend(), &sql, values))
        .await?;
    // Read by position (`super::columns`): the entry's columns, the
    // split's, the grant's.
    const SPLIT_AT: usize = ledger_entry::Model::COLUMNS;
    const GRANT_AT: usize = SPLIT_AT + entry_split::Model::COLUMNS;
    let mut grouped: HashMap<WalletId, Vec<EntryWithSplits>> = HashMap::new();
    for row in rows {
        let entry_id = EntryId::from_uuid(row.try_get_by_index(0)?);
        let wallet_id = WalletId::from_uuid(row.try_get_by_index(2)?);
        let entries = grouped.entry(wallet_id).or_default();
        if entries.last().is_none_or(|(e, _)| e.id != entry_id) {
            let entry = ledger_entry::Model::from_columns(&row, 0)?.try_into()?;
            entries.push((entry, Vec::new()));
        }
        // The LEFT JOIN's NULLs: an entry without splits.
        if row.try_get_by_index::<Option<Uuid>>(SPLIT_AT)?.is_some()
            && let Some((_, splits)) = entries.last_mut()
        {
            let split = entry_split::Model::from_columns(&row, SPLIT_AT)?.into();
            let grant = credit_grant::Model::from_columns(&row, GRANT_AT)?.try_into()?;
            splits.push((split, grant));
        }
    }
    Ok(wallet_ids
        .iter()
        .map(|id| (*id, page.finish(grouped.remove(id).unwrap_or_default())))
        .collect())
}

/// The statement of [`entry_pages`] and its values; `None`: the filter
/// admits no entry (an empty `types` list).
fn entry_pages_sql(
    tenant_id: Uuid,
    wallet_ids: &[WalletId],
    filter: &EntryFilter,
    page: PageRequest,
) -> Option<(String, Vec<Value>)> {
    if wallet_ids.is_empty() {
        return None;
    }
    let mut values: Vec<Value> = vec![tenant_id.into()];
    values.extend(uuids(wallet_ids));
    let mut conditions = String::new();
    if let Some(types) = &filter.types {
        if types.is_empty() {
            return None;
        }
        conditions.push_str(&format!(" AND entry_type IN ({})", list(types.len())));
        values.extend(types.iter().map(|t| Value::from(t.as_str())));
    }
    if let Some(from) = filter.from {
        conditions.push_str(" AND created_at >= ?");
        values.push(from.into());
    }
    if let Some(to) = filter.to {
        conditions.push_str(" AND created_at < ?");
        values.push(to.into());
    }
    for (col, value) in [
        ("feature", &filter.feature),
        ("event_ref", &filter.event_ref),
        ("user_ref", &filter.user_ref),
    ] {
        if let Some(v) = value {
            conditions.push_str(&format!(" AND {col} = ?"));
            values.push(v.as_str().into());
        }
    }
    if let Some(after) = page.after {
        conditions.push_str(
            " AND seq < (SELECT c.seq FROM ledger_entry c WHERE c.tenant_id = ? AND c.id = ?)",
        );
        values.push(tenant_id.into());
        values.push(after.into());
    }
    values.push((page.fetch_limit() as i64).into());
    let sql = format!(
        "SELECT * FROM ( \
           SELECT ledger_entry.*, ROW_NUMBER() OVER (PARTITION BY wallet_id ORDER BY seq DESC) AS rn \
           FROM ledger_entry WHERE tenant_id = ? AND wallet_id IN ({}){conditions} \
         ) t WHERE rn <= ? ORDER BY wallet_id, seq DESC",
        list(wallet_ids.len())
    );
    Some((sql, values))
}

/// The splits of these entries, in the order they were drawn.
pub async fn splits_of_entries(
    db: &Db,
    tenant_id: Uuid,
    entry_ids: &[EntryId],
) -> Result<HashMap<EntryId, Vec<Split>>, DbErr> {
    let rows = entry_split::Entity::find()
        .filter(entry_split::Column::TenantId.eq(tenant_id))
        .filter(entry_split::Column::EntryId.is_in(uuids(entry_ids)))
        .order_by_asc(entry_split::Column::Id)
        .all(db.reader())
        .await?;
    let mut out: HashMap<EntryId, Vec<Split>> = HashMap::new();
    for s in rows {
        out.entry(EntryId::from_uuid(s.entry_id))
            .or_default()
            .push(s.into());
    }
    Ok(out)
}

/// The customer on the other side of each of these transfer entries: for
/// a TRANSFER_OUT the customer the credits went to, for a TRANSFER_IN the
/// one they came from (an allocation's IN entry names its OUT entry in
/// `refund_of_entry_id`). One statement; other entries have none.
pub async fn counterparties(
    db: &Db,
    tenant_id: Uuid,
    entry_ids: &[EntryId],
) -> Result<HashMap<EntryId, CustomerId>, DbErr> {
    if entry_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let conn = db.reader();
    let n = entry_ids.len();
    let sql = format!(
        "SELECT e.id AS entry_id, w.customer_id AS customer_id \
         FROM ledger_entry e JOIN ledger_entry o ON o.id = e.refund_of_entry_id AND o.tenant_id = e.tenant_id \
           JOIN wallet w ON w.id = o.wallet_id \
         WHERE e.tenant_id = ? AND e.entry_type = 'TRANSFER_IN' AND e.id IN ({list}) \
         UNION ALL \
         SELECT i.refund_of_entry_id AS entry_id, w.customer_id AS customer_id \
         FROM ledger_entry i JOIN wallet w ON w.id = i.wallet_id \
         WHERE i.tenant_id = ? AND i.entry_type = 'TRANSFER_IN' AND i.refund_of_entry_id IN ({list})",
        list = list(n)
    );
    let mut values: Vec<Value> = vec![tenant_id.into()];
    values.extend(uuids(entry_ids));
    values.push(tenant_id.into());
    values.extend(uuids(entry_ids));
    let mut out = HashMap::new();
    for row in conn
        .query_all_raw(statement(conn.get_database_backend(), &sql, values))
        .await?
    {
        out.insert(
            EntryId::from_uuid(row.try_get("", "entry_id")?),
            CustomerId::from_uuid(row.try_get("", "customer_id")?),
        );
    }
    Ok(out)
}

pub async fn grants_by_ids(db: &Db, tenant_id: Uuid, ids: &[GrantId]) -> Result<Vec<Grant>, DbErr> {
    credit_grant::Entity::find()
        .filter(credit_grant::Column::TenantId.eq(tenant_id))
        .filter(credit_grant::Column::Id.is_in(uuids(ids)))
        .all(db.reader())
        .await?
        .into_iter()
        .map(Grant::try_from)
        .collect()
}

pub async fn wallets_by_ids(
    db: &Db,
    tenant_id: Uuid,
    ids: &[WalletId],
) -> Result<Vec<Wallet>, DbErr> {
    Ok(wallet::Entity::find()
        .filter(wallet::Column::TenantId.eq(tenant_id))
        .filter(wallet::Column::Id.is_in(uuids(ids)))
        .all(db.reader())
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}

pub async fn entries_by_ids(
    db: &Db,
    tenant_id: Uuid,
    ids: &[EntryId],
) -> Result<Vec<Entry>, DbErr> {
    ledger_entry::Entity::find()
        .filter(ledger_entry::Column::TenantId.eq(tenant_id))
        .filter(ledger_entry::Column::Id.is_in(uuids(ids)))
        .all(db.reader())
        .await?
        .into_iter()
        .map(Entry::try_from)
        .collect()
}

pub async fn holds_by_ids(db: &Db, tenant_id: Uuid, ids: &[HoldId]) -> Result<Vec<Hold>, DbErr> {
    credit_hold::Entity::find()
        .filter(credit_hold::Column::TenantId.eq(tenant_id))
        .filter(credit_hold::Column::Id.is_in(uuids(ids)))
        .all(db.reader())
        .await?
        .into_iter()
        .map(Hold::try_from)
        .collect()
}

/// A wallet of a customer in a credit system, if it exists.
pub async fn wallet_of(
    db: &Db,
    tenant_id: Uuid,
    customer_id: CustomerId,
    credit_system_id: CreditSystemId,
) -> Result<Option<Wallet>, DbErr> {
    Ok(wallet::Entity::find()
        .filter(wallet::Column::TenantId.eq(tenant_id))
        .filter(wallet::Column::CustomerId.eq(customer_id))
        .filter(wallet::Column::CreditSystemId.eq(credit_system_id))
        .one(db.reader())
        .await?
        .map(Into::into))
}
