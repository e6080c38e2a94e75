use sea_orm::entity::prelude::*;

/// A purchase of credits: quoted, then paid (credits granted), failed or expired.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "top_up_order")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub customer_id: Uuid,
    pub credit_system_id: Uuid,
    pub plan_credit_id: Uuid,
    pub quantity_micros: i64,
    pub currency: String,
    /// Money in micro-units of the currency.
    pub subtotal_micros: i64,
    pub tax_micros: i64,
    pub total_micros: i64,
    /// The whole `service::pricing::Quote` as JSON.
    pub quote: Json,
    /// `PENDING`, `PAID`, `FAILED`, `EXPIRED`, `REFUNDED` or
    /// `PARTIALLY_REFUNDED`.
    pub status: String,
    pub gateway: Option<String>,
    pub payment_id: Option<String>,
    pub paid_at: Option<DateTimeUtc>,
    pub failure_reason: Option<String>,
    pub grant_id: Option<Uuid>,
    /// Created by auto top-up rather than a purchase request.
    pub automatic: bool,
    pub expires_at: DateTimeUtc,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// Credits taken back by refunds so far.
    pub refunded_quantity_micros: i64,
    /// Money refunded so far, in micro-units of the currency.
    pub refunded_amount_micros: i64,
    /// Why a provider's payment did not grant (amount or currency not the
    /// quote's); the order stays as it was.
    pub payment_issue: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
