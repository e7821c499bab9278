//! The application layer: who may do what (roles), and the one place where a command becomes a
//! write — dedupe, load the stream, decide, then update the projections and append in one
//! call of the write function that commits by itself. A command is first tried on the stream as this server last
//! saw it ([`recent`]), without the reads; any refusal sends it down the full path.
//!
//! It owns no SQL of its own (that is in `store` and `projections`) and knows nothing of HTTP
//! or GraphQL; the GraphQL layer and the command line both call into it.

pub mod admission;
mod audit;
mod commands;
mod error;
mod feed;
mod group;
mod queries;
mod recent;
mod reports;
mod route;
mod tenants;
mod write;

pub use reports::ReportOutput;

pub use audit::{AuditStream, EXPORT_PAGE_SIZE, FOLLOW_POLL_INTERVAL};
pub use error::{AppError, ErrorCode};
pub use feed::SubscriptionLimits;
pub use group::GroupCommitStats;
pub use queries::{may_see_trainee, visible_enrollment};
pub use recent::DEFAULT_CAPACITY as DEFAULT_STREAM_CACHE_CAPACITY;

use crate::auth::Principal;
use crate::crypto::Keyring;
use crate::domain::{Event, Role, StreamType, TenantId};
use crate::metrics::Metrics;
use crate::projections::rows::StreamRows;
use crate::store::personal::TraineeKey;
use crate::store::{self, CommandRecord, Metadata, Notifier, StreamEvent};
use admission::{Admission, Limits, Slot};
use chrono::{DateTime, SubsecRound, Utc};
use group::{GroupCommit, PendingWrite};
use recent::{Recent, Stream};
use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
pub use tenants::TenantSummary;
use tracing::Instrument;
use uuid::Uuid;
use write::{project, stored_stream, write_failed};

/// How many times a command is tried when its stream keeps changing between load and append.
const MAX_ATTEMPTS: u32 = 8;

/// The application's entry point: cheap to clone, shared by every request.
#[derive(Clone)]
pub struct App {
    pool: PgPool,
    /// Live events, read once per tenant for all its subscriptions ([`feed`]).
    feeds: Arc<feed::Feeds>,
    notifier: Notifier,
    recent: Arc<Recent>,
    group: Arc<GroupCommit>,
    /// Commands and reads: each takes a slot before a connection of `pool`.
    admission: Arc<Admission>,
    /// Reports, rebuilds and exports: whole-log reads, on connections of their own that the
    /// command path never waits for, with their own (smaller) shares.
    heavy_pool: PgPool,
    heavy_admission: Arc<Admission>,
    timeouts: Timeouts,
    metrics: Arc<Metrics>,
    /// Reads and makes trainees' data keys ([`crate::crypto`]).
    keys: Keyring,
    /// On Citus, where each tenant's writes go ([`route`]).
    routes: Arc<route::Routes>,
    subscription_limits: SubscriptionLimits,
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

/// Per-command options a client may send.
#[derive(Debug, Clone, Default)]
pub struct CommandOptions {
    /// Makes the command idempotent: a repeat returns the first result and appends nothing.
    pub command_id: Option<Uuid>,
    /// Ties together everything one user action caused (e.g. an HTTP request's correlation id).
    pub correlation_id: Option<Uuid>,
    /// The command's input as the client sent it, in a canonical form: with a `command_id`,
    /// its digest (with the caller's) is recorded, and a repeat of the id with another input,
    /// command or caller is refused (`COMMAND_ID_REUSED`) instead of answered as a retry.
    pub input: Option<String>,
}

/// The key of a command record's result holding the request's digest ([`request_digest`]).
const DIGEST_KEY: &str = "requestDigest";

/// SHA-256 over the command, the caller and the input: equal for a retry, different for any
/// other use of the same command id. A digest, not the input: the record must not hold a
/// second copy of personal data.
fn request_digest(caller: &Caller, command_type: &str, input: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for part in [
        command_type.as_bytes(),
        caller.actor_id.as_bytes(),
        caller.role.as_str().as_bytes(),
        input.as_bytes(),
    ] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// What a command did: the stream it wrote, the tenant position of its last event, and any
/// extra result (e.g. a submission id). A repeated command returns the same outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandOutcome {
    pub stream_id: Uuid,
    pub position: i64,
    pub result: serde_json::Value,
    /// True when this is the recorded outcome of an earlier request with the same command id.
    pub replayed: bool,
    /// The stream's projection rows as this command wrote them (so a payload need not read
    /// them back); `None` for a replayed outcome, whose rows must be read.
    pub rows: Option<StreamRows>,
}

/// The new events of one command and what is stored with them.
struct Write<'a> {
    stream_id: Uuid,
    stream_type: StreamType,
    prior: &'a [StreamEvent],
    events: Vec<Event>,
    trainee_id: Option<Uuid>,
    course_id: Option<Uuid>,
    result: serde_json::Value,
    /// The command opens an enrollment: written only while its course is not retired.
    registration: bool,
    /// The data key of the trainee whose personal data the events hold, if they hold any.
    data_key: Option<TraineeKey>,
}

