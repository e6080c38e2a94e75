//! The error of notifications: registering endpoints, dispatching events,
//! delivering webhooks and sending email all fail the same ways. It lives
//! apart from [`super::webhooks`] so that email, which webhooks use to tell a
//! tenant's admin about a disabled endpoint, does not use webhooks back.

use sea_orm::DbErr;
use uuid::Uuid;

use crate::{
    error::{Code, DomainError, Invalid},
    secrets,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("no {0} with this id")]
    NotFound(&'static str),
    /// A stored secret that is not `whsec_<base64>`: a broken invariant.
    #[error("webhook endpoint {0} has a signing secret that is not whsec_<base64>")]
    BrokenSecret(Uuid),
    /// A sealed secret that does not open (a wrong or missing key).
    #[error("a signing secret can't be read")]
    Secrets(#[from] secrets::Error),
    #[error("database error")]
    Db(#[from] DbErr),
}

impl DomainError for Error {
    fn code(&self) -> Code {
        match self {
            Error::Invalid(_) => Code::Validation,
            Error::NotFound(_) => Code::NotFound,
            Error::BrokenSecret(_) | Error::Secrets(_) | Error::Db(_) => Code::Internal,
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            Error::Invalid(e) => Some(&e.field),
            Error::NotFound(what) => Some(what),
            Error::BrokenSecret(_) | Error::Secrets(_) | Error::Db(_) => None,
        }
    }
}
