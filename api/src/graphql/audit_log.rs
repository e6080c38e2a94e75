//! The audit trail at the API: every mutation runs in an audit scope
//! ([`Audited`]), and `auditLog` reads what was recorded (ADMIN).
//!
//! How a row is written, and when, is `service::audit_log`'s business (one
//! row per mutation, in the transaction of its change). Here is what the
//! transport knows: who is asking, which mutation, with which arguments,
//! and what it answered.
//!
//! Why a wrapper around the mutation root rather than an extension's
//! `resolve` hook: the wrapper runs once per mutation field and never for
//! queries, so reads (the hot path, whose API-key schema runs without
//! per-field extensions) pay nothing for it.

use std::borrow::Cow;

use async_graphql::{
    Context, ContextSelectionSet, Enum, ID, InputObject, Name, Object, ObjectType, OutputType,
    Positioned, ServerError, ServerResult, SimpleObject, Value,
    parser::types::Field,
    registry::Registry,
    resolver_utils::{ContainerType, resolve_container_serial},
};
use chrono::{DateTime, Utc};
use service::{
    api_keys::{Credential, Principal, Role},
    audit_log::{self, Actor, Mutation, Scope},
};

use super::{
    context::{AppContext, RoleGuard, app},
    error::ApiResult,
    ids::{self, Kind},
    pagination::{self, Conn},
    tenancy,
};

/// The mutation root, each of whose fields runs in an audit scope: the
/// caller (the key, or a customer token's customer), the field's name as
/// the operation, and the ids and references its arguments name
/// ([`targets_of`]). A field that fails records its error code; one that
/// succeeds is recorded by the commit of its first write transaction (or,
/// if it committed nothing, right after it).
#[derive(Default)]
pub struct Audited<T>(pub T);

impl<T: ContainerType> ContainerType for Audited<T> {
    async fn resolve_field(&self, ctx: &Context<'_>) -> ServerResult<Option<Value>> {
        let Some((scope, app)) = scope_of(ctx) else {
            return self.0.resolve_field(ctx).await;
        };
        let result = scope.run(self.0.resolve_field(ctx)).await;
        let outcome = match &result {
            Ok(_) => Ok(()),
            Err(e) => Err(code_of(e)),
        };
        if outcome == Err("UNAVAILABLE") {
            // The database could not take the change; it would not take
            // the row either (and on SQLite, waiting for it again would
            // double the time to answer). Logged instead.
            tracing::warn!("a mutation failed UNAVAILABLE; not recorded in the audit log");
        } else if let Err(e) = scope.finish(&app.db, outcome).await {
            // The answer stands (its change, if any, committed with its
            // row); only a failure's own row is lost.
            tracing::error!(error = %e, "could not record a failed mutation in the audit log");
        }
        result
    }

    async fn find_entity(&self, ctx: &Context<'_>, params: &Value) -> ServerResult<Option<Value>> {
        self.0.find_entity(ctx, params).await
    }
}

impl<T: OutputType + ContainerType> OutputType for Audited<T> {
    fn type_name() -> Cow<'static, str> {
        T::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        T::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        _field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        resolve_container_serial(ctx, self).await
    }
}

impl<T: ObjectType> ObjectType for Audited<T> {}

/// The scope of the mutation field `ctx` resolves; `None` without a
/// caller (the HTTP layer refuses those before the schema runs).
fn scope_of<'a>(ctx: &Context<'a>) -> Option<(Scope, &'a AppContext)> {
    let principal = ctx.data_opt::<Principal>()?;
    let app = ctx.data_opt::<AppContext>()?;
    let field = ctx.field();
    let targets = field
        .arguments()
        .map(|args| targets_of(&args))
        .unwrap_or_default();
    Some((
        Scope::new(Mutation {
            tenant_id: principal.tenant_id,
            actor: actor_of(principal),
            operation: field.name().to_owned(),
            targets,
            at: app.clock().now(),
        }),
        app,
    ))
}

