//! HTTP routes: GraphQL (POST and GET, per the GraphQL-over-HTTP spec:
//! [`graphql`]; the GraphiQL IDE on GET for browsers), GraphQL
//! subscriptions over WebSocket (`/graphql/ws`, graphql-ws protocol),
//! health and readiness. Every GraphQL request authenticates with a Bearer
//! API key or customer token (on WebSocket: the `Authorization` header of
//! the upgrade, or `{"Authorization": "Bearer …"}` in `connection_init`,
//! which is what browsers can send).

use axum::{
    Json, Router,
    extract::{State, WebSocketUpgrade},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use std::sync::Arc;

use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use axum::http::Method;
use service::{Clock, Db, DomainError, api_keys, customer_tokens};
use tower_http::{
    cors::{AllowOrigin, CorsLayer},
    trace::TraceLayer,
};

use crate::graphql::Schemas;

pub mod admission;
pub mod assets;
pub mod graphql;
pub mod payments;
pub mod serve;
pub mod sockets;
pub mod throttle;
pub mod webhook_schemas;

pub use admission::{Admission, HttpLimits};

/// The largest request body (413 above it), and the largest WebSocket
/// message.
pub const BODY_LIMIT_BYTES: usize = 1024 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub schemas: Schemas,
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    pub limits: HttpLimits,
    pub admission: Admission,
    /// Rate limits per credential and on failed authentication.
    pub throttle: throttle::Throttle,
    /// Open WebSockets, closed when their credential stops being valid.
    pub sockets: sockets::Sockets,
    /// Payment providers' notifications ([`payments`]).
    pub payments: payments::Payments,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/graphql", get(graphql::get).post(graphql::post))
        .route("/graphql/ws", get(graphql_ws))
        .route("/assets/{*path}", get(assets::get))
        .route("/widgets/demo", get(assets::widgets_demo))
        .route("/console", get(assets::console))
        .route("/console/", get(assets::console))
        .route("/console/{*path}", get(assets::console))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/exports/entries.csv", get(export_entries))
        .route("/webhooks/schemas", get(webhook_schemas::all))
        .route("/webhooks/schemas/{event_type}", get(webhook_schemas::one))
        .route(
            "/payments/stripe/{intake}",
            axum::routing::post(payments::stripe)
                .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT_BYTES)),
        )
        .route(
            "/payments/mercadopago/{intake}",
            axum::routing::post(payments::mercadopago)
                .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT_BYTES)),
        )
        .layer(TraceLayer::new_for_http().make_span_with(crate::observe::request_span))
        .with_state(state)
}

