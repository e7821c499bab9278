//! The command path: a command becomes a write. Dedupe by command id, load the stream (or take
//! it from the stream cache, [`recent`](super::recent)), decide, then project and append in one
//! call of the write function that commits by itself, alone or in a group-commit batch
//! ([`group`](super::group)), and wake the live feeds. The command handlers themselves are in
//! [`commands`](super::commands).

use super::Conn;
use super::group::{GroupCommit, GroupCommitStats, PendingWrite, PgWrites};
use super::recent::{Recent, Stream};
use super::runtime::Runtime;
use super::write::{CommandResult, Write, project, stored_stream, write_failed};
use super::{AppError, Caller, within};
use crate::domain::{SubmissionId, TenantId};
use crate::projections::rows::StreamRows;
use crate::store::personal::Place;
use crate::store::{self, CommandRecord, Metadata};
use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::Arc;
use tracing::Instrument;
use uuid::Uuid;

/// How many times a command is tried when its stream keeps changing between load and append.
const MAX_ATTEMPTS: u32 = 8;

/// The commands of the application (one method each, [`commands`](super::commands)) and the
/// path they share. Cheap to clone.
#[derive(Clone)]
pub struct Commands {
    pub(super) rt: Arc<Runtime>,
    pub(super) recent: Arc<Recent>,
    pub(super) group: Arc<GroupCommit<PendingWrite>>,
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

/// A command record's `result` as stored: the command's result and, when the request sent its
/// input, the request's digest ([`request_digest`]). Fields it does not know are ignored.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RecordedResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    submission_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    request_digest: Option<String>,
}

/// The key of a command record's result holding the request's digest (erased with a
/// forgotten trainee's data).
pub(super) const DIGEST_KEY: &str = "requestDigest";

/// SHA-256 over the command, the caller and the input: equal for a retry, different for any
/// other use of the same command id. A digest, not the input: the record must not hold a
/// second copy of personal data.
fn request_digest(caller: &Caller, command_type: &str, input: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for part in [
        command_type.as_bytes(),
        caller.actor_id().as_bytes(),
        caller.role().as_str().as_bytes(),
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
    pub result: CommandResult,
    /// True when this is the recorded outcome of an earlier request with the same command id.
    pub replayed: bool,
    /// The stream's projection rows as this command wrote them (so a payload need not read
    /// them back); `None` for a replayed outcome, whose rows must be read.
    pub rows: Option<StreamRows>,
}

/// Where an attempt of a command takes the stream it decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// The stream as this server last saw it, without a read when it has it ([`recent`]).
    Recent,
    /// The stream as stored now: read in full.
    Stored,
}

/// What an attempt assumes of a stream [`Source::Recent`] does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OnMiss {
    /// Read it.
    Read,
    /// Assume it does not exist yet (a command that creates the stream under an id the client
    /// chose): if it does, the append at version 1 is refused and the command runs again on
    /// the stored stream.
    AssumeNew,
}

/// One command being run: who asks, with which options, and its type (its name in the log,
/// the metrics and its command record), given once for the whole run.
#[derive(Clone, Copy)]
pub(super) struct Command<'a> {
    pub(super) caller: &'a Caller,
    pub(super) options: &'a CommandOptions,
    pub(super) name: &'static str,
}

impl<'a> Command<'a> {
    pub(super) fn new(caller: &'a Caller, options: &'a CommandOptions, name: &'static str) -> Self {
        Self {
            caller,
            options,
            name,
        }
    }
}

