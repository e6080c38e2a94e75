//! The public shape of a webhook body, made at dispatch from the stored
//! (internal) outbox event.
//!
//! Outbox payloads keep raw UUIDs: they are written in the ledger's
//! transaction and read back by the dispatcher (emails, auto top-up). What
//! a receiver gets speaks the API's ids ([`crate::ids`]), so any id in a
//! body works as an argument (`customer(id:)`, `order(id:)`, …). The rules
//! go by key, so an event added later follows them without code here:
//! - `customerId` becomes `"customer": {"id": "cus_…", "externalId": "…"}`;
//! - `creditSystemId` becomes `"creditSystem": {"id": "cs_…", "key": "…"}`;
//! - every other id key ([`id_kind`]: `walletId`, `entryId`, `grantId`,
//!   `orderId`, `subscriptionId`, `holdId`, `invoiceId`, …) gets its prefix,
//!   in nested objects too; an object under a key naming an entity
//!   (`"refund": {"id": …}`) has its `id` prefixed as that entity's;
//! - null stays null; `paymentId` (the payment gateway's id) and
//!   `externalId` (the tenant's own) are not ours and stay as they are.
//!
//! The envelope is `{"id": "evt_…", "type", "createdAt", "tenant": "tnt_…",
//! "data"}`; its `id` is also the `webhook-id` header ([`event_id`]).
//! One JSON Schema per event type describes the whole body ([`SCHEMAS`]).

use std::collections::{HashMap, HashSet};

use entity::{credit_system, customer, outbox_event};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::ids::{self, EventId, Kind};

/// The public id of an event: the body's `id` and the `webhook-id` header.
pub fn event_id(id: EventId) -> String {
    id.to_string()
}

/// What an id key names; `None` for keys that are not our ids.
pub fn id_kind(key: &str) -> Option<Kind> {
    Some(match key {
        "tenantId" => Kind::Tenant,
        "apiKeyId" => Kind::ApiKey,
        "creditSystemId" => Kind::CreditSystem,
        "customerId" | "parentId" => Kind::Customer,
        "walletId" => Kind::Wallet,
        "grantId" => Kind::Grant,
        "entryId" | "usageEntryId" => Kind::Entry,
        "holdId" => Kind::Hold,
        "productId" => Kind::Product,
        "planId" => Kind::Plan,
        "featureId" => Kind::Feature,
        "planCreditId" => Kind::PlanCredit,
        "entitlementId" => Kind::Entitlement,
        "subscriptionId" => Kind::Subscription,
        "orderId" => Kind::Order,
        "endpointId" => Kind::WebhookEndpoint,
        "deliveryId" => Kind::WebhookDelivery,
        "emailId" => Kind::Email,
        "invoiceId" => Kind::Invoice,
        "refundId" => Kind::Refund,
        "eventId" => Kind::Event,
        _ => return None,
    })
}

/// What the `id` of an object under this key names (`"refund": {"id"}`).
fn object_kind(key: &str) -> Option<Kind> {
    Some(match key {
        "refund" => Kind::Refund,
        "order" => Kind::Order,
        "grant" => Kind::Grant,
        "entry" => Kind::Entry,
        "hold" => Kind::Hold,
        "wallet" => Kind::Wallet,
        "subscription" => Kind::Subscription,
        "invoice" => Kind::Invoice,
        _ => return None,
    })
}

/// The customers' external ids and credit systems' keys a batch of events
/// names, loaded with one query each.
#[derive(Debug, Default, Clone)]
pub struct Names {
    customers: HashMap<(Uuid, Uuid), String>,
    credit_systems: HashMap<(Uuid, Uuid), String>,
}

