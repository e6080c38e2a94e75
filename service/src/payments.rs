//! Payment-provider intake: Stripe and Mercado Pago tell the engine about
//! payments, and the engine confirms, fails, refunds or flags the order
//! they name — through the same [`purchases`] functions as
//! `confirmTopUpPayment`, `failTopUpPayment` and `refundTopUpOrder`, so
//! the ledger effects are identical.
//!
//! - **Where.** An ADMIN sets a provider's secrets with [`set_provider`];
//!   the tenant's intake is then `POST /payments/<provider>/<intake id>`,
//!   the intake id being the tenant's id and 32 random hex digits (64 hex
//!   digits in all): providers can't send our API keys, so the URL names
//!   the tenant, and the signature proves the sender. Secrets are stored
//!   sealed ([`crate::secrets`]).
//! - **Stripe** ([`receive_stripe`]): `Stripe-Signature: t=…,v1=…` is
//!   HMAC-SHA256 (hex) under the endpoint's signing secret of
//!   `"{t}.{raw body}"`; `t` must be within 5 minutes of now (either way).
//!   `checkout.session.completed` (when `payment_status` is `paid`) and
//!   `payment_intent.succeeded` confirm the order in `metadata.order_id`,
//!   `payment_intent.payment_failed` fails it, `charge.refunded` refunds the
//!   share of it that `amount_refunded ÷ amount` says (the order is named by
//!   `metadata.order_id`, or found by its payment intent). Other events are
//!   acknowledged and ignored.
//! - **Mercado Pago** ([`receive_mercadopago`]): `x-signature: ts=…,v1=…` is
//!   HMAC-SHA256 (hex) under the webhook secret of the manifest
//!   `id:{data.id};request-id:{x-request-id};ts:{ts};` (`data.id` from the
//!   URL's query, lower-cased; a part whose value is missing is left out,
//!   as Mercado Pago documents). The notification says only which payment:
//!   the engine then fetches it from Mercado Pago's API with the tenant's
//!   access token ([`ProviderApi`]) and acts on its `status` and
//!   `external_reference` (the order id): `approved` confirms,
//!   `rejected`/`cancelled` fail, `refunded`/`charged_back` refund.
//! - **Idempotent** by the provider's id: each Stripe event id, each
//!   (Mercado Pago payment id, status), is recorded in `payment_event`;
//!   seen again, it changes nothing and is acknowledged.
//! - **Amounts.** What was paid must be the order's quote — `total` in its
//!   `currency` (Stripe amounts are integers of the currency's minor
//!   units) — or the order is flagged (`payment_issue`), not granted. A
//!   payment for an order that can no longer be paid (expired, failed, paid
//!   by another payment) is flagged too.

use std::future::Future;

use chrono::{DateTime, Duration, Utc};
use entity::{payment_event, payment_intake, top_up_order};
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use rust_decimal::Decimal;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DbErr, EntityTrait, IntoActiveModel,
    QueryFilter, QueryOrder, QuerySelect, sea_query::OnConflict,
};
use serde_json::Value as Json;
use sha2::Sha256;
use uuid::Uuid;

use crate::{
    Clock, Db, DomainError,
    error::{Code, Invalid},
    ids::OrderId,
    pricing,
    purchases::{self, TopUpOrder},
    secrets::{self, Slot},
};

/// How far a Stripe signature's timestamp may be from now, either way.
pub const STRIPE_TOLERANCE: Duration = Duration::minutes(5);

/// The most of a provider API's answer that is read.
pub const PROVIDER_REPLY_MAX_BYTES: usize = 64 * 1024;

/// Mercado Pago's API, unless `MERCADOPAGO_API_URL` says otherwise.
pub const MERCADOPAGO_API_URL: &str = "https://api.mercadopago.com";

const SECRET_CHARS_MAX: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    Stripe,
    MercadoPago,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Stripe => "stripe",
            Provider::MercadoPago => "mercadopago",
        }
    }

    fn parse(s: &str) -> Result<Self, DbErr> {
        match s {
            "stripe" => Ok(Provider::Stripe),
            "mercadopago" => Ok(Provider::MercadoPago),
            other => Err(DbErr::Custom(format!(
                "payment_intake has an unknown provider {other:?}"
            ))),
        }
    }
}

/// A tenant's intake of one provider (its secrets are never shown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intake {
    pub id: Uuid,
    pub provider: Provider,
    /// Where the provider must send its notifications:
    /// `/payments/<provider>/<intake id>` (prefix the API's public origin).
    pub path: String,
    pub has_access_token: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn intake_path(provider: Provider, tenant_id: Uuid, token: &str) -> String {
    format!(
        "/payments/{}/{}{}",
        provider.as_str(),
        tenant_id.simple(),
        token
    )
}