/// Where an attempt of a command takes the stream it decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The stream as this server last saw it, without a read when it has it ([`recent`]).
    Recent,
    /// The stream as stored now: read in full.
    Stored,
}

/// What an attempt assumes of a stream [`Source::Recent`] does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnMiss {
    /// Read it.
    Read,
    /// Assume it does not exist yet (a command that creates the stream under an id the client
    /// chose): if it does, the append at version 1 is refused and the command runs again on
    /// the stored stream.
    AssumeNew,
}

/// A connection for one attempt of a command. Not a transaction: a command's reads are
/// plain reads (its decision is protected by the stream version and the unique rules, checked
/// by the write), and its whole write is one call that commits by itself.
type Conn = PoolConnection<Postgres>;

/// One command being run: who asks, with which options, and its type (its name in the log,
/// the metrics and its command record), given once for the whole run.
#[derive(Clone, Copy)]
struct Command<'a> {
    caller: &'a Caller,
    options: &'a CommandOptions,
    name: &'static str,
}

impl<'a> Command<'a> {
    fn new(caller: &'a Caller, options: &'a CommandOptions, name: &'static str) -> Self {
        Self {
            caller,
            options,
            name,
        }
    }
}

impl App {
    /// Must be called inside a tokio runtime: it starts the wake-up sender ([`Notifier`]).
    pub fn new(pool: PgPool) -> Self {
        Self::with_stream_cache(pool, DEFAULT_STREAM_CACHE_CAPACITY)
    }

    /// As [`App::new`], keeping up to `capacity` recently used streams (0: none; every command
    /// then reads its stream).
    pub fn with_stream_cache(pool: PgPool, capacity: usize) -> Self {
        let metrics = Arc::new(Metrics::new());
        let keys = Keyring::unwrapped();
        let subscription_limits = SubscriptionLimits::default();
        let feeds = feed::Feeds::new(
            pool.clone(),
            keys.clone(),
            subscription_limits,
            metrics.clone(),
        );
        let notifier = Notifier::spawn(pool.clone());
        let connections = pool.options().get_max_connections() as usize;
        Self {
            heavy_pool: pool.clone(),
            routes: Arc::new(route::Routes::new(pool.clone(), true)),
            pool,
            feeds,
            notifier,
            recent: Arc::new(Recent::new(capacity)),
            group: Arc::new(GroupCommit::new(true, &metrics)),
            admission: Admission::new(Limits::for_pool(connections)),
            heavy_admission: Admission::new(default_heavy_limits()),
            timeouts: Timeouts::default(),
            metrics,
            keys,
            subscription_limits,
        }
    }

    /// Wraps new trainees' data keys with a key-encryption key (and unwraps stored ones).
    pub fn with_keys(mut self, keys: Keyring) -> Self {
        self.keys = keys;
        self.rebuild_feeds();
        self
    }