fn actor_of(principal: &Principal) -> Actor {
    match &principal.credential {
        Credential::ApiKey(id) => Actor::ApiKey {
            id: ids::encode(Kind::ApiKey, *id).0,
            role: principal.role,
        },
        Credential::CustomerToken(scope) => Actor::CustomerToken {
            customer: ids::encode(Kind::Customer, scope.customer_id).0,
        },
    }
}

/// The error code a failed field answered: its `extensions.code`, or
/// `VALIDATION` for async-graphql's own errors (as
/// [`super::error::annotate_request_errors`] will label them).
fn code_of(e: &ServerError) -> &str {
    match e.extensions.as_ref().and_then(|x| x.get("code")) {
        Some(Value::String(code)) => code,
        _ => service::Code::Validation.as_str(),
    }
}

/// Input fields whose string is a reference worth recording, as
/// `path=value` (`customer.externalId=acme`).
const REFERENCE_FIELDS: [&str; 4] = ["externalId", "key", "idempotencyKey", "paymentId"];

/// The targets a mutation's arguments name: every string shaped as one of
/// our ids (`cus_0193…`, wherever it appears), and every
/// [`REFERENCE_FIELDS`] value as `path=value`, the path without a
/// top-level `input` (`customer.externalId=acme`, `idempotencyKey=k-1`).
/// Nothing else — no amounts, names, URLs, metadata or free text; the
/// service drops anything that is not shaped as an identifier, or that
/// looks like a credential.
pub fn targets_of(args: &[(Name, Value)]) -> Vec<String> {
    let mut out = Vec::new();
    for (name, value) in args {
        let mut path = Vec::new();
        if name.as_str() != "input" {
            path.push(name.as_str());
        }
        collect(&mut path, value, &mut out);
    }
    out
}

fn collect<'a>(path: &mut Vec<&'a str>, value: &'a Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) if is_api_id(s) => out.push(s.clone()),
        Value::String(s) if path.last().is_some_and(|f| REFERENCE_FIELDS.contains(f)) => {
            out.push(format!("{}={s}", path.join(".")));
        }
        Value::List(items) => {
            for item in items {
                collect(path, item, out);
            }
        }
        Value::Object(fields) => {
            for (name, v) in fields {
                path.push(name.as_str());
                collect(path, v, out);
                path.pop();
            }
        }
        _ => {}
    }
}

