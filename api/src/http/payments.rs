//! `POST /payments/stripe/{intake}` and `POST /payments/mercadopago/{intake}`:
//! payment providers' notifications (`service::payments`). No API key —
//! providers can't send one: the intake id in the path names the tenant
//! and the provider's signature proves the sender.
//!
//! Answers, so a provider retries exactly when retrying can help:
//! - `200 {"received": true, "outcome": …}`: processed, ignored, or seen
//!   before (`"replay": true`);
//! - `400 {"error": …}`: the signature is missing, wrong or stale, or a
//!   signed notification is malformed — a retry would be refused again;
//! - `404`: no intake at this URL;
//! - `413`: a body over 1 MiB;
//! - `503`: our database or the provider's API failed — retry.

use std::sync::Arc;

use axum::{
    Json,
    body::Bytes,
    extract::{Path, RawQuery, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::json;
use service::{
    notifications::TargetPolicy,
    payments::{self, IntakeError, MercadoPagoNotification, Received},
};
use worker::transports::{HttpTransport, PROVIDER_API_TIMEOUT};

use super::AppState;

/// How the payment intake reaches providers' APIs.
#[derive(Clone)]
pub struct Payments {
    /// `None` when the HTTP client could not be built (logged at start):
    /// Mercado Pago notifications then answer 503.
    http: Option<Arc<HttpTransport>>,
    mercadopago_api_url: String,
}

impl Payments {
    /// Provider APIs reached under `targets` (`WEBHOOK_ALLOW_PRIVATE`);
    /// Mercado Pago's at `mercadopago_api_url` (`MERCADOPAGO_API_URL`).
    pub fn new(targets: TargetPolicy, mercadopago_api_url: &str) -> Self {
        let http = match HttpTransport::new(PROVIDER_API_TIMEOUT, targets) {
            Ok(h) => Some(Arc::new(h)),
            Err(e) => {
                tracing::error!(error = %e, "payment providers' HTTP client");
                None
            }
        };
        Self {
            http,
            mercadopago_api_url: mercadopago_api_url.trim_end_matches('/').to_owned(),
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn answer(provider: &str, result: Result<Received, IntakeError>) -> Response {
    match result {
        Ok(r) => {
            tracing::info!(
                provider,
                outcome = r.outcome.as_str(),
                replay = r.replay,
                order = ?r.order_id,
                detail = r.detail.as_deref().unwrap_or(""),
                "payment notification"
            );
            Json(json!({
                "received": true,
                "outcome": r.outcome.as_str(),
                "replay": r.replay,
            }))
            .into_response()
        }
        Err(e) => {
            let status = match &e {
                IntakeError::UnknownIntake => StatusCode::NOT_FOUND,
                IntakeError::Signature(_) | IntakeError::Malformed(_) => StatusCode::BAD_REQUEST,
                IntakeError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            tracing::warn!(provider, error = %e, "payment notification refused");
            (status, Json(json!({ "error": e.to_string() }))).into_response()
        }
    }
}

pub async fn stripe(
    State(state): State<AppState>,
    Path(intake): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = payments::receive_stripe(
        &state.db,
        state.clock.as_ref(),
        &intake,
        header(&headers, "stripe-signature"),
        &body,
    )
    .await;
    answer("stripe", result)
}

pub async fn mercadopago(
    State(state): State<AppState>,
    Path(intake): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query: Vec<(String, String)> = query
        .as_deref()
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default();
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let Some(http) = state.payments.http.as_deref() else {
        return answer(
            "mercadopago",
            Err(IntakeError::Unavailable("no HTTP client".into())),
        );
    };
    let notification = MercadoPagoNotification {
        signature: header(&headers, "x-signature"),
        request_id: header(&headers, "x-request-id"),
        query_data_id: param("data.id").or(param("id")),
        query_type: param("type").or(param("topic")),
        body: &body,
    };
    let result = payments::receive_mercadopago(
        &state.db,
        state.clock.as_ref(),
        http,
        &state.payments.mercadopago_api_url,
        &intake,
        &notification,
    )
    .await;
    answer("mercadopago", result)
}
