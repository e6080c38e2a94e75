//! Section 2, nested read: the one-round-trip customer query (3 wallets × 20
//! grants × 20 entries) against `{ __typename }` on the same binary.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use serde_json::json;
use service::Db;

use crate::{
    consume::{credit_system_id, tenant_id},
    load::{self, Stats},
    seed,
    server::Api,
};

/// The walk-through's dashboard query (README, step 5), 20 of each.
pub const NESTED: &str = "query($c: String!) { customer(externalId: $c) { name wallets { \
    creditSystem { key name unitSingular unitPlural } \
    balance { available pending total included purchased promotional expiringSoon(days: 30) } \
    grants(first: 20, filter: {live: true}) { edges { node { id category amount remaining expiresAt priority reason } } } \
    entries(first: 20, filter: {types: [GRANT, USAGE]}) { \
      edges { node { id type amount balanceAfter createdAt feature eventRef userRef splits { grant { id } amount } } } \
      pageInfo { hasNextPage endCursor } } } } }";

pub const TRIVIAL: &str = "{ __typename }";

/// The customer with 3 wallets × 20 grants × 20 entries.
pub const BIG: &str = "nested-big";
/// A customer with 1 wallet × 1 grant × 1 entry (statements must not differ).
pub const SMALL: &str = "nested-small";

/// Three credit systems (API) and the two customers (bulk).
pub async fn setup(api: &Api, db: &Db) -> anyhow::Result<Vec<uuid::Uuid>> {
    api.gql(
        r#"mutation {
  a: createCreditSystem(input: {key: "nested-a", name: "Nested A", unitSingular: "a", unitPlural: "as", precision: 2}) { creditSystem { id } }
  b: createCreditSystem(input: {key: "nested-b", name: "Nested B", unitSingular: "b", unitPlural: "bs", precision: 0}) { creditSystem { id } }
  c: createCreditSystem(input: {key: "nested-c", name: "Nested C", unitSingular: "c", unitPlural: "cs", precision: 4}) { creditSystem { id } }
}"#,
        json!({}),
    )
    .await?;
    let tenant = tenant_id(db).await?;
    let now = Utc::now();
    let big = seed::named_customers(db, tenant, &[BIG.to_owned()], now).await?;
    let small = seed::named_customers(db, tenant, &[SMALL.to_owned()], now).await?;
    let spec = |cs, grants| seed::WalletSpec {
        credit_system_id: cs,
        grants,
        grant_micros: 100_000_000,
        effective_at: now - chrono::Duration::days(1),
        expires_at: Some(now + chrono::Duration::days(365)),
        usages: 0,
        usage_micros: 0,
        usage_from: now,
        usage_step: chrono::Duration::zero(),
        features: &["x"],
    };
    let mut wallets = Vec::new();
    for key in ["nested-a", "nested-b", "nested-c"] {
        let cs = credit_system_id(db, tenant, key).await?;
        wallets.extend(seed::wallets(db, tenant, &big, &spec(cs, 20), now).await?);
    }
    let cs = credit_system_id(db, tenant, "nested-a").await?;
    wallets.extend(seed::wallets(db, tenant, &small, &spec(cs, 1), now).await?);
    if db.backend() == sea_orm::DatabaseBackend::Postgres {
        // Fresh statistics after the bulk seed and the consume runs, as
        // autovacuum would have them in production.
        use sea_orm::ConnectionTrait;
        db.writer().execute_unprepared("ANALYZE").await?;
    }
    Ok(wallets.into_iter().map(|w| w.id).collect())
}

pub fn body(query: &'static str, customer: &'static str) -> load::Body {
    let body = json!({ "query": query, "variables": { "c": customer } }).to_string();
    Arc::new(move |_, _| body.clone())
}

/// Closed-loop maximum of a query.
pub async fn max(api: &Api, query: &'static str, clients: usize, duration: Duration) -> Stats {
    load::run(api, clients, duration, None, body(query, BIG)).await
}

/// The nested query paced at `rate` requests per second.
pub async fn paced(api: &Api, clients: usize, duration: Duration, rate: f64) -> Stats {
    load::run(api, clients, duration, Some(rate), body(NESTED, BIG)).await
}

/// Resolved fields of one answer: every key of every JSON object under
/// `data`, recursively (each item of a list counts its own keys; `data`
/// itself is not a field, its keys are; a `null` value counts as its key).
/// The nested query at 3×20×20 answers ~1,100 of them.
pub fn fields(data: &serde_json::Value) -> u64 {
    use serde_json::Value;
    match data {
        Value::Object(map) => map.values().map(|v| 1 + fields(v)).sum(),
        Value::Array(items) => items.iter().map(fields).sum(),
        _ => 0,
    }
}

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`;
/// 100, Linux's value on every common architecture, if that fails).
fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// User + system CPU time of process `pid` so far (its threads included),
/// from `/proc/<pid>/stat` fields 14 and 15.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count from its ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace().skip(11); // field 3 is the first
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    let ticks = clock_ticks();
    Some(Duration::from_micros((utime + stime) * 1_000_000 / ticks))
}

/// The API process's CPU per resolved field over a load run.
#[derive(Debug, Clone, Copy)]
pub struct CpuPerField {
    pub cpu: Duration,
    pub requests: u64,
    pub fields: u64,
}

impl CpuPerField {
    /// Process CPU time ÷ requests ÷ fields per request, in µs.
    pub fn micros_per_field(&self) -> f64 {
        let per_request = self.cpu.as_secs_f64() / self.requests.max(1) as f64;
        per_request * 1e6 / self.fields.max(1) as f64
    }

    pub fn summary(&self) -> String {
        format!(
            "{:.2} µs of API CPU per field ({:.2} s CPU ÷ {} requests ÷ {} fields; {:.0} µs per request)",
            self.micros_per_field(),
            self.cpu.as_secs_f64(),
            self.requests,
            self.fields,
            self.cpu.as_secs_f64() * 1e6 / self.requests.max(1) as f64,
        )
    }
}

/// [`max`] of [`NESTED`] with the API child's CPU time across the run
/// (`None` beside the stats when the API runs in this process).
pub async fn max_measured(
    api: &Api,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<(Stats, Option<CpuPerField>)> {
    let data = api.gql(NESTED, json!({ "c": BIG })).await?;
    let fields = fields(&data);
    let before = api.cpu_time();
    let stats = max(api, NESTED, clients, duration).await;
    let after = api.cpu_time();
    let cpu = match (before, after) {
        (Some(b), Some(a)) => Some(CpuPerField {
            cpu: a.saturating_sub(b),
            requests: stats.requests + stats.errors,
            fields,
        }),
        _ => None,
    };
    Ok((stats, cpu))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_count_every_key_of_every_object() {
        let data = json!({ "customer": { "name": "a", "wallets": [
            { "balance": { "total": "1" }, "grants": { "edges": [] } },
            { "balance": null }
        ] } });
        // customer, name, wallets; balance, total, grants, edges; balance.
        assert_eq!(fields(&data), 8);
    }

    #[test]
    fn this_process_has_used_some_cpu() {
        let me = process_cpu(std::process::id()).expect("/proc/self/stat");
        // Spin until the next tick is seen (a broken reading never sees it).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut now = me;
        while now == me && std::time::Instant::now() < deadline {
            for i in 0..100_000u64 {
                std::hint::black_box(i.wrapping_mul(i));
            }
            now = process_cpu(std::process::id()).unwrap();
        }
        assert!(now > me, "CPU time did not move in 10 s of spinning");
    }
}
