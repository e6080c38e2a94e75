//! Opaque, prefixed ids (`key_0193…`, see [`service::ids`]) as GraphQL
//! `ID`s. The prefix says what the id names, so passing a customer id where
//! a grant id belongs is a clear `VALIDATION` error, not a silent miss.

use async_graphql::ID;
use uuid::Uuid;

pub use service::ids::Kind;
pub use service::ids::TypedId;

use super::error::{ApiError, ApiResult};

pub fn encode(kind: Kind, id: Uuid) -> ID {
    ID(service::ids::encode(kind, id))
}

pub fn encode_tenant(id: Uuid) -> ID {
    encode(Kind::Tenant, id)
}

/// Parses an id of the given kind; `field` names the input for the error.
pub fn decode(kind: Kind, id: &ID, field: &str) -> ApiResult<Uuid> {
    service::ids::decode(kind, id.as_str()).ok_or_else(|| {
        ApiError::invalid(
            field,
            format!("not a valid {} id: {:?}", kind.prefix(), id.as_str()),
        )
    })
}

/// A typed id as a GraphQL `ID` (its public form).
pub fn encode_id<T: TypedId>(id: T) -> ID {
    ID(id.to_string())
}

/// The API boundary: parses an id into its domain type, e.g.
/// `decode_id::<CustomerId>(&id, "customerId")`. Another kind's id, a bare
/// UUID or garbage is a `VALIDATION` error naming `field` and the expected
/// prefix.
pub fn decode_id<T: TypedId>(id: &ID, field: &str) -> ApiResult<T> {
    T::parse(id.as_str()).ok_or_else(|| {
        ApiError::invalid(
            field,
            format!("not a valid {} id: {:?}", T::KIND.prefix(), id.as_str()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use service::ids::{CustomerId, WalletId};

    #[test]
    fn decoding_names_the_field_and_the_kind() {
        let id = Uuid::now_v7();
        assert_eq!(
            decode(Kind::ApiKey, &encode(Kind::ApiKey, id), "id").unwrap(),
            id
        );
        assert!(decode(Kind::Tenant, &encode(Kind::ApiKey, id), "id").is_err());
    }

    #[test]
    fn typed_decoding_checks_the_prefix_and_names_the_field() {
        let id = CustomerId::new_v7();
        let as_id = ID(id.to_string());
        assert_eq!(decode_id::<CustomerId>(&as_id, "customerId").unwrap(), id);
        let err =
            async_graphql::Error::from(decode_id::<WalletId>(&as_id, "walletId").unwrap_err());
        assert!(
            err.message.contains("not a valid wal id"),
            "{}",
            err.message
        );
        let ext = format!("{:?}", err.extensions);
        assert!(
            ext.contains("walletId") && ext.contains("VALIDATION"),
            "{ext}"
        );
    }
}
