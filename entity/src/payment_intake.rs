use sea_orm::entity::prelude::*;

/// A tenant's intake of one payment provider's notifications: the
/// unguessable token of its URL and the provider's secrets, sealed
/// (`service::secrets`). One per (tenant, provider).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "payment_intake")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    /// `stripe` or `mercadopago`.
    pub provider: String,
    /// 32 random hex digits: the second half of the intake's URL segment.
    pub token: String,
    /// The provider's signing secret, sealed.
    pub secret: String,
    /// The provider's API access token (Mercado Pago), sealed.
    pub access_token: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
