//! The principal: who is making a request (a tenant and a role) and what it
//! authenticated with. API keys and customer tokens both produce one, and
//! the audit log records its role; it sits below all three so that none of
//! them uses another for these words.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// What a key may do. Each role includes the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Read anything of the tenant.
    Read,
    /// Also usage, purchases, holds.
    Write,
    /// Also catalog, grants, voids, keys, settings.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "ADMIN",
            Role::Write => "WRITE",
            Role::Read => "READ",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ADMIN" => Some(Role::Admin),
            "WRITE" => Some(Role::Write),
            "READ" => Some(Role::Read),
            _ => None,
        }
    }

    /// Whether a holder of `self` may do what needs `required`.
    pub fn allows(self, required: Role) -> bool {
        self >= required
    }
}

/// Who is making a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant_id: Uuid,
    pub tenant_name: String,
    pub role: Role,
    pub credential: Credential,
}

/// What a request authenticated with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// An API key (a tenant's backend or operator).
    ApiKey(Uuid),
    /// A customer token (a browser): reads one customer's subtree only.
    CustomerToken(CustomerScope),
}

impl Principal {
    /// The customer scope of a customer token; `None` for API keys.
    pub fn customer_scope(&self) -> Option<&CustomerScope> {
        match &self.credential {
            Credential::CustomerToken(scope) => Some(scope),
            Credential::ApiKey(_) => None,
        }
    }
}

/// What a customer token may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CustomerScope {
    pub customer_id: Uuid,
    pub include_descendants: bool,
    pub expires_at: DateTime<Utc>,
}
