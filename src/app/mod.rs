//! The application layer: who may do what (roles), and the one place where a command becomes a
//! write. It owns no SQL of its own (that is in `store` and `projections`) and knows nothing of
//! HTTP or GraphQL; the GraphQL layer and the command line both call into it.
//!
//! [`App`] is three parts, built once from [`AppSettings`]:
//! - [`Commands`]: the command path ([`command_path`]: dedupe, the stream cache, decide, commit,
//!   group commit) and the commands ([`commands`]);
//! - [`Reads`]: queries, audit trails and exports, reports and rebuilds;
//! - [`Runtime`]: what both share — pools and admission, feeds, metrics, timeouts, keys — and
//!   the operator's tenants.

pub mod admission;
mod audit;
mod caller;
mod command_path;
mod commands;
mod error;
mod feed;
mod group;
mod queries;
mod reads;
mod recent;
mod reports;
mod route;
mod runtime;
mod tenants;
mod write;

pub use audit::{AuditStream, EXPORT_PAGE_SIZE, FOLLOW_POLL_INTERVAL};
pub use caller::Caller;
pub use command_path::{CommandOptions, CommandOutcome, Commands};
pub use commands::Submitted;
pub use error::{AppError, ErrorCode};
pub use feed::SubscriptionLimits;
pub use group::GroupCommitStats;
pub use queries::{may_see_trainee, visible_enrollment};
pub use reads::Reads;
pub use recent::DEFAULT_CAPACITY as DEFAULT_STREAM_CACHE_CAPACITY;
pub use reports::ReportOutput;
pub use runtime::Runtime;
pub use tenants::TenantSummary;
pub use write::CommandResult;

/// The types the application's reads return and take, as the interfaces (GraphQL, HTTP, the
/// exports) see them: they name these, never the storage modules they come from.
pub mod views {
    pub use crate::projections::EnrollmentFilter;
    pub use crate::projections::rows::{CourseRow, EnrollmentRow, SubmissionRow, TraineeRow};
    pub use crate::reports::duration::{DurationSpec, GroupBy, GroupKey};
    pub use crate::reports::funnel::FunnelRow;
    pub use crate::reports::{LifecyclePoint, Summary};
    pub use crate::store::log::{LogFilter, LoggedEvent};
}

use crate::crypto::Keyring;
use crate::metrics::Metrics;
use crate::store::Notifier;
use admission::{Admission, Limits};
use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// A connection for one attempt of a command. Not a transaction: a command's reads are
/// plain reads (its decision is protected by the stream version and the unique rules, checked
/// by the write), and its whole write is one call that commits by itself.
type Conn = PoolConnection<Postgres>;

/// The application's entry point: cheap to clone, shared by every request.
#[derive(Clone)]
pub struct App {
    commands: Commands,
    reads: Reads,
}

/// How the application is built: every setting, with its default.
#[derive(Clone)]
pub struct AppSettings {
    /// Recently used streams kept ([`recent`]; 0: none, every command reads its stream).
    pub stream_cache_capacity: usize,
    /// Wraps new trainees' data keys with a key-encryption key (and unwraps stored ones).
    pub keys: Keyring,
    /// Group commit ([`group`]) on, or every write committing on its own.
    pub group_commit: bool,
    /// On Citus, each tenant's writes go to the worker holding it ([`route`]), or through the
    /// coordinator. No effect on plain PostgreSQL.
    pub worker_writes: bool,
    /// Shares of the command-and-read pool per tenant ([`admission`]); `None`: sized to the
    /// pool.
    pub limits: Option<Limits>,
    /// The pool of reports, rebuilds and exports (`None`: the main pool), and their shares.
    pub heavy_pool: Option<PgPool>,
    pub heavy_limits: Limits,
    /// How many live subscriptions may be open per caller and per tenant, and their pace.
    pub subscriptions: SubscriptionLimits,
    pub timeouts: Timeouts,
}

impl Default for AppSettings {
    fn default() -> Self {
        Self {
            stream_cache_capacity: DEFAULT_STREAM_CACHE_CAPACITY,
            keys: Keyring::unwrapped(),
            group_commit: true,
            worker_writes: true,
            limits: None,
            heavy_pool: None,
            heavy_limits: default_heavy_limits(),
            subscriptions: SubscriptionLimits::default(),
            timeouts: Timeouts::default(),
        }
    }
}

impl App {
    /// The application with every default setting. Must be called inside a tokio runtime: it
    /// starts the wake-up sender ([`Notifier`]).
    pub fn new(pool: PgPool) -> Self {
        Self::build(pool, AppSettings::default())
    }

    /// The application over `pool` with `settings`, inside a tokio runtime.
    pub fn build(pool: PgPool, settings: AppSettings) -> Self {
        let metrics = Arc::new(Metrics::new());
        let connections = pool.options().get_max_connections() as usize;
        let limits = settings
            .limits
            .unwrap_or_else(|| Limits::for_pool(connections));
        let runtime = Arc::new(Runtime {
            admission: Admission::new(limits),
            heavy_pool: settings.heavy_pool.unwrap_or_else(|| pool.clone()),
            heavy_admission: Admission::new(settings.heavy_limits),
            timeouts: settings.timeouts,
            routes: route::Routes::new(pool.clone(), settings.worker_writes),
            feeds: feed::Feeds::new(
                pool.clone(),
                settings.keys.clone(),
                settings.subscriptions,
                metrics.clone(),
            ),
            notifier: Notifier::spawn(pool.clone()),
            keys: settings.keys,
            pool,
            metrics: metrics.clone(),
        });
        Self {
            commands: Commands {
                rt: runtime.clone(),
                recent: Arc::new(recent::Recent::new(settings.stream_cache_capacity)),
                group: Arc::new(group::GroupCommit::new(settings.group_commit, &metrics)),
            },
            reads: Reads { rt: runtime },
        }
    }

    /// The commands: everything that writes to a tenant's log.
    pub fn commands(&self) -> &Commands {
        &self.commands
    }

    /// Queries, audit trails, exports, reports and rebuilds.
    pub fn reads(&self) -> &Reads {
        &self.reads
    }

    /// Pools, admission, feeds and metrics; the operator's tenants.
    pub fn runtime(&self) -> &Runtime {
        &self.commands.rt
    }
}

/// The longest each kind of work runs, waiting included, before it is answered `TIMEOUT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub command: Duration,
    pub report: Duration,
    pub export: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            command: Duration::from_secs(10),
            report: Duration::from_secs(300),
            export: Duration::from_secs(3600),
        }
    }
}

/// `work` within `limit`, or [`AppError::Timeout`] naming `what`.
async fn within<T>(
    limit: Duration,
    what: &str,
    work: impl Future<Output = Result<T, AppError>>,
) -> Result<T, AppError> {
    tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
        Err(AppError::Timeout(format!(
            "the {what} did not finish within {}",
            humantime::format_duration(limit)
        )))
    })
}

/// Default shares for reports, rebuilds and exports: two at once, one per tenant (a replay
/// keeps a core busy: more at once only slows the commands beside them).
pub fn default_heavy_limits() -> Limits {
    Limits {
        slots: 2,
        per_tenant: 1,
        queue_per_tenant: 8,
        max_wait: std::time::Duration::from_secs(10),
        refusal_delay: admission::DEFAULT_REFUSAL_DELAY,
    }
}
