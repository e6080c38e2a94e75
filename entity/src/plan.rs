use sea_orm::entity::prelude::*;

/// A way to buy a product: its credits and entitlements.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "plan")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub product_id: Uuid,
    pub key: String,
    pub name: String,
    /// What the plan offers, for people; "" when none was given.
    pub description: String,
    /// `MONTHLY` or `ANNUALLY`.
    pub billing_interval: String,
    /// `DRAFT`, `PUBLISHED` or `ARCHIVED`.
    pub status: String,
    pub copied_from_plan_id: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub published_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
