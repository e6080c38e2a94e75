use sea_orm::entity::prelude::*;

/// An invoice of the tenant's billing system that credits were applied to:
/// the credits are held until it is finalized (captured) or voided
/// (released).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "invoice")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub customer_id: Uuid,
    /// The invoice's id in the tenant's billing system (unique per tenant).
    pub external_id: String,
    pub currency: String,
    /// Money in micro-units of the currency.
    pub subtotal_micros: i64,
    pub credit_applied_micros: i64,
    /// Why less than the subtotal was applied, if it was.
    pub note: Option<String>,
    /// `PENDING`, `FINALIZED` or `VOIDED`.
    pub status: String,
    /// When the held credits return if the invoice is not finalized.
    pub holds_until: DateTimeUtc,
    pub created_at: DateTimeUtc,
    pub settled_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
