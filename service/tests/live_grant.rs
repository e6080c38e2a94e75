//! The "live grant" rule (`ledger::live`), Rust against SQL, on a real
//! database (SQLite, or PostgreSQL with `TEST_DATABASE_URL`).
//!
//! Grants at every boundary of the rule are stored through the entity, as
//! the ledger stores them; at instants on and 1 µs around those boundaries
//! each SQL fragment must select exactly the grants its Rust twin accepts,
//! and the reads built on the fragments must agree too.
//!
//! The grants are inserted as rows, not through the ledger, to reach
//! every combination (voided with credits left, spent out but current,
//! expiring before effective); there is no ledger of them to audit.

mod common;

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use common::World;
use entity::credit_grant;
use rust_decimal::Decimal;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set, Value};
use service::{
    Clock,
    amount::from_micros,
    ledger::{
        Grant,
        burn::Block,
        live::{Facts, GrantSql},
        read::{self, GrantFilter},
    },
    pagination::PageRequest,
};
use uuid::Uuid;

fn us(n: i64) -> Duration {
    Duration::microseconds(n)
}

/// Offsets in µs from `base` of the boundaries: just before, at, just after.
const AROUND: [i64; 3] = [-1, 0, 1];

fn label(voided: bool, remaining: i64, effective: i64, expires: Option<i64>) -> String {
    format!(
        "{} {} eff={effective:+}µs exp={}",
        if voided { "voided" } else { "open" },
        if remaining > 0 { "credits" } else { "empty" },
        expires.map_or("none".into(), |e| format!("{e:+}µs")),
    )
}

/// What the rule reads of a stored grant.
fn facts(g: &credit_grant::Model) -> Facts {
    Facts {
        voided: g.voided_at.is_some(),
        has_credits: g.remaining_micros > 0,
        effective_at: g.effective_at,
        expires_at: g.expires_at,
    }
}

/// The wallet's grants (by label) a fragment selects.
async fn select(
    w: &World,
    wallet_id: Uuid,
    alias: Option<&str>,
    fragment: impl FnOnce(GrantSql<'_>, &mut Vec<Value>) -> String,
) -> BTreeSet<String> {
    let conn = w.t.db.reader();
    let mut values = vec![Value::from(wallet_id)];
    let (table, column) = match alias {
        Some(a) => (format!("credit_grant {a}"), format!("{a}.")),
        None => ("credit_grant".to_owned(), String::new()),
    };
    let condition = fragment(GrantSql::new(alias), &mut values);
    let sql = format!(
        "SELECT {column}reason AS reason FROM {table} WHERE {column}wallet_id = ? AND {condition}"
    );
    conn.query_all_raw(service::db::statement(
        conn.get_database_backend(),
        &sql,
        values,
    ))
    .await
    .unwrap()
    .iter()
    .map(|row| row.try_get::<String>("", "reason").unwrap())
    .collect()
}

/// Grants by label (each grant's `reason`), so a failure names them.
fn labels<'a>(grants: impl Iterator<Item = &'a credit_grant::Model>) -> BTreeSet<String> {
    grants.map(|g| g.reason.clone()).collect()
}

fn micros_sum<'a>(grants: impl Iterator<Item = &'a credit_grant::Model>) -> Decimal {
    from_micros(grants.map(|g| g.remaining_micros).sum())
}

