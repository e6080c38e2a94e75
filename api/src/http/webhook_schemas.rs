//! `GET /webhooks/schemas` and `GET /webhooks/schemas/{event type}`: the
//! JSON Schemas (draft 2020-12) of the webhook bodies, one per event type
//! ([`service::notifications::payloads::SCHEMAS`]). Public and read-only:
//! they describe the product, not a tenant's data, so receivers' builds
//! can fetch them without a key.

use std::sync::LazyLock;

use axum::{
    extract::Path,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Map, Value};
use service::notifications::payloads::{SCHEMAS, schema};

/// `{"<event type>": schema, …}`, built once.
static ALL: LazyLock<String> = LazyLock::new(|| {
    let mut all = Map::new();
    for (name, text) in SCHEMAS {
        // Embedded files, parsed by a unit test: a broken one is a bug.
        let schema: Value = serde_json::from_str(text).unwrap_or_else(|e| {
            tracing::error!(error = %e, event_type = name, "webhook schema is not JSON");
            Value::Null
        });
        all.insert((*name).to_owned(), schema);
    }
    Value::Object(all).to_string()
});

fn json(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// Every event type's schema.
pub async fn all() -> Response {
    json(ALL.clone())
}

/// One event type's schema; 404 for a type there is none of.
pub async fn one(Path(event_type): Path<String>) -> Response {
    match schema(&event_type) {
        Some(text) => json(text.to_owned()),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({
                "error": "no such event type",
                "eventTypes": SCHEMAS.iter().map(|(name, _)| *name).collect::<Vec<_>>(),
            })),
        )
            .into_response(),
    }
}
