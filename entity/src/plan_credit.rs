use sea_orm::entity::prelude::*;

/// A credit system attached to a plan: its allowance and its prices.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "plan_credit")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub plan_id: Uuid,
    pub credit_system_id: Uuid,
    pub included_micros: Option<i64>,
    /// `DAILY`, `WEEKLY`, `MONTHLY` or `ANNUALLY`.
    pub reset_interval: Option<String>,
    /// `NONE` or `CAPPED`.
    pub rollover: String,
    pub rollover_cap_micros: Option<i64>,
    /// `UPFRONT` or `PAY_AS_YOU_GO`.
    pub commitment: Option<String>,
    /// `service::pricing::Price` as JSON.
    pub top_up_price: Option<Json>,
    pub recurring_price: Option<Json>,
    pub recurring_quantity_micros: Option<i64>,
    pub min_quantity_micros: Option<i64>,
    pub max_quantity_micros: Option<i64>,
    /// ISO 8601 duration (`P12M`) purchased credits live for.
    pub purchase_expiration: Option<String>,
    pub low_credit_limit_micros: Option<i64>,
    /// `ALERT` or `BLOCK`.
    pub low_credit_action: Option<String>,
    pub mandatory_purchase: bool,
    /// Below this available balance an automatic top-up order is created.
    pub auto_top_up_below_micros: Option<i64>,
    pub auto_top_up_quantity_micros: Option<i64>,
    /// Usage-% alert thresholds for subscribers' wallets, a JSON array of
    /// decimal strings (`[]`: off); null: the default.
    pub usage_alert_percents: Option<Json>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
