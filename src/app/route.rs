//! On Citus, a tenant's writes go straight to the worker holding its shards instead of through
//! the coordinator: the worker runs the distributed write function locally, as a local
//! transaction, exactly as it does when the coordinator delegates the call, without the
//! coordinator's planning and forwarding of every call (a third of a command's database CPU,
//! docs/benchmarks.md). On plain PostgreSQL nothing changes.
//!
//! Where a tenant lives is read from the coordinator's metadata and kept for
//! [`PLACEMENT_TTL`]. A stale placement is still correct: a worker with Citus's metadata that
//! is handed a call whose shard moved away forwards it to the shard's node, as the coordinator
//! would (docs/citus-rules.md, rule 23). A worker that cannot be reached is left alone for a
//! while and the write goes through the coordinator.

use super::Conn;
use crate::domain::TenantId;
use crate::store::placement;
use sqlx::{PgConnection, PgPool};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a tenant's placement is trusted before it is read again.
const PLACEMENT_TTL: Duration = Duration::from_secs(10);
/// How long a worker that could not be reached is not tried again.
const UNREACHABLE_FOR: Duration = Duration::from_secs(10);

type Node = (String, u16);

pub(super) struct Routes {
    coordinator: PgPool,
    enabled: bool,
    distributed: tokio::sync::OnceCell<bool>,
    placements: Mutex<HashMap<TenantId, (Option<Node>, Instant)>>,
    pools: Mutex<HashMap<Node, PgPool>>,
    unreachable: Mutex<HashMap<Node, Instant>>,
}

impl Routes {
    pub fn new(coordinator: PgPool, enabled: bool) -> Self {
        Self {
            coordinator,
            enabled,
            distributed: tokio::sync::OnceCell::new(),
            placements: Mutex::default(),
            pools: Mutex::default(),
            unreachable: Mutex::default(),
        }
    }

    /// The pool of the worker holding `tenant`'s shards, on Citus; `None` to write through the
    /// main pool (plain PostgreSQL, routing off, the placement unknown or unreachable). What it
    /// must read, it reads on `conn` (the command's connection to the coordinator), so that it
    /// never waits for another connection of a busy pool.
    async fn worker_pool(&self, conn: &mut PgConnection, tenant: TenantId) -> Option<PgPool> {
        if !self.enabled || !self.is_distributed(conn).await {
            return None;
        }
        let node = self.node(conn, tenant).await?;
        let unreachable_since = lock(&self.unreachable).get(&node).copied();
        if unreachable_since.is_some_and(|since| since.elapsed() < UNREACHABLE_FOR) {
            return None;
        }
        Some(self.pool(node))
    }

    /// The connection and pool a tenant's write goes through: on Citus, its worker's; else (or
    /// if the worker cannot be reached) `conn`, the command's own, and `main`.
    pub async fn connection(
        &self,
        mut conn: Conn,
        main: &PgPool,
        tenant: TenantId,
    ) -> (Conn, PgPool) {
        let Some(worker) = self.worker_pool(&mut conn, tenant).await else {
            return (conn, main.clone());
        };
        match worker.acquire().await {
            Ok(on_worker) => (on_worker, worker),
            Err(error) => {
                tracing::warn!(%error, "cannot reach a tenant's worker; writing through the coordinator");
                self.unreachable(&worker);
                (conn, main.clone())
            }
        }
    }

    /// Forgets the tenant's placement (after a failed write: it is read again next time).
    pub fn forget(&self, tenant: TenantId) {
        lock(&self.placements).remove(&tenant);
    }

    /// Marks the worker of `pool` unreachable for a while.
    fn unreachable(&self, pool: &PgPool) {
        let options = pool.connect_options();
        let node = (options.get_host().to_owned(), options.get_port());
        lock(&self.unreachable).insert(node, Instant::now());
    }

    async fn is_distributed(&self, conn: &mut PgConnection) -> bool {
        if let Some(known) = self.distributed.get() {
            return *known;
        }
        match placement::is_distributed(conn).await {
            Ok(distributed) => *self.distributed.get_or_init(|| async { distributed }).await,
            Err(_) => false,
        }
    }

    async fn node(&self, conn: &mut PgConnection, tenant: TenantId) -> Option<Node> {
        if let Some((node, read_at)) = lock(&self.placements).get(&tenant)
            && read_at.elapsed() < PLACEMENT_TTL
        {
            return node.clone();
        }
        match placement::tenant_node(conn, tenant).await {
            Ok(node) => {
                lock(&self.placements).insert(tenant, (node.clone(), Instant::now()));
                node
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read a tenant's placement; writing through the coordinator");
                None
            }
        }
    }

    fn pool(&self, node: Node) -> PgPool {
        let mut pools = lock(&self.pools);
        pools
            .entry(node.clone())
            .or_insert_with(|| crate::db::pool_on_node(&self.coordinator, &node.0, node.1))
            .clone()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
