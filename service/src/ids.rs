//! The ids the outside world sees: `cus_0193…` — a prefix saying what the id
//! names, then the UUID as 32 hex digits. The API, webhook payloads, CSV
//! exports and emails all speak these, so an id copied from any of them
//! works in `customer(id:)` and every other argument. Clients must treat
//! ids as opaque strings.
//!
//! Inside the engine each kind of id has its own type ([`CustomerId`],
//! [`WalletId`], …, one per [`Kind`], made by one macro), so a function
//! taking `(CustomerId, CreditSystemId)` can't be called with the two
//! swapped. The rule: an id is parsed once, where it enters (the API
//! decodes a GraphQL `ID` with its kind's prefix checked), and travels
//! typed; the database columns stay `Uuid` and the conversion is at the
//! entity boundary: `X::from_uuid(model.id)` in, `id.uuid()` out (or
//! `id.into()` where a `sea_orm::Value` is wanted: a filter, a bind).
//!
//! - `Display` is the public, prefixed form (`cus_0193…`): what a log line
//!   or an error message shows, and what a client may paste back.
//! - `serde` is transparent: the bare UUID, as before, so stored JSON and
//!   request fingerprints (idempotency) don't change with the type.

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

    /// What a message calls a thing of this kind: "customer", "credit system".
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Tenant => "tenant",
            Kind::ApiKey => "API key",
            Kind::CreditSystem => "credit system",
            Kind::Customer => "customer",
            Kind::Wallet => "wallet",
            Kind::Grant => "grant",
            Kind::Entry => "entry",
            Kind::Hold => "hold",
            Kind::Product => "product",
            Kind::Plan => "plan",
            Kind::Feature => "feature",
            Kind::PlanCredit => "plan credit",
            Kind::Entitlement => "entitlement",
            Kind::Subscription => "subscription",
            Kind::Order => "order",
            Kind::WebhookEndpoint => "webhook endpoint",
            Kind::WebhookDelivery => "webhook delivery",
            Kind::Email => "email",
            Kind::Invoice => "invoice",
            Kind::AuditLogEntry => "audit log entry",
            Kind::Refund => "refund",
            Kind::Event => "event",
        }
    }
}

/// A newtype over `Uuid` per [`Kind`]: see the module's documentation.
macro_rules! typed_ids {
    ($($name:ident => $kind:ident),* $(,)?) => {$(
        #[doc = concat!("The id of a `", stringify!($kind), "` (`Display`: `", stringify!($kind), "`'s prefix, `_`, 32 hex digits).")]
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            pub const KIND: Kind = Kind::$kind;

            /// The id a stored row (a `Uuid` column) holds: the one place a
            /// bare `Uuid` becomes typed, at the entity boundary.
            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }

            /// The bare UUID, for an entity's column.
            pub const fn uuid(self) -> Uuid {
                self.0
            }

            /// A new id (UUIDv7, time-ordered).
            pub fn new_v7() -> Self {
                Self(Uuid::now_v7())
            }

            /// The public form (`cus_0193…`) of this kind only; `None` for
            /// another kind's prefix, a bare UUID, a wrong length.
            pub fn parse(s: &str) -> Option<Self> {
                decode(Kind::$kind, s).map(Self)
            }
        }

        impl TypedId for $name {
            const KIND: Kind = Kind::$kind;
            fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }
            fn uuid(self) -> Uuid {
                self.0
            }
            fn parse(s: &str) -> Option<Self> {
                Self::parse(s)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}_{}", Kind::$kind.prefix(), self.0.simple())
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Display::fmt(self, f)
            }
        }

        impl From<$name> for sea_orm::Value {
            fn from(id: $name) -> Self {
                sea_orm::Value::Uuid(Some(id.0))
            }
        }

        impl PartialEq<Uuid> for $name {
            fn eq(&self, other: &Uuid) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<$name> for Uuid {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }
    )*};
}

typed_ids! {
    TenantId => Tenant,
    ApiKeyId => ApiKey,
    CreditSystemId => CreditSystem,
    CustomerId => Customer,
    WalletId => Wallet,
    GrantId => Grant,
    EntryId => Entry,
    HoldId => Hold,
    ProductId => Product,
    PlanId => Plan,
    FeatureId => Feature,
    PlanCreditId => PlanCredit,
    EntitlementId => Entitlement,
    SubscriptionId => Subscription,
    OrderId => Order,
    WebhookEndpointId => WebhookEndpoint,
    WebhookDeliveryId => WebhookDelivery,
    EmailId => Email,
    InvoiceId => Invoice,
    AuditLogEntryId => AuditLogEntry,
    RefundId => Refund,
    EventId => Event,
}

/// What every typed id has (for code generic over the kind, such as the
/// API's `decode_id::<CustomerId>` and [`crate::error::NotFound::of`]).
pub trait TypedId: Copy + Eq + std::hash::Hash + std::fmt::Display {
    const KIND: Kind;
    fn from_uuid(id: Uuid) -> Self;
    fn uuid(self) -> Uuid;
    fn parse(s: &str) -> Option<Self>;
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

    #[test]
    fn typed_ids_round_trip_and_refuse_another_kind() {
        let id = CustomerId::new_v7();
        let shown = id.to_string();
        assert!(shown.starts_with("cus_"), "{shown}");
        assert_eq!(shown, encode(Kind::Customer, id.uuid()));
        assert_eq!(format!("{id:?}"), shown);
        assert_eq!(CustomerId::parse(&shown), Some(id));
        assert_eq!(CustomerId::from_uuid(id.uuid()), id);
        assert_eq!(CustomerId::KIND, Kind::Customer);
        // Another kind's prefix, a bare UUID, a truncated id: refused.
        assert_eq!(WalletId::parse(&shown), None);
        assert_eq!(
            WalletId::parse(&format!("wal_{}", id.uuid().simple())),
            Some(WalletId::from_uuid(id.uuid()))
        );
        assert_eq!(CustomerId::parse(&id.uuid().to_string()), None);
        assert_eq!(CustomerId::parse(&shown[..shown.len() - 1]), None);
        // Stored and fingerprinted as the bare UUID, as before the types.
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            serde_json::to_string(&id.uuid()).unwrap()
        );
        let back: CustomerId = serde_json::from_str(&serde_json::to_string(&id).unwrap()).unwrap();
        assert_eq!(back, id);
        assert_eq!(sea_orm::Value::from(id), sea_orm::Value::from(id.uuid()));
    }
}
