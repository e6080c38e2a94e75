//! Webhook endpoints and deliveries, emails, and where operator notices go.
//! All ADMIN.

use service::ids::WebhookEndpointId;
use std::collections::HashMap;

use async_graphql::{Context, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use service::{
    api_keys::Role,
    notifications::{email, webhooks},
    tenants,
};

use super::{
    context::{RoleGuard, app},
    error::ApiResult,
    ids,
    pagination::{self, Conn},
};

/// Where a tenant's events are POSTed.
pub struct WebhookEndpoint(webhooks::Endpoint);

#[Object]
impl WebhookEndpoint {
    async fn id(&self) -> ID {
        ids::encode_id(self.0.id)
    }
    async fn url(&self) -> &str {
        &self.0.url
    }
    async fn description(&self) -> &str {
        &self.0.description
    }
    /// Event types it receives (`credits.granted`, …).
    async fn events(&self) -> Vec<&'static str> {
        self.0.events.iter().map(|e| e.as_str()).collect()
    }
    /// False after repeated failures (or when set so); re-enable with
    /// `updateWebhookEndpoint(enabled: true)`.
    async fn enabled(&self) -> bool {
        self.0.enabled
    }
    /// Deliveries in a row that failed for good.
    async fn consecutive_failures(&self) -> i32 {
        self.0.consecutive_failures
    }
    async fn disabled_at(&self) -> Option<DateTime<Utc>> {
        self.0.disabled_at
    }
    /// Until when the secret replaced by the last `rotateWebhookSecret`
    /// still signs deliveries beside the current one (null: never rotated).
    async fn previous_secret_expires_at(&self) -> Option<DateTime<Utc>> {
        self.0.previous_secret_expires_at
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// One HTTP attempt of a delivery.
#[derive(SimpleObject)]
pub struct WebhookAttempt {
    number: i32,
    attempted_at: DateTime<Utc>,
    /// Null when no answer came (timeout, connection error).
    status_code: Option<i32>,
    duration_ms: i64,
    error: Option<String>,
    /// The start of the response body.
    response_snippet: String,
}

/// One event on its way to one endpoint.
pub struct WebhookDelivery {
    delivery: webhooks::Delivery,
    attempts: Vec<webhooks::Attempt>,
}

#[Object]
impl WebhookDelivery {
    async fn id(&self) -> ID {
        ids::encode_id(self.delivery.id)
    }
    /// The event id (`evt_…`: the body's `id` and the `webhook-id` header).
    async fn event_id(&self) -> String {
        service::notifications::payloads::event_id(self.delivery.event_id)
    }
    async fn event_type(&self) -> &str {
        &self.delivery.event_type
    }
    /// The exact JSON body sent.
    async fn body(&self) -> &str {
        &self.delivery.body
    }
    /// `PENDING`, `DELIVERED` or `FAILED`.
    async fn status(&self) -> &str {
        &self.delivery.status
    }
    async fn next_attempt_at(&self) -> Option<DateTime<Utc>> {
        (self.delivery.status == "PENDING").then_some(self.delivery.next_attempt_at)
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.delivery.created_at
    }
    async fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.delivery.finished_at
    }
    #[graphql(complexity = "crate::graphql::limits::unpaged_list_cost(child_complexity)")]
    async fn attempts(&self) -> Vec<WebhookAttempt> {
        self.attempts
            .iter()
            .map(|a| WebhookAttempt {
                number: a.number,
                attempted_at: a.attempted_at,
                status_code: a.status_code,
                duration_ms: a.duration_ms,
                error: a.error.clone(),
                response_snippet: a.response_snippet.clone(),
            })
            .collect()
    }
}

/// One attempt to send an email.
#[derive(SimpleObject)]
pub struct EmailAttempt {
    number: i32,
    attempted_at: DateTime<Utc>,
    sent: bool,
    error: Option<String>,
}

/// An email and how sending it went.
pub struct EmailDelivery {
    email: email::EmailDelivery,
    attempt_log: Vec<email::EmailAttempt>,
}

#[Object]
impl EmailDelivery {
    async fn id(&self) -> ID {
        ids::encode_id(self.email.id)
    }
    /// The template it was written from: `balance_low`,
    /// `balance_depleted`, `receipt`, `usage_threshold`, `endpoint_disabled`.
    async fn kind(&self) -> &str {
        &self.email.kind
    }
    async fn to(&self) -> &str {
        &self.email.to
    }
    async fn subject(&self) -> &str {
        &self.email.subject
    }
    async fn body(&self) -> &str {
        &self.email.body
    }
    /// `PENDING`, `SENT` or `FAILED`.
    async fn status(&self) -> &str {
        &self.email.status
    }
    /// Every attempt, in order.
    #[graphql(complexity = "crate::graphql::limits::unpaged_list_cost(child_complexity)")]
    async fn attempts(&self) -> Vec<EmailAttempt> {
        self.attempt_log
            .iter()
            .map(|a| EmailAttempt {
                number: a.number,
                attempted_at: a.attempted_at,
                sent: a.sent,
                error: a.error.clone(),
            })
            .collect()
    }
    async fn last_error(&self) -> Option<&str> {
        self.email.last_error.as_deref()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.email.created_at
    }
    async fn sent_at(&self) -> Option<DateTime<Utc>> {
        self.email.sent_at
    }
}

#[derive(Default)]
pub struct NotificationQuery;

#[Object]
impl NotificationQuery {
    #[graphql(
        guard = "RoleGuard(Role::Admin)",
        complexity = "crate::graphql::limits::list_cost(first, child_complexity)"
    )]
    async fn webhook_endpoints(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> ApiResult<Conn<WebhookEndpoint>> {
        let (p, app) = app(ctx)?;
        let page = pagination::page_request(first, after)?;
        let found = webhooks::list_endpoints(&app.db, p.tenant_id, page).await?;
        Ok(pagination::connection(
            found,
            |e| e.id.uuid(),
            WebhookEndpoint,
        ))
    }

    /// Deliveries, newest first, with every attempt.
    #[graphql(
        guard = "RoleGuard(Role::Admin)",
        complexity = "crate::graphql::limits::list_cost(first, child_complexity)"
    )]
    async fn webhook_deliveries(
        &self,
        ctx: &Context<'_>,
        endpoint: Option<ID>,
        #[graphql(desc = "`PENDING`, `DELIVERED` or `FAILED`")] status: Option<String>,
        first: Option<i32>,
        after: Option<String>,
    ) -> ApiResult<Conn<WebhookDelivery>> {
        let (p, app) = app(ctx)?;
        let page = pagination::page_request(first, after)?;
        let endpoint = endpoint
            .map(|e| ids::decode_id::<WebhookEndpointId>(&e, "endpoint"))
            .transpose()?;
        let found =
            webhooks::list_deliveries(&app.db, p.tenant_id, endpoint, status.as_deref(), page)
                .await?;
        let ids: Vec<_> = found.items.iter().map(|d| d.id).collect();
        let mut attempts: HashMap<_, Vec<webhooks::Attempt>> = HashMap::new();
        for (delivery, attempt) in webhooks::attempts_of(&app.db, p.tenant_id, &ids).await? {
            attempts.entry(delivery).or_default().push(attempt);
        }
        Ok(pagination::connection(
            found,
            |d| d.id.uuid(),
            |d| WebhookDelivery {
                attempts: attempts.remove(&d.id).unwrap_or_default(),
                delivery: d,
            },
        ))
    }

    /// Emails, newest first.
    #[graphql(
        guard = "RoleGuard(Role::Admin)",
        complexity = "crate::graphql::limits::list_cost(first, child_complexity)"
    )]
    async fn email_deliveries(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "`PENDING`, `SENT` or `FAILED`")] status: Option<String>,
        first: Option<i32>,
        after: Option<String>,
    ) -> ApiResult<Conn<EmailDelivery>> {
        let (p, app) = app(ctx)?;
        let page = pagination::page_request(first, after)?;
        let found = email::list(&app.db, p.tenant_id, status.as_deref(), page).await?;
        let ids: Vec<_> = found.items.iter().map(|e| e.id).collect();
        let mut attempts: HashMap<_, Vec<email::EmailAttempt>> = HashMap::new();
        for (email_id, attempt) in email::attempts_of(&app.db, p.tenant_id, &ids).await? {
            attempts.entry(email_id).or_default().push(attempt);
        }
        Ok(pagination::connection(
            found,
            |e| e.id.uuid(),
            |e| EmailDelivery {
                attempt_log: attempts.remove(&e.id).unwrap_or_default(),
                email: e,
            },
        ))
    }

    /// Where operator notices go (an endpoint disabled, …).
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn admin_email(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        let (p, app) = app(ctx)?;
        Ok(tenants::admin_email(&app.db, p.tenant_id).await?)
    }
}

