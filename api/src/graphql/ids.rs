//! Opaque, prefixed ids (`key_0193…`, see [`service::ids`]) as GraphQL
//! `ID`s. The prefix says what the id names, so passing a customer id where
//! a grant id belongs is a clear `VALIDATION` error, not a silent miss.

use async_graphql::ID;
use uuid::Uuid;

pub use service::ids::Kind;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_names_the_field_and_the_kind() {
        let id = Uuid::now_v7();
        assert_eq!(
            decode(Kind::ApiKey, &encode(Kind::ApiKey, id), "id").unwrap(),
            id
        );
        assert!(decode(Kind::Tenant, &encode(Kind::ApiKey, id), "id").is_err());
    }
}
