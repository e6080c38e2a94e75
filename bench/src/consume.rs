//! Section 1, consume throughput: `consumeCredits` over HTTP + GraphQL against the
//! raw SQL of the same work (lock the wallet row, update the grant, update
//! the wallet, insert the entry, its split and the idempotency record).

use std::{
    path::Path,
    sync::{Arc, atomic::AtomicBool},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, QueryFilter, Value};
use serde_json::json;
use service::Db;
use uuid::Uuid;

use crate::{
    load::{self, Stats},
    scratch::stmt,
    seed,
    server::Api,
};

/// Credits per consume.
const AMOUNT_MICROS: i64 = 1_000_000;
/// Wallets the hot runs spread over.
pub const HOT_WALLETS: usize = 10;

/// The wallets consumes go to: (tenant, wallet, grant, customer external id).
pub struct Targets {
    pub tenant_id: Uuid,
    pub wallets: Vec<seed::Wallet>,
}

pub const CONSUME: &str = "mutation($c: String!, $k: String!) { consumeCredits(input: {customer: {externalId: $c}, creditSystem: {key: \"bench\"}, amount: \"1\", idempotencyKey: $k}) { entry { balanceAfter } } }";

/// The tenant's id (the API bootstrapped exactly one).
pub async fn tenant_id(db: &Db) -> anyhow::Result<Uuid> {
    Ok(entity::tenant::Entity::find()
        .one(db.reader())
        .await?
        .context("no tenant")?
        .id)
}

pub async fn credit_system_id(db: &Db, tenant_id: Uuid, key: &str) -> anyhow::Result<Uuid> {
    Ok(entity::credit_system::Entity::find()
        .filter(entity::credit_system::Column::TenantId.eq(tenant_id))
        .filter(entity::credit_system::Column::Key.eq(key))
        .one(db.reader())
        .await?
        .with_context(|| format!("no credit system {key}"))?
        .id)
}

/// A credit system `bench` (through the API) and `n` customers with one
/// wallet each holding one large never-expiring grant (bulk).
pub async fn setup(api: &Api, db: &Db, n: usize) -> anyhow::Result<Targets> {
    api.gql(
        r#"mutation { createCreditSystem(input: {key: "bench", name: "Bench credits", unitSingular: "credit", unitPlural: "credits", precision: 2}) { creditSystem { id } } }"#,
        json!({}),
    )
    .await?;
    let tenant_id = tenant_id(db).await?;
    let cs = credit_system_id(db, tenant_id, "bench").await?;
    let now = Utc::now();
    let customers = seed::customers(db, tenant_id, "c", n, now).await?;
    let spec = seed::WalletSpec {
        credit_system_id: cs,
        grants: 1,
        grant_micros: 1_000_000_000 * AMOUNT_MICROS,
        effective_at: now - chrono::Duration::days(1),
        expires_at: None,
        usages: 0,
        usage_micros: 0,
        usage_from: now,
        usage_step: chrono::Duration::zero(),
        features: &["x"],
    };
    let wallets = seed::wallets(db, tenant_id, &customers, &spec, now).await?;
    Ok(Targets { tenant_id, wallets })
}

/// `clients` concurrent clients consuming 1 credit at a time from the
/// first `over` wallets.
pub async fn api_run(
    api: &Api,
    targets: &Targets,
    clients: usize,
    over: usize,
    duration: Duration,
    label: &str,
) -> Stats {
    let never = Arc::new(AtomicBool::new(false));
    api_run_until(api, targets, clients, over, duration, label, never).await
}

/// [`api_run`], ending early once `stop` is set.
pub async fn api_run_until(
    api: &Api,
    targets: &Targets,
    clients: usize,
    over: usize,
    duration: Duration,
    label: &str,
    stop: Arc<AtomicBool>,
) -> Stats {
    let ids: Arc<Vec<String>> = Arc::new(
        targets.wallets[..over.min(targets.wallets.len())]
            .iter()
            .map(|w| w.customer.external_id.clone())
            .collect(),
    );
    let label = label.to_owned();
    let body: load::Body = Arc::new(move |client, i| {
        let c = &ids[rand::random_range(0..ids.len())];
        json!({
            "query": CONSUME,
            "variables": { "c": c, "k": format!("{label}-{client}-{i}") },
        })
        .to_string()
    });
    load::run_until(api, clients, duration, None, body, stop).await
}

