//! Section 4, `usageBreakdown` over many USAGE entries of one tenant: latency
//! through the API, and the plan of the SQL it runs.

use std::time::Instant;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use sea_orm::{ConnectionTrait, DatabaseBackend, Value};
use serde_json::json;
use service::Db;
use uuid::Uuid;

use crate::{consume::credit_system_id, load::Stats, scratch::stmt, seed, server::Api};

/// USAGE entries per seeded wallet.
pub const ENTRIES_PER_WALLET: u32 = 1_000;
pub const FEATURES: &[&str] = &[
    "chat", "image", "embed", "search", "tts", "stt", "rerank", "moderate",
];

pub const BREAKDOWN: &str = "query($from: DateTime!, $to: DateTime!, $by: UsageGroupBy!) { usageBreakdown(from: $from, to: $to, groupBy: $by, first: 20) { key credits count } }";

pub struct Seeded {
    pub entries: u64,
    pub wallets: usize,
    pub seed_secs: f64,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub audited: usize,
    pub problems: Vec<String>,
}

/// `entries` USAGE entries (1,000 per wallet, 8 features) spread over the
/// 30 days before `now`.
pub async fn seed(
    db: &Db,
    tenant_id: Uuid,
    entries: usize,
    now: DateTime<Utc>,
) -> anyhow::Result<Seeded> {
    let cs = credit_system_id(db, tenant_id, "tokens").await?;
    let started = Instant::now();
    let n = entries.div_ceil(ENTRIES_PER_WALLET as usize);
    let from = now - Duration::days(30);
    let customers = seed::customers(db, tenant_id, "u", n, now).await?;
    let spec = seed::WalletSpec {
        credit_system_id: cs,
        grants: 1,
        grant_micros: 10_000 * 1_000_000,
        effective_at: from - Duration::days(1),
        expires_at: None,
        usages: ENTRIES_PER_WALLET,
        usage_micros: 1_000_000,
        usage_from: from,
        usage_step: Duration::days(30) / ENTRIES_PER_WALLET as i32,
        features: FEATURES,
    };
    let wallets = seed::wallets(db, tenant_id, &customers, &spec, now).await?;
    let seed_secs = started.elapsed().as_secs_f64();
    let ids: Vec<Uuid> = wallets.iter().map(|w| w.id).collect();
    let (audited, problems) = seed::verify(db, tenant_id, &ids, 5).await?;
    if db.backend() == DatabaseBackend::Postgres {
        db.writer().execute_unprepared("ANALYZE").await?;
    }
    Ok(Seeded {
        entries: (n * ENTRIES_PER_WALLET as usize) as u64,
        wallets: n,
        seed_secs,
        from,
        to: now,
        audited,
        problems,
    })
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// `runs` sequential breakdowns (after one warm-up) over `[from, to)`.
pub async fn latency(
    api: &Api,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    group_by: &str,
    runs: usize,
) -> anyhow::Result<(Stats, serde_json::Value)> {
    let vars = json!({ "from": rfc3339(from), "to": rfc3339(to), "by": group_by });
    let answer = api.gql(BREAKDOWN, vars.clone()).await?;
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(runs);
    for _ in 0..runs {
        let sent = Instant::now();
        api.gql(BREAKDOWN, vars.clone()).await?;
        latencies.push(sent.elapsed().as_micros() as u64);
    }
    Ok((
        Stats::from_latencies(latencies, started.elapsed().as_secs_f64()),
        answer,
    ))
}

/// The plan of the statement `service::reports::usage_breakdown` runs for
/// a tenant-wide FEATURE breakdown (mirrored from service/src/reports.rs).
pub async fn explain(
    db: &Db,
    tenant_id: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> anyhow::Result<String> {
    let backend = db.backend();
    let prefix = if backend == DatabaseBackend::Postgres {
        "EXPLAIN (ANALYZE, BUFFERS) "
    } else {
        "EXPLAIN QUERY PLAN "
    };
    let sql = format!(
        "{prefix}SELECT e.feature AS k, CAST(SUM(-e.amount_micros) AS BIGINT) AS credits, CAST(COUNT(*) AS BIGINT) AS n \
         FROM ledger_entry e JOIN wallet w ON w.id = e.wallet_id JOIN customer c ON c.id = w.customer_id \
         WHERE e.tenant_id = $1 AND e.entry_type IN ($2) AND e.created_at >= $3 AND e.created_at < $4 \
         GROUP BY 1 ORDER BY 2 DESC LIMIT $5"
    );
    let values: Vec<Value> = vec![
        tenant_id.into(),
        "USAGE".into(),
        from.into(),
        to.into(),
        20i64.into(),
    ];
    let rows = db
        .reader()
        .query_all_raw(stmt(backend, &sql, values))
        .await?;
    let mut plan = Vec::new();
    for row in rows {
        if backend == DatabaseBackend::Postgres {
            plan.push(row.try_get::<String>("", "QUERY PLAN")?);
        } else {
            plan.push(row.try_get::<String>("", "detail")?);
        }
    }
    Ok(plan.join("\n"))
}
