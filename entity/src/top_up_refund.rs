use sea_orm::entity::prelude::*;

/// One refund of a top-up order: what was asked, what of the order's
/// grant could be taken back, and the money it stands for.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "top_up_refund")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub order_id: Uuid,
    /// Credits this refund asked for.
    pub requested_micros: i64,
    /// Credits taken back from the order's grant.
    pub refunded_micros: i64,
    /// Credits asked for that were spent (or expired) already.
    pub not_refundable_micros: i64,
    /// Money refunded, in micro-units of `currency`.
    pub amount_micros: i64,
    pub currency: String,
    pub reason: String,
    /// The VOID entry that took the credits back (none when nothing could be).
    pub entry_id: Option<Uuid>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