impl TryFrom<payment_intake::Model> for Intake {
    type Error = DbErr;

    fn try_from(m: payment_intake::Model) -> Result<Self, DbErr> {
        let provider = Provider::parse(&m.provider)?;
        Ok(Self {
            id: m.id,
            provider,
            path: intake_path(provider, m.tenant_id, &m.token),
            has_access_token: m.access_token.is_some(),
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("secrets: {0}")]
    Secrets(#[from] secrets::Error),
    #[error("database error")]
    Db(#[from] DbErr),
}

impl DomainError for Error {
    fn code(&self) -> Code {
        match self {
            Error::Invalid(_) => Code::Validation,
            Error::Secrets(_) | Error::Db(_) => Code::Internal,
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            Error::Invalid(e) => Some(&e.field),
            _ => None,
        }
    }
}

fn parse_secret(field: &str, value: &str) -> Result<String, Invalid> {
    let value = value.trim();
    if value.is_empty() {
        return Err(Invalid::new(field, "must not be empty"));
    }
    if value.chars().count() > SECRET_CHARS_MAX {
        return Err(Invalid::new(
            field,
            format!("must be at most {SECRET_CHARS_MAX} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Invalid::new(field, "must not contain control characters"));
    }
    Ok(value.to_owned())
}

/// Sets a provider's secrets for the tenant — Stripe: the endpoint's
/// signing secret (`whsec_…`); Mercado Pago: the webhook secret and the
/// API access token — and returns its intake. The first call makes the
/// intake (and its unguessable URL); later calls replace the secrets and
/// keep the URL.
pub async fn set_provider(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    provider: Provider,
    secret: &str,
    access_token: Option<&str>,
) -> Result<Intake, Error> {
    let secret = parse_secret("secret", secret)?;
    let access_token = match (provider, access_token) {
        (Provider::MercadoPago, None) => {
            return Err(Invalid::new(
                "accessToken",
                "Mercado Pago needs the access token the engine fetches payments with",
            )
            .into());
        }
        (Provider::MercadoPago, Some(t)) => Some(parse_secret("accessToken", t)?),
        (Provider::Stripe, Some(_)) => {
            return Err(Invalid::new("accessToken", "Stripe takes none").into());
        }
        (Provider::Stripe, None) => None,
    };
    let sealer = db.sealer()?;
    let now = clock.now();
    let txn = db.begin_write().await?;
    let existing = payment_intake::Entity::find()
        .filter(payment_intake::Column::TenantId.eq(tenant_id))
        .filter(payment_intake::Column::Provider.eq(provider.as_str()))
        .lock_exclusive()
        .one(&txn)
        .await?;
    let model = match existing {
        Some(m) => {
            let id = m.id;
            let mut active = m.into_active_model();
            active.secret = Set(sealer.seal(Slot::PaymentSecret { intake_id: id }, &secret));
            active.access_token =
                Set(access_token
                    .map(|t| sealer.seal(Slot::PaymentAccessToken { intake_id: id }, &t)));
            active.updated_at = Set(now);
            active.update(&txn).await?
        }
        None => {
            let id = Uuid::now_v7();
            let mut token = [0u8; 16];
            rand::rng().fill_bytes(&mut token);
            payment_intake::ActiveModel {
                id: Set(id),
                tenant_id: Set(tenant_id),
                provider: Set(provider.as_str().to_owned()),
                token: Set(hex::encode(token)),
                secret: Set(sealer.seal(Slot::PaymentSecret { intake_id: id }, &secret)),
                access_token: Set(access_token
                    .map(|t| sealer.seal(Slot::PaymentAccessToken { intake_id: id }, &t))),
                created_at: Set(now),
                updated_at: Set(now),
            }
            .insert(&txn)
            .await?
        }
    };
    txn.commit().await?;
    Ok(model.try_into()?)
}

/// The tenant's intakes, by provider.
pub async fn intakes(db: &Db, tenant_id: Uuid) -> Result<Vec<Intake>, Error> {
    Ok(payment_intake::Entity::find()
        .filter(payment_intake::Column::TenantId.eq(tenant_id))
        .order_by_asc(payment_intake::Column::Provider)
        .all(db.reader())
        .await?
        .into_iter()
        .map(Intake::try_from)
        .collect::<Result<_, _>>()?)
}

// ---------------------------------------------------------------- signatures

/// Why a notification was refused before anything was done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature header is missing")]
    Missing,
    #[error("the signature header is malformed")]
    Malformed,
    #[error("the signature's timestamp is more than 5 minutes from now")]
    Stale,
    #[error("no signature matches")]
    Mismatch,
}

/// `k=v` pairs of a signature header (`t=…,v1=…`), trimmed.
fn header_pairs(header: &str) -> impl Iterator<Item = (&str, &str)> {
    header
        .split(',')
        .filter_map(|part| part.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
}

fn hmac_matches(secret: &str, message: &[u8], hex_signature: &str) -> bool {
    let Ok(given) = hex::decode(hex_signature) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(message);
    // Constant time.
    mac.verify_slice(&given).is_ok()
}

/// Checks a `Stripe-Signature` header as Stripe documents: any `v1` equal
/// to HMAC-SHA256(secret, "{t}.{body}") in hex, `t` within
/// [`STRIPE_TOLERANCE`] of `now`.
pub fn verify_stripe(
    header: Option<&str>,
    body: &[u8],
    secret: &str,
    now: DateTime<Utc>,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for (k, v) in header_pairs(header) {
        match k {
            "t" => timestamp = Some(v),
            "v1" => signatures.push(v),
            _ => {}
        }
    }
    let t = timestamp.ok_or(SignatureError::Malformed)?;
    let seconds: i64 = t.parse().map_err(|_| SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let mut message = Vec::with_capacity(t.len() + 1 + body.len());
    message.extend_from_slice(t.as_bytes());
    message.push(b'.');
    message.extend_from_slice(body);
    if !signatures.iter().any(|s| hmac_matches(secret, &message, s)) {
        return Err(SignatureError::Mismatch);
    }
    let tolerance = STRIPE_TOLERANCE.num_seconds();
    if now.timestamp().abs_diff(seconds) > tolerance as u64 {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

/// The manifest Mercado Pago signs: `id:{data.id};request-id:{x-request-id};ts:{ts};`,
/// a part left out when its value is missing; `data.id` lower-cased.
pub fn mercadopago_manifest(data_id: Option<&str>, request_id: Option<&str>, ts: &str) -> String {
    let mut manifest = String::new();
    if let Some(id) = data_id.filter(|s| !s.is_empty()) {
        manifest.push_str(&format!("id:{};", id.to_ascii_lowercase()));
    }
    if let Some(r) = request_id.filter(|s| !s.is_empty()) {
        manifest.push_str(&format!("request-id:{r};"));
    }
    manifest.push_str(&format!("ts:{ts};"));
    manifest
}

/// Checks an `x-signature` header as Mercado Pago documents: `v1` equal to
/// HMAC-SHA256(secret, manifest) in hex.
pub fn verify_mercadopago(
    header: Option<&str>,
    data_id: Option<&str>,
    request_id: Option<&str>,
    secret: &str,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut ts = None;
    let mut v1 = None;
    for (k, v) in header_pairs(header) {
        match k {
            "ts" => ts = Some(v),
            "v1" => v1 = Some(v),
            _ => {}
        }
    }
    let (Some(ts), Some(v1)) = (ts, v1) else {
        return Err(SignatureError::Malformed);
    };
    let manifest = mercadopago_manifest(data_id, request_id, ts);
    if hmac_matches(secret, manifest.as_bytes(), v1) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

// ---------------------------------------------------------------- intake

/// Fetches from a provider's API. The implementation applies the outbound
/// rules of webhooks (public targets only unless `WEBHOOK_ALLOW_PRIVATE`,
/// no redirects, no proxy, a timeout) and reads at most
/// [`PROVIDER_REPLY_MAX_BYTES`] of the answer.
pub trait ProviderApi: Send + Sync {
    fn get(
        &self,
        url: &str,
        bearer_token: &str,
    ) -> impl Future<Output = Result<ProviderReply, String>> + Send;
}

/// A provider API's answer.
#[derive(Debug, Clone)]
pub struct ProviderReply {
    pub status: u16,
    /// At most [`PROVIDER_REPLY_MAX_BYTES`].
    pub body: Vec<u8>,
}

/// Why a notification was not taken.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// No intake at this URL (answer 404).
    #[error("no payment intake here")]
    UnknownIntake,
    /// Forged, altered or stale (answer 400: the provider should not retry).
    #[error("signature refused: {0}")]
    Signature(#[from] SignatureError),
    /// Signed, but not what the provider sends (answer 400).
    #[error("malformed notification: {0}")]
    Malformed(String),
    /// The provider's API or our database failed: the provider should retry
    /// (answer 503).
    #[error("{0}")]
    Unavailable(String),
}

impl From<DbErr> for IntakeError {
    fn from(e: DbErr) -> Self {
        tracing::error!(error = %e, "payment intake: database error");
        IntakeError::Unavailable("database error".into())
    }
}

/// What came of a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Confirmed,
    Failed,
    Refunded,
    /// Paid, but not granted: see the order's `payment_issue`.
    Flagged,
    Ignored,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Confirmed => "CONFIRMED",
            Outcome::Failed => "FAILED",
            Outcome::Refunded => "REFUNDED",
            Outcome::Flagged => "FLAGGED",
            Outcome::Ignored => "IGNORED",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "CONFIRMED" => Outcome::Confirmed,
            "FAILED" => Outcome::Failed,
            "REFUNDED" => Outcome::Refunded,
            "FLAGGED" => Outcome::Flagged,
            _ => Outcome::Ignored,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub outcome: Outcome,
    /// Seen before: nothing was done this time.
    pub replay: bool,
    pub order_id: Option<Uuid>,
    pub detail: Option<String>,
}

struct Opened {
    model: payment_intake::Model,
    secret: String,
    access_token: Option<String>,
}

/// The intake an id names: 32 hex digits of the tenant's id, then its
/// token (compared in constant time).
async fn open_intake(db: &Db, provider: Provider, intake_id: &str) -> Result<Opened, IntakeError> {
    if intake_id.len() != 64 || !intake_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(IntakeError::UnknownIntake);
    }
    let (tenant, token) = intake_id.split_at(32);
    let tenant_id = Uuid::try_parse(tenant).map_err(|_| IntakeError::UnknownIntake)?;
    let model = payment_intake::Entity::find()
        .filter(payment_intake::Column::TenantId.eq(tenant_id))
        .filter(payment_intake::Column::Provider.eq(provider.as_str()))
        .one(db.reader())
        .await?
        .ok_or(IntakeError::UnknownIntake)?;
    let token = token.to_ascii_lowercase();
    let same = model.token.len() == token.len()
        && model
            .token
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !same {
        return Err(IntakeError::UnknownIntake);
    }
    let sealer = db.sealer().map_err(|e| {
        tracing::error!(error = %e, "payment intake: no secrets key");
        IntakeError::Unavailable("secrets unavailable".into())
    })?;
    let open = |slot, value: &str| {
        sealer.open(slot, value).map_err(|e| {
            tracing::error!(error = %e, "payment intake: a secret does not open");
            IntakeError::Unavailable("secrets unavailable".into())
        })
    };
    let secret = open(
        Slot::PaymentSecret {
            intake_id: model.id,
        },
        &model.secret,
    )?;
    let access_token = match &model.access_token {
        Some(t) => Some(open(
            Slot::PaymentAccessToken {
                intake_id: model.id,
            },
            t,
        )?),
        None => None,
    };
    Ok(Opened {
        model,
        secret,
        access_token,
    })
}

async fn seen(
    db: &Db,
    tenant_id: Uuid,
    provider: Provider,
    event_id: &str,
) -> Result<Option<Received>, IntakeError> {
    Ok(payment_event::Entity::find()
        .filter(payment_event::Column::TenantId.eq(tenant_id))
        .filter(payment_event::Column::Provider.eq(provider.as_str()))
        .filter(payment_event::Column::EventId.eq(event_id))
        .one(db.reader())
        .await?
        .map(|e| Received {
            outcome: Outcome::parse(&e.outcome),
            replay: true,
            order_id: e.order_id,
            detail: e.detail,
        }))
}

/// Records what came of an event (a concurrent delivery's record wins).
async fn record(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    provider: Provider,
    event_id: &str,
    event_type: &str,
    received: &Received,
) -> Result<(), IntakeError> {
    let clip = |s: &str, n: usize| s.chars().take(n).collect::<String>();
    payment_event::Entity::insert(payment_event::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(tenant_id),
        provider: Set(provider.as_str().to_owned()),
        event_id: Set(clip(event_id, 255)),
        event_type: Set(clip(event_type, 255)),
        order_id: Set(received.order_id),
        outcome: Set(received.outcome.as_str().to_owned()),
        detail: Set(received.detail.as_deref().map(|d| clip(d, 1000))),
        created_at: Set(clock.now()),
    })
    .on_conflict(
        OnConflict::columns([
            payment_event::Column::TenantId,
            payment_event::Column::Provider,
            payment_event::Column::EventId,
        ])
        .do_nothing()
        .to_owned(),
    )
    .exec_without_returning(db.writer())
    .await?;
    Ok(())
}

/// An order id as providers carry it: our API id (`ord_…`) or a UUID.
fn parse_order_ref(value: &str) -> Option<OrderId> {
    let value = value.trim();
    let hex = value.strip_prefix("ord_").unwrap_or(value);
    Uuid::try_parse(hex).ok().map(OrderId::from_uuid)
}

fn ignored(order_id: Option<OrderId>, detail: impl Into<String>) -> Received {
    Received {
        outcome: Outcome::Ignored,
        replay: false,
        order_id: order_id.map(OrderId::uuid),
        detail: Some(detail.into()),
    }
}

fn done(outcome: Outcome, order_id: OrderId, detail: Option<String>) -> Received {
    Received {
        outcome,
        replay: false,
        order_id: Some(order_id.uuid()),
        detail,
    }
}

/// A domain failure of a payment action: ours (database) → retry;
/// anything else is final for this notification.
fn final_or_retry(e: purchases::Error) -> Result<String, IntakeError> {
    match e {
        purchases::Error::Db(e) => Err(e.into()),
        e if e.code() == Code::Internal => {
            tracing::error!(error = %e, "payment intake: internal error");
            Err(IntakeError::Unavailable("internal error".into()))
        }
        e => Ok(e.to_string()),
    }
}

async fn order_of(
    db: &Db,
    tenant_id: Uuid,
    order_id: OrderId,
) -> Result<Option<TopUpOrder>, IntakeError> {
    match purchases::get(db, tenant_id, order_id).await {
        Ok(o) => Ok(Some(o)),
        Err(purchases::Error::NotFound) => Ok(None),
        Err(e) => {
            final_or_retry(e)?;
            Err(IntakeError::Unavailable(
                "the order could not be read".into(),
            ))
        }
    }
}

/// A payment as a provider reports it.
struct Payment<'a> {
    provider: Provider,
    id: &'a str,
    amount: Decimal,
    currency: &'a str,
}

/// A payment the provider says succeeded: confirmed as
/// `confirmTopUpPayment` would, if it paid the quote; else flagged.
async fn paid(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    order_id: OrderId,
    payment: &Payment<'_>,
) -> Result<Received, IntakeError> {
    let Payment {
        provider,
        id: payment_id,
        amount,
        currency,
    } = *payment;
    let Some(order) = order_of(db, tenant_id, order_id).await? else {
        return Ok(ignored(
            None,
            format!("no order {}", order_id.uuid().simple()),
        ));
    };
    let quote = &order.quote;
    let issue = if !currency.eq_ignore_ascii_case(&quote.currency) || amount != quote.total {
        Some(format!(
            "{} payment {payment_id} paid {amount} {}, but the order's quote is {} {}: not granted",
            provider.as_str(),
            currency.to_ascii_uppercase(),
            quote.total,
            quote.currency
        ))
    } else {
        match purchases::confirm_payment(
            db,
            clock,
            tenant_id,
            order_id,
            provider.as_str(),
            payment_id,
            None,
        )
        .await
        {
            Ok(_) => return Ok(done(Outcome::Confirmed, order_id, None)),
            Err(e) => Some(format!(
                "{} payment {payment_id} of {amount} {} was not granted: {}",
                provider.as_str(),
                currency.to_ascii_uppercase(),
                final_or_retry(e)?
            )),
        }
    };
    let issue = issue.unwrap_or_default();
    if let Err(e) = purchases::flag_payment(db, clock, tenant_id, order_id, &issue).await {
        final_or_retry(e)?;
    }
    Ok(done(Outcome::Flagged, order_id, Some(issue)))
}

async fn payment_failed(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    order_id: OrderId,
    reason: &str,
) -> Result<Received, IntakeError> {
    let reason: String = reason.chars().take(500).collect();
    match purchases::fail_payment(db, clock, tenant_id, order_id, &reason).await {
        Ok(_) => Ok(done(Outcome::Failed, order_id, Some(reason))),
        Err(purchases::Error::NotFound) => Ok(ignored(None, "no such order")),
        Err(e) => Ok(ignored(Some(order_id), final_or_retry(e)?)),
    }
}

async fn refunded(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    order_id: OrderId,
    provider: Provider,
    event_id: &str,
    share: (Decimal, Decimal),
) -> Result<Received, IntakeError> {
    let key = format!("{}:{event_id}", provider.as_str());
    let reason = format!("refunded at {}", provider.as_str());
    match purchases::refund_share(db, clock, tenant_id, order_id, share, &reason, &key).await {
        Ok(Some(out)) => Ok(done(
            Outcome::Refunded,
            order_id,
            Some(format!(
                "{} credits taken back, {} not refundable",
                out.refund.refunded, out.refund.not_refundable
            )),
        )),
        Ok(None) => Ok(ignored(Some(order_id), "refunded already")),
        Err(purchases::Error::NotFound) => Ok(ignored(None, "no such order")),
        Err(e) => Ok(ignored(Some(order_id), final_or_retry(e)?)),
    }
}

fn str_at<'a>(v: &'a Json, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

fn int_at(v: &Json, path: &[&str]) -> Option<i64> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_i64()
}

/// A Stripe amount: an integer of the currency's minor units.
fn stripe_money(minor: i64, currency: &str) -> Decimal {
    Decimal::new(minor, pricing::minor_units(currency))
}

/// Takes a Stripe event (see the module docs).
pub async fn receive_stripe(
    db: &Db,
    clock: &dyn Clock,
    intake_id: &str,
    signature: Option<&str>,
    body: &[u8],
) -> Result<Received, IntakeError> {
    let intake = open_intake(db, Provider::Stripe, intake_id).await?;
    verify_stripe(signature, body, &intake.secret, clock.now())?;
    let tenant_id = intake.model.tenant_id;
    let event: Json = serde_json::from_slice(body)
        .map_err(|_| IntakeError::Malformed("the body is not JSON".into()))?;
    let (Some(event_id), Some(kind)) = (str_at(&event, &["id"]), str_at(&event, &["type"])) else {
        return Err(IntakeError::Malformed(
            "an event has an id and a type".into(),
        ));
    };
    if let Some(earlier) = seen(db, tenant_id, Provider::Stripe, event_id).await? {
        return Ok(earlier);
    }
    let object = event
        .get("data")
        .and_then(|d| d.get("object"))
        .unwrap_or(&Json::Null);
    let named_order = str_at(object, &["metadata", "order_id"]).and_then(parse_order_ref);
    let received = match kind {
        "checkout.session.completed" | "payment_intent.succeeded" => {
            let (amount, payment_id) = if kind == "checkout.session.completed" {
                (
                    int_at(object, &["amount_total"]),
                    str_at(object, &["payment_intent"]).or(str_at(object, &["id"])),
                )
            } else {
                (
                    int_at(object, &["amount_received"]).or(int_at(object, &["amount"])),
                    str_at(object, &["id"]),
                )
            };
            let status = str_at(object, &["payment_status"]);
            match (
                named_order,
                amount,
                str_at(object, &["currency"]),
                payment_id,
            ) {
                _ if kind == "checkout.session.completed" && status != Some("paid") => {
                    ignored(named_order, "the session is not paid yet")
                }
                (None, ..) => ignored(None, "no metadata.order_id naming an order"),
                (Some(order_id), Some(amount), Some(currency), Some(payment_id)) => {
                    paid(
                        db,
                        clock,
                        tenant_id,
                        order_id,
                        &Payment {
                            provider: Provider::Stripe,
                            id: payment_id,
                            amount: stripe_money(amount, currency),
                            currency,
                        },
                    )
                    .await?
                }
                _ => {
                    return Err(IntakeError::Malformed(format!(
                        "{kind} without an amount, currency or id"
                    )));
                }
            }
        }
        "payment_intent.payment_failed" => match named_order {
            Some(order_id) => {
                let reason = str_at(object, &["last_payment_error", "message"])
                    .unwrap_or("the payment failed");
                payment_failed(db, clock, tenant_id, order_id, &format!("stripe: {reason}")).await?
            }
            None => ignored(None, "no metadata.order_id naming an order"),
        },
        "charge.refunded" => {
            let order_id = match named_order {
                Some(id) => Some(id),
                None => match str_at(object, &["payment_intent"]) {
                    Some(pi) => top_up_order::Entity::find()
                        .select_only()
                        .column(top_up_order::Column::Id)
                        .filter(top_up_order::Column::TenantId.eq(tenant_id))
                        .filter(top_up_order::Column::Gateway.eq(Provider::Stripe.as_str()))
                        .filter(top_up_order::Column::PaymentId.eq(pi))
                        .into_tuple::<Uuid>()
                        .one(db.reader())
                        .await?
                        .map(OrderId::from_uuid),
                    None => None,
                },
            };
            match (
                order_id,
                int_at(object, &["amount_refunded"]),
                int_at(object, &["amount"]),
            ) {
                (None, ..) => ignored(None, "no order for this charge"),
                (Some(order_id), Some(refunded_minor), Some(amount_minor)) => {
                    refunded(
                        db,
                        clock,
                        tenant_id,
                        order_id,
                        Provider::Stripe,
                        event_id,
                        (Decimal::from(refunded_minor), Decimal::from(amount_minor)),
                    )
                    .await?
                }
                _ => {
                    return Err(IntakeError::Malformed(
                        "charge.refunded without amount and amount_refunded".into(),
                    ));
                }
            }
        }
        other => ignored(named_order, format!("{other} is not acted on")),
    };
    record(
        db,
        clock,
        tenant_id,
        Provider::Stripe,
        event_id,
        kind,
        &received,
    )
    .await?;
    Ok(received)
}

/// A Mercado Pago notification as it arrived.
pub struct MercadoPagoNotification<'a> {
    /// `x-signature`.
    pub signature: Option<&'a str>,
    /// `x-request-id`.
    pub request_id: Option<&'a str>,
    /// The URL query's `data.id`.
    pub query_data_id: Option<&'a str>,
    /// The URL query's `type` (or `topic`).
    pub query_type: Option<&'a str>,
    pub body: &'a [u8],
}

/// A JSON value that is a string or a number, as text.
fn text_of(v: &Json) -> Option<String> {
    match v {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A Mercado Pago amount (a JSON number in the currency's units): read as
/// the shortest decimal that reads back as the same number, which is the
/// amount as written for any amount of up to 15 significant digits.
fn mercadopago_money(v: Option<&Json>) -> Option<Decimal> {
    match v? {
        Json::Number(n) => n.to_string().parse().ok(),
        Json::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Takes a Mercado Pago notification (see the module docs): verifies it,
/// fetches the payment from `api_url` with the tenant's access token, and
/// acts on its status.
pub async fn receive_mercadopago(
    db: &Db,
    clock: &dyn Clock,
    api: &impl ProviderApi,
    api_url: &str,
    intake_id: &str,
    notification: &MercadoPagoNotification<'_>,
) -> Result<Received, IntakeError> {
    let intake = open_intake(db, Provider::MercadoPago, intake_id).await?;
    let body: Json = if notification.body.is_empty() {
        Json::Null
    } else {
        serde_json::from_slice(notification.body).unwrap_or(Json::Null)
    };
    let body_id = body.get("data").and_then(|d| d.get("id")).and_then(text_of);
    let data_id = notification
        .query_data_id
        .map(str::to_owned)
        .or(body_id.clone());
    verify_mercadopago(
        notification.signature,
        data_id.as_deref(),
        notification.request_id,
        &intake.secret,
    )?;
    let Some(data_id) = data_id else {
        return Err(IntakeError::Malformed("no data.id".into()));
    };
    if body_id.is_some_and(|b| b != data_id) {
        return Err(IntakeError::Malformed(
            "data.id differs between the URL and the body".into(),
        ));
    }
    let kind = notification
        .query_type
        .map(str::to_owned)
        .or_else(|| str_at(&body, &["type"]).map(str::to_owned))
        .unwrap_or_default();
    if kind != "payment" {
        return Ok(ignored(
            None,
            format!("{kind:?} notifications are not acted on"),
        ));
    }
    if data_id.is_empty()
        || data_id.len() > 64
        || !data_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(IntakeError::Malformed("data.id is not a payment id".into()));
    }
    let tenant_id = intake.model.tenant_id;
    let token = intake
        .access_token
        .as_deref()
        .ok_or_else(|| IntakeError::Unavailable("no access token is set".into()))?;
    let url = format!("{}/v1/payments/{data_id}", api_url.trim_end_matches('/'));
    let reply = api.get(&url, token).await.map_err(|e| {
        tracing::warn!(error = %e, "Mercado Pago's API could not be reached");
        IntakeError::Unavailable(format!("Mercado Pago's API: {e}"))
    })?;
    match reply.status {
        200 => {}
        404 => {
            return Ok(ignored(
                None,
                format!("Mercado Pago knows no payment {data_id}"),
            ));
        }
        status => {
            return Err(IntakeError::Unavailable(format!(
                "Mercado Pago's API answered {status}"
            )));
        }
    }
    let payment: Json = serde_json::from_slice(&reply.body).map_err(|_| {
        IntakeError::Unavailable("Mercado Pago's API answered something not JSON".into())
    })?;
    let status = str_at(&payment, &["status"]).unwrap_or("").to_owned();
    let event_id = format!("{data_id}:{status}");
    if let Some(earlier) = seen(db, tenant_id, Provider::MercadoPago, &event_id).await? {
        return Ok(earlier);
    }
    let order = str_at(&payment, &["external_reference"]).and_then(parse_order_ref);
    let amount = mercadopago_money(payment.get("transaction_amount"));
    let currency = str_at(&payment, &["currency_id"]);
    let received = match (order, status.as_str()) {
        (None, _) => ignored(None, "no external_reference naming an order"),
        (Some(order_id), "approved") => match (amount, currency) {
            (Some(amount), Some(currency)) => {
                paid(
                    db,
                    clock,
                    tenant_id,
                    order_id,
                    &Payment {
                        provider: Provider::MercadoPago,
                        id: &data_id,
                        amount,
                        currency,
                    },
                )
                .await?
            }
            _ => {
                return Err(IntakeError::Unavailable(
                    "Mercado Pago's payment has no amount or currency".into(),
                ));
            }
        },
        (Some(order_id), "rejected" | "cancelled") => {
            let detail = str_at(&payment, &["status_detail"]).unwrap_or("");
            payment_failed(
                db,
                clock,
                tenant_id,
                order_id,
                &format!("mercadopago: {status} {detail}"),
            )
            .await?
        }
        (Some(order_id), "refunded" | "charged_back") => {
            let paid_amount = amount.unwrap_or_default();
            let refunded_amount = mercadopago_money(payment.get("transaction_amount_refunded"))
                .filter(|r| !r.is_zero())
                .unwrap_or(paid_amount);
            refunded(
                db,
                clock,
                tenant_id,
                order_id,
                Provider::MercadoPago,
                &event_id,
                (refunded_amount, paid_amount),
            )
            .await?
        }
        (order, other) => ignored(order, format!("status {other:?} is not acted on")),
    };
    record(
        db,
        clock,
        tenant_id,
        Provider::MercadoPago,
        &event_id,
        "payment",
        &received,
    )
    .await?;
    Ok(received)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn sign(secret: &str, message: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(message.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    #[test]
    fn stripe_signatures_are_checked_as_documented() {
        let now = Utc.with_ymd_and_hms(2026, 1, 31, 12, 0, 0).unwrap();
        let t = now.timestamp();
        let body = br#"{"id":"evt_1"}"#;
        let good = sign(
            "whsec_x",
            &format!("{t}.{}", std::str::from_utf8(body).unwrap()),
        );
        let header = format!("t={t},v1=deadbeef,v1={good},v0=ignored");
        assert_eq!(verify_stripe(Some(&header), body, "whsec_x", now), Ok(()));
        // (header, body, secret, now, expected error)
        type Case<'a> = (
            Option<String>,
            &'a [u8],
            &'a str,
            DateTime<Utc>,
            SignatureError,
        );
        let cases: Vec<Case> = vec![
            (None, body, "whsec_x", now, SignatureError::Missing),
            (
                Some("v1=ab".into()),
                body,
                "whsec_x",
                now,
                SignatureError::Malformed,
            ),
            (
                Some(format!("t={t}")),
                body,
                "whsec_x",
                now,
                SignatureError::Malformed,
            ),
            (
                Some(header.clone()),
                body,
                "whsec_y",
                now,
                SignatureError::Mismatch,
            ),
            (
                Some(header.clone()),
                b"{}",
                "whsec_x",
                now,
                SignatureError::Mismatch,
            ),
            (
                Some(header.clone()),
                body,
                "whsec_x",
                now + Duration::seconds(301),
                SignatureError::Stale,
            ),
            (
                Some(header.clone()),
                body,
                "whsec_x",
                now - Duration::seconds(301),
                SignatureError::Stale,
            ),
        ];
        for (header, body, secret, at, want) in cases {
            assert_eq!(
                verify_stripe(header.as_deref(), body, secret, at),
                Err(want.clone()),
                "{header:?} {want:?}"
            );
        }
        assert_eq!(
            verify_stripe(Some(&header), body, "whsec_x", now + Duration::seconds(300)),
            Ok(())
        );
    }

    #[test]
    fn mercadopago_manifest_and_signature() {
        assert_eq!(
            mercadopago_manifest(Some("ABC123"), Some("req-1"), "1704908010"),
            "id:abc123;request-id:req-1;ts:1704908010;"
        );
        assert_eq!(mercadopago_manifest(Some("1"), None, "5"), "id:1;ts:5;");
        let v1 = sign("mp-secret", "id:123;request-id:r-9;ts:1704908010;");
        let header = format!("ts=1704908010, v1={v1}");
        assert_eq!(
            verify_mercadopago(Some(&header), Some("123"), Some("r-9"), "mp-secret"),
            Ok(())
        );
        assert_eq!(
            verify_mercadopago(Some(&header), Some("124"), Some("r-9"), "mp-secret"),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_mercadopago(Some("v1=ab"), Some("123"), None, "mp-secret"),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn amounts_are_exact() {
        assert_eq!(stripe_money(3810, "eur").to_string(), "38.10");
        assert_eq!(stripe_money(500, "JPY").to_string(), "500");
        let v: Json = serde_json::from_str(r#"{"a": 38.1, "b": 8000, "c": "0.10"}"#).unwrap();
        assert_eq!(mercadopago_money(v.get("a")), Some("38.1".parse().unwrap()));
        assert_eq!(mercadopago_money(v.get("b")), Some(Decimal::from(8000)));
        assert_eq!(mercadopago_money(v.get("c")), Some("0.10".parse().unwrap()));
        assert!(parse_order_ref("ord_0193a1b2c3d4e5f60718293a4b5c6d7e").is_some());
    }
}