#[derive(InputObject)]
pub struct CreateWebhookEndpointInput {
    /// An https:// URL of a public host. Loopback, private, link-local,
    /// shared (CGNAT), multicast and reserved addresses, local and internal
    /// names (`localhost`, `*.internal`, single-label names) and names
    /// resolving to such addresses are refused here and again at every
    /// delivery; `WEBHOOK_ALLOW_PRIVATE=true` (development) allows them and
    /// http://.
    url: String,
    /// Event types: `credits.granted`, `credits.consumed` (only when named),
    /// `credits.expired`, `credits.expiring_soon`, `grant.voided`,
    /// `wallet.balance_low`, `wallet.balance_depleted`,
    /// `wallet.balance_recovered`, `wallet.usage_threshold_crossed`,
    /// `topup.paid`, `topup.failed`, `topup.requested`, `topup.refunded`,
    /// `allowance.reset`.
    events: Vec<String>,
    #[graphql(default)]
    description: String,
}

#[derive(SimpleObject)]
pub struct WebhookEndpointWithSecretPayload {
    endpoint: WebhookEndpoint,
    /// The signing secret, shown this once: `whsec_<base64>`, as the
    /// Standard Webhooks libraries (`standardwebhooks`) take it.
    secret: String,
}

#[derive(InputObject)]
pub struct UpdateWebhookEndpointInput {
    endpoint: ID,
    /// Checked as `createWebhookEndpoint` checks it.
    url: Option<String>,
    events: Option<Vec<String>>,
    description: Option<String>,
    /// `true` re-enables a disabled endpoint.
    enabled: Option<bool>,
}

