//! Tenants: creating one (with its head row) and listing them, for the platform operator.

use super::StoreError;
use crate::domain::TenantId;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};

/// Creates a tenant and its head row. Writes the reference table first (Citus rule 15).
#[tracing::instrument(level = "debug", name = "db.create_tenant", skip_all, fields(db.system = "postgresql"))]
pub async fn create_tenant(conn: &mut PgConnection, name: &str) -> Result<TenantId, StoreError> {
    let tenant = TenantId::generate();
    sqlx::query("INSERT INTO tenants (tenant_id, name) VALUES ($1, $2)")
        .bind(tenant.as_uuid())
        .bind(name)
        .execute(&mut *conn)
        .await?;
    sqlx::query("INSERT INTO tenant_heads (tenant_id, last_position) VALUES ($1, 0)")
        .bind(tenant.as_uuid())
        .execute(&mut *conn)
        .await?;
    Ok(tenant)
}

/// The tenants, oldest first (an operator's listing).
#[tracing::instrument(level = "debug", name = "db.list_tenants", skip_all, fields(db.system = "postgresql"))]
pub async fn list_tenants(
    conn: &mut PgConnection,
) -> Result<Vec<(TenantId, String, DateTime<Utc>)>, StoreError> {
    let rows = sqlx::query("SELECT tenant_id, name, created_at FROM tenants ORDER BY created_at")
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|row| {
            Ok((
                TenantId::from_uuid(row.try_get("tenant_id")?),
                row.try_get("name")?,
                row.try_get("created_at")?,
            ))
        })
        .collect()
}
