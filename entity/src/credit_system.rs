use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "credit_system")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub key: String,
    pub name: String,
    pub description: String,
    pub unit_singular: String,
    pub unit_plural: String,
    /// Decimal places amounts may have, 0..=6.
    pub precision: i32,
    /// `UNITS` or `MONETARY`.
    pub kind: String,
    /// ISO 4217 code, for `MONETARY` systems.
    pub currency: Option<String>,
    /// The tenant's default low-balance threshold for wallets of this
    /// system (used when neither the wallet nor a plan sets one).
    pub low_balance_threshold_micros: Option<i64>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
