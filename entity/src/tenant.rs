use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tenant")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub name: String,
    /// Where operator notices go (a webhook endpoint disabled, …).
    pub admin_email: Option<String>,
    /// Usage % from which a child is WATCH (default 75) and CRITICAL
    /// (default 90), in micro-percent.
    pub watch_percent_micros: Option<i64>,
    pub critical_percent_micros: Option<i64>,
    /// IANA time zone reports count months and days in (default UTC).
    pub time_zone: Option<String>,
    /// Hex HMAC key that signs customer (browser) tokens, sealed
    /// (`sealed:v1:…`, see `service::secrets`); replaced to invalidate them
    /// all. Created on first use.
    pub customer_token_secret: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::api_key::Entity")]
    ApiKey,
}

impl Related<super::api_key::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::ApiKey.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
