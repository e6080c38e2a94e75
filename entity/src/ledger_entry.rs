use sea_orm::entity::prelude::*;

/// One immutable line of a wallet's ledger. Never updated, never deleted.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "ledger_entry")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub wallet_id: Uuid,
    /// 1, 2, 3… per wallet: the order of the running sum.
    pub seq: i64,
    /// `GRANT`, `USAGE`, `EXPIRY`, `VOID`, `REFUND`, `ADJUSTMENT`, `HOLD`,
    /// `RELEASE`, … (see `service::ledger::EntryType`).
    pub entry_type: String,
    /// Signed: credits in are positive, credits out negative.
    pub amount_micros: i64,
    pub balance_after_micros: i64,
    /// The grant a GRANT, EXPIRY or VOID entry is about.
    pub grant_id: Option<Uuid>,
    pub hold_id: Option<Uuid>,
    /// For REFUND entries: the USAGE entry refunded; for TRANSFER_IN: the
    /// source's TRANSFER_OUT entry.
    pub refund_of_entry_id: Option<Uuid>,
    pub feature: Option<String>,
    /// Units of the feature used (trackUsage), micro-units.
    pub quantity_micros: Option<i64>,
    pub event_ref: Option<String>,
    pub user_ref: Option<String>,
    pub dimensions: Option<Json>,
    pub description: Option<String>,
    pub idempotency_key: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