/// The same work as raw SQL through SeaORM's sqlx pools: `clients` tasks
/// (on SQLite the one writer connection serializes them: a tight loop).
pub async fn raw_run(
    db: &Db,
    targets: &Targets,
    clients: usize,
    over: usize,
    duration: Duration,
) -> anyhow::Result<Stats> {
    let picks: Arc<Vec<(Uuid, Uuid)>> = Arc::new(
        targets.wallets[..over.min(targets.wallets.len())]
            .iter()
            .map(|w| (w.id, w.grant_ids[0]))
            .collect(),
    );
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let db = db.clone();
        let picks = picks.clone();
        let tenant_id = targets.tenant_id;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let (wallet_id, grant_id) = picks[rand::random_range(0..picks.len())];
                let sent = Instant::now();
                raw_consume(&db, tenant_id, wallet_id, grant_id).await?;
                latencies.push(sent.elapsed().as_micros() as u64);
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(Stats::from_latencies(all, start.elapsed().as_secs_f64()))
}

async fn raw_consume(
    db: &Db,
    tenant_id: Uuid,
    wallet_id: Uuid,
    grant_id: Uuid,
) -> anyhow::Result<()> {
    let backend = db.backend();
    let now: DateTime<Utc> = service::clock::truncate_micros(Utc::now());
    let txn = db.begin_write().await?;
    let lock = if backend == DatabaseBackend::Postgres {
        " FOR UPDATE"
    } else {
        "" // BEGIN IMMEDIATE took the write lock
    };
    txn.query_one_raw(stmt(
        backend,
        &format!(
            "SELECT last_seq, balance_micros FROM wallet WHERE tenant_id = $1 AND id = $2{lock}"
        ),
        vec![tenant_id.into(), wallet_id.into()],
    ))
    .await?
    .context("wallet")?;
    txn.execute_raw(stmt(
        backend,
        "UPDATE credit_grant SET remaining_micros = remaining_micros - $1 WHERE tenant_id = $2 AND id = $3",
        vec![AMOUNT_MICROS.into(), tenant_id.into(), grant_id.into()],
    ))
    .await?;
    let row = txn
        .query_one_raw(stmt(
            backend,
            "UPDATE wallet SET balance_micros = balance_micros - $1, last_seq = last_seq + 1, updated_at = $2 \
             WHERE tenant_id = $3 AND id = $4 RETURNING last_seq, balance_micros",
            vec![AMOUNT_MICROS.into(), now.into(), tenant_id.into(), wallet_id.into()],
        ))
        .await?
        .context("wallet update")?;
    let seq: i64 = row.try_get("", "last_seq")?;
    let balance: i64 = row.try_get("", "balance_micros")?;
    let entry_id = Uuid::now_v7();
    let key = format!("raw-{entry_id}");
    txn.execute_raw(stmt(
        backend,
        "INSERT INTO ledger_entry (id, tenant_id, wallet_id, seq, entry_type, amount_micros, balance_after_micros, idempotency_key, created_at) \
         VALUES ($1, $2, $3, $4, 'USAGE', $5, $6, $7, $8)",
        vec![
            entry_id.into(),
            tenant_id.into(),
            wallet_id.into(),
            seq.into(),
            (-AMOUNT_MICROS).into(),
            balance.into(),
            key.clone().into(),
            now.into(),
        ],
    ))
    .await?;
    txn.execute_raw(stmt(
        backend,
        "INSERT INTO entry_split (id, tenant_id, entry_id, grant_id, amount_micros) VALUES ($1, $2, $3, $4, $5)",
        vec![
            Uuid::now_v7().into(),
            tenant_id.into(),
            entry_id.into(),
            grant_id.into(),
            (-AMOUNT_MICROS).into(),
        ],
    ))
    .await?;
    txn.execute_raw(stmt(
        backend,
        "INSERT INTO idempotency_record (tenant_id, key, operation, request_hash, result_id, created_at) VALUES ($1, $2, 'consume', 'raw', $3, $4)",
        vec![tenant_id.into(), key.into(), entry_id.into(), now.into()],
    ))
    .await?;
    txn.commit().await?;
    Ok(())
}

