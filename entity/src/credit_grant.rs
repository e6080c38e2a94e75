use sea_orm::entity::prelude::*;

/// A block of credits in a wallet (`grant` is a reserved word in SQL).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "credit_grant")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub wallet_id: Uuid,
    /// `PROMOTIONAL`, `ADMIN`, `PURCHASED`, `INCLUDED`, `REFUND`, `TRANSFER`.
    pub category: String,
    pub amount_micros: i64,
    pub remaining_micros: i64,
    /// What of `amount` went to repay the wallet's overage debt.
    pub debt_repaid_micros: i64,
    pub effective_at: DateTimeUtc,
    pub expires_at: Option<DateTimeUtc>,
    pub priority: i32,
    /// Price paid per credit, an exact decimal string.
    pub cost_basis: Option<String>,
    pub reason: String,
    pub metadata: Option<Json>,
    /// Where the grant came from (`refund`, `order`, …) and that thing's id.
    pub source_kind: Option<String>,
    pub source_id: Option<String>,
    pub voided_at: Option<DateTimeUtc>,
    /// When `credits.expiring_soon` was told for it (once per grant).
    pub expiry_notified_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    /// Its GRANT entry is in the ledger. False while a grant effective in
    /// the future is scheduled: it holds its amount (`remaining`) but the
    /// wallet's balance and `balance_after` count it only once booked,
    /// when it becomes spendable.
    pub booked: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
