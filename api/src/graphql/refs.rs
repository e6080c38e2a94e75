//! How inputs name customers and credit systems: by id or by the tenant's
//! own key (`externalId`, credit system `key`). Exactly one of the two.

use async_graphql::{ID, OneofObject};
use service::{credit_systems::CreditSystemRef, customers::CustomerRef, ledger::WalletRef};

use super::{error::ApiResult, ids};

/// A customer, by `id` or by your own `externalId`.
#[derive(OneofObject, Clone)]
#[graphql(name = "CustomerRef")]
pub enum CustomerRefInput {
    Id(ID),
    ExternalId(String),
}

impl CustomerRefInput {
    pub fn parse(&self, field: &str) -> ApiResult<CustomerRef> {
        Ok(match self {
            CustomerRefInput::Id(id) => CustomerRef::Id(ids::decode_id(id, field)?),
            CustomerRefInput::ExternalId(e) => CustomerRef::ExternalId(e.clone()),
        })
    }
}

/// A credit system, by `id` or by `key`.
#[derive(OneofObject, Clone)]
#[graphql(name = "CreditSystemRef")]
pub enum CreditSystemRefInput {
    Id(ID),
    Key(String),
}

impl CreditSystemRefInput {
    pub fn parse(&self, field: &str) -> ApiResult<CreditSystemRef> {
        Ok(match self {
            CreditSystemRefInput::Id(id) => CreditSystemRef::Id(ids::decode_id(id, field)?),
            CreditSystemRefInput::Key(k) => CreditSystemRef::Key(k.clone()),
        })
    }
}

pub fn wallet_ref(
    customer: &CustomerRefInput,
    credit_system: &CreditSystemRefInput,
) -> ApiResult<WalletRef> {
    Ok(WalletRef {
        customer: customer.parse("customer")?,
        credit_system: credit_system.parse("creditSystem")?,
    })
}
