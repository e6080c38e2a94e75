//! Section 2's baseline for the nested read's CPU per field: what
//! async-graphql itself costs for the same request. A schema with the same
//! type and field names as the API's (for the fields [`nested::NESTED`]
//! selects), its answers built in memory once, runs the same query text
//! in this process: parse, validation, execution, and the response
//! serialized to JSON as the API writes it. No database, no HTTP, no
//! resolver work of ours. Measured twice: without extensions (the fast
//! path) and with three that override nothing (what any registered
//! extension costs: async-graphql then routes every field and list item
//! through its extension chain).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use async_graphql::{
    ComplexObject, EmptyMutation, EmptySubscription, Enum, InputObject, Object, Request, Schema,
    SimpleObject, Variables,
    extensions::{Extension, ExtensionFactory},
};
use serde_json::json;

use crate::nested;

/// CPU per field of one variant of the in-memory schema.
#[derive(Debug, Clone, Copy)]
pub struct Floor {
    pub requests: u64,
    pub fields: u64,
    pub cpu: Duration,
}

impl Floor {
    pub fn micros_per_field(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.requests.max(1) as f64 / self.fields.max(1) as f64
    }

    pub fn summary(&self) -> String {
        format!(
            "{:.2} µs per field ({} requests × {} fields in {:.2} s CPU; {:.0} µs per request)",
            self.micros_per_field(),
            self.requests,
            self.fields,
            self.cpu.as_secs_f64(),
            self.cpu.as_secs_f64() * 1e6 / self.requests.max(1) as f64
        )
    }
}

/// Runs [`nested::NESTED`] on the in-memory schema for `run`, one request
/// at a time on this task, with `extensions` no-op extensions registered.
/// CPU is this process's (the API child is another process; the bench's
/// other tasks are idle while this runs).
pub async fn measure(run: Duration, extensions: usize) -> anyhow::Result<Floor> {
    let schema = schema(extensions);
    let request = || {
        Request::new(nested::NESTED).variables(Variables::from_json(json!({ "c": nested::BIG })))
    };
    let first = schema.execute(request()).await;
    anyhow::ensure!(first.errors.is_empty(), "{:?}", first.errors);
    let fields = nested::fields(&serde_json::to_value(&first)?["data"]);
    let me = std::process::id();
    let before = nested::process_cpu(me).ok_or_else(|| anyhow::anyhow!("/proc/self/stat"))?;
    let started = Instant::now();
    let mut requests = 0;
    let mut bytes = 0;
    while started.elapsed() < run {
        let response = schema.execute(request()).await;
        bytes += serde_json::to_vec(&response)?.len();
        requests += 1;
    }
    let after = nested::process_cpu(me).ok_or_else(|| anyhow::anyhow!("/proc/self/stat"))?;
    anyhow::ensure!(bytes > 0, "no response written");
    Ok(Floor {
        requests,
        fields,
        cpu: after.saturating_sub(before),
    })
}

type FloorSchema = Schema<Query, EmptyMutation, EmptySubscription>;

fn schema(extensions: usize) -> FloorSchema {
    let mut builder = Schema::build(
        Query(Arc::new(customer())),
        EmptyMutation,
        EmptySubscription,
    );
    for _ in 0..extensions {
        builder = builder.extension(Nothing);
    }
    builder.finish()
}

/// An extension that overrides no hook.
struct Nothing;

impl ExtensionFactory for Nothing {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Nothing)
    }
}

impl Extension for Nothing {}

struct Query(Arc<Customer>);

#[Object]
impl Query {
    async fn customer(&self, external_id: String) -> Option<&Customer> {
        (external_id == nested::BIG).then_some(&*self.0)
    }
}

#[derive(SimpleObject)]
struct Customer {
    name: String,
    wallets: Vec<Wallet>,
}

#[derive(SimpleObject)]
#[graphql(complex)]
struct Wallet {
    credit_system: CreditSystem,
    balance: Balance,
    #[graphql(skip)]
    grants: GrantConnection,
    #[graphql(skip)]
    entries: EntryConnection,
}

#[derive(InputObject)]
struct GrantFilter {
    live: Option<bool>,
}

#[derive(InputObject)]
struct EntryFilter {
    types: Option<Vec<EntryType>>,
}

#[ComplexObject]
impl Wallet {
    async fn grants(&self, first: Option<i32>, filter: Option<GrantFilter>) -> &GrantConnection {
        let _ = (first, filter.map(|f| f.live));
        &self.grants
    }

    async fn entries(&self, first: Option<i32>, filter: Option<EntryFilter>) -> &EntryConnection {
        let _ = (first, filter.map(|f| f.types));
        &self.entries
    }
}

