//! Webhook endpoints, signatures and deliveries.
//!
//! # Signatures: Standard Webhooks
//! Deliveries are signed as the [Standard Webhooks] specification says, so
//! receivers verify them with its libraries (`standardwebhooks` on npm,
//! PyPI, crates.io, …). Each POST carries
//! - `webhook-id`: the event id (`evt_…`, the body's `id`), the same on every attempt and every
//!   redelivery of the event (receivers deduplicate on it: delivery is at
//!   least once);
//! - `webhook-timestamp`: Unix seconds of this attempt;
//! - `webhook-signature`: `v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<raw body>")>`,
//!   where the key is the endpoint secret `whsec_<base64>` without its
//!   prefix, base64-decoded. For [`PREVIOUS_SECRET_TTL`] after
//!   [`rotate_secret`] there are two, space-separated: one under the new
//!   secret, one under the replaced one, so a receiver verifies with
//!   either while it switches.
//!
//! A receiver recomputes the signature over the raw bytes, compares in
//! constant time with each one given, and refuses timestamps more than five
//! minutes away from its clock (replays). [`verify`] does exactly that.
//!
//! [Standard Webhooks]: https://www.standardwebhooks.com/
//!
//! Secrets are stored sealed ([`crate::secrets`]), bound to their endpoint
//! and column; they are opened only to sign.
//!
//! # Delivery
//! Timeouts, connection errors, 5xx, 408 and 429 are retried on
//! [`super::retry::WEBHOOK_DELAYS`] (at least `Retry-After`); other answers
//! stop at once. Every attempt is kept. An endpoint whose deliveries fail
//! for good [`DISABLE_AFTER`] times in a row is disabled and the tenant's
//! admin email is told. Delivery is at least once: a worker that dies after
//! sending but before recording may send again, with the same event id.

use base64::{Engine as _, engine::general_purpose::STANDARD};
use chrono::{DateTime, Duration, Utc};
use entity::{tenant, webhook_attempt, webhook_delivery, webhook_endpoint};
use futures_util::StreamExt;
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait, LockBehavior, LockType},
};
use sha2::Sha256;
use uuid::Uuid;

use super::{
    Error, WebhookTransport, email,
    retry::{self, Outcome, WEBHOOK_DELAYS},
    targets::{self, TargetPolicy},
};
use crate::{
    Clock, Db,
    error::Invalid,
    ids::{EventId, WebhookDeliveryId, WebhookEndpointId},
    outbox::EventType,
    pagination::{Page, PageRequest},
    secrets::{self, Sealer, Slot},
};

/// Deliveries failing for good in a row before an endpoint is disabled.
pub const DISABLE_AFTER: i32 = 3;
/// How long a worker holds a delivery it is sending.
const LEASE: Duration = Duration::minutes(2);
/// Signatures older or newer than this are refused by [`verify`].
pub const TOLERANCE_SECS: i64 = 300;
/// How long the secret [`rotate_secret`] replaced keeps signing beside the
/// new one.
pub const PREVIOUS_SECRET_TTL: Duration = Duration::hours(24);

/// The Standard Webhooks headers of a delivery.
pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";
/// Endpoint secrets read `whsec_<base64 of the HMAC key>`.
pub const SECRET_PREFIX: &str = "whsec_";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub id: WebhookEndpointId,
    pub url: String,
    pub description: String,
    pub events: Vec<EventType>,
    pub enabled: bool,
    pub consecutive_failures: i32,
    pub disabled_at: Option<DateTime<Utc>>,
    /// Until when the secret replaced by the last rotation signs too.
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl From<webhook_endpoint::Model> for Endpoint {
    fn from(m: webhook_endpoint::Model) -> Self {
        let events = m
            .events
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().and_then(EventType::parse))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            id: WebhookEndpointId::from_uuid(m.id),
            url: m.url,
            description: m.description,
            events,
            enabled: m.enabled,
            consecutive_failures: m.consecutive_failures,
            disabled_at: m.disabled_at,
            previous_secret_expires_at: m.previous_secret_expires_at,
            created_at: m.created_at,
        }
    }
}