impl Names {
    /// The names the events' payloads refer to (`customerId`,
    /// `creditSystemId` at the top level), each of its own tenant.
    pub async fn load(
        conn: &impl ConnectionTrait,
        events: &[outbox_event::Model],
    ) -> Result<Self, DbErr> {
        let mut tenants = HashSet::new();
        let mut customer_ids = HashSet::new();
        let mut cs_ids = HashSet::new();
        for e in events {
            tenants.insert(e.tenant_id);
            if let Some(id) = uuid_at(&e.payload, "customerId") {
                customer_ids.insert(id);
            }
            if let Some(id) = uuid_at(&e.payload, "creditSystemId") {
                cs_ids.insert(id);
            }
        }
        let tenants: Vec<Uuid> = tenants.into_iter().collect();
        let mut names = Self::default();
        // One query each; `is_in` lists are bounded by the batch size.
        if !customer_ids.is_empty() {
            let rows: Vec<(Uuid, Uuid, String)> = customer::Entity::find()
                .select_only()
                .column(customer::Column::Id)
                .column(customer::Column::TenantId)
                .column(customer::Column::ExternalId)
                .filter(customer::Column::Id.is_in(customer_ids))
                .filter(customer::Column::TenantId.is_in(tenants.clone()))
                .into_tuple()
                .all(conn)
                .await?;
            for (id, tenant, external_id) in rows {
                names.customers.insert((tenant, id), external_id);
            }
        }
        if !cs_ids.is_empty() {
            let rows: Vec<(Uuid, Uuid, String)> = credit_system::Entity::find()
                .select_only()
                .column(credit_system::Column::Id)
                .column(credit_system::Column::TenantId)
                .column(credit_system::Column::Key)
                .filter(credit_system::Column::Id.is_in(cs_ids))
                .filter(credit_system::Column::TenantId.is_in(tenants))
                .into_tuple()
                .all(conn)
                .await?;
            for (id, tenant, key) in rows {
                names.credit_systems.insert((tenant, id), key);
            }
        }
        Ok(names)
    }
}

fn uuid_at(payload: &Value, key: &str) -> Option<Uuid> {
    payload
        .get(key)
        .and_then(Value::as_str)
        .and_then(|s| Uuid::try_parse(s).ok())
}

/// The body a webhook receiver gets for a stored event.
pub fn body(event: &outbox_event::Model, names: &Names) -> Value {
    serde_json::json!({
        "id": event_id(EventId::from_uuid(event.id)),
        "type": event.event_type,
        "createdAt": event.created_at,
        "tenant": ids::encode(Kind::Tenant, event.tenant_id),
        "data": data(event.tenant_id, &event.payload, names),
    })
}

/// A stored payload in its public shape (see the module docs).
pub fn data(tenant_id: Uuid, payload: &Value, names: &Names) -> Value {
    match payload {
        Value::Object(map) => Value::Object(object(tenant_id, map, None, names)),
        other => other.clone(),
    }
}

fn object(
    tenant_id: Uuid,
    map: &Map<String, Value>,
    kind: Option<Kind>,
    names: &Names,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in map {
        match key.as_str() {
            "customerId" => {
                let v = reference(value, Kind::Customer, |id| {
                    let external_id = names.customers.get(&(tenant_id, id)).cloned();
                    serde_json::json!({ "id": ids::encode(Kind::Customer, id), "externalId": external_id })
                });
                out.insert("customer".into(), v);
            }
            "creditSystemId" => {
                let v = reference(value, Kind::CreditSystem, |id| {
                    let key = names.credit_systems.get(&(tenant_id, id)).cloned();
                    serde_json::json!({ "id": ids::encode(Kind::CreditSystem, id), "key": key })
                });
                out.insert("creditSystem".into(), v);
            }
            k => {
                // An object's own `id` is of the kind its key names.
                let own = if k == "id" { kind } else { id_kind(k) };
                let v = match (own, value) {
                    (Some(kind), v) => id_value(v, kind),
                    (None, Value::Object(inner)) => {
                        Value::Object(object(tenant_id, inner, object_kind(k), names))
                    }
                    (None, Value::Array(items)) => Value::Array(
                        items
                            .iter()
                            .map(|item| match item {
                                Value::Object(inner) => {
                                    Value::Object(object(tenant_id, inner, object_kind(k), names))
                                }
                                other => other.clone(),
                            })
                            .collect(),
                    ),
                    (None, v) => v.clone(),
                };
                out.insert(key.clone(), v);
            }
        }
    }
    out
}

