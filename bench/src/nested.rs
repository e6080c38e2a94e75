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
