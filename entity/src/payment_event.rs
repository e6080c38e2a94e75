use sea_orm::entity::prelude::*;

/// A provider's event (Stripe) or payment status (Mercado Pago) taken in,
/// and what came of it; unique per (tenant, provider, event id), so a
/// redelivery is a no-op.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "payment_event")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub provider: String,
    /// Stripe: the event id (`evt_…`); Mercado Pago: `<payment id>:<status>`.
    pub event_id: String,
    /// Stripe: the event type; Mercado Pago: `payment`.
    pub event_type: String,
    pub order_id: Option<Uuid>,
    /// `CONFIRMED`, `FAILED`, `REFUNDED`, `FLAGGED` or `IGNORED`.
    pub outcome: String,
    pub detail: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
