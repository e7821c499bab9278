//! The tenant capability: who calls, in which tenant, with which role.

use super::AppError;
use crate::auth::Principal;
use crate::domain::{Role, TenantId};
use uuid::Uuid;

/// The caller of an operation: a verified person in one tenant. This is the tenant capability —
/// every function that touches tenant data takes a `Caller`, and the only ways to make one are
/// a verified token ([`Caller::from_principal`]) or the operator's command line
/// ([`Caller::operator`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    tenant: TenantId,
    actor_id: Uuid,
    role: Role,
}

impl Caller {
    pub fn from_principal(principal: &Principal) -> Self {
        Self {
            tenant: principal.tenant(),
            actor_id: principal.subject(),
            role: principal.role(),
        }
    }

    /// The platform operator acting on a tenant from the command line, with admin rights.
    /// Its events are attributed to the nil UUID.
    pub fn operator(tenant: TenantId) -> Self {
        Self {
            tenant,
            actor_id: Uuid::nil(),
            role: Role::Admin,
        }
    }

    pub fn tenant(&self) -> TenantId {
        self.tenant
    }
    pub fn actor_id(&self) -> Uuid {
        self.actor_id
    }
    pub fn role(&self) -> Role {
        self.role
    }

    /// Refuses the operation unless the caller has one of the roles.
    pub fn require(&self, allowed: &[Role], what: &str) -> Result<(), AppError> {
        if allowed.contains(&self.role) {
            Ok(())
        } else {
            Err(AppError::Forbidden(format!(
                "the {} role may not {what}",
                self.role.as_str()
            )))
        }
    }
}
