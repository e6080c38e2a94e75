use sea_orm::entity::prelude::*;

/// Credits reserved before the real amount is known.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "credit_hold")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub wallet_id: Uuid,
    pub amount_micros: i64,
    pub captured_micros: Option<i64>,
    /// `ACTIVE`, `CAPTURED` or `RELEASED`.
    pub status: String,
    pub expires_at: DateTimeUtc,
    pub feature: Option<String>,
    pub event_ref: Option<String>,
    pub user_ref: Option<String>,
    pub dimensions: Option<Json>,
    pub description: Option<String>,
    pub created_at: DateTimeUtc,
    pub settled_at: Option<DateTimeUtc>,
    /// The invoice this hold pays, if any (settled only through it).
    pub invoice_id: Option<Uuid>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