impl Commands {
    /// What group commit did since this server started.
    pub fn group_commit_stats(&self) -> GroupCommitStats {
        self.group.stats()
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
    pub(super) async fn run<F, Fut>(
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
        let outcome = within(self.rt.timeouts.command, "command", run)
            .instrument(span)
            .await;
        let label = match &outcome {
            Ok(_) => "ok",
            Err(error) => error.code(),
        };
        self.rt
            .metrics
            .command(command_type, label, started.elapsed());
        outcome
    }

    async fn run_untimed<F, Fut>(
        &self,
        caller: &Caller,
        options: &CommandOptions,
        command_type: &'static str,
        attempt: F,
    ) -> Result<CommandOutcome, AppError>
    where
        F: FnMut(Conn, Source) -> Fut,
        Fut: Future<Output = Result<CommandOutcome, AppError>>,
    {
        // Held until the command is over, batch included: the tenant's share of the pool.
        let _slot = self.rt.admit(caller).await?;
        let mut stored = Stored {
            pool: &self.rt.pool,
            caller,
            options,
            command_type,
        };
        retrying(&mut stored, self.recent.enabled(), attempt).await
    }

    /// The stream an attempt decides on (see [`Source`] and [`OnMiss`]). A stream read is
    /// remembered, so the next command on it need not read it.
    pub(super) async fn stream(
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
        let stream: Stream = store::load_stream(conn, &self.rt.keys, tenant, stream_id)
            .await?
            .into();
        self.recent.store_stream(tenant, stream_id, stream.clone());
        Ok(stream)
    }

    /// Projects and appends a command's events — in one self-committing call, or in a batch
    /// with other writes of the tenant ([`group`]) —, remembers the stream as now stored, then
    /// queues the wake-up.
    pub(super) async fn commit(
        &self,
        conn: Conn,
        command: Command<'_>,
        write: Write<'_>,
    ) -> Result<CommandOutcome, AppError> {
        let caller = command.caller;
        let recorded_at = now();
        let (stream_id, result, prior) = (write.stream_id, write.result, write.prior);
        let pending = Arc::new(pending_write(command, write, recorded_at)?);
        let new_versions = pending.expected_version + 1..;
        let (conn, pool) = self
            .rt
            .routes
            .connection(conn, &self.rt.pool, caller.tenant())
            .await;
        let position = match self
            .group
            .write(PgWrites { pool }, conn, caller.tenant(), pending.clone())
            .await
        {
            Ok(position) => position,
            Err(error) => {
                self.rt.routes.forget(caller.tenant());
                return Err(write_failed(error));
            }
        };
        // The batch that wrote it (if any) has let go of it by now, but need not have: then copy.
        let pending = Arc::try_unwrap(pending).unwrap_or_else(|shared| (*shared).clone());
        if self.recent.enabled() {
            if let (Some(key), Some(trainee)) = (&pending.data_key, pending.trainee_id) {
                self.recent
                    .store_trainee_key(caller.tenant(), trainee, key.as_stored());
            }
            let stored = stored_stream(prior, pending.events, new_versions, recorded_at);
            self.recent.store_stream(caller.tenant(), stream_id, stored);
        }
        self.rt.notifier.committed(caller.tenant());
        Ok(CommandOutcome {
            stream_id,
            position,
            result,
            replayed: false,
            rows: Some(pending.rows),
        })
    }
}

/// A command's write as group commit takes it: its stream's rows folded, its events sealed,
/// its result recorded with the request's digest.
fn pending_write(
    command: Command<'_>,
    write: Write<'_>,
    recorded_at: DateTime<Utc>,
) -> Result<PendingWrite, AppError> {
    let Command {
        caller,
        options,
        name: command_type,
    } = command;
    let expected_version = write.prior.last().map_or(0, |e| e.version);
    let (rows, touched_submissions) = project(&write, recorded_at);
    let metadata = Metadata {
        actor_id: caller.actor_id(),
        actor_role: caller.role(),
        command_id: options.command_id,
        correlation_id: options.correlation_id.unwrap_or_else(Uuid::now_v7),
        causation_id: options.command_id,
    };
    let recorded = RecordedResult {
        submission_id: write.result.submission_id.map(|id| id.as_uuid()),
        request_digest: options
            .input
            .as_ref()
            .map(|input| request_digest(caller, command_type, input)),
    };
    let key = write.data_key.as_ref().map(|k| &*k.key);
    let stored = (expected_version + 1..)
        .zip(&write.events)
        .map(|(version, event)| {
            let place = Place {
                tenant: caller.tenant(),
                stream_id: write.stream_id,
                version,
            };
            store::personal::seal(event, key, place)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PendingWrite {
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
        result: serde_json::to_value(recorded).map_err(AppError::internal)?,
        rows,
        touched_submissions,
        registration: write.registration,
        data_key: write.data_key,
    })
}

/// What the retry loop needs of the database: a connection for each attempt, and the outcome
/// recorded for the command's id, if any. The server's is [`Stored`]; the unit tests' a double.
pub(super) trait Attempts {
    type Conn;
    fn connection(&mut self) -> impl Future<Output = Result<Self::Conn, AppError>>;
    fn recorded(
        &mut self,
        conn: &mut Self::Conn,
    ) -> impl Future<Output = Result<Option<CommandOutcome>, AppError>>;
}

/// The pool, and the command records in it.
struct Stored<'a> {
    pool: &'a sqlx::PgPool,
    caller: &'a Caller,
    options: &'a CommandOptions,
    command_type: &'static str,
}

impl Attempts for Stored<'_> {
    type Conn = Conn;

