use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "wallet")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub customer_id: Uuid,
    pub credit_system_id: Uuid,
    /// Cache of the ledger: Σ grants' remaining − debt == the last entry's
    /// balance after. Changed only together with an entry.
    pub balance_micros: i64,
    /// Overage not yet repaid by a later grant (≥ 0).
    pub debt_micros: i64,
    /// `seq` of the wallet's last entry (0 before the first).
    pub last_seq: i64,
    pub allow_overage: bool,
    pub low_balance_threshold_micros: Option<i64>,
    /// `OK`, `LOW` or `DEPLETED`: where the balance stood at the last
    /// write, so each crossing is told once.
    pub low_balance_state: String,
    /// The wallet's own usage-% alert thresholds, a JSON array of decimal
    /// strings (`[]`: off); null: its plan's, else the default.
    pub usage_alert_percents: Option<Json>,
    /// The highest usage-% threshold told (percent × 10⁶; 0: none yet).
    pub usage_alert_level_micros: i64,
    /// The credits granted that level was measured against; another
    /// amount re-arms the level.
    pub usage_alert_granted_micros: Option<i64>,
    /// Which live grants made up that amount (`<count>/<newest created_at>`):
    /// a new period's grant of the same size is other grants.
    pub usage_alert_grants: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