/// A `customerId`-like value as an object (null stays null; a value that
/// is not a UUID is kept as its id, unchanged).
fn reference(value: &Value, kind: Kind, make: impl FnOnce(Uuid) -> Value) -> Value {
    let Some(s) = value.as_str() else {
        return value.clone();
    };
    match Uuid::try_parse(s).ok().or_else(|| ids::decode(kind, s)) {
        Some(id) => make(id),
        None => serde_json::json!({ "id": s }),
    }
}

/// A UUID (hyphenated or 32 hex digits) with its prefix; anything else
/// (null, an id already prefixed) unchanged.
fn id_value(value: &Value, kind: Kind) -> Value {
    match value.as_str().and_then(|s| Uuid::try_parse(s).ok()) {
        Some(id) => Value::String(ids::encode(kind, id)),
        None => value.clone(),
    }
}

/// What a grant's `sourceId` shows: the id of what made it, prefixed as
/// the API speaks it (`order` → `ord_…`, `allowance` → the subscription,
/// `refund` → the usage entry refunded, `transfer` → the grant moved
/// from). A source of another kind is shown as stored.
pub fn grant_source_id(source_kind: Option<&str>, source_id: &str) -> String {
    let kind = match source_kind {
        Some("order") => Kind::Order,
        Some("allowance") => Kind::Subscription,
        Some("refund") => Kind::Entry,
        Some("transfer") => Kind::Grant,
        _ => return source_id.to_owned(),
    };
    match Uuid::try_parse(source_id) {
        Ok(id) => ids::encode(kind, id),
        Err(_) => source_id.to_owned(),
    }
}

/// What a grant's `metadata` shows. Metadata the system wrote (a
/// purchase's `{"orderId", "gateway", "paymentId"}`) has its ids prefixed
/// like a webhook payload's; a client's own metadata is shown as given.
pub fn grant_metadata(source_kind: Option<&str>, metadata: &Value) -> Value {
    match (source_kind, metadata) {
        (Some("order"), Value::Object(map)) => {
            Value::Object(object(Uuid::nil(), map, None, &Names::default()))
        }
        _ => metadata.clone(),
    }
}

/// One JSON Schema (draft 2020-12) per event type, for the whole body
/// delivered (envelope and data), served at `GET /webhooks/schemas`.
pub const SCHEMAS: &[(&str, &str)] = &[
    (
        "credits.granted",
        include_str!("schemas/credits.granted.json"),
    ),
    (
        "credits.consumed",
        include_str!("schemas/credits.consumed.json"),
    ),
    (
        "credits.expired",
        include_str!("schemas/credits.expired.json"),
    ),
    (
        "credits.expiring_soon",
        include_str!("schemas/credits.expiring_soon.json"),
    ),
    ("grant.voided", include_str!("schemas/grant.voided.json")),
    (
        "wallet.balance_low",
        include_str!("schemas/wallet.balance_low.json"),
    ),
    (
        "wallet.balance_depleted",
        include_str!("schemas/wallet.balance_depleted.json"),
    ),
    (
        "wallet.balance_recovered",
        include_str!("schemas/wallet.balance_recovered.json"),
    ),
    (
        "wallet.usage_threshold_crossed",
        include_str!("schemas/wallet.usage_threshold_crossed.json"),
    ),
    ("topup.paid", include_str!("schemas/topup.paid.json")),
    ("topup.failed", include_str!("schemas/topup.failed.json")),
    (
        "topup.requested",
        include_str!("schemas/topup.requested.json"),
    ),
    (
        "topup.refunded",
        include_str!("schemas/topup.refunded.json"),
    ),
    (
        "allowance.reset",
        include_str!("schemas/allowance.reset.json"),
    ),
];