    async fn connection(&mut self) -> Result<Conn, AppError> {
        Ok(self.pool.acquire().await?)
    }

    async fn recorded(&mut self, conn: &mut Conn) -> Result<Option<CommandOutcome>, AppError> {
        let Some(command_id) = self.options.command_id else {
            return Ok(None);
        };
        match store::find_command(conn, self.caller.tenant(), command_id).await? {
            Some(record) => {
                replayed(record, self.caller, self.options, self.command_type).map(Some)
            }
            None => Ok(None),
        }
    }
}

/// The retry loop. With `cache_first`, one attempt on [`Source::Recent`] first; any refusal
/// that guarantees nothing was written ([`AppError::may_be_stale`]) goes on to the stored
/// path: the recorded outcome if the command id was seen before, else `attempt` on the stored
/// stream, again after a conflict (up to [`MAX_ATTEMPTS`], with a jittered backoff), which
/// also finds the record of a concurrent request with the same command id that committed
/// first.
pub(super) async fn retrying<A, F, Fut>(
    attempts: &mut A,
    cache_first: bool,
    mut attempt: F,
) -> Result<CommandOutcome, AppError>
where
    A: Attempts,
    F: FnMut(A::Conn, Source) -> Fut,
    Fut: Future<Output = Result<CommandOutcome, AppError>>,
{
    if cache_first {
        let conn = attempts.connection().await?;
        match attempt(conn, Source::Recent).await {
            Err(error) if error.may_be_stale() => {}
            outcome => return outcome,
        }
    }
    for attempt_number in 0..MAX_ATTEMPTS {
        if attempt_number > 0 {
            // Jittered backoff, so writers that just collided do not collide again in step.
            let jitter = u64::from(Uuid::new_v4().as_bytes()[0] % 4);
            let millis = u64::from(attempt_number) * (1 + jitter);
            tokio::time::sleep(std::time::Duration::from_millis(millis)).await;
        }
        let mut conn = attempts.connection().await?;
        if let Some(outcome) = attempts.recorded(&mut conn).await? {
            return Ok(outcome);
        }
        match attempt(conn, Source::Stored).await {
            // Another write of the stream, or of the same commandId, committed first: the
            // next attempt decides again, or finds the command's record and replays it.
            Err(AppError::ConcurrencyConflict) => {}
            other => return other,
        }
    }
    Err(AppError::ConcurrencyConflict)
}

/// The recorded outcome of a command id seen before, if this request is a retry of that
/// command: same command, caller and input (when both were recorded with a digest).
fn replayed(
    record: CommandRecord,
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
    let recorded: RecordedResult =
        serde_json::from_value(record.result).map_err(AppError::internal)?;
    if let (Some(recorded), Some(input)) = (&recorded.request_digest, &options.input)
        && *recorded != request_digest(caller, command_type, input)
    {
        return Err(AppError::CommandIdReused(
            "commandId was already used with another input or by another caller".into(),
        ));
    }
    Ok(CommandOutcome {
        stream_id: record.stream_id,
        position: record.position,
        result: CommandResult {
            submission_id: recorded.submission_id.map(SubmissionId::from_uuid),
        },
        replayed: true,
        rows: None,
    })
}