/// The CORS layer for `CORS_ORIGINS` (`None` when empty). Browsers send
/// credentials as `Authorization` headers (customer tokens), never
/// cookies, so no credentialed CORS is needed.
pub fn cors(origins: &[String]) -> anyhow::Result<Option<CorsLayer>> {
    let origins: Vec<&str> = origins
        .iter()
        .map(|o| o.trim())
        .filter(|o| !o.is_empty())
        .collect();
    if origins.is_empty() {
        return Ok(None);
    }
    let allow = if origins.contains(&"*") {
        AllowOrigin::any()
    } else {
        let values = origins
            .iter()
            .map(|o| {
                o.parse::<header::HeaderValue>()
                    .map_err(|_| anyhow::anyhow!("CORS_ORIGINS: {o:?} is not a valid origin"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        AllowOrigin::list(values)
    };
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .max_age(std::time::Duration::from_secs(3600)),
    ))
}

/// The caller of a request with `Authorization: Bearer <key>`, within the
/// rate limits ([`throttle`]): an address over its failed-authentication
/// budget is refused before its credential is looked at, each 401 for a
/// presented credential counts against it, and a caller takes one request
/// from its credential's bucket. `Err` is the answer to send (401, 429,
/// 503); [`throttle::Allowed`] adds the `RateLimit` headers to the one
/// the caller sends.
async fn authenticate(
    state: &AppState,
    peer: throttle::Peer,
    headers: &HeaderMap,
) -> Result<(api_keys::Principal, throttle::Allowed), Response> {
    let client = state.throttle.client_addr(peer.0, headers);
    if let Err(limited) = state.throttle.check_client(client) {
        return Err(limited.response());
    }
    let Some(credential) = bearer(headers) else {
        return Err(unauthenticated(&api_keys::Error::Unauthenticated));
    };
    match authenticate_bearer(state, credential).await {
        Ok(principal) => match state.throttle.check(&principal) {
            Ok(allowed) => Ok((principal, allowed)),
            Err(limited) => Err(limited.response()),
        },
        Err(e) => Err(refused(state, client, &e)),
    }
}

/// The answer to a credential that did not authenticate: 503 when the
/// database failed; else a 401 counted against the client's
/// failed-authentication budget (429 once that is spent).
fn refused(state: &AppState, client: Option<std::net::IpAddr>, e: &api_keys::Error) -> Response {
    if e.code() == service::Code::Internal {
        return unauthenticated(e);
    }
    match state.throttle.record_failure(client) {
        Ok(allowed) => {
            let mut response = unauthenticated(e);
            allowed.annotate(response.headers_mut());
            response
        }
        Err(limited) => limited.response(),
    }
}

/// An API key (`ck_live_…`) or a customer token (`ct_…`).
async fn authenticate_bearer(
    state: &AppState,
    credential: &str,
) -> Result<api_keys::Principal, api_keys::Error> {
    authenticate_credential(&state.db, state.clock.as_ref(), credential).await
}

/// Checks a presented credential now: an API key (`ck_live_…`, not
/// revoked) or a customer token (`ct_…`, not expired, signed with the
/// tenant's current secret).
pub async fn authenticate_credential(
    db: &Db,
    clock: &dyn Clock,
    credential: &str,
) -> Result<api_keys::Principal, api_keys::Error> {
    if customer_tokens::is_customer_token(credential) {
        customer_tokens::authenticate(db, clock, credential).await
    } else {
        api_keys::authenticate(db, credential).await
    }
}

/// `GET /graphql/ws`: subscriptions and other operations over a socket
/// ([`sockets`]). The credential may come with the upgrade request or,
/// from browsers, in the `connection_init` payload; a socket without a
/// valid one is closed at init, and one whose credential stops being valid
/// (revoked, expired, rotated) is closed then.
async fn graphql_ws(
    State(state): State<AppState>,
    peer: throttle::Peer,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let Some(protocol) = sockets::protocol(&headers) else {
        return (
            StatusCode::BAD_REQUEST,
            "ask for the graphql-transport-ws (or graphql-ws) subprotocol",
        )
            .into_response();
    };
    let client = state.throttle.client_addr(peer.0, &headers);
    if let Err(limited) = state.throttle.check_client(client) {
        return limited.response();
    }
    let from_header = match bearer(&headers) {
        Some(credential) => match authenticate_bearer(&state, credential).await {
            Ok(p) => Some((p, credential.to_owned())),
            Err(e) => return refused(&state, client, &e),
        },
        None => None,
    };
    upgrade
        .max_message_size(BODY_LIMIT_BYTES)
        .max_frame_size(BODY_LIMIT_BYTES)
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| sockets::serve(socket, protocol, state, from_header, client))
}

/// The key from `Authorization: Bearer <key>` (scheme case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    bearer_value(headers.get(header::AUTHORIZATION)?.to_str().ok()?)
}

/// The credential of an `Authorization` value `Bearer <key>` (scheme
/// case-insensitive): a header's, or a WebSocket `connection_init`
/// payload's.
pub(crate) fn bearer_value(value: &str) -> Option<&str> {
    let (scheme, key) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
}

