//! Requests as an operator sees them (issue 19): a span per HTTP request
//! that continues the caller's W3C `traceparent` and carries the trace id
//! every log line of the request shows, a span per GraphQL operation
//! (operation, tenant, key — never arguments), and the
//! `credits_graphql_requests_total` / `credits_graphql_request_duration_seconds`
//! metrics per root field ([`RootFields`]; [`OperationMetrics`] on
//! WebSockets).
//!
//! The processes' logs, trace export and metrics listener are set up in
//! `worker::observability`, shared with the worker.

use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use async_graphql::{
    PathSegment, Request, ServerResult, Value,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextExecute, NextPrepareRequest},
    parser::types::{ExecutableDocument, Selection, SelectionSet},
};
use axum::http::HeaderMap;
use opentelemetry::{
    propagation::Extractor,
    trace::{TraceContextExt as _, TraceId},
};
use service::api_keys::{Credential, Principal};
use tracing::{Span, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The span of one HTTP request (`TraceLayer::make_span_with`): a child of
/// the caller's `traceparent` when it sends one, with `trace_id` set —
/// the exported trace's id when traces are exported, else the caller's, else
/// a new one — so every log line of the request carries it.
pub fn request_span<B>(request: &axum::http::Request<B>) -> Span {
    let span = tracing::info_span!(
        "http.request",
        otel.name = %format!("{} {}", request.method(), request.uri().path()),
        otel.kind = "server",
        http.request.method = %request.method(),
        url.path = %request.uri().path(),
        trace_id = Empty,
    );
    let parent =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(request.headers())));
    let remote = parent.span().span_context().trace_id();
    let _ = span.set_parent(parent);
    let exported = span.context().span().span_context().trace_id();
    let trace_id = [exported, remote]
        .into_iter()
        .find(|t| *t != TraceId::INVALID)
        .unwrap_or_else(|| TraceId::from_bytes(uuid::Uuid::now_v7().into_bytes()));
    span.record("trace_id", tracing::field::display(trace_id));
    span
}

/// The span of one GraphQL operation: who asks (tenant, key or customer
/// token's customer); [`RootFields::name_span`] adds the operation's root
/// fields once parsed.
pub fn operation_span(principal: &Principal) -> Span {
    let span = tracing::info_span!(
        "graphql",
        otel.name = "graphql",
        graphql.operation = Empty,
        tenant_id = %principal.tenant_id,
        key_id = Empty,
        customer_id = Empty,
    );
    match &principal.credential {
        Credential::ApiKey(id) => {
            span.record("key_id", tracing::field::display(id));
        }
        Credential::CustomerToken(scope) => {
            span.record("customer_id", tracing::field::display(scope.customer_id));
        }
    }
    span
}

/// When the request reached the `/graphql` handler, before its body was
/// read, its key checked or a slot admitted it: what a client measures
/// starts about here, so the request histogram is timed from it.
#[derive(Clone, Copy)]
pub struct Arrived(Instant);

impl Arrived {
    pub fn now() -> Self {
        Self(Instant::now())
    }

    pub fn elapsed(&self) -> std::time::Duration {
        self.0.elapsed()
    }
}

/// Counts and times each executed operation per root field: operation =
/// the root field's name (bounded by the schema; aliases don't count),
/// outcome = `ok` or the `extensions.code` of the first error under that
/// field (or of an error without a path). The duration runs from the
/// request's [`Arrived`] (or the execution's start, when a request has
/// none, e.g. a subscription) to the end of its execution (all its root
/// fields), so it includes reading the body, checking the key and
/// waiting for admission — what a client waits for, less the network. Requests refused before
/// execution (unparseable, invalid, over a bound) are not operations.
///
/// The extension serves WebSocket operations; over HTTP the handler does
/// the same around `Schema::execute` with [`RootFields`] (see
/// `graphql::execution`).
pub struct OperationMetrics;

impl ExtensionFactory for OperationMetrics {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Operation::default())
    }
}

#[derive(Default)]
struct Operation {
    roots: Mutex<Option<RootFields>>,
}

/// The root fields of the operation a request runs, as (response key,
/// field name), fragments at the root followed.
pub struct RootFields(Vec<(String, String)>);

/// How deep fragments at the root are followed (the document was bounded
/// by `limits` before; validation refuses cycles).
const FRAGMENT_DEPTH_MAX: usize = 4;

fn root_fields(
    doc: &ExecutableDocument,
    set: &SelectionSet,
    depth: usize,
    out: &mut Vec<(String, String)>,
) {
    for item in &set.items {
        match &item.node {
            Selection::Field(f) => out.push((
                f.node.response_key().node.to_string(),
                f.node.name.node.to_string(),
            )),
            Selection::InlineFragment(f) if depth < FRAGMENT_DEPTH_MAX => {
                root_fields(doc, &f.node.selection_set.node, depth + 1, out);
            }
            Selection::FragmentSpread(s) if depth < FRAGMENT_DEPTH_MAX => {
                if let Some(f) = doc.fragments.get(&s.node.fragment_name.node) {
                    root_fields(doc, &f.node.selection_set.node, depth + 1, out);
                }
            }
            _ => {}
        }
    }
}

fn code_of(error: &async_graphql::ServerError) -> String {
    match error.extensions.as_ref().and_then(|x| x.get("code")) {
        Some(Value::String(code)) => code.clone(),
        _ => service::Code::Validation.as_str().to_owned(),
    }
}

impl RootFields {
    /// The root fields of the operation `operation_name` selects in `doc`
    /// (none when it selects no operation: the request is refused).
    pub fn of(doc: &ExecutableDocument, operation_name: Option<&str>) -> Self {
        let mut fields = Vec::new();
        if let Some(op) = crate::graphql::response_shape::selected_operation(doc, operation_name) {
            root_fields(doc, &op.node.selection_set.node, 0, &mut fields);
        }
        Self(fields)
    }

    /// Names `span` (an operation span) after the root fields, e.g.
    /// `graphql consumeCredits`, as the operation starts.
    pub fn name_span(&self, span: &Span) {
        if self.0.is_empty() {
            return;
        }
        let mut names: Vec<&str> = self.0.iter().map(|(_, n)| n.as_str()).collect();
        names.dedup();
        let names = names.join(",");
        span.record("graphql.operation", names.as_str());
        let name = format!("graphql {names}");
        span.record("otel.name", name.as_str());
        // Once started, an exported span takes a new name only this way.
        span.context().span().update_name(name);
    }

    /// Counts and times the executed operation per root field.
    pub fn record(&self, response: &async_graphql::Response, took: std::time::Duration) {
        for (key, name) in &self.0 {
            let error = response.errors.iter().find(|e| match e.path.first() {
                Some(PathSegment::Field(f)) => f == key,
                Some(PathSegment::Index(_)) => false,
                None => true,
            });
            let outcome = error.map_or_else(|| "ok".to_owned(), code_of);
            service::metrics::graphql_operation(name, &outcome, took);
        }
    }
}

#[async_trait::async_trait]
impl Extension for Operation {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        let mut request = next.run(ctx, request).await?;
        let name = request.operation_name.clone();
        if let Ok(doc) = request.parsed_query() {
            *self.roots.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(RootFields::of(doc, name.as_deref()));
        }
        Ok(request)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> async_graphql::Response {
        let roots = self
            .roots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or(RootFields(Vec::new()));
        roots.name_span(&Span::current());
        let started = ctx
            .data_opt::<Arrived>()
            .map_or_else(Instant::now, |arrived| arrived.0);
        let response = next.run(ctx, operation_name).await;
        roots.record(&response, started.elapsed());
        response
    }
}
