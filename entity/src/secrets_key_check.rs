use sea_orm::entity::prelude::*;

/// One row (`id` 1): a known text sealed under the database's secrets key
/// when the first process with a key started; a process with another key
/// can't open it and refuses to start (`service::secrets::prepare`).
/// Engine-wide: the one table besides `job_tick` without `tenant_id`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "secrets_key_check")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i32,
    /// `sealed:v1:<key id>:…`
    pub sealed: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