    fn rebuild_feeds(&mut self) {
        self.feeds = feed::Feeds::new(
            self.pool.clone(),
            self.keys.clone(),
            self.subscription_limits,
            self.metrics.clone(),
        );
    }

    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Shares of the command-and-read pool per tenant ([`admission`]).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.admission = Admission::new(limits);
        self
    }

    /// How many live subscriptions may be open per caller and per tenant.
    pub fn with_subscription_limits(mut self, limits: SubscriptionLimits) -> Self {
        self.subscription_limits = limits;
        self.rebuild_feeds();
        self
    }

    /// Runs reports, rebuilds and exports on `pool` (by default: the main pool) with `limits`.
    pub fn with_heavy_work(mut self, pool: PgPool, limits: Limits) -> Self {
        self.heavy_pool = pool;
        self.heavy_admission = Admission::new(limits);
        self
    }

    /// A slot for one command or read of the caller's tenant ([`admission`]).
    async fn admit(&self, caller: &Caller) -> Result<Slot, AppError> {
        self.admission
            .enter(caller.tenant())
            .await
            .map_err(|refusal| self.refused(refusal, "main", "requests"))
    }

    /// A slot for one report, rebuild or export of the caller's tenant.
    async fn admit_heavy(&self, caller: &Caller) -> Result<Slot, AppError> {
        self.heavy_admission
            .enter(caller.tenant())
            .await
            .map_err(|refusal| self.refused(refusal, "report", "reports and exports"))
    }

    /// Counts a refused slot of `pool` and says so to the caller.
    fn refused(&self, refusal: admission::Refusal, pool: &str, what: &str) -> AppError {
        self.metrics
            .pools
            .admission_refused
            .with_label_values(&[pool, refusal.label()])
            .inc();
        AppError::not_admitted(refusal, what)
    }

    /// The application's metrics, for the HTTP layer to count requests in.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The metrics in Prometheus' text format, with the pools' and queues' gauges read now.
    pub fn render_metrics(&self) -> String {
        let metrics = &self.metrics;
        let pools = [
            ("main", &self.pool, &self.admission),
            ("report", &self.heavy_pool, &self.heavy_admission),
        ];
        for (name, pool, admission) in pools {
            let (size, idle) = (pool.size() as i64, pool.num_idle() as i64);
            let max = i64::from(pool.options().get_max_connections());
            let connections =
                |state: &str| metrics.pools.connections.with_label_values(&[name, state]);
            connections("in_use").set(size - idle);
            connections("idle").set(idle);
            metrics
                .pools
                .connections_max
                .with_label_values(&[name])
                .set(max);
            let (running, waiting) = admission.load();
            let gauge = |family: &prometheus::IntGaugeVec, value: usize| {
                family.with_label_values(&[name]).set(value as i64)
            };
            gauge(&metrics.pools.admission_running, running);
            gauge(&metrics.pools.admission_waiting, waiting);
        }
        metrics.render()
    }

    /// Commands and reads admitted since the start: each read is one statement, so the
    /// difference over a request is what it cost the database (for tests and operators).
    pub fn admitted(&self) -> u64 {
        self.admission.admitted()
    }

    /// Work running and queued: `(commands and reads, reports and exports)`, each
    /// `(running, queued)`.
    pub fn load(&self) -> ((usize, usize), (usize, usize)) {
        (self.admission.load(), self.heavy_admission.load())
    }

    /// Turns group commit ([`group`]) on (the default) or off (every write then commits on its
    /// own, as in a server without it).
    pub fn with_group_commit(mut self, enabled: bool) -> Self {
        self.group = Arc::new(GroupCommit::new(enabled, &self.metrics));
        self
    }

    /// On Citus, sends each tenant's writes to the worker holding it (the default) or, with
    /// `false`, through the coordinator ([`route`]). No effect on plain PostgreSQL.
    pub fn with_worker_writes(mut self, enabled: bool) -> Self {
        self.routes = Arc::new(route::Routes::new(self.pool.clone(), enabled));
        self
    }

    /// What group commit did since this server started.
    pub fn group_commit_stats(&self) -> GroupCommitStats {
        self.group.stats()
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Runs a command. First, when the stream cache is on, one attempt on [`Source::Recent`]
    /// without the dedupe read: a repeated command id is then refused by the append itself
    /// (its command record, inserted first, is refused), or its decision by the domain. Any refusal that guarantees nothing
    /// was written ([`AppError::may_be_stale`]) sends the command down the full path: return
    /// the recorded outcome if its command id was seen before; otherwise run `attempt` on the
    /// stored stream, again on a version conflict (up to [`MAX_ATTEMPTS`]), and once more to
    /// read the winner's outcome if a concurrent request with the same command id committed
    /// first.
    ///
    /// The whole command, waiting for its slot included, runs within the command timeout: one
    /// that takes longer is answered `TIMEOUT` (a retry with the same commandId then tells
    /// whether it was written).
    async fn run<F, Fut>(
        &self,
        command: Command<'_>,
        attempt: F,
    ) -> Result<CommandOutcome, AppError>
    where
        F: FnMut(Conn, Source) -> Fut,
        Fut: Future<Output = Result<CommandOutcome, AppError>>,
    {
        let Command {
            caller,
            options,
            name: command_type,
        } = command;
        let started = std::time::Instant::now();
        // Debug: only traces want it (the request log line names the operation), so without an
        // exporter it is never made (docs/decisions/0024-traces-only-when-exported.md).
        let span =
            tracing::debug_span!("command", otel.name = command_type, command = command_type);
        let run = self.run_untimed(caller, options, command_type, attempt);
        let outcome = within(self.timeouts.command, "command", run)
            .instrument(span)
            .await;
        let label = match &outcome {
            Ok(_) => "ok",
            Err(error) => error.code(),
        };
        self.metrics.command(command_type, label, started.elapsed());
        outcome
    }

    async fn run_untimed<F, Fut>(
        &self,
        caller: &Caller,
        options: &CommandOptions,
        command_type: &'static str,
        mut attempt: F,
    ) -> Result<CommandOutcome, AppError>
    where
        F: FnMut(Conn, Source) -> Fut,
        Fut: Future<Output = Result<CommandOutcome, AppError>>,
    {
        // Held until the command is over, batch included: the tenant's share of the pool.
        let _slot = self.admit(caller).await?;
        if self.recent.enabled() {
            let conn = self.pool.acquire().await?;
            match attempt(conn, Source::Recent).await {
                Err(error) if error.may_be_stale() => {}
                outcome => return outcome,
            }
        }
        let mut last_error = AppError::ConcurrencyConflict;
        for attempt_number in 0..MAX_ATTEMPTS {
            if attempt_number > 0 {
                // Jittered backoff, so writers that just collided do not collide again in step.
                let jitter = u64::from(Uuid::new_v4().as_bytes()[0] % 4);
                let millis = u64::from(attempt_number) * (1 + jitter);
                tokio::time::sleep(std::time::Duration::from_millis(millis)).await;
            }
            let mut conn = self.pool.acquire().await?;
            if let Some(command_id) = options.command_id
                && let Some(record) =
                    store::find_command(&mut conn, caller.tenant, command_id).await?
            {
                return replayed(record, caller, options, command_type);
            }
            match attempt(conn, Source::Stored).await {
                // Another write of the stream, or of the same commandId, committed first: the
                // next attempt decides again, or finds the command's record and replays it.
                Err(AppError::ConcurrencyConflict) => last_error = AppError::ConcurrencyConflict,
                other => return other,
            }
        }
        Err(last_error)
    }

    /// The stream an attempt decides on (see [`Source`] and [`OnMiss`]). A stream read is
    /// remembered, so the next command on it need not read it.
    async fn stream(
        &self,
        conn: &mut Conn,
        tenant: TenantId,
        stream_id: Uuid,
        source: Source,
        on_miss: OnMiss,
    ) -> Result<Stream, AppError> {
        if source == Source::Recent {
            match (self.recent.stream(tenant, stream_id), on_miss) {
                (Some(stream), _) => return Ok(stream),
                (None, OnMiss::AssumeNew) => return Ok(Arc::new([])),
                (None, OnMiss::Read) => {}
            }
        }
        let stream: Stream = store::load_stream(conn, &self.keys, tenant, stream_id)
            .await?
            .into();
        self.recent.store_stream(tenant, stream_id, stream.clone());
        Ok(stream)
    }

    /// Projects and appends a command's events — in one self-committing call, or in a batch
    /// with other writes of the tenant ([`group`]) —, remembers the stream as now stored, then
    /// queues the wake-up.
    async fn commit(
        &self,
        conn: Conn,
        command: Command<'_>,
        write: Write<'_>,
    ) -> Result<CommandOutcome, AppError> {
        let Command {
            caller,
            options,
            name: command_type,
        } = command;
        let recorded_at = now();
        let expected_version = write.prior.last().map_or(0, |e| e.version);
        let new_versions = expected_version + 1..;
        let (rows, touched_submissions) = project(&write, recorded_at);
        let metadata = Metadata {
            actor_id: caller.actor_id,
            actor_role: caller.role,
            command_id: options.command_id,
            correlation_id: options.correlation_id.unwrap_or_else(Uuid::now_v7),
            causation_id: options.command_id,
        };
        let mut result = write.result;
        if let (Some(input), Some(fields)) = (&options.input, result.as_object_mut()) {
            let digest = request_digest(caller, command_type, input);
            fields.insert(DIGEST_KEY.into(), digest.into());
        }
        let stored = write
            .events
            .iter()
            .map(|event| store::personal::seal(event, write.data_key.as_ref().map(|k| &*k.key)))
            .collect::<Result<Vec<_>, _>>()?;
        let pending = Arc::new(PendingWrite {
            stream_id: write.stream_id,
            stream_type: write.stream_type,
            expected_version,
            events: write.events,
            stored,
            recorded_at,
            metadata,
            trainee_id: write.trainee_id,
            course_id: write.course_id,
            command_type,
            result,
            rows,
            touched_submissions,
            registration: write.registration,
            data_key: write.data_key,
        });
        let (conn, pool) = self
            .routes
            .connection(conn, &self.pool, caller.tenant)
            .await;
        let position = match self
            .group
            .write(conn, &pool, caller.tenant, pending.clone())
            .await
        {
            Ok(position) => position,
            Err(error) => {
                self.routes.forget(caller.tenant);
                return Err(write_failed(error));
            }
        };
        // The batch that wrote it (if any) has let go of it by now, but need not have: then copy.
        let pending = Arc::try_unwrap(pending).unwrap_or_else(|shared| (*shared).clone());
        if self.recent.enabled() {
            if let (Some(key), Some(trainee)) = (&pending.data_key, pending.trainee_id) {
                self.recent
                    .store_trainee_key(caller.tenant, trainee, key.as_stored());
            }
            let stored = stored_stream(write.prior, pending.events, new_versions, recorded_at);
            self.recent
                .store_stream(caller.tenant, write.stream_id, stored);
        }
        self.notifier.committed(caller.tenant);
        Ok(CommandOutcome {
            stream_id: write.stream_id,
            position,
            result: pending.result,
            replayed: false,
            rows: Some(pending.rows),
        })
    }
}

/// The recorded outcome of a command id seen before, if this request is a retry of that
/// command: same command, caller and input (when both were recorded with a digest).
fn replayed(
    mut record: CommandRecord,
    caller: &Caller,
    options: &CommandOptions,
    command_type: &str,
) -> Result<CommandOutcome, AppError> {
    if record.command_type != command_type {
        return Err(AppError::CommandIdReused(format!(
            "commandId was already used for a different command ({})",
            record.command_type
        )));
    }
    let recorded = record
        .result
        .as_object_mut()
        .and_then(|fields| fields.remove(DIGEST_KEY));
    if let (Some(recorded), Some(input)) = (recorded, &options.input)
        && recorded.as_str() != Some(&request_digest(caller, command_type, input))
    {
        return Err(AppError::CommandIdReused(
            "commandId was already used with another input or by another caller".into(),
        ));
    }
    Ok(CommandOutcome {
        stream_id: record.stream_id,
        position: record.position,
        result: record.result,
        replayed: true,
        rows: None,
    })
}

/// Server time at PostgreSQL's precision, so the value stored is exactly the value projected.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}