/// The schema of one event type's body.
pub fn schema(event_type: &str) -> Option<&'static str> {
    SCHEMAS
        .iter()
        .find(|(name, _)| *name == event_type)
        .map(|(_, schema)| *schema)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::EventType;
    use serde_json::json;

    #[test]
    fn every_event_type_has_a_schema_naming_it() {
        for t in EventType::ALL {
            let schema =
                schema(t.as_str()).unwrap_or_else(|| panic!("no schema for {}", t.as_str()));
            let schema: Value = serde_json::from_str(schema).unwrap();
            assert_eq!(
                schema["$schema"],
                "https://json-schema.org/draft/2020-12/schema"
            );
            assert_eq!(schema["properties"]["type"]["const"], t.as_str());
            assert_eq!(schema["properties"]["data"]["additionalProperties"], false);
        }
        for (name, text) in SCHEMAS {
            let schema: Value = serde_json::from_str(text).unwrap();
            assert_eq!(schema["properties"]["type"]["const"], *name);
        }
    }

    #[test]
    fn grant_sources_read_as_api_ids() {
        let id = Uuid::now_v7();
        for (kind, stored, shown) in [
            (
                "order",
                id.simple().to_string(),
                ids::encode(Kind::Order, id),
            ),
            (
                "allowance",
                id.to_string(),
                ids::encode(Kind::Subscription, id),
            ),
            ("refund", id.to_string(), ids::encode(Kind::Entry, id)),
            ("transfer", id.to_string(), ids::encode(Kind::Grant, id)),
            ("migration", "legacy-7".into(), "legacy-7".into()),
        ] {
            assert_eq!(grant_source_id(Some(kind), &stored), shown, "{kind}");
        }
        let stored =
            json!({"orderId": id.simple().to_string(), "gateway": "stripe", "paymentId": "pi_1"});
        assert_eq!(
            grant_metadata(Some("order"), &stored),
            json!({"orderId": ids::encode(Kind::Order, id), "gateway": "stripe", "paymentId": "pi_1"})
        );
        // A client's metadata is theirs.
        let theirs = json!({"orderId": id.to_string()});
        assert_eq!(grant_metadata(None, &theirs), theirs);
    }

    #[test]
    fn ids_get_their_prefixes_and_names() {
        let (tenant, other) = (Uuid::now_v7(), Uuid::now_v7());
        let (customer, cs, wallet, entry, refund, order) = (
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
        );
        let mut names = Names::default();
        names.customers.insert((tenant, customer), "acme".into());
        names.credit_systems.insert((tenant, cs), "tokens".into());
        // Another tenant's rows are never used.
        names.customers.insert((other, wallet), "theirs".into());
        let stored = json!({
            "customerId": customer,
            "creditSystemId": cs,
            "walletId": wallet,
            "grantId": null,
            "orderId": order.simple().to_string(),
            "paymentId": "pi_3Nx",
            "amount": "-1.5",
            "refund": {"id": refund, "entryId": entry, "reason": "x"},
        });
        let public = data(tenant, &stored, &names);
        assert_eq!(
            public,
            json!({
                "customer": {"id": ids::encode(Kind::Customer, customer), "externalId": "acme"},
                "creditSystem": {"id": ids::encode(Kind::CreditSystem, cs), "key": "tokens"},
                "walletId": ids::encode(Kind::Wallet, wallet),
                "grantId": null,
                "orderId": ids::encode(Kind::Order, order),
                "paymentId": "pi_3Nx",
                "amount": "-1.5",
                "refund": {
                    "id": ids::encode(Kind::Refund, refund),
                    "entryId": ids::encode(Kind::Entry, entry),
                    "reason": "x",
                },
            })
        );
        // A name of another tenant is not shown.
        let theirs = data(tenant, &json!({"customerId": wallet}), &names);
        assert_eq!(theirs["customer"]["externalId"], Value::Null);
        assert_eq!(
            data(tenant, &json!({"customerId": null}), &names),
            json!({"customer": null})
        );
    }
}