/// The pgbench script: one consume-shaped transaction on the real tables.
pub const PGBENCH_SCRIPT: &str = r#"\set n random(1, :wallets)
BEGIN;
SELECT b.tenant_id AS t, b.wallet_id AS w, b.grant_id AS g FROM bench_wallet b JOIN wallet x ON x.id = b.wallet_id WHERE b.n = :n FOR UPDATE OF x \gset
UPDATE credit_grant SET remaining_micros = remaining_micros - 1000000 WHERE tenant_id = :t AND id = :g;
UPDATE wallet SET balance_micros = balance_micros - 1000000, last_seq = last_seq + 1, updated_at = now() WHERE tenant_id = :t AND id = :w RETURNING last_seq AS seq, balance_micros AS bal \gset
INSERT INTO ledger_entry (id, tenant_id, wallet_id, seq, entry_type, amount_micros, balance_after_micros, idempotency_key, created_at) VALUES (gen_random_uuid(), :t, :w, :seq, 'USAGE', -1000000, :bal, 'pgb-' || gen_random_uuid()::text, now()) RETURNING id AS e, idempotency_key AS k \gset
INSERT INTO entry_split (id, tenant_id, entry_id, grant_id, amount_micros) VALUES (gen_random_uuid(), :t, :e, :g, -1000000);
INSERT INTO idempotency_record (tenant_id, key, operation, request_hash, result_id, created_at) VALUES (:t, :k, 'consume', 'pgbench', :e, now());
END;
"#;

/// `bench_wallet(n, tenant_id, wallet_id, grant_id)`: numbers the seeded
/// wallets 1…N so the pgbench script can pick one at random.
pub async fn pgbench_prepare(db: &Db, targets: &Targets) -> anyhow::Result<()> {
    let conn = db.writer();
    conn.execute_unprepared(
        "CREATE TABLE bench_wallet (n int PRIMARY KEY, tenant_id uuid NOT NULL, wallet_id uuid NOT NULL, grant_id uuid NOT NULL)",
    )
    .await?;
    for (c, chunk) in targets.wallets.chunks(1000).enumerate() {
        let mut sql = String::from("INSERT INTO bench_wallet VALUES ");
        let mut values: Vec<Value> = Vec::new();
        for (i, w) in chunk.iter().enumerate() {
            let p = values.len();
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("(${}, ${}, ${}, ${})", p + 1, p + 2, p + 3, p + 4));
            values.push(((c * 1000 + i + 1) as i32).into());
            values.push(targets.tenant_id.into());
            values.push(w.id.into());
            values.push(w.grant_ids[0].into());
        }
        conn.execute_raw(stmt(DatabaseBackend::Postgres, &sql, values))
            .await?;
    }
    conn.execute_unprepared("ANALYZE").await?;
    Ok(())
}

/// Runs pgbench with the script for `secs` on the first `over` wallets;
/// latencies come from its per-transaction log.
pub async fn pgbench_run(
    pgbench: &Path,
    url: &str,
    work_dir: &Path,
    clients: usize,
    over: usize,
    secs: u64,
) -> anyhow::Result<Stats> {
    let script = work_dir.join("consume.sql");
    std::fs::write(&script, PGBENCH_SCRIPT)?;
    let log_dir = work_dir.join(format!("log-{clients}-{over}"));
    std::fs::create_dir_all(&log_dir)?;
    let out = tokio::process::Command::new(pgbench)
        .arg("-n")
        .args(["-M", "prepared"])
        .args(["-c", &clients.to_string()])
        .args(["-j", &clients.min(2).to_string()])
        .args(["-T", &secs.max(1).to_string()])
        .args(["-D", &format!("wallets={over}")])
        .arg("-f")
        .arg(&script)
        .arg("-l")
        .arg(format!("--log-prefix={}", log_dir.join("pgb").display()))
        .arg(url)
        .output()
        .await
        .context("run pgbench")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "pgbench failed: {}\n{}",
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let failed = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("number of failed transactions: "))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0);
    let mut latencies = Vec::new();
    for entry in std::fs::read_dir(&log_dir)? {
        let text = std::fs::read_to_string(entry?.path())?;
        for line in text.lines() {
            // client_id transaction_no time_us script_no epoch epoch_us
            if let Some(us) = line.split_whitespace().nth(2).and_then(|s| s.parse().ok()) {
                latencies.push(us);
            }
        }
    }
    // Transactions over the run's wall time as pgbench measured it.
    let tps: Option<f64> = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("tps = "))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok());
    let n = latencies.len();
    let mut stats = Stats::from_latencies(latencies, secs as f64);
    if let Some(tps) = tps.filter(|t| *t > 0.0) {
        stats.secs = n as f64 / tps;
    }
    stats.errors = failed;
    Ok(stats)
}
