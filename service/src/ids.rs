//! The ids the outside world sees: `cus_0193…` — a prefix saying what the id
//! names, then the UUID as 32 hex digits. The API, webhook payloads, CSV
//! exports and emails all speak these, so an id copied from any of them
//! works in `customer(id:)` and every other argument. Clients must treat
//! ids as opaque strings.

use uuid::Uuid;

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
    Event,
}

impl Kind {
    pub fn prefix(self) -> &'static str {
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
            Kind::Event => "evt",
        }
    }
}

/// `cus_0193…`.
pub fn encode(kind: Kind, id: Uuid) -> String {
    format!("{}_{}", kind.prefix(), id.simple())
}

/// The UUID of an id of this kind; `None` for anything else (another
/// kind's prefix, a bare UUID, wrong length).
pub fn decode(kind: Kind, id: &str) -> Option<Uuid> {
    id.strip_prefix(kind.prefix())
        .and_then(|rest| rest.strip_prefix('_'))
        .filter(|hex| hex.len() == 32)
        .and_then(|hex| Uuid::try_parse(hex).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_check_their_kind() {
        let id = Uuid::now_v7();
        let encoded = encode(Kind::ApiKey, id);
        assert!(encoded.starts_with("key_"));
        assert_eq!(decode(Kind::ApiKey, &encoded), Some(id));
        assert_eq!(decode(Kind::Tenant, &encoded), None);
        assert_eq!(decode(Kind::ApiKey, "key_xyz"), None);
        assert_eq!(decode(Kind::ApiKey, &id.simple().to_string()), None);
        assert_eq!(decode(Kind::ApiKey, &id.to_string()), None);
    }
}