/// An endpoint just created or re-keyed: the only time its secret is shown.
#[derive(Debug, Clone)]
pub struct EndpointWithSecret {
    pub endpoint: Endpoint,
    pub secret: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub number: i32,
    pub attempted_at: DateTime<Utc>,
    pub status_code: Option<i32>,
    pub duration_ms: i64,
    pub error: Option<String>,
    pub response_snippet: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: WebhookDeliveryId,
    pub endpoint_id: WebhookEndpointId,
    pub event_id: EventId,
    pub event_type: String,
    pub body: String,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_status_code: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<webhook_delivery::Model> for Delivery {
    fn from(m: webhook_delivery::Model) -> Self {
        Self {
            id: WebhookDeliveryId::from_uuid(m.id),
            endpoint_id: WebhookEndpointId::from_uuid(m.endpoint_id),
            event_id: EventId::from_uuid(m.event_id),
            event_type: m.event_type,
            body: m.body,
            status: m.status,
            attempts: m.attempts,
            next_attempt_at: m.next_attempt_at,
            last_status_code: m.last_status_code,
            created_at: m.created_at,
            finished_at: m.finished_at,
        }
    }
}

// ---------------------------------------------------------------- signing

/// The HMAC key of an endpoint secret: what follows `whsec_`,
/// base64-decoded (as the Standard Webhooks libraries read it). `None`
/// when it is not base64 or empty.
fn signing_key(secret: &str) -> Option<Vec<u8>> {
    let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    STANDARD.decode(encoded).ok().filter(|key| !key.is_empty())
}

fn mac(key: &[u8], msg_id: &str, timestamp: &str, body: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    mac
}

/// The `webhook-signature` value of a delivery: `v1,<base64 HMAC-SHA256(key,
/// "<msg_id>.<timestamp>.<body>")>` for each secret, space-separated, in
/// the order given. `None` if a secret is not `whsec_<base64>`.
pub fn sign(secrets: &[&str], msg_id: &str, timestamp: i64, body: &str) -> Option<String> {
    let timestamp = timestamp.to_string();
    let signatures = secrets
        .iter()
        .map(|secret| {
            let key = signing_key(secret)?;
            let tag = mac(&key, msg_id, &timestamp, body).finalize().into_bytes();
            Some(format!("v1,{}", STANDARD.encode(tag)))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(signatures.join(" "))
}

/// What a receiver got: the `webhook-id`, `webhook-timestamp` and
/// `webhook-signature` headers and the body, as sent.
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    pub msg_id: &'a str,
    pub timestamp: &'a str,
    pub signatures: &'a str,
    pub body: &'a str,
}

/// What a receiver does: one of the space-separated `v1,` signatures is
/// the HMAC of `"<msg_id>.<timestamp>.<body>"` under `secret` (compared in
/// constant time), and the timestamp is within five minutes of `now`.
pub fn verify(secret: &str, received: &Received<'_>, now: DateTime<Utc>) -> bool {
    let Received {
        msg_id,
        timestamp,
        signatures,
        body,
    } = *received;
    let Ok(ts) = timestamp.parse::<i64>() else {
        return false;
    };
    if (now.timestamp() - ts).abs() > TOLERANCE_SECS {
        return false;
    }
    let Some(key) = signing_key(secret) else {
        return false;
    };
    signatures.split(' ').any(|versioned| {
        versioned
            .strip_prefix("v1,")
            .and_then(|sig| STANDARD.decode(sig).ok())
            .is_some_and(|given| {
                mac(&key, msg_id, timestamp, body)
                    .verify_slice(&given)
                    .is_ok()
            })
    })
}

/// The secrets a delivery attempted at `now` is signed with, opened: the
/// endpoint's own, then the one its last rotation replaced while that
/// still overlaps.
fn signing_secrets(
    sealer: &Sealer,
    endpoint: &webhook_endpoint::Model,
    now: DateTime<Utc>,
) -> Result<Vec<String>, secrets::Error> {
    let endpoint_id = endpoint.id;
    let mut opened = vec![sealer.open(Slot::WebhookSecret { endpoint_id }, &endpoint.secret)?];
    if let (Some(previous), Some(until)) = (
        endpoint.previous_secret.as_deref(),
        endpoint.previous_secret_expires_at,
    ) && now < until
    {
        opened.push(sealer.open(Slot::WebhookPreviousSecret { endpoint_id }, previous)?);
    }
    Ok(opened)
}

/// `whsec_` and the base64 of 32 random bytes.
fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes))
}

// ---------------------------------------------------------------- endpoints

/// How many event types one endpoint may name (duplicates included).
const EVENTS_MAX: usize = 50;

fn parse_description(description: &str) -> Result<String, Invalid> {
    crate::input::text("description", description, crate::input::TEXT_LEN_MAX)
}