#[derive(InputObject)]
pub struct WebhookEndpointInput {
    endpoint: ID,
}

#[derive(SimpleObject)]
pub struct WebhookEndpointPayload {
    endpoint: WebhookEndpoint,
}

#[derive(InputObject)]
pub struct RedeliverWebhookInput {
    delivery: ID,
}

#[derive(SimpleObject)]
pub struct RedeliverWebhookPayload {
    delivery: WebhookDelivery,
}

#[derive(InputObject)]
pub struct SetAdminEmailInput {
    /// Null clears it.
    admin_email: Option<String>,
}

#[derive(SimpleObject)]
pub struct SetAdminEmailPayload {
    admin_email: Option<String>,
}

#[derive(InputObject)]
pub struct SetUsageThresholdsInput {
    /// Usage % from which a child is WATCH (default 75).
    watch_percent: super::scalars::ExactDecimal,
    /// Usage % from which a child is CRITICAL (default 90).
    critical_percent: super::scalars::ExactDecimal,
}

#[derive(SimpleObject)]
pub struct SetUsageThresholdsPayload {
    watch_percent: super::scalars::ExactDecimal,
    critical_percent: super::scalars::ExactDecimal,
}

#[derive(Default)]
pub struct NotificationMutation;

#[Object]
impl NotificationMutation {
    /// Registers an endpoint; the signing secret is returned this once.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn create_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        input: CreateWebhookEndpointInput,
    ) -> ApiResult<WebhookEndpointWithSecretPayload> {
        let (p, app) = app(ctx)?;
        let out = webhooks::create_endpoint(
            &app.db,
            app.clock(),
            app.webhook_targets,
            p.tenant_id,
            &input.url,
            &input.events,
            &input.description,
        )
        .await?;
        Ok(WebhookEndpointWithSecretPayload {
            endpoint: WebhookEndpoint(out.endpoint),
            secret: out.secret,
        })
    }

    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn update_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        input: UpdateWebhookEndpointInput,
    ) -> ApiResult<WebhookEndpointPayload> {
        let (p, app) = app(ctx)?;
        let id = ids::decode_id(&input.endpoint, "endpoint")?;
        let endpoint = webhooks::update_endpoint(
            &app.db,
            app.clock(),
            app.webhook_targets,
            p.tenant_id,
            id,
            &webhooks::EndpointPatch {
                url: input.url,
                events: input.events,
                description: input.description,
                enabled: input.enabled,
            },
        )
        .await?;
        Ok(WebhookEndpointPayload {
            endpoint: WebhookEndpoint(endpoint),
        })
    }

    /// Deletes an endpoint with its delivery log.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn delete_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        input: WebhookEndpointInput,
    ) -> ApiResult<WebhookEndpointPayload> {
        let (p, app) = app(ctx)?;
        let id = ids::decode_id(&input.endpoint, "endpoint")?;
        let endpoint = webhooks::delete_endpoint(&app.db, p.tenant_id, id).await?;
        Ok(WebhookEndpointPayload {
            endpoint: WebhookEndpoint(endpoint),
        })
    }

    /// A new signing secret, returned this once. For 24 h the old one signs
    /// too: each delivery carries both signatures (space-separated in
    /// `webhook-signature`), so receivers can switch without losing any.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn rotate_webhook_secret(
        &self,
        ctx: &Context<'_>,
        input: WebhookEndpointInput,
    ) -> ApiResult<WebhookEndpointWithSecretPayload> {
        let (p, app) = app(ctx)?;
        let id = ids::decode_id(&input.endpoint, "endpoint")?;
        let out = webhooks::rotate_secret(&app.db, app.clock(), p.tenant_id, id).await?;
        Ok(WebhookEndpointWithSecretPayload {
            endpoint: WebhookEndpoint(out.endpoint),
            secret: out.secret,
        })
    }

    /// Sends a delivery's event again (a new delivery, same event id).
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn redeliver_webhook(
        &self,
        ctx: &Context<'_>,
        input: RedeliverWebhookInput,
    ) -> ApiResult<RedeliverWebhookPayload> {
        let (p, app) = app(ctx)?;
        let id = ids::decode_id(&input.delivery, "delivery")?;
        let delivery = webhooks::redeliver(&app.db, app.clock(), p.tenant_id, id).await?;
        Ok(RedeliverWebhookPayload {
            delivery: WebhookDelivery {
                delivery,
                attempts: Vec::new(),
            },
        })
    }

    /// Sets the usage-% thresholds of children's statuses.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn set_usage_thresholds(
        &self,
        ctx: &Context<'_>,
        input: SetUsageThresholdsInput,
    ) -> ApiResult<SetUsageThresholdsPayload> {
        let (p, app) = app(ctx)?;
        let t = tenants::set_usage_thresholds(
            &app.db,
            p.tenant_id,
            input.watch_percent.0,
            input.critical_percent.0,
        )
        .await?;
        Ok(SetUsageThresholdsPayload {
            watch_percent: super::scalars::ExactDecimal(t.watch),
            critical_percent: super::scalars::ExactDecimal(t.critical),
        })
    }

    /// Sets where operator notices go.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn set_admin_email(
        &self,
        ctx: &Context<'_>,
        input: SetAdminEmailInput,
    ) -> ApiResult<SetAdminEmailPayload> {
        let (p, app) = app(ctx)?;
        let admin_email =
            tenants::set_admin_email(&app.db, p.tenant_id, input.admin_email.as_deref()).await?;
        Ok(SetAdminEmailPayload { admin_email })
    }
}
