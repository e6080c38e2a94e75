//! Opaque, prefixed ids: `key_0193…`. The prefix says what the id names, so
//! passing a customer id where a grant id belongs is a clear `VALIDATION`
//! error, not a silent miss. Clients must treat ids as opaque strings.

use async_graphql::ID;
use uuid::Uuid;

use super::error::{ApiError, ApiResult};

/// What an id names, and its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tenant,
    ApiKey,
    CreditSystem,
    Customer,
    Wallet,
    Grant,
    Entry,
    Hold,
    Product,
    Plan,
    Feature,
    PlanCredit,
    Entitlement,
    Subscription,
    Order,
    WebhookEndpoint,
    WebhookDelivery,
    Email,
    Invoice,
    AuditLogEntry,
    Refund,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::Tenant => "tnt",
            Kind::ApiKey => "key",
            Kind::CreditSystem => "cs",
            Kind::Customer => "cus",
            Kind::Wallet => "wal",
            Kind::Grant => "grt",
            Kind::Entry => "ent",
            Kind::Hold => "hld",
            Kind::Product => "prd",
            Kind::Plan => "pln",
            Kind::Feature => "ftr",
            Kind::PlanCredit => "pcr",
            Kind::Entitlement => "etl",
            Kind::Subscription => "sub",
            Kind::Order => "ord",
            Kind::WebhookEndpoint => "whe",
            Kind::WebhookDelivery => "whd",
            Kind::Email => "eml",
            Kind::Invoice => "inv",
            Kind::AuditLogEntry => "aud",
            Kind::Refund => "rfd",
        }
    }
}

pub fn encode(kind: Kind, id: Uuid) -> ID {
    ID(format!("{}_{}", kind.prefix(), id.simple()))
}

pub fn encode_tenant(id: Uuid) -> ID {
    encode(Kind::Tenant, id)
}

/// Parses an id of the given kind; `field` names the input for the error.
pub fn decode(kind: Kind, id: &ID, field: &str) -> ApiResult<Uuid> {
    id.as_str()
        .strip_prefix(kind.prefix())
        .and_then(|rest| rest.strip_prefix('_'))
        .filter(|hex| hex.len() == 32)
        .and_then(|hex| Uuid::try_parse(hex).ok())
        .ok_or_else(|| {
            ApiError::invalid(
                field,
                format!("not a valid {} id: {:?}", kind.prefix(), id.as_str()),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_check_their_kind() {
        let id = Uuid::now_v7();
        let encoded = encode(Kind::ApiKey, id);
        assert!(encoded.starts_with("key_"));
        assert_eq!(decode(Kind::ApiKey, &encoded, "id").unwrap(), id);
        assert!(decode(Kind::Tenant, &encoded, "id").is_err());
        assert!(decode(Kind::ApiKey, &ID("key_xyz".into()), "id").is_err());
        assert!(decode(Kind::ApiKey, &ID(id.simple().to_string()), "id").is_err());
    }
}
