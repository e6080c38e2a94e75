//! The GraphQL schema, assembled from one query/mutation object per area.

use std::sync::Arc;

use async_graphql::{MergedObject, Schema, SchemaBuilder};
use service::{Clock, Db, live::WalletFeed};

mod audit_log;
mod catalog;
mod commerce;
pub mod context;
mod credit_systems;
mod customer_access;
mod customer_tokens;
mod customers;
pub mod error;
pub mod execution;
pub mod ids;
mod invoices;
mod ledger;
pub mod limits;
mod live;
pub mod loaders;
mod notifications;
mod operations;
pub mod pagination;
mod refs;
mod reports;
pub mod response_shape;
pub mod scalars;
pub mod socket_auth;
mod tenancy;

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
    audit_log::AuditLogQuery,
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

/// Every mutation field runs in an audit scope ([`audit_log::Audited`]).
pub type AppMutation = audit_log::Audited<MutationRoot>;

pub type AppSchema = Schema<QueryRoot, AppMutation, live::SubscriptionRoot>;

fn bare_builder() -> SchemaBuilder<QueryRoot, AppMutation, live::SubscriptionRoot> {
    Schema::build(
        QueryRoot::default(),
        audit_log::Audited(MutationRoot::default()),
        live::SubscriptionRoot,
    )
    // Depth, fields and cost are bounded by `limits` (with a separate
    // bound for introspection); these are async-graphql's own backstops
    // behind it.
    .limit_recursive_depth(32)
    .limit_directives(limits::DIRECTIVES_MAX)
}

/// A schema for HTTP: the request-level steps (limits, response shape,
/// metrics) run around `execute` in the handler ([`execution`]); the cost
/// bound is async-graphql's own, at the same limit.
fn http_builder() -> SchemaBuilder<QueryRoot, AppMutation, live::SubscriptionRoot> {
    bare_builder().limit_complexity(limits::COST_MAX)
}

/// The same schema served for each transport and credential:
/// - `api_key`: HTTP with an API key — no extension at all, so
///   async-graphql resolves every field on its fast path;
/// - `customer`: HTTP with a customer token — only the
///   [`customer_access::CustomerTokenFence`], which wraps every field's
///   resolution (measured at ~4 % of a nested read's CPU, paid only where
///   it is needed);
/// - `socket`: every WebSocket (whose credential may only come with
///   `connection_init`) — the fence, the re-check of the socket's
///   credential, and the request-level steps as extensions, since the
///   socket transport executes operations itself;
/// - `cost_probe`: validates a request an HTTP schema refused as too
///   costly, to say by how much; it executes nothing.
#[derive(Clone)]
pub struct Schemas {
    pub api_key: AppSchema,
    pub customer: AppSchema,
    pub socket: AppSchema,
    pub cost_probe: AppSchema,
    /// The output types `execution` shapes HTTP responses with.
    pub types: Arc<response_shape::OutputTypes>,
}

impl Schemas {
    /// The HTTP schema a request authenticated as `principal` runs on.
    pub fn for_principal(&self, principal: &service::api_keys::Principal) -> &AppSchema {
        match principal.customer_scope() {
            Some(_) => &self.customer,
            None => &self.api_key,
        }
    }
}

/// The schemas with what every resolver needs: the database, the clock,
/// where webhooks may point, and the process's feed of wallet changes
/// (started here: call it inside the tokio runtime). Each request adds its
/// [`service::api_keys::Principal`].
pub fn schemas(
    db: Db,
    clock: Arc<dyn Clock>,
    webhook_targets: service::notifications::TargetPolicy,
) -> Schemas {
    let feed = WalletFeed::start(db.clone());
    let app = context::AppContext {
        db,
        clock,
        webhook_targets,
    };
    let types = Arc::new(response_shape::OutputTypes::from_sdl(&sdl()));
    let with =
        |builder: SchemaBuilder<_, _, _>| builder.data(feed.clone()).data(app.clone()).finish();
    Schemas {
        api_key: with(http_builder()),
        customer: with(http_builder().extension(customer_access::CustomerTokenFence)),
        socket: with(
            bare_builder()
                .extension(limits::RequestLimits)
                .extension(response_shape::SpecResponse::new(types.clone()))
                .extension(crate::observe::OperationMetrics)
                .extension(customer_access::CustomerTokenFence)
                .extension(socket_auth::SocketReauth),
        ),
        cost_probe: bare_builder()
            .extension(limits::RequestLimits)
            .extension(limits::ValidateOnly)
            .finish(),
        types,
    }
}

/// The SDL, as checked in at `schema.graphql`.
pub fn sdl() -> String {
    bare_builder().finish().sdl()
}