/// 401 with a GraphQL-shaped body, so clients read one error format.
fn unauthenticated(e: &api_keys::Error) -> Response {
    let (status, code) = match e.code() {
        service::Code::Internal => {
            tracing::warn!(error = %e, "authentication failed on the database");
            (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE")
        }
        _ => (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
    };
    let message = if status == StatusCode::UNAUTHORIZED {
        "send a valid API key as `Authorization: Bearer <key>`"
    } else {
        "the database is unavailable; retry shortly"
    };
    let body = serde_json::json!({
        "errors": [{
            "message": message,
            "extensions": { "code": code, "retryable": status != StatusCode::UNAUTHORIZED },
        }],
    });
    (status, [(header::WWW_AUTHENTICATE, "Bearer")], Json(body)).into_response()
}

/// The process is up.
async fn healthz() -> &'static str {
    "ok"
}

/// The database answers, within [`READY_WITHIN`].
async fn readyz(State(state): State<AppState>) -> Response {
    match tokio::time::timeout(READY_WITHIN, state.db.ping()).await {
        Ok(Ok(())) => "ready".into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response()
        }
        Err(_) => {
            tracing::warn!("readiness check: the database did not answer in time");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response()
        }
    }
}

/// How long `/readyz` waits for the database.
pub const READY_WITHIN: std::time::Duration = std::time::Duration::from_secs(1);

/// Query parameters of the CSV export.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportParams {
    /// The customer's external id.
    customer: Option<String>,
    /// `true`: the customer's descendants too (its whole subtree).
    include_descendants: Option<String>,
    /// The credit system's key.
    credit_system: Option<String>,
    /// RFC 3339; entries at or after.
    from: Option<String>,
    /// RFC 3339; entries before.
    to: Option<String>,
    /// Comma-separated entry types (`USAGE,GRANT`).
    types: Option<String>,
}

/// An error of a plain HTTP route, in the GraphQL error shape.
fn route_error(
    status: StatusCode,
    code: service::Code,
    message: String,
    field: Option<&str>,
) -> Response {
    let body = serde_json::json!({
        "errors": [{ "message": message, "extensions": { "code": code.as_str(), "field": field } }],
    });
    (status, Json(body)).into_response()
}

fn domain_error<E: DomainError>(e: &E) -> Response {
    let status = match e.code() {
        service::Code::NotFound => StatusCode::NOT_FOUND,
        service::Code::Internal if service::error::is_unavailable(e) => {
            tracing::warn!(error = %e, "export: database unavailable");
            return route_error(
                StatusCode::SERVICE_UNAVAILABLE,
                service::Code::Unavailable,
                "the database is unavailable; retry shortly".into(),
                None,
            );
        }
        service::Code::Internal => {
            tracing::error!(error = %e, "export failed");
            return route_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                service::Code::Internal,
                "internal error".into(),
                None,
            );
        }
        _ => StatusCode::BAD_REQUEST,
    };
    route_error(status, e.code(), e.to_string(), e.field())
}

/// `GET /exports/entries.csv`: the tenant's ledger (or one customer's, with
/// `includeDescendants=true` its subtree's, one credit system's, a time
/// range, some entry types) as RFC 4180 CSV,
/// streamed page by page in creation order. Any key may export.
async fn export_entries(
    State(state): State<AppState>,
    peer: throttle::Peer,
    headers: HeaderMap,
    axum::extract::Query(params): axum::extract::Query<ExportParams>,
) -> Response {
    let (principal, allowed) = match authenticate(&state, peer, &headers).await {
        Ok(p) => p,
        Err(response) => return response,
    };
    let mut response = export_entries_as(state, principal, params).await;
    allowed.annotate(response.headers_mut());
    response
}