/// `abc_` and 32 lowercase hex digits: the shape of [`ids::encode`].
fn is_api_id(s: &str) -> bool {
    s.split_once('_').is_some_and(|(prefix, hex)| {
        (2..=4).contains(&prefix.len())
            && prefix.bytes().all(|b| b.is_ascii_lowercase())
            && hex.len() == 32
            && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

// ------------------------------------------------------------------ reading

/// What kind of caller made a change.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum AuditActorKind {
    /// An API key (`id` is the key's).
    ApiKey,
    /// A customer token (`id` is its customer's).
    CustomerToken,
    /// The engine itself: the key created on an empty database, or one
    /// created from the command line (no `id`).
    System,
}

/// Who made a change.
#[derive(SimpleObject)]
pub struct AuditActor {
    kind: AuditActorKind,
    /// The key's id (`key_…`) or the token's customer's (`cus_…`).
    id: Option<ID>,
    /// The role the caller had then.
    role: Option<tenancy::Role>,
}

/// One mutation, as the audit log recorded it.
pub struct AuditLogEntry(audit_log::Entry);

#[Object]
impl AuditLogEntry {
    async fn id(&self) -> ID {
        ids::encode(Kind::AuditLogEntry, self.0.id)
    }
    /// When the mutation started.
    async fn at(&self) -> DateTime<Utc> {
        self.0.at
    }
    async fn actor(&self) -> AuditActor {
        let (kind, id, role) = match &self.0.actor {
            Actor::ApiKey { id, role } => (AuditActorKind::ApiKey, Some(id), Some(*role)),
            Actor::CustomerToken { customer } => (
                AuditActorKind::CustomerToken,
                Some(customer),
                Some(Role::Read),
            ),
            Actor::System => (AuditActorKind::System, None, None),
        };
        AuditActor {
            kind,
            id: id.map(|i| ID(i.clone())),
            role: role.map(Into::into),
        }
    }
    /// The mutation's field name (`grantCredits`), or `bootstrap`.
    async fn operation(&self) -> &str {
        &self.0.operation
    }
    /// The ids and references the mutation named (`cus_…`,
    /// `customer.externalId=acme`, `idempotencyKey=…`) and the ids of
    /// what it created (the key of `createApiKey`, the grant and entry of
    /// `grantCredits`, …). Never amounts, bodies or secrets.
    async fn targets(&self) -> &[String] {
        &self.0.targets
    }
    /// `OK`, or the error code the mutation answered (`FORBIDDEN`,
    /// `VALIDATION`, …).
    async fn outcome(&self) -> &str {
        &self.0.outcome
    }
    /// An idempotent replay: the original result was returned and nothing
    /// changed.
    async fn replayed(&self) -> bool {
        self.0.replayed
    }
}

/// Which audit entries to list; every condition given must hold.
#[derive(InputObject, Default)]
pub struct AuditLogFilter {
    /// The caller's id: a key (`key_…`) or a customer (`cus_…`).
    actor: Option<ID>,
    /// A mutation's name (`grantCredits`).
    operation: Option<String>,
    /// One of the entry's targets, exactly (`cus_…`,
    /// `customer.externalId=acme`).
    target: Option<String>,
    /// Entries of mutations started at or after this instant…
    since: Option<DateTime<Utc>>,
    /// …and before this one.
    until: Option<DateTime<Utc>>,
    /// `OK` or an error code.
    outcome: Option<String>,
}

#[derive(Default)]
pub struct AuditLogQuery;

#[Object]
impl AuditLogQuery {
    /// Who changed what, newest first: one entry per mutation of any API
    /// key, successful or refused, written in the same database
    /// transaction as the change. Append-only; kept forever for now.
    #[graphql(
        guard = "RoleGuard(Role::Admin)",
        complexity = "crate::graphql::limits::list_cost(first, child_complexity)"
    )]
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<AuditLogFilter>,
    ) -> ApiResult<Conn<AuditLogEntry>> {
        let (p, app) = app(ctx)?;
        let page = pagination::page_request(first, after)?;
        let f = filter.unwrap_or_default();
        let filter = audit_log::Filter {
            actor: f.actor.map(|a| a.0),
            operation: f.operation,
            target: f.target,
            since: f.since,
            until: f.until,
            outcome: f.outcome,
        };
        let found = audit_log::list(&app.db, p.tenant_id, &filter, page).await?;
        Ok(pagination::connection(found, |e| e.id, AuditLogEntry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::Number;
    use uuid::Uuid;

    #[test]
    fn targets_are_ids_and_references_only() {
        let customer = ids::encode(Kind::Customer, Uuid::now_v7()).0;
        let obj = |fields: Vec<(&str, Value)>| {
            Value::Object(fields.into_iter().map(|(k, v)| (Name::new(k), v)).collect())
        };
        let s = |v: &str| Value::String(v.into());
        let args = vec![
            (
                Name::new("input"),
                obj(vec![
                    ("customer", obj(vec![("externalId", s("acme"))])),
                    ("creditSystem", obj(vec![("key", s("tokens"))])),
                    ("amount", s("12.5")),
                    ("reason", s("a long free text")),
                    ("url", s("https://user:pw@example.com/hook")),
                    ("idempotencyKey", s("k-1")),
                    ("grants", Value::List(vec![s(&customer), s("not-an-id")])),
                    ("ttl", Value::Number(Number::from(3))),
                ]),
            ),
            (Name::new("externalId"), s("inv-7")),
        ];
        assert_eq!(
            targets_of(&args),
            [
                "customer.externalId=acme",
                "creditSystem.key=tokens",
                "idempotencyKey=k-1",
                customer.as_str(),
                "externalId=inv-7",
            ]
        );
        assert!(is_api_id(&ids::encode(
            Kind::WebhookEndpoint,
            Uuid::now_v7()
        )));
        assert!(!is_api_id("ck_live_0123"));
        assert!(!is_api_id("cus_0193ABCDEF"));
    }
}