#[derive(SimpleObject)]
struct CreditSystem {
    key: String,
    name: String,
    unit_singular: String,
    unit_plural: String,
}

#[derive(SimpleObject)]
#[graphql(complex)]
struct Balance {
    available: String,
    pending: String,
    total: String,
    included: String,
    purchased: String,
    promotional: String,
    #[graphql(skip)]
    expiring: String,
}

#[ComplexObject]
impl Balance {
    async fn expiring_soon(&self, days: i32) -> &str {
        let _ = days;
        &self.expiring
    }
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
enum Category {
    Purchased,
    Included,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
enum EntryType {
    Grant,
    Usage,
}

#[derive(SimpleObject)]
struct Grant {
    id: String,
    category: Category,
    amount: String,
    remaining: String,
    expires_at: Option<String>,
    priority: i32,
    reason: String,
}

#[derive(SimpleObject)]
struct GrantEdge {
    node: Grant,
}

#[derive(SimpleObject)]
struct GrantConnection {
    edges: Vec<GrantEdge>,
}

#[derive(SimpleObject)]
struct GrantRef {
    id: String,
}

#[derive(SimpleObject)]
struct Split {
    grant: GrantRef,
    amount: String,
}

#[derive(SimpleObject)]
struct Entry {
    id: String,
    #[graphql(name = "type")]
    kind: EntryType,
    amount: String,
    balance_after: String,
    created_at: String,
    feature: Option<String>,
    event_ref: Option<String>,
    user_ref: Option<String>,
    splits: Vec<Split>,
}

#[derive(SimpleObject)]
struct EntryEdge {
    node: Entry,
}

#[derive(SimpleObject)]
struct PageInfo {
    has_next_page: bool,
    end_cursor: Option<String>,
}

#[derive(SimpleObject)]
struct EntryConnection {
    edges: Vec<EntryEdge>,
    page_info: PageInfo,
}

/// 3 wallets × 20 grants × 20 entries (one split each), like the API's
/// `nested-big` customer.
fn customer() -> Customer {
    let id = |prefix: &str, i: usize| format!("{prefix}_0193a5b0c0de7000800000000000{i:04}");
    let wallet = |w: usize| Wallet {
        credit_system: CreditSystem {
            key: format!("system-{w}"),
            name: format!("System {w}"),
            unit_singular: "token".into(),
            unit_plural: "tokens".into(),
        },
        balance: Balance {
            available: "12345".into(),
            pending: "0".into(),
            total: "12345".into(),
            included: "0".into(),
            purchased: "12345".into(),
            promotional: "0".into(),
            expiring: "0".into(),
        },
        grants: GrantConnection {
            edges: (0..20)
                .map(|g| GrantEdge {
                    node: Grant {
                        id: id("grt", w * 100 + g),
                        category: Category::Purchased,
                        amount: "1000".into(),
                        remaining: "617".into(),
                        expires_at: Some("2027-01-05T00:00:00Z".into()),
                        priority: 0,
                        reason: "bench".into(),
                    },
                })
                .collect(),
        },
        entries: EntryConnection {
            edges: (0..20)
                .map(|e| EntryEdge {
                    node: Entry {
                        id: id("ent", w * 100 + e),
                        kind: EntryType::Usage,
                        amount: "-3".into(),
                        balance_after: "12345".into(),
                        created_at: "2026-12-05T10:00:00Z".into(),
                        feature: Some("chat".into()),
                        event_ref: None,
                        user_ref: None,
                        splits: vec![Split {
                            grant: GrantRef {
                                id: id("grt", w * 100 + e),
                            },
                            amount: "-3".into(),
                        }],
                    },
                })
                .collect(),
            page_info: PageInfo {
                has_next_page: true,
                end_cursor: Some("c3RhcnQ".into()),
            },
        },
    };
    Customer {
        name: "Nested Big".into(),
        wallets: (0..3).map(wallet).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The in-memory schema answers the API's query text, at the API's
    /// shape: 3 wallets × 20 × 20, every selected field present.
    #[tokio::test]
    async fn answers_the_nested_query_at_its_shape() {
        let floor = measure(Duration::from_millis(50), 0).await.unwrap();
        assert!(floor.requests > 0);
        // customer, name, wallets; per wallet its 4 keys, creditSystem's
        // 4, balance's 7, grants' edges + 20 × (node + 7), entries' edges +
        // 20 × (node + 9 + splits' one item: grant, id, amount) + pageInfo's 2.
        let per_wallet = 4 + 4 + 7 + (1 + 20 * (1 + 7)) + (2 + 20 * (1 + 9 + 3) + 2);
        assert_eq!(per_wallet, 440);
        // The API's answer for `nested-big` counts the same 1,323.
        assert_eq!(floor.fields, 3 + 3 * per_wallet);
    }
}
