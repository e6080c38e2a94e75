use sea_orm::entity::prelude::*;

/// The checks a consumption made due for a wallet (usage-% alerts, auto
/// top-up), queued durably until they ran: written in the dispatcher's
/// transaction, deleted once done, backed off when they fail.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "wallet_check")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub wallet_id: Uuid,
    /// Consumptions that asked for it since it was queued: a run removes
    /// the row only if none came while it ran.
    pub requests: i64,
    /// Failed runs since it was queued or re-armed.
    pub attempts: i32,
    /// Not run before then (a runner that claims it moves it a lease ahead).
    pub next_attempt_at: DateTimeUtc,
    /// Why the last run failed or gave up (bounded).
    pub last_error: Option<String>,
    /// Set when the checks stopped: attempts spent, or the auto top-up
    /// can't be priced. The wallet's next consumption re-arms it.
    pub given_up_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
