use sea_orm::entity::prelude::*;

/// One mutation, as the audit trail records it (see `service::audit_log`).
/// Append-only: rows are never updated or deleted.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_log")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    /// When the mutation started.
    pub created_at: DateTimeUtc,
    /// `API_KEY`, `CUSTOMER_TOKEN` or `SYSTEM`.
    pub actor_kind: String,
    /// The API id of the key (`key_…`) or of the token's customer
    /// (`cus_…`); none for `SYSTEM`.
    pub actor_id: Option<String>,
    /// `ADMIN`, `WRITE` or `READ`: the actor's role then.
    pub actor_role: Option<String>,
    /// The mutation's field name (`grantCredits`).
    pub operation: String,
    /// A JSON array of strings: ids and references the mutation named or
    /// created. Never secrets or request bodies.
    pub targets: String,
    /// `OK`, or the error code the mutation answered.
    pub outcome: String,
    /// An idempotent replay: the original result was returned, nothing
    /// changed.
    pub replayed: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::tenant::Entity",
        from = "Column::TenantId",
        to = "super::tenant::Column::Id"
    )]
    Tenant,
}

impl Related<super::tenant::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Tenant.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
