use sea_orm::entity::prelude::*;

/// Where a tenant wants events POSTed, signed with its secret.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_endpoint")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub url: String,
    pub description: String,
    /// The event types it receives, a JSON array of strings.
    pub events: Json,
    /// HMAC-SHA256 key for signatures (`whsec_<base64>`, Standard
    /// Webhooks), sealed (`sealed:v1:…`, see `service::secrets`).
    pub secret: String,
    /// The secret `rotateWebhookSecret` replaced, sealed: it keeps signing
    /// beside `secret` until `previous_secret_expires_at`.
    pub previous_secret: Option<String>,
    pub previous_secret_expires_at: Option<DateTimeUtc>,
    pub enabled: bool,
    /// Deliveries in a row that failed for good.
    pub consecutive_failures: i32,
    pub disabled_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
