//! Customer tokens: short-lived, signed bearer tokens a tenant's backend
//! hands to a browser so the page can read one customer's balances (and,
//! if asked, its descendants') straight from the API — and nothing else.
//!
//! A token reads `ct_<payload>.<signature>`: the payload is base64url JSON
//! `{"t": tenant, "c": customer, "d": include descendants, "e": expiry
//! (unix seconds)}`, the signature base64url HMAC-SHA256 of the payload
//! text under the tenant's token secret (stored sealed: [`crate::secrets`]).
//! Nothing is stored per token: checking one is one primary-key read of
//! the tenant. Rotating the
//! tenant's secret (`rotate_secret`) invalidates every token issued before.
//! Tokens live at most [`TTL_MAX_SECONDS`]; a token can't be revoked one by
//! one (rotate, or keep the TTL short).

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{Duration, TimeZone, Utc};
use entity::tenant;
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ConnectionTrait, DbErr, EntityTrait};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

use crate::{
    Clock, Db, api_keys,
    customers::{self, CustomerRef},
    error::{Code, DomainError, Invalid},
    ids::CustomerId,
    principal::{Credential, CustomerScope, Principal, Role},
    secrets::{self, Slot},
};

/// The longest a customer token may live: one day.
pub const TTL_MAX_SECONDS: i64 = 86_400;
const PREFIX: &str = "ct_";

