//! Audit trails: who may read which events, pages of the log, the export's page stream, and
//! following the log live (catch-up, then new events as they commit).
//!
//! It owns the role rules for reading the log and nothing else: the SQL is in `store::log`,
//! the wake-ups in `store::live`, and the wire formats in `graphql` and `http`.
//!
//! Role rules: an admin reads every event of its tenant; an instructor reads the events about
//! courses (course streams and enrollment events — rows with a course — but not the trainee
//! streams, which hold people's e-mail addresses); a trainee reads the events about itself
//! (its trainee stream and its enrollments).

use super::{App, AppError, Caller};
use crate::auth::Role;
use crate::domain::TenantId;
use crate::store::live::Hub;
use crate::store::log::{self, LogFilter, LoggedEvent};
use futures_util::Stream;
use sqlx::PgPool;
use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::watch;

/// How many events an export reads per statement (one page in memory at a time).
pub const EXPORT_PAGE_SIZE: i64 = 500;
/// How many events a follower reads per statement while catching up.
const FOLLOW_PAGE_SIZE: i64 = 500;
/// How often a follower looks at the log without a wake-up: the latency a lost notification
/// costs, at worst.
pub const FOLLOW_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// A stream of results that a transport can hold across awaits.
pub type AuditStream<T> = Pin<Box<dyn Stream<Item = Result<T, AppError>> + Send + 'static>>;

impl App {
    /// Narrows `filter` to what the caller may read. Asking for another trainee's events as a
    /// trainee is refused rather than silently answered with nothing.
    fn scope_audit(&self, caller: &Caller, mut filter: LogFilter) -> Result<LogFilter, AppError> {
        match caller.role() {
            Role::Admin => {}
            Role::Instructor => filter.course_events_only = true,
            Role::Trainee => {
                let own = caller.actor_id();
                if filter.trainee_id.is_some_and(|asked| asked != own) {
                    return Err(AppError::Forbidden(
                        "a trainee may only read its own audit trail".into(),
                    ));
                }
                filter.trainee_id = Some(own);
            }
        }
        Ok(filter)
    }

    /// Up to `limit` events after position `after` that the caller may read, in position order.
    pub async fn audit_page(
        &self,
        caller: &Caller,
        filter: LogFilter,
        after: i64,
        limit: i64,
    ) -> Result<Vec<LoggedEvent>, AppError> {
        let filter = self.scope_audit(caller, filter)?;
        let page = log::read_page(&self.pool, caller.tenant(), &filter, after, limit).await?;
        Ok(page.events)
    }

    /// Every event after `after` that the caller may read, as a stream of pages of at most
    /// [`EXPORT_PAGE_SIZE`]: the next page is read only when the previous one was taken, so
    /// memory stays constant however long the history. Ends at the head as of the last read.
    pub fn audit_export(
        &self,
        caller: &Caller,
        filter: LogFilter,
        after: i64,
    ) -> Result<AuditStream<Vec<LoggedEvent>>, AppError> {
        let filter = self.scope_audit(caller, filter)?;
        let state = Some((self.pool.clone(), caller.tenant(), filter, after));
        let pages = futures_util::stream::unfold(state, |state| async move {
            let (pool, tenant, filter, after) = state?;
            match log::read_page(&pool, tenant, &filter, after, EXPORT_PAGE_SIZE).await {
                Ok(page) if page.events.is_empty() => None,
                Ok(page) => {
                    let full = page.events.len() as i64 >= EXPORT_PAGE_SIZE;
                    let next = full.then_some((pool, tenant, filter, page.scanned_to));
                    Some((Ok(page.events), next))
                }
                Err(error) => Some((Err(AppError::from(error)), None)),
            }
        });
        Ok(Box::pin(pages))
    }

    /// Follows the log: every event after `after` that the caller may read (catch-up), then
    /// each new one as it commits, in position order, each once. `None` starts at the current
    /// head (new events only).
    ///
    /// Why nothing is missed or repeated: positions are gap-free and handed out in commit
    /// order, so reading `position > last` again always finds exactly what is new; a wake-up
    /// only says *when* to read, and a timer reads anyway.
    pub async fn follow(
        &self,
        caller: &Caller,
        filter: LogFilter,
        after: Option<i64>,
    ) -> Result<AuditStream<LoggedEvent>, AppError> {
        let filter = self.scope_audit(caller, filter)?;
        let tenant = caller.tenant();
        // Subscribe before the first read: a commit after that read then always wakes us.
        let wake = self.live.wake_ups(tenant);
        let last = match after {
            Some(position) => position.max(0),
            None => log::head(&self.pool, tenant).await?,
        };
        let follower = Follower {
            pool: self.pool.clone(),
            tenant,
            filter,
            last,
            buffer: VecDeque::new(),
            caught_up: false,
            wake,
            hub_alive: true,
            failed: false,
        };
        Ok(Box::pin(futures_util::stream::unfold(
            follower,
            Follower::next,
        )))
    }

    /// The wake-up hub (for tests and the benchmark, which watch it work).
    pub fn live_hub(&self) -> &Hub {
        &self.live
    }
}

struct Follower {
    pool: PgPool,
    tenant: TenantId,
    filter: LogFilter,
    /// Every event at or below this position has been delivered or does not match.
    last: i64,
    buffer: VecDeque<LoggedEvent>,
    /// The last read found the head: wait for a wake-up before reading again.
    caught_up: bool,
    wake: watch::Receiver<u64>,
    hub_alive: bool,
    failed: bool,
}

impl Follower {
    async fn next(mut self) -> Option<(Result<LoggedEvent, AppError>, Self)> {
        if self.failed {
            return None;
        }
        loop {
            if let Some(event) = self.buffer.pop_front() {
                return Some((Ok(event), self));
            }
            if self.caught_up {
                self.wait().await;
            }
            let page = log::read_page(
                &self.pool,
                self.tenant,
                &self.filter,
                self.last,
                FOLLOW_PAGE_SIZE,
            )
            .await;
            match page {
                Ok(page) => {
                    self.caught_up = (page.events.len() as i64) < FOLLOW_PAGE_SIZE;
                    self.last = self.last.max(page.scanned_to);
                    self.buffer.extend(page.events);
                }
                Err(error) => {
                    // The client resumes from the last position it received.
                    self.failed = true;
                    return Some((Err(AppError::from(error)), self));
                }
            }
        }
    }

    /// Until a wake-up for this tenant, or the poll interval passed.
    async fn wait(&mut self) {
        if !self.hub_alive {
            tokio::time::sleep(FOLLOW_POLL_INTERVAL).await;
            return;
        }
        tokio::select! {
            changed = self.wake.changed() => {
                if changed.is_err() {
                    self.hub_alive = false;
                }
            }
            () = tokio::time::sleep(FOLLOW_POLL_INTERVAL) => {}
        }
    }
}