/// Server time at PostgreSQL's precision, so the value stored is exactly the value projected.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// The retry loop's database: connections numbered, and a record that appears from the
    /// `record_from`-th look on.
    struct Scripted {
        connections: usize,
        looks: usize,
        record_from: Option<usize>,
    }

    impl Scripted {
        fn new(record_from: Option<usize>) -> Self {
            Self {
                connections: 0,
                looks: 0,
                record_from,
            }
        }
    }

    fn outcome(replayed: bool) -> CommandOutcome {
        CommandOutcome {
            stream_id: Uuid::nil(),
            position: 7,
            result: CommandResult::default(),
            replayed,
            rows: None,
        }
    }

    impl Attempts for Scripted {
        type Conn = usize;

        async fn connection(&mut self) -> Result<usize, AppError> {
            self.connections += 1;
            Ok(self.connections)
        }

        async fn recorded(&mut self, _: &mut usize) -> Result<Option<CommandOutcome>, AppError> {
            self.looks += 1;
            Ok(self
                .record_from
                .is_some_and(|from| self.looks >= from)
                .then(|| outcome(true)))
        }
    }

    /// Runs the loop with `answer` deciding each attempt; returns its result and the sources
    /// of the attempts made.
    async fn run(
        attempts: &mut Scripted,
        cache_first: bool,
        answer: impl Fn(Source, usize) -> Result<CommandOutcome, AppError>,
    ) -> (Result<CommandOutcome, AppError>, Vec<Source>) {
        let seen = Mutex::new(Vec::new());
        let result = retrying(attempts, cache_first, |conn, source| {
            seen.lock().unwrap().push(source);
            std::future::ready(answer(source, conn))
        })
        .await;
        (result, seen.into_inner().unwrap())
    }

    #[tokio::test]
    async fn a_stale_refusal_of_the_cached_attempt_is_decided_again_on_the_stored_stream() {
        let mut db = Scripted::new(None);
        let (result, seen) = run(&mut db, true, |source, _| match source {
            Source::Recent => Err(AppError::AlreadyRegistered),
            Source::Stored => Ok(outcome(false)),
        })
        .await;
        assert_eq!(result.unwrap(), outcome(false));
        assert_eq!(seen, [Source::Recent, Source::Stored]);
    }

    #[tokio::test]
    async fn a_refusal_that_cannot_be_stale_is_the_answer_at_once() {
        for error in [
            AppError::Forbidden("no".into()),
            AppError::Unavailable("lost".into()),
        ] {
            let code = error.code();
            let mut db = Scripted::new(None);
            let (result, seen) = run(&mut db, true, |_, _| {
                Err(match code {
                    "FORBIDDEN" => AppError::Forbidden("no".into()),
                    _ => AppError::Unavailable("lost".into()),
                })
            })
            .await;
            assert_eq!(result.unwrap_err().code(), code);
            assert_eq!(seen, [Source::Recent], "{code}: never tried again");
        }
    }

    #[tokio::test]
    async fn conflicts_are_decided_again_up_to_the_limit() {
        let mut db = Scripted::new(None);
        let (result, seen) = run(&mut db, false, |_, _| Err(AppError::ConcurrencyConflict)).await;
        assert_eq!(result.unwrap_err().code(), "CONCURRENCY_CONFLICT");
        assert_eq!(seen.len(), MAX_ATTEMPTS as usize);
        assert_eq!(
            db.connections, MAX_ATTEMPTS as usize,
            "one connection per attempt"
        );
    }

    #[tokio::test]
    async fn a_record_of_the_command_id_found_after_a_conflict_is_the_answer() {
        let mut db = Scripted::new(Some(2));
        let (result, seen) = run(&mut db, false, |_, _| Err(AppError::ConcurrencyConflict)).await;
        assert!(result.unwrap().replayed);
        assert_eq!(
            seen,
            [Source::Stored],
            "no attempt once the record is found"
        );
    }

    #[tokio::test]
    async fn success_after_conflicts_is_the_answer() {
        let mut db = Scripted::new(None);
        let (result, seen) = run(&mut db, true, |source, conn| match (source, conn) {
            (Source::Recent, _) => Err(AppError::ConcurrencyConflict),
            (Source::Stored, conn) if conn < 4 => Err(AppError::ConcurrencyConflict),
            _ => Ok(outcome(false)),
        })
        .await;
        assert!(!result.unwrap().replayed);
        assert_eq!(seen.len(), 4, "the cached attempt and three stored ones");
    }

    #[test]
    fn a_record_keeps_its_digest_under_the_key_erasure_removes() {
        let recorded = RecordedResult {
            submission_id: None,
            request_digest: Some("d".into()),
        };
        let stored = serde_json::to_value(recorded).unwrap();
        assert_eq!(stored, serde_json::json!({ DIGEST_KEY: "d" }));
    }

    #[test]
    fn a_record_of_an_earlier_shape_still_reads() {
        let id = Uuid::now_v7();
        let stored = serde_json::json!({ "submissionId": id, "somethingElse": 1 });
        let recorded: RecordedResult = serde_json::from_value(stored).unwrap();
        assert_eq!(recorded.submission_id, Some(id));
        assert_eq!(recorded.request_digest, None);
    }
}