async fn export_entries_as(
    state: AppState,
    principal: api_keys::Principal,
    params: ExportParams,
) -> Response {
    use service::{
        credit_systems::{self, CreditSystemRef},
        customers::{self, CustomerRef},
        exports,
        ledger::EntryType,
    };
    if principal.customer_scope().is_some() {
        return route_error(
            StatusCode::FORBIDDEN,
            service::Code::Forbidden,
            "a customer token can't export the ledger; use an API key".into(),
            None,
        );
    }
    let tenant_id = principal.tenant_id;
    let time = |value: &Option<String>| -> Result<Option<chrono::DateTime<chrono::Utc>>, ()> {
        value
            .as_deref()
            .map(|v| {
                let t = chrono::DateTime::parse_from_rfc3339(v).map_err(|_| ())?;
                // The same range as every DateTime input (1970–9999).
                service::input::time("time", t.into()).map_err(|_| ())
            })
            .transpose()
    };
    let (from, to) = match (time(&params.from), time(&params.to)) {
        (Ok(f), Ok(t)) => (f, t),
        (from, _) => {
            let field = if from.is_err() { "from" } else { "to" };
            return route_error(
                StatusCode::BAD_REQUEST,
                service::Code::Validation,
                format!("{field}: not an RFC 3339 time between 1970 and 9999"),
                Some(field),
            );
        }
    };
    let types = match &params.types {
        None => None,
        Some(list) => {
            let parsed: Option<Vec<EntryType>> = list
                .split(',')
                .map(|t| EntryType::parse(t.trim()))
                .collect();
            match parsed {
                Some(t) => Some(t),
                None => {
                    return route_error(
                        StatusCode::BAD_REQUEST,
                        service::Code::Validation,
                        "types: unknown entry type".into(),
                        Some("types"),
                    );
                }
            }
        }
    };
    let include_descendants = match params.include_descendants.as_deref() {
        None | Some("false") => false,
        Some("true") if params.customer.is_some() => true,
        Some(value) => {
            let message = if value == "true" {
                "includeDescendants: name the `customer` whose descendants to include"
            } else {
                "includeDescendants: must be true or false"
            };
            return route_error(
                StatusCode::BAD_REQUEST,
                service::Code::Validation,
                message.into(),
                Some("includeDescendants"),
            );
        }
    };
    let customer_id = match &params.customer {
        Some(external) => match customers::get(
            &state.db,
            tenant_id,
            &CustomerRef::ExternalId(external.clone()),
        )
        .await
        {
            Ok(c) => Some(c.id),
            Err(e) => return domain_error(&e),
        },
        None => None,
    };
    let credit_system_id = match &params.credit_system {
        Some(key) => {
            match credit_systems::get(&state.db, tenant_id, &CreditSystemRef::Key(key.clone()))
                .await
            {
                Ok(cs) => Some(cs.id.uuid()),
                Err(e) => return domain_error(&e),
            }
        }
        None => None,
    };
    let filter = exports::ExportFilter {
        scope: service::reports::Scope {
            customers: service::reports::Customers::of(customer_id, include_descendants),
            credit_system_id,
        },
        from,
        to,
        types,
    };
    let db = state.db.clone();
    // State: (after, finished). The header goes first; then a page per
    // poll, until a page comes back short.
    let header = futures_util::stream::once(async {
        Ok::<_, std::io::Error>(axum::body::Bytes::from(exports::csv_line(&exports::HEADER)))
    });
    let pages = futures_util::stream::unfold((None, false), move |(after, finished)| {
        let db = db.clone();
        let filter = filter.clone();
        async move {
            if finished {
                return None;
            }
            match exports::page(&db, tenant_id, &filter, after, exports::PAGE_ROWS).await {
                Ok(rows) => {
                    let last = rows.last().map(|r| r.entry_id);
                    let done = (rows.len() as u64) < exports::PAGE_ROWS;
                    let mut chunk = String::new();
                    for row in &rows {
                        chunk.push_str(&exports::csv_line(&row.fields()));
                    }
                    Some((Ok(axum::body::Bytes::from(chunk)), (last.or(after), done)))
                }
                Err(e) => {
                    tracing::error!(error = %e, "export page failed");
                    Some((Err(std::io::Error::other("export failed")), (after, true)))
                }
            }
        }
    });
    let body = axum::body::Body::from_stream(futures_util::StreamExt::chain(header, pages));
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"entries.csv\"",
            ),
        ],
        body,
    )
        .into_response()
}
