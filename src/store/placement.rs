//! Where a tenant's rows live on Citus: the worker holding its shard of `events` (every table is
//! co-located with it), for the write to be sent there directly (docs/citus-rules.md, rule 23).
//! On plain PostgreSQL there is no placement.

use crate::domain::TenantId;
use sqlx::PgConnection;

/// Whether the database is a Citus coordinator's (the `citus` extension is created in it).
pub async fn is_distributed(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')")
        .fetch_one(conn)
        .await
}

/// The node (host, port) holding the tenant's shard of `events`, as the coordinator's metadata
/// says now; `None` when it is the coordinator itself or has no active placement.
pub async fn tenant_node(
    conn: &mut PgConnection,
    tenant: TenantId,
) -> Result<Option<(String, u16)>, sqlx::Error> {
    let node: Option<(String, i32)> = sqlx::query_as(
        "SELECT p.nodename::text, p.nodeport FROM pg_dist_shard_placement p \
         JOIN pg_dist_node n ON n.nodename = p.nodename AND n.nodeport = p.nodeport \
         WHERE p.shardid = get_shard_id_for_distribution_column('events', $1) \
           AND n.isactive AND n.groupid <> 0 AND p.shardstate = 1 \
         LIMIT 1",
    )
    .bind(tenant.as_uuid())
    .fetch_optional(conn)
    .await?;
    Ok(node.and_then(|(host, port)| Some((host, u16::try_from(port).ok()?))))
}
