//! The GraphQL schema, assembled from one query/mutation object per area.

use std::sync::Arc;

use async_graphql::{MergedObject, Schema, SchemaBuilder};
use service::{Clock, Db, live::WalletFeed};

mod catalog;
mod commerce;
pub mod context;
mod credit_systems;
mod customer_access;
mod customer_tokens;
mod customers;
pub mod error;
pub mod ids;
mod invoices;
mod ledger;
mod live;
pub mod loaders;
mod notifications;
mod operations;
pub mod pagination;
mod refs;
mod reports;
pub mod scalars;
mod tenancy;

/// How deep a query may nest (the one-round-trip customer query needs ~8).
pub const DEPTH_MAX: usize = 12;
/// How many fields a query may select in all (static count; list sizes are
/// bounded separately by `first ≤ 200`).
pub const COMPLEXITY_MAX: usize = 2_000;

#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct QueryRoot(
    tenancy::TenancyQuery,
    credit_systems::CreditSystemQuery,
    customers::CustomerQuery,
    ledger::LedgerQuery,
    catalog::CatalogQuery,
    commerce::CommerceQuery,
    operations::OperationsQuery,
    notifications::NotificationQuery,
    reports::ReportQuery,
    invoices::InvoiceQuery,
);

#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot(
    tenancy::TenancyMutation,
    credit_systems::CreditSystemMutation,
    customers::CustomerMutation,
    ledger::LedgerMutation,
    catalog::CatalogMutation,
    commerce::CommerceMutation,
    notifications::NotificationMutation,
    reports::ReportMutation,
    invoices::InvoiceMutation,
    customer_tokens::CustomerTokenMutation,
);

pub type AppSchema = Schema<QueryRoot, MutationRoot, live::SubscriptionRoot>;

fn builder() -> SchemaBuilder<QueryRoot, MutationRoot, live::SubscriptionRoot> {
    Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        live::SubscriptionRoot,
    )
    .extension(customer_access::CustomerTokenFence)
    .limit_depth(DEPTH_MAX)
    .limit_complexity(COMPLEXITY_MAX)
    .limit_recursive_depth(32)
}

/// The schema with what every resolver needs: the database, the clock and
/// the process's feed of wallet changes (started here: call it inside the
/// tokio runtime). Each request adds its
/// [`service::api_keys::Principal`].
pub fn schema(db: Db, clock: Arc<dyn Clock>) -> AppSchema {
    builder()
        .data(WalletFeed::start(db.clone()))
        .data(context::AppContext { db, clock })
        .finish()
}

/// The SDL, as checked in at `schema.graphql`.
pub fn sdl() -> String {
    builder().finish().sdl()
}
