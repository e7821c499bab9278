//! The platform operator's work on tenants (the command line): creating and listing them.
//! Not tenant-scoped, so it takes no [`Caller`](super::Caller): only the operator's own tools
//! reach it, never the API.

use super::{AppError, Runtime};
use crate::domain::TenantId;
use crate::store;
use chrono::{DateTime, Utc};

/// A tenant as the operator lists it.
#[derive(Debug, Clone)]
pub struct TenantSummary {
    pub id: TenantId,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

impl Runtime {
    /// Creates a tenant named `name` (trimmed; not empty, no control characters).
    pub async fn create_tenant(&self, name: &str) -> Result<TenantId, AppError> {
        let name = name.trim();
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err(AppError::BadInput(
                "a tenant's name must be non-empty, without control characters".into(),
            ));
        }
        let mut tx = self.pool().begin().await?;
        let tenant = store::create_tenant(&mut tx, name).await?;
        tx.commit().await?;
        Ok(tenant)
    }

    /// Every tenant, oldest first.
    pub async fn tenants(&self) -> Result<Vec<TenantSummary>, AppError> {
        let mut conn = self.pool().acquire().await?;
        let tenants = store::list_tenants(&mut conn).await?;
        Ok(tenants
            .into_iter()
            .map(|(id, name, created_at)| TenantSummary {
                id,
                name,
                created_at,
            })
            .collect())
    }
}