#[tokio::test]
async fn sql_selects_exactly_the_grants_rust_calls_live() {
    let w = World::new(6).await;
    // The wallet (with one ordinary grant, effective at t0, never expiring).
    let wallet_id = w.grant("1", None).await.wallet_id;
    // Whole seconds + 1 µs: the instants around it are stored with and
    // without a fraction, so SQLite's text comparison is probed too.
    let base: DateTime<Utc> = w.clock.now() + Duration::hours(1) + us(1);

    let mut rows = Vec::new();
    for voided in [false, true] {
        for has_credits in [false, true] {
            for effective in AROUND {
                for expires in [None, Some(-1), Some(0), Some(1)] {
                    // Distinct amounts, so a sum tells which grants it took.
                    let remaining = if has_credits {
                        rows.len() as i64 + 1
                    } else {
                        0
                    };
                    rows.push(credit_grant::ActiveModel {
                        id: Set(Uuid::now_v7()),
                        tenant_id: Set(w.tenant_id),
                        wallet_id: Set(wallet_id.uuid()),
                        category: Set("PROMOTIONAL".into()),
                        amount_micros: Set(1_000),
                        remaining_micros: Set(remaining),
                        debt_repaid_micros: Set(0),
                        effective_at: Set(base + us(effective)),
                        expires_at: Set(expires.map(|e| base + us(e))),
                        priority: Set(0),
                        cost_basis: Set(None),
                        reason: Set(label(voided, remaining, effective, expires)),
                        metadata: Set(None),
                        source_kind: Set(None),
                        source_id: Set(None),
                        voided_at: Set(voided.then(|| base - Duration::minutes(1))),
                        expiry_notified_at: Set(None),
                        created_at: Set(w.clock.now()),
                        booked: Set(true),
                    });
                }
            }
        }
    }
    credit_grant::Entity::insert_many(rows)
        .exec(w.t.db.writer())
        .await
        .unwrap();
    // Read back: the Rust side judges what the database stored.
    let stored = credit_grant::Entity::find()
        .filter(credit_grant::Column::WalletId.eq(wallet_id))
        .all(w.t.db.reader())
        .await
        .unwrap();
    assert_eq!(stored.len(), 49);
    let all = labels(stored.iter());

    // The rule itself, spelled out at `base`: effective exactly now is
    // live, expiring exactly now is not.
    let live_at_base = labels(stored.iter().filter(|g| facts(g).is_live(base)));
    let expected: BTreeSet<String> = [
        "test",
        "open credits eff=-1µs exp=none",
        "open credits eff=-1µs exp=+1µs",
        "open credits eff=+0µs exp=none",
        "open credits eff=+0µs exp=+1µs",
    ]
    .map(String::from)
    .into();
    assert_eq!(live_at_base, expected);

    let instants = [
        base - Duration::days(1),
        base - us(1),
        base,
        base + us(1),
        base + Duration::days(1),
    ];
    for now in instants {
        let live: Vec<&credit_grant::Model> =
            stored.iter().filter(|g| facts(g).is_live(now)).collect();
        let live_labels = labels(live.iter().copied());
        // The two types the ledger asks agree with the rule.
        for g in &stored {
            let block = Block {
                id: g.id,
                remaining: g.remaining_micros,
                effective_at: g.effective_at,
                expires_at: g.expires_at,
                priority: g.priority,
                created_at: g.created_at,
                voided: g.voided_at.is_some(),
            };
            let grant = Grant::try_from(g.clone()).unwrap();
            let expected = live_labels.contains(&g.reason);
            assert_eq!(block.is_live(now), expected, "Block {} at {now}", g.reason);
            assert_eq!(grant.is_live(now), expected, "Grant {} at {now}", g.reason);
        }
        let current = labels(stored.iter().filter(|g| facts(g).is_current(now)));
        let scheduled: Vec<&credit_grant::Model> = stored
            .iter()
            .filter(|g| g.voided_at.is_none() && !facts(g).is_effective(now))
            .collect();

        // Each fragment, bare and qualified.
        for alias in [None, Some("g")] {
            let at = format!("at {now}, alias {alias:?}");
            let sql = select(&w, wallet_id.uuid(), alias, |g, v| g.live(now, v)).await;
            assert_eq!(sql, live_labels, "live {at}");
            let sql = select(&w, wallet_id.uuid(), alias, |g, v| g.current(now, v)).await;
            assert_eq!(sql, current, "current {at}");
            let sql = select(&w, wallet_id.uuid(), alias, |g, v| g.scheduled(now, v)).await;
            assert_eq!(sql, labels(scheduled.iter().copied()), "scheduled {at}");
        }

        // The reads built on them.
        let page = PageRequest::new(Some(200), None).unwrap();
        for wanted in [true, false] {
            let filter = GrantFilter {
                live: Some(wanted),
                categories: None,
            };
            let listed = read::grant_pages(&w.t.db, w.tenant_id, &[wallet_id], &filter, page, now)
                .await
                .unwrap()
                .remove(&wallet_id)
                .unwrap();
            assert!(!listed.has_next_page);
            let listed: BTreeSet<String> = listed.items.into_iter().map(|g| g.reason).collect();
            let expected = if wanted {
                live_labels.clone()
            } else {
                all.difference(&live_labels).cloned().collect()
            };
            assert_eq!(listed, expected, "grants live={wanted} at {now}");
        }
        let balance = read::balances(&w.t.db, w.tenant_id, &[wallet_id], now)
            .await
            .unwrap()
            .remove(&wallet_id)
            .unwrap();
        assert_eq!(
            balance.available,
            micros_sum(live.iter().copied()),
            "available at {now}"
        );
        assert_eq!(
            balance.scheduled,
            micros_sum(scheduled.into_iter()),
            "scheduled at {now}"
        );
        let until = now + us(1);
        let expiring = read::expiring_between(&w.t.db, w.tenant_id, &[wallet_id], now, until)
            .await
            .unwrap()
            .remove(&wallet_id)
            .unwrap_or_default();
        let expected = micros_sum(
            live.iter()
                .copied()
                .filter(|g| g.expires_at.is_some_and(|e| e <= until)),
        );
        assert_eq!(expiring, expected, "expiring in (now, now + 1µs] at {now}");
    }
}