#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The bearer token (shown once; not stored).
    pub token: String,
    pub scope: CustomerScope,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error(transparent)]
    Customer(#[from] customers::Error),
    /// The tenant's sealed secret does not open (a broken invariant).
    #[error("the token secret can't be read")]
    Secrets(#[from] secrets::Error),
    #[error("database error")]
    Db(#[from] DbErr),
}

impl DomainError for Error {
    fn code(&self) -> Code {
        match self {
            Error::Invalid(_) => Code::Validation,
            Error::Customer(e) => e.code(),
            Error::Secrets(_) | Error::Db(_) => Code::Internal,
        }
    }
    fn field(&self) -> Option<&str> {
        match self {
            Error::Invalid(i) => Some(&i.field),
            Error::Customer(e) => e.field(),
            Error::Secrets(_) | Error::Db(_) => None,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Claims {
    t: Uuid,
    c: Uuid,
    d: bool,
    e: i64,
}

fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn sign(secret: &str, payload: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(payload.as_bytes());
    mac
}

/// Issues a token for one customer of the tenant, valid for `ttl_seconds`
/// (1 to 86,400).
pub async fn issue(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    customer: &CustomerRef,
    ttl_seconds: i64,
    include_descendants: bool,
) -> Result<IssuedToken, Error> {
    if !(1..=TTL_MAX_SECONDS).contains(&ttl_seconds) {
        return Err(Invalid::new(
            "ttlSeconds",
            format!("must be 1 to {TTL_MAX_SECONDS} (one day)"),
        )
        .into());
    }
    let sealer = db.sealer()?;
    let slot = Slot::CustomerTokenSecret { tenant_id };
    let txn = db.begin_write().await?;
    let customer = customers::resolve(&txn, tenant_id, customer).await?;
    let tenant = tenant::Entity::find_by_id(tenant_id)
        .one(&txn)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("tenant".into()))?;
    let secret = match tenant.customer_token_secret.as_deref() {
        Some(sealed) => sealer.open(slot, sealed)?,
        None => {
            let s = new_secret();
            let mut active: tenant::ActiveModel = tenant.into();
            active.customer_token_secret = Set(Some(sealer.seal(slot, &s)));
            active.update(&txn).await?;
            s
        }
    };
    txn.commit().await?;
    // Whole seconds, so the scope read back from the token is identical.
    let expires_at = Utc
        .timestamp_opt(clock.now().timestamp() + ttl_seconds, 0)
        .single()
        .unwrap_or_else(|| clock.now() + Duration::seconds(ttl_seconds));
    let claims = Claims {
        t: tenant_id,
        c: customer.id,
        d: include_descendants,
        e: expires_at.timestamp(),
    };
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default());
    let signature = URL_SAFE_NO_PAD.encode(sign(&secret, &payload).finalize().into_bytes());
    Ok(IssuedToken {
        token: format!("{PREFIX}{payload}.{signature}"),
        scope: CustomerScope {
            customer_id: customer.id,
            include_descendants,
            expires_at,
        },
    })
}

/// Replaces the tenant's token secret: every customer token issued so far
/// stops working at once.
pub async fn rotate_secret(db: &Db, tenant_id: Uuid) -> Result<(), Error> {
    let sealed = db
        .sealer()?
        .seal(Slot::CustomerTokenSecret { tenant_id }, &new_secret());
    let txn = db.begin_write().await?;
    let active = tenant::ActiveModel {
        id: sea_orm::ActiveValue::Unchanged(tenant_id),
        customer_token_secret: Set(Some(sealed)),
        ..Default::default()
    };
    active.update(&txn).await?;
    txn.commit().await?;
    // Open WebSockets authenticated with its tokens close now.
    crate::revocations::announce(db).await;
    Ok(())
}

/// Whether a bearer credential is a customer token (rather than an API key).
pub fn is_customer_token(bearer: &str) -> bool {
    bearer.starts_with(PREFIX)
}

/// Checks a customer token: well-formed, signed with the tenant's current
/// secret, not expired. Anything else is `Unauthenticated`, without
/// saying which.
pub async fn authenticate(
    db: &Db,
    clock: &dyn Clock,
    token: &str,
) -> Result<Principal, api_keys::Error> {
    let unauthenticated = || api_keys::Error::Unauthenticated;
    let (payload, signature) = token
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.split_once('.'))
        .ok_or_else(unauthenticated)?;
    let claims: Claims = URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(unauthenticated)?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| unauthenticated())?;
    if clock.now().timestamp() >= claims.e {
        return Err(unauthenticated());
    }
    let tenant = tenant::Entity::find_by_id(claims.t)
        .one(db.reader())
        .await?
        .ok_or_else(unauthenticated)?;
    let sealed = tenant
        .customer_token_secret
        .as_deref()
        .ok_or_else(unauthenticated)?;
    // A secret that doesn't open is the server's problem (a wrong or
    // missing key), not the caller's: INTERNAL, logged with its cause.
    let secret = db
        .sealer()
        .and_then(|s| {
            s.open(
                Slot::CustomerTokenSecret {
                    tenant_id: tenant.id,
                },
                sealed,
            )
        })
        .map_err(|e| api_keys::Error::Db(DbErr::Custom(format!("customer tokens: {e}"))))?;
    sign(&secret, payload)
        .verify_slice(&signature)
        .map_err(|_| unauthenticated())?;
    Ok(Principal {
        tenant_id: tenant.id,
        tenant_name: tenant.name,
        role: Role::Read,
        credential: Credential::CustomerToken(CustomerScope {
            customer_id: claims.c,
            include_descendants: claims.d,
            expires_at: Utc
                .timestamp_opt(claims.e, 0)
                .single()
                .ok_or_else(unauthenticated)?,
        }),
    })
}

// The scope is a principal's ([`crate::principal`]); which customers it
// covers reads the customer tree, a rule of customer tokens.
impl CustomerScope {
    /// Whether this token may read `customer_id`: its own customer, or a
    /// descendant of it when the token includes descendants.
    pub async fn covers(
        &self,
        conn: &impl ConnectionTrait,
        tenant_id: Uuid,
        customer_id: CustomerId,
    ) -> Result<bool, DbErr> {
        if customer_id == self.customer_id {
            return Ok(true);
        }
        if !self.include_descendants {
            return Ok(false);
        }
        Ok(customers::ancestors(conn, tenant_id, customer_id)
            .await?
            .contains(&self.customer_id))
    }
}