fn parse_url(url: &str, targets: TargetPolicy) -> Result<(String, url::Url), Invalid> {
    let url = url.trim();
    let ok = (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() <= 2000
        && url
            .split("://")
            .nth(1)
            .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
        && !url.contains(|c: char| c.is_whitespace() || c.is_control());
    if !ok {
        return Err(Invalid::new(
            "url",
            "must be an http:// or https:// URL of at most 2000 characters, without spaces",
        ));
    }
    let parsed =
        targets::check_url(url, targets).map_err(|why| Invalid::new("url", why.to_string()))?;
    Ok((url.to_owned(), parsed))
}

/// [`parse_url`], then the addresses its host resolves to (see
/// [`targets::check_resolved`]).
async fn check_target(url: &str, targets: TargetPolicy) -> Result<String, Invalid> {
    let (url, parsed) = parse_url(url, targets)?;
    targets::check_resolved(&parsed, targets)
        .await
        .map_err(|why| Invalid::new("url", why.to_string()))?;
    Ok(url)
}

fn parse_events(events: &[String]) -> Result<serde_json::Value, Invalid> {
    if events.is_empty() || events.len() > EVENTS_MAX {
        return Err(Invalid::new(
            "events",
            format!("name 1 to {EVENTS_MAX} event types"),
        ));
    }
    let mut parsed = Vec::new();
    for e in events {
        let t = EventType::parse(e).ok_or_else(|| {
            Invalid::new(
                "events",
                format!(
                    "name only known event types: {}",
                    EventType::ALL.map(EventType::as_str).join(", ")
                ),
            )
        })?;
        if !parsed.contains(&t.as_str()) {
            parsed.push(t.as_str());
        }
    }
    Ok(serde_json::json!(parsed))
}

/// Creates an endpoint (ADMIN); its signing secret is returned this once.
/// `credits.consumed` is delivered only to endpoints that name it. The URL
/// must be one `targets` allows (see [`super::targets`]).
pub async fn create_endpoint(
    db: &Db,
    clock: &dyn Clock,
    targets: TargetPolicy,
    tenant_id: Uuid,
    url: &str,
    events: &[String],
    description: &str,
) -> Result<EndpointWithSecret, Error> {
    let url = check_target(url, targets).await?;
    let events = parse_events(events)?;
    let description = parse_description(description)?;
    let secret = new_secret();
    let id = Uuid::now_v7();
    let sealed = db
        .sealer()?
        .seal(Slot::WebhookSecret { endpoint_id: id }, &secret);
    let now = clock.now();
    let txn = db.begin_write().await?;
    let m = webhook_endpoint::ActiveModel {
        id: Set(id),
        tenant_id: Set(tenant_id),
        url: Set(url),
        description: Set(description),
        events: Set(events),
        secret: Set(sealed),
        previous_secret: Set(None),
        previous_secret_expires_at: Set(None),
        enabled: Set(true),
        consecutive_failures: Set(0),
        disabled_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await?;
    crate::audit_log::note_created(WebhookEndpointId::from_uuid(m.id));
    txn.commit().await?;
    Ok(EndpointWithSecret {
        endpoint: m.into(),
        secret,
    })
}

async fn find(
    db: &Db,
    tenant_id: Uuid,
    id: WebhookEndpointId,
) -> Result<webhook_endpoint::Model, Error> {
    webhook_endpoint::Entity::find_by_id(id.uuid())
        .filter(webhook_endpoint::Column::TenantId.eq(tenant_id))
        .one(db.writer())
        .await?
        .ok_or(Error::NotFound("endpoint"))
}

#[derive(Debug, Clone, Default)]
pub struct EndpointPatch {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
    /// `true` re-enables a disabled endpoint (and forgets its failures).
    pub enabled: Option<bool>,
}

/// Changes an endpoint; a new URL is checked as [`create_endpoint`] checks it.
pub async fn update_endpoint(
    db: &Db,
    clock: &dyn Clock,
    targets: TargetPolicy,
    tenant_id: Uuid,
    id: WebhookEndpointId,
    patch: &EndpointPatch,
) -> Result<Endpoint, Error> {
    let url = match patch.url.as_deref() {
        Some(url) => Some(check_target(url, targets).await?),
        None => None,
    };
    let events = patch.events.as_deref().map(parse_events).transpose()?;
    let description = patch
        .description
        .as_deref()
        .map(parse_description)
        .transpose()?;
    let m = find(db, tenant_id, id).await?;
    let mut active = m.into_active_model();
    if let Some(url) = url {
        active.url = Set(url);
    }
    if let Some(events) = events {
        active.events = Set(events);
    }
    if let Some(d) = description {
        active.description = Set(d);
    }
    if let Some(enabled) = patch.enabled {
        active.enabled = Set(enabled);
        if enabled {
            active.consecutive_failures = Set(0);
            active.disabled_at = Set(None);
        }
    }
    active.updated_at = Set(clock.now());
    let txn = db.begin_write().await?;
    let m = active.update(&txn).await?;
    txn.commit().await?;
    Ok(m.into())
}

/// A new secret, returned this once. The replaced one keeps signing beside
/// it for [`PREVIOUS_SECRET_TTL`] (each delivery then carries both
/// signatures), so the receiver can switch without refusing anything; a
/// second rotation within that time drops the oldest at once.
pub async fn rotate_secret(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    id: WebhookEndpointId,
) -> Result<EndpointWithSecret, Error> {
    let sealer = db.sealer()?;
    let m = find(db, tenant_id, id).await?;
    let secret = new_secret();
    let now = clock.now();
    // Sealed under the row's id (the secret's associated data).
    let id = id.uuid();
    // Re-sealed for its new column.
    let previous = sealer.open(Slot::WebhookSecret { endpoint_id: id }, &m.secret)?;
    let previous = sealer.seal(Slot::WebhookPreviousSecret { endpoint_id: id }, &previous);
    let mut active = m.into_active_model();
    active.secret = Set(sealer.seal(Slot::WebhookSecret { endpoint_id: id }, &secret));
    active.previous_secret = Set(Some(previous));
    active.previous_secret_expires_at = Set(Some(now + PREVIOUS_SECRET_TTL));
    active.updated_at = Set(now);
    let txn = db.begin_write().await?;
    let m = active.update(&txn).await?;
    txn.commit().await?;
    Ok(EndpointWithSecret {
        endpoint: m.into(),
        secret,
    })
}

/// Deletes an endpoint with its deliveries and their attempts.
pub async fn delete_endpoint(
    db: &Db,
    tenant_id: Uuid,
    id: WebhookEndpointId,
) -> Result<Endpoint, Error> {
    let m = find(db, tenant_id, id).await?;
    let txn = db.begin_write().await?;
    let deliveries: Vec<Uuid> = webhook_delivery::Entity::find()
        .select_only()
        .column(webhook_delivery::Column::Id)
        .filter(webhook_delivery::Column::TenantId.eq(tenant_id))
        .filter(webhook_delivery::Column::EndpointId.eq(id))
        .into_tuple()
        .all(&txn)
        .await?;
    for chunk in deliveries.chunks(500) {
        webhook_attempt::Entity::delete_many()
            .filter(webhook_attempt::Column::DeliveryId.is_in(chunk.iter().copied()))
            .exec(&txn)
            .await?;
    }
    webhook_delivery::Entity::delete_many()
        .filter(webhook_delivery::Column::TenantId.eq(tenant_id))
        .filter(webhook_delivery::Column::EndpointId.eq(id))
        .exec(&txn)
        .await?;
    webhook_endpoint::Entity::delete_by_id(id.uuid())
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(m.into())
}

pub async fn list_endpoints(
    db: &Db,
    tenant_id: Uuid,
    page: PageRequest,
) -> Result<Page<Endpoint>, Error> {
    let mut q =
        webhook_endpoint::Entity::find().filter(webhook_endpoint::Column::TenantId.eq(tenant_id));
    if let Some(after) = page.after {
        q = q.filter(webhook_endpoint::Column::Id.gt(after));
    }
    let rows = q
        .order_by_asc(webhook_endpoint::Column::Id)
        .limit(page.fetch_limit())
        .all(db.reader())
        .await?;
    Ok(page.finish(rows.into_iter().map(Into::into).collect()))
}

/// Deliveries, newest first, optionally of one endpoint and one status.
pub async fn list_deliveries(
    db: &Db,
    tenant_id: Uuid,
    endpoint_id: Option<WebhookEndpointId>,
    status: Option<&str>,
    page: PageRequest,
) -> Result<Page<Delivery>, Error> {
    let mut q =
        webhook_delivery::Entity::find().filter(webhook_delivery::Column::TenantId.eq(tenant_id));
    if let Some(e) = endpoint_id {
        q = q.filter(webhook_delivery::Column::EndpointId.eq(e));
    }
    if let Some(s) = status {
        let s = crate::input::key("status", s)?;
        q = q.filter(webhook_delivery::Column::Status.eq(s));
    }
    if let Some(after) = page.after {
        q = q.filter(webhook_delivery::Column::Id.lt(after));
    }
    let rows = q
        .order_by_desc(webhook_delivery::Column::Id)
        .limit(page.fetch_limit())
        .all(db.reader())
        .await?;
    Ok(page.finish(rows.into_iter().map(Into::into).collect()))
}

/// The attempts of these deliveries, in order.
pub async fn attempts_of(
    db: &Db,
    tenant_id: Uuid,
    delivery_ids: &[WebhookDeliveryId],
) -> Result<Vec<(WebhookDeliveryId, Attempt)>, Error> {
    Ok(webhook_attempt::Entity::find()
        .filter(webhook_attempt::Column::TenantId.eq(tenant_id))
        .filter(webhook_attempt::Column::DeliveryId.is_in(delivery_ids.iter().copied()))
        .order_by_asc(webhook_attempt::Column::Number)
        .all(db.reader())
        .await?
        .into_iter()
        .map(|a| {
            (
                WebhookDeliveryId::from_uuid(a.delivery_id),
                Attempt {
                    number: a.number,
                    attempted_at: a.attempted_at,
                    status_code: a.status_code,
                    duration_ms: a.duration_ms,
                    error: a.error,
                    response_snippet: a.response_snippet,
                },
            )
        })
        .collect())
}

/// Sends a delivery's event again, as a new delivery (attempts from 1).
pub async fn redeliver(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    delivery_id: WebhookDeliveryId,
) -> Result<Delivery, Error> {
    let d = webhook_delivery::Entity::find_by_id(delivery_id.uuid())
        .filter(webhook_delivery::Column::TenantId.eq(tenant_id))
        .one(db.reader())
        .await?
        .ok_or(Error::NotFound("delivery"))?;
    let now = clock.now();
    let txn = db.begin_write().await?;
    let m = new_delivery(
        tenant_id,
        d.endpoint_id,
        d.event_id,
        &d.event_type,
        d.body,
        now,
    )
    .insert(&txn)
    .await?;
    txn.commit().await?;
    Ok(m.into())
}

/// A delivery's `webhook-id`: its body's `id` (`evt_…`). A body stored
/// before ids were prefixed carries the bare event id it was first sent
/// with, and keeps it, so a receiver deduplicating on the header sees a
/// retry across the upgrade as the same message.
fn message_id(d: &webhook_delivery::Model) -> String {
    #[derive(serde::Deserialize)]
    struct Envelope {
        id: String,
    }
    serde_json::from_str::<Envelope>(&d.body)
        .map(|e| e.id)
        .unwrap_or_else(|_| super::payloads::event_id(EventId::from_uuid(d.event_id)))
}

pub(crate) fn new_delivery(
    tenant_id: Uuid,
    endpoint_id: Uuid,
    event_id: Uuid,
    event_type: &str,
    body: String,
    now: DateTime<Utc>,
) -> webhook_delivery::ActiveModel {
    webhook_delivery::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(tenant_id),
        endpoint_id: Set(endpoint_id),
        event_id: Set(event_id),
        event_type: Set(event_type.to_owned()),
        body: Set(body),
        status: Set("PENDING".into()),
        attempts: Set(0),
        next_attempt_at: Set(now),
        lease_until: Set(None),
        last_status_code: Set(None),
        created_at: Set(now),
        finished_at: Set(None),
    }
}

// ---------------------------------------------------------------- sending

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendReport {
    pub attempted: u64,
    pub delivered: u64,
    pub failed: u64,
}

/// How many attempts are in flight at once, in all and per endpoint;
/// shared by every delivery run of a process, so overlapping runs keep
/// to the same caps.
#[derive(Debug)]
pub struct InFlight {
    all: std::sync::Arc<tokio::sync::Semaphore>,
    per_endpoint_max: usize,
    endpoints:
        std::sync::Mutex<std::collections::HashMap<Uuid, std::sync::Arc<tokio::sync::Semaphore>>>,
}

/// Attempts in flight at once, in all.
pub const IN_FLIGHT_MAX: usize = 32;
/// Attempts in flight at once to one endpoint.
pub const IN_FLIGHT_PER_ENDPOINT_MAX: usize = 4;
/// How long a delivery run waits for a free slot before it hands the
/// deliveries it has not started back (unleased) for the next run.
pub const RUN_BUDGET: std::time::Duration = std::time::Duration::from_secs(5);

impl Default for InFlight {
    fn default() -> Self {
        Self::new(IN_FLIGHT_MAX, IN_FLIGHT_PER_ENDPOINT_MAX)
    }
}

impl InFlight {
    pub fn new(all_max: usize, per_endpoint_max: usize) -> Self {
        assert!(all_max > 0 && per_endpoint_max > 0, "caps must be positive");
        Self {
            all: std::sync::Arc::new(tokio::sync::Semaphore::new(all_max)),
            per_endpoint_max,
            endpoints: Default::default(),
        }
    }

    fn endpoint(&self, id: Uuid) -> std::sync::Arc<tokio::sync::Semaphore> {
        let mut map = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        // Forget idle endpoints now and then (bounded map).
        if map.len() > 10_000 {
            map.retain(|_, s| s.available_permits() < self.per_endpoint_max);
        }
        map.entry(id)
            .or_insert_with(|| {
                std::sync::Arc::new(tokio::sync::Semaphore::new(self.per_endpoint_max))
            })
            .clone()
    }

    /// Up to `wanted` of the endpoint's free slots, taken now (none: every
    /// slot is busy, so the endpoint gets nothing this run).
    fn take_slots(&self, id: Uuid, wanted: usize) -> Vec<tokio::sync::OwnedSemaphorePermit> {
        let slots = self.endpoint(id);
        (0..wanted.min(self.per_endpoint_max))
            .map_while(|_| slots.clone().try_acquire_owned().ok())
            .collect()
    }
}

/// Sends every delivery due now (at most `limit`), one attempt each, with
/// the default caps and budget (see [`deliver_due_with`]).
pub async fn deliver_due(
    db: &Db,
    clock: &dyn Clock,
    transport: &impl WebhookTransport,
    limit: u64,
) -> Result<SendReport, Error> {
    deliver_due_with(
        db,
        clock,
        transport,
        &InFlight::default(),
        limit,
        RUN_BUDGET,
    )
    .await
}

/// Sends deliveries due now (at most `limit`), one attempt each,
/// concurrently: at most [`InFlight`]'s caps at once, in all and per
/// endpoint, so a slow or dead endpoint holds only its own slots.
///
/// The due deliveries are claimed (leased) in one transaction
/// (PostgreSQL: `FOR UPDATE SKIP LOCKED`; deliveries of an endpoint whose
/// slots are all busy are left for the next run). A claimed delivery that
/// has not got a slot within `budget` is handed back unleased; an attempt
/// under way is bounded by the transport's timeout.
pub async fn deliver_due_with(
    db: &Db,
    clock: &dyn Clock,
    transport: &impl WebhookTransport,
    in_flight: &InFlight,
    limit: u64,
    budget: std::time::Duration,
) -> Result<SendReport, Error> {
    let deadline = tokio::time::Instant::now() + budget;
    let now = clock.now();
    let txn = db.begin_write().await?;
    let candidates = webhook_delivery::Entity::find()
        .filter(webhook_delivery::Column::Status.eq("PENDING"))
        .filter(webhook_delivery::Column::NextAttemptAt.lte(now))
        .filter(
            sea_orm::Condition::any()
                .add(webhook_delivery::Column::LeaseUntil.is_null())
                .add(webhook_delivery::Column::LeaseUntil.lt(now)),
        )
        .order_by_asc(webhook_delivery::Column::NextAttemptAt)
        .limit(limit)
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .all(&txn)
        .await?;
    // Per endpoint, the slots this run holds: an endpoint whose slots
    // are all busy (a slow one, still answering an earlier run) is left
    // alone, and this run never waits for another run's slots.
    let mut by_endpoint: Vec<(
        Uuid,
        Vec<tokio::sync::OwnedSemaphorePermit>,
        Vec<webhook_delivery::Model>,
    )> = Vec::new();
    for d in candidates {
        match by_endpoint
            .iter_mut()
            .find(|(id, _, _)| *id == d.endpoint_id)
        {
            Some((_, _, queue)) => queue.push(d),
            None => by_endpoint.push((d.endpoint_id, Vec::new(), vec![d])),
        }
    }
    for (id, slots, queue) in &mut by_endpoint {
        *slots = in_flight.take_slots(*id, queue.len());
    }
    by_endpoint.retain(|(_, slots, _)| !slots.is_empty());
    if by_endpoint.is_empty() {
        return Ok(SendReport::default());
    }
    let ids: Vec<Uuid> = by_endpoint
        .iter()
        .flat_map(|(_, _, queue)| queue.iter().map(|d| d.id))
        .collect();
    for chunk in ids.chunks(1_000) {
        webhook_delivery::Entity::update_many()
            .col_expr(
                webhook_delivery::Column::LeaseUntil,
                Expr::value(now + LEASE),
            )
            .filter(webhook_delivery::Column::Id.is_in(chunk.iter().copied()))
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    let endpoints: std::collections::HashMap<Uuid, webhook_endpoint::Model> =
        webhook_endpoint::Entity::find()
            .filter(webhook_endpoint::Column::Id.is_in(by_endpoint.iter().map(|(id, _, _)| *id)))
            .all(db.writer())
            .await?
            .into_iter()
            .map(|e| (e.id, e))
            .collect();

    // Each endpoint's queue, as many at a time as it has slots; all
    // endpoints side by side, within the global cap.
    let groups = by_endpoint.into_iter().map(|(id, slots, queue)| {
        let endpoint = endpoints.get(&id);
        async move {
            let mut report = SendReport::default();
            let mut unsent = Vec::new();
            let Some(endpoint) = endpoint else {
                // Deleted meanwhile (with its deliveries).
                return Ok::<_, Error>((report, unsent));
            };
            let width = slots.len();
            let results: Vec<(Uuid, Result<Option<Outcome>, Error>)> =
                futures_util::stream::iter(queue)
                    .map(|d| async move {
                        let id = d.id;
                        if tokio::time::Instant::now() >= deadline {
                            return (id, Ok(None)); // out of time: next run
                        }
                        let all = in_flight.all.clone();
                        let Ok(Ok(_all)) =
                            tokio::time::timeout_at(deadline, all.acquire_owned()).await
                        else {
                            return (id, Ok(None));
                        };
                        (
                            id,
                            attempt(db, clock, transport, endpoint, d).await.map(Some),
                        )
                    })
                    .buffer_unordered(width)
                    .collect()
                    .await;
            drop(slots);
            let mut first_error = None;
            for (id, r) in results {
                match r {
                    Ok(Some(outcome)) => {
                        report.attempted += 1;
                        match outcome {
                            Outcome::Delivered => report.delivered += 1,
                            Outcome::Stop => report.failed += 1,
                            Outcome::Retry => {}
                        }
                    }
                    Ok(None) => unsent.push(id),
                    Err(e) => {
                        tracing::warn!(error = %e, "recording a webhook attempt failed");
                        first_error.get_or_insert(e);
                    }
                }
            }
            match first_error {
                Some(e) => Err(e),
                None => Ok((report, unsent)),
            }
        }
    });
    let mut report = SendReport::default();
    let mut unsent: Vec<Uuid> = Vec::new();
    let mut first_error = None;
    let mut groups: futures_util::stream::FuturesUnordered<_> = groups.collect();
    while let Some(result) = groups.next().await {
        match result {
            Ok((r, u)) => {
                report.attempted += r.attempted;
                report.delivered += r.delivered;
                report.failed += r.failed;
                unsent.extend(u);
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if !unsent.is_empty() {
        let txn = db.begin_write().await?;
        for chunk in unsent.chunks(1_000) {
            webhook_delivery::Entity::update_many()
                .col_expr(
                    webhook_delivery::Column::LeaseUntil,
                    Expr::value(Option::<DateTime<Utc>>::None),
                )
                .filter(webhook_delivery::Column::Id.is_in(chunk.iter().copied()))
                .filter(webhook_delivery::Column::Status.eq("PENDING"))
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

#[tracing::instrument(
    name = "webhook.delivery",
    skip_all,
    fields(
        otel.kind = "client",
        tenant_id = %d.tenant_id,
        endpoint_id = %endpoint.id,
        delivery_id = %d.id,
        attempt = d.attempts + 1,
    )
)]
async fn attempt(
    db: &Db,
    clock: &dyn Clock,
    transport: &impl WebhookTransport,
    endpoint: &webhook_endpoint::Model,
    d: webhook_delivery::Model,
) -> Result<Outcome, Error> {
    let number = d.attempts + 1;
    let (outcome, status, retry_after, snippet, error, duration_ms) = if endpoint.enabled {
        let now = clock.now();
        let timestamp = now.timestamp();
        // The event id: the same on every attempt and redelivery.
        let msg_id = message_id(&d);
        let secrets = signing_secrets(db.sealer()?, endpoint, now)?;
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let signature =
            sign(&secrets, &msg_id, timestamp, &d.body).ok_or(Error::BrokenSecret(endpoint.id))?;
        let headers = vec![
            ("Content-Type".to_owned(), "application/json".to_owned()),
            (HEADER_ID.to_owned(), msg_id),
            (HEADER_TIMESTAMP.to_owned(), timestamp.to_string()),
            (HEADER_SIGNATURE.to_owned(), signature),
        ];
        let started = std::time::Instant::now();
        let result = transport.post(&endpoint.url, &headers, &d.body).await;
        let took = started.elapsed();
        crate::metrics::webhook_duration(took);
        let duration_ms = i64::try_from(took.as_millis()).unwrap_or(i64::MAX);
        match result {
            Ok(reply) => (
                retry::classify(Some(reply.status)),
                Some(i32::from(reply.status)),
                reply.retry_after,
                reply.body_snippet,
                None,
                duration_ms,
            ),
            Err(e) => (
                Outcome::Retry,
                None,
                None,
                String::new(),
                Some(match e {
                    super::TransportError::Timeout => "timeout".to_owned(),
                    super::TransportError::Connect(m) => format!("connection: {m}"),
                    super::TransportError::Refused(why) => format!("refused: {}", why.kind()),
                }),
                duration_ms,
            ),
        }
    } else {
        (
            Outcome::Stop,
            None,
            None,
            String::new(),
            Some("endpoint disabled".to_owned()),
            0,
        )
    };
    let now = clock.now();
    let seed = d.id.as_u128() as u64;
    let next = match outcome {
        Outcome::Retry => retry::next_delay(
            &WEBHOOK_DELAYS,
            u32::try_from(number).unwrap_or(u32::MAX),
            retry_after,
            seed,
        ),
        _ => None,
    };
    let txn = db.begin_write().await?;
    webhook_attempt::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(d.tenant_id),
        delivery_id: Set(d.id),
        number: Set(number),
        attempted_at: Set(now),
        status_code: Set(status),
        duration_ms: Set(duration_ms),
        error: Set(error),
        response_snippet: Set(snippet.chars().take(500).collect()),
    }
    .insert(&txn)
    .await?;
    let (final_outcome, status_text) = match (outcome, next) {
        (Outcome::Delivered, _) => (Outcome::Delivered, "DELIVERED"),
        (Outcome::Retry, Some(_)) => (Outcome::Retry, "PENDING"),
        _ => (Outcome::Stop, "FAILED"),
    };
    let mut active = d.into_active_model();
    active.attempts = Set(number);
    active.status = Set(status_text.to_owned());
    active.last_status_code = Set(status);
    active.lease_until = Set(None);
    if let Some(delay) = next {
        active.next_attempt_at = Set(now + Duration::from_std(delay).unwrap_or(Duration::days(1)));
    } else {
        active.finished_at = Set(Some(now));
    }
    active.update(&txn).await?;
    // The endpoint's health: a delivery done for good counts. Attempts to
    // one endpoint run side by side: count in SQL, not from the snapshot.
    if endpoint.enabled {
        match final_outcome {
            Outcome::Delivered => {
                webhook_endpoint::Entity::update_many()
                    .col_expr(
                        webhook_endpoint::Column::ConsecutiveFailures,
                        Expr::value(0),
                    )
                    .filter(webhook_endpoint::Column::Id.eq(endpoint.id))
                    .filter(webhook_endpoint::Column::ConsecutiveFailures.ne(0))
                    .exec(&txn)
                    .await?;
            }
            Outcome::Stop => {
                webhook_endpoint::Entity::update_many()
                    .col_expr(
                        webhook_endpoint::Column::ConsecutiveFailures,
                        Expr::col(webhook_endpoint::Column::ConsecutiveFailures).add(1),
                    )
                    .filter(webhook_endpoint::Column::Id.eq(endpoint.id))
                    .exec(&txn)
                    .await?;
                let failures = webhook_endpoint::Entity::find_by_id(endpoint.id)
                    .one(&txn)
                    .await?
                    .map_or(0, |e| e.consecutive_failures);
                if failures >= DISABLE_AFTER {
                    let disabled = webhook_endpoint::Entity::update_many()
                        .col_expr(webhook_endpoint::Column::Enabled, Expr::value(false))
                        .col_expr(webhook_endpoint::Column::DisabledAt, Expr::value(now))
                        .filter(webhook_endpoint::Column::Id.eq(endpoint.id))
                        .filter(webhook_endpoint::Column::Enabled.eq(true))
                        .exec(&txn)
                        .await?;
                    // Told once, by whichever attempt disabled it.
                    if disabled.rows_affected == 1
                        && let Some(admin) = tenant::Entity::find_by_id(endpoint.tenant_id)
                            .one(&txn)
                            .await?
                            .and_then(|t| t.admin_email)
                    {
                        email::queue_endpoint_disabled(&txn, endpoint, &admin, failures, now)
                            .await?;
                    }
                }
            }
            Outcome::Retry => {}
        }
    }
    txn.commit().await?;
    crate::metrics::webhook_attempt(match final_outcome {
        Outcome::Delivered => "delivered",
        Outcome::Retry => "retrying",
        Outcome::Stop => "failed",
    });
    Ok(final_outcome)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn the_webhook_id_is_the_bodys_id() {
        let event_id = Uuid::now_v7();
        let now = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
        let delivery = |body: String| webhook_delivery::Model {
            id: Uuid::now_v7(),
            tenant_id: Uuid::now_v7(),
            endpoint_id: Uuid::now_v7(),
            event_id,
            event_type: "credits.granted".into(),
            body,
            status: "PENDING".into(),
            attempts: 0,
            next_attempt_at: now,
            lease_until: None,
            last_status_code: None,
            created_at: now,
            finished_at: None,
        };
        let evt = super::super::payloads::event_id(crate::ids::EventId::from_uuid(event_id));
        let body = serde_json::json!({"id": evt, "type": "credits.granted", "data": {}});
        assert_eq!(message_id(&delivery(body.to_string())), evt);
        // Stored before ids were prefixed: the id it was first sent with.
        let legacy = serde_json::json!({"id": event_id, "data": {}});
        assert_eq!(
            message_id(&delivery(legacy.to_string())),
            event_id.to_string()
        );
        assert_eq!(message_id(&delivery("not json".into())), evt);
    }

    #[test]
    fn signatures_verify_the_way_a_receiver_checks_them() {
        let now = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
        let body = r#"{"id":"1","type":"credits.granted"}"#;
        let secret = new_secret();
        let other = new_secret();
        let id = "0193d3c2-5c1e-7000-8000-000000000001";
        let sig = sign(&[&secret], id, now.timestamp(), body).unwrap();
        assert!(sig.starts_with("v1,") && !sig.contains(' '));
        let ts = now.timestamp().to_string();
        let got = Received {
            msg_id: id,
            timestamp: &ts,
            signatures: &sig,
            body,
        };
        assert!(verify(&secret, &got, now));
        assert!(!verify(&other, &got, now));
        let other_id = Received {
            msg_id: "another-id",
            ..got
        };
        assert!(!verify(&secret, &other_id, now));
        let tampered = body.replace('1', "2");
        let tampered = Received {
            body: &tampered,
            ..got
        };
        assert!(!verify(&secret, &tampered, now));
        assert!(!verify(&secret, &got, now + Duration::seconds(301)));
        let bad_time = Received {
            timestamp: "x",
            ..got
        };
        assert!(!verify(&secret, &bad_time, now));
        // Two secrets: two signatures, each verifies with its own secret.
        let both = sign(&[&secret, &other], id, now.timestamp(), body).unwrap();
        assert_eq!(both.split(' ').count(), 2);
        assert!(both.starts_with(&sig));
        let got = Received {
            signatures: &both,
            ..got
        };
        assert!(verify(&secret, &got, now));
        assert!(verify(&other, &got, now));
        assert!(!verify(&new_secret(), &got, now));
        assert_eq!(sign(&[&secret, "whsec_not base64"], id, 1, body), None);
    }

    /// The specification's test vector (the libraries' own tests).
    #[test]
    fn signatures_match_the_standard_webhooks_test_vector() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let body = r#"{"test": 2432232314}"#;
        let expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        assert_eq!(sign(&[secret], id, 1_614_265_330, body).unwrap(), expected);
        let at = Utc.timestamp_opt(1_614_265_330, 0).unwrap();
        let got = Received {
            msg_id: id,
            timestamp: "1614265330",
            signatures: expected,
            body,
        };
        assert!(verify(secret, &got, at));
    }

    #[test]
    fn secrets_are_whsec_base64_and_old_hex_ones_still_sign() {
        let secret = new_secret();
        let key = signing_key(&secret).unwrap();
        assert_eq!(key.len(), 32);
        assert!(secret.starts_with("whsec_"));
        // Secrets made before Standard Webhooks (`whsec_<64 hex>`) are
        // valid base64 too: the libraries read the same 48-byte key.
        let hex_secret = format!("whsec_{}", "ab".repeat(32));
        assert_eq!(signing_key(&hex_secret).unwrap().len(), 48);
        assert_eq!(signing_key("whsec_"), None);
        assert_eq!(signing_key("whsec_%%%"), None);
    }

    #[test]
    fn a_replaced_secret_signs_until_its_overlap_ends() {
        let at = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
        let sealer = Sealer::new(&secrets::SecretsKey::generate());
        let endpoint_id = Uuid::now_v7();
        let endpoint =
            |previous: Option<&str>, until: Option<DateTime<Utc>>| webhook_endpoint::Model {
                id: endpoint_id,
                tenant_id: Uuid::nil(),
                url: String::new(),
                description: String::new(),
                events: serde_json::json!([]),
                secret: sealer.seal(Slot::WebhookSecret { endpoint_id }, "new"),
                previous_secret: previous
                    .map(|p| sealer.seal(Slot::WebhookPreviousSecret { endpoint_id }, p)),
                previous_secret_expires_at: until,
                enabled: true,
                consecutive_failures: 0,
                disabled_at: None,
                created_at: at,
                updated_at: at,
            };
        let until = at + PREVIOUS_SECRET_TTL;
        for (e, now, expected) in [
            (endpoint(None, None), at, vec!["new"]),
            (endpoint(Some("old"), Some(until)), at, vec!["new", "old"]),
            (
                endpoint(Some("old"), Some(until)),
                until - Duration::seconds(1),
                vec!["new", "old"],
            ),
            (endpoint(Some("old"), Some(until)), until, vec!["new"]),
            (endpoint(Some("old"), None), at, vec!["new"]),
        ] {
            assert_eq!(
                signing_secrets(&sealer, &e, now).unwrap(),
                expected,
                "at {now}"
            );
        }
    }

    #[test]
    fn urls_and_events_are_checked() {
        let public = TargetPolicy::PublicOnly;
        let dev = TargetPolicy::AllowPrivate;
        assert!(parse_url("https://hooks.example.com/credits", public).is_ok());
        assert_eq!(
            parse_url("http://127.0.0.1:8080/x", public)
                .unwrap_err()
                .field,
            "url"
        );
        assert!(parse_url("http://127.0.0.1:8080/x", dev).is_ok());
        for bad in [
            "ftp://x",
            "https://",
            "hooks.example.com",
            "https:///x",
            "https://a b",
            "https://a\0b",
            "https://a\u{7f}b",
        ] {
            assert_eq!(parse_url(bad, dev).unwrap_err().field, "url", "{bad}");
        }
        let long = format!("https://h.example/{}", "x".repeat(2000));
        assert_eq!(parse_url(&long, dev).unwrap_err().field, "url");
        // Refused, not cut to fit.
        assert!(parse_description(&"d".repeat(1000)).is_ok());
        assert_eq!(
            parse_description(&"d".repeat(1001)).unwrap_err().field,
            "description"
        );
        assert!(parse_description("a\0b").is_err());
        let many = vec!["credits.granted".to_owned(); EVENTS_MAX + 1];
        assert_eq!(parse_events(&many).unwrap_err().field, "events");
        assert!(parse_events(&["credits.granted".into()]).is_ok());
        assert_eq!(parse_events(&[]).unwrap_err().field, "events");
        assert_eq!(
            parse_events(&["credits.nope".into()]).unwrap_err().field,
            "events"
        );
    }
}
