use sea_orm::entity::prelude::*;

/// A side effect to deliver (email, webhook), written in the transaction of
/// the change that caused it; the worker dispatches it after commit.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox_event")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    /// `credits.granted`, `wallet.balance_low`, …
    pub event_type: String,
    pub wallet_id: Option<Uuid>,
    pub payload: Json,
    pub created_at: DateTimeUtc,
    pub dispatched_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
