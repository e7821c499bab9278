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

use super::admission::Admission;
use super::feed::{Batch, Ticket};
use super::{AppError, Caller, Reads};
use crate::domain::{Role, TenantId};
use crate::store::log::{self, LogFilter, LoggedEvent};
use futures_util::Stream;
use sqlx::PgPool;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::broadcast;

/// How many events an export reads per statement (one page in memory at a time).
pub const EXPORT_PAGE_SIZE: i64 = 500;
/// How many events a follower reads per statement while catching up.
const FOLLOW_PAGE_SIZE: i64 = 500;
pub use super::feed::POLL_INTERVAL as FOLLOW_POLL_INTERVAL;

/// A stream of results that a transport can hold across awaits.
pub type AuditStream<T> = Pin<Box<dyn Stream<Item = Result<T, AppError>> + Send + 'static>>;

impl Reads {
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
        let _slot = self.rt.admit(caller).await?;
        let page = log::read_page(
            &self.rt.pool,
            &self.rt.keys,
            caller.tenant(),
            &filter,
            after,
            limit,
        )
        .await?;
        Ok(page.events)
    }

    /// Every event after `after` that the caller may read, as a stream of pages of at most
    /// [`EXPORT_PAGE_SIZE`]: the next page is read only when the previous one was taken, so
    /// memory stays constant however long the history. Ends at the head as of the last read.
    ///
    /// An export is heavy work: each page is read on the reports' connections with a slot of
    /// their share, taken for that read only (a client downloading slowly holds nothing).
    pub async fn audit_export(
        &self,
        caller: &Caller,
        filter: LogFilter,
        after: i64,
    ) -> Result<AuditStream<Vec<LoggedEvent>>, AppError> {
        let filter = self.scope_audit(caller, filter)?;
        let deadline = tokio::time::Instant::now() + self.rt.timeouts.export;
        let limit = self.rt.timeouts.export;
        let (app, caller) = (self.clone(), caller.clone());
        let state = Some((filter, after));
        let pages = futures_util::stream::unfold(state, move |state| {
            let (app, caller) = (app.clone(), caller.clone());
            async move {
                let (filter, after) = state?;
                if tokio::time::Instant::now() >= deadline {
                    let message = format!(
                        "the export did not finish within {}; resume after the last position received",
                        humantime::format_duration(limit)
                    );
                    return Some((Err(AppError::Timeout(message)), None));
                }
                let page = async {
                    let _slot = app.rt.admit_heavy(&caller).await?;
                    let page = log::read_page(
                        &app.rt.heavy_pool,
                        &app.rt.keys,
                        caller.tenant(),
                        &filter,
                        after,
                        EXPORT_PAGE_SIZE,
                    )
                    .await?;
                    Ok::<_, AppError>(page)
                };
                match page.await {
                    Ok(page) if page.events.is_empty() => None,
                    Ok(page) => {
                        let full = page.events.len() as i64 >= EXPORT_PAGE_SIZE;
                        let next = full.then_some((filter, page.scanned_to));
                        Some((Ok(page.events), next))
                    }
                    Err(error) => Some((Err(error), None)),
                }
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
        let ticket = self.rt.feeds.open(caller)?;
        let tenant = caller.tenant();
        // Subscribe before the first read: every event committed after that read then comes
        // in a batch (or is read as a gap).
        let feed = self.rt.feeds.subscribe(tenant);
        let last = match after {
            Some(position) => position.max(0),
            None => {
                let _slot = self
                    .rt
                    .admission
                    .enter_unbounded(tenant)
                    .await
                    .map_err(|refusal| self.rt.refused(refusal, "main", "requests"))?;
                log::head(&self.rt.pool, tenant).await?
            }
        };
        let follower = Follower {
            pool: self.rt.pool.clone(),
            keys: self.rt.keys.clone(),
            admission: self.rt.admission.clone(),
            tenant,
            filter,
            last,
            buffer: VecDeque::new(),
            caught_up: false,
            feed,
            lagged: false,
            failed: false,
            ticket,
        };
        Ok(Box::pin(futures_util::stream::unfold(
            follower,
            Follower::next,
        )))
    }
}

struct Follower {
    pool: PgPool,
    keys: crate::crypto::Keyring,
    admission: Arc<Admission>,
    tenant: TenantId,
    filter: LogFilter,
    /// Every event at or below this position has been delivered or does not match.
    last: i64,
    buffer: VecDeque<LoggedEvent>,
    /// The log has been read up to the feed: follow the feed's batches.
    caught_up: bool,
    feed: broadcast::Receiver<Arc<Batch>>,
    /// The feed overwrote batches this follower had not taken: if the oldest one left starts
    /// after `last`, events were lost to it.
    lagged: bool,
    failed: bool,
    /// Counts this subscription until it ends, and paces its deliveries.
    ticket: Ticket,
}

/// The most buffer capacity (events) a drained subscription keeps.
const IDLE_BUFFER_CAPACITY: usize = 16;

impl Follower {
    async fn next(mut self) -> Option<(Result<LoggedEvent, AppError>, Self)> {
        if self.failed {
            return None;
        }
        loop {
            if let Some(event) = self.buffer.pop_front() {
                self.ticket.delivered();
                return Some((Ok(event), self));
            }
            // Drained: let go of what a catch-up page grew the buffer to, so an idle
            // subscription holds no page's worth of memory.
            if self.buffer.capacity() > IDLE_BUFFER_CAPACITY {
                self.buffer = VecDeque::new();
            }
            if !self.caught_up {
                if let Err(error) = self.read_page().await {
                    // The client resumes from the last position it received.
                    self.failed = true;
                    return Some((Err(error), self));
                }
                continue;
            }
            self.ticket.set_live(true);
            let received = self.feed.recv().await;
            let lagged = std::mem::take(&mut self.lagged);
            match received {
                Ok(batch) if batch.to <= self.last => {}
                Ok(batch) if batch.after > self.last && lagged => {
                    self.failed = true;
                    return Some((Err(AppError::SlowConsumer), self));
                }
                // Events before this batch and after `last` were never in a batch this
                // follower received (the feed started after it): read them from the log.
                Ok(batch) if batch.after > self.last => {
                    self.caught_up = false;
                    self.ticket.set_live(false);
                }
                Ok(batch) => {
                    let last = self.last;
                    let new = batch.events.iter().filter(|e| e.position > last);
                    self.buffer
                        .extend(new.filter(|e| self.filter.matches(e)).cloned());
                    self.last = batch.to;
                    // Within the tenant's delivery budget: a tenant with thousands of
                    // subscriptions falls behind itself, it does not take every core.
                    let wait = self.ticket.pace(self.buffer.len());
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => self.lagged = true,
                // The feed stopped: its reads kept failing, or the server is stopping.
                Err(broadcast::error::RecvError::Closed) => {
                    self.failed = true;
                    let message = "the live feed stopped; resubscribe from the last position \
                                   received";
                    return Some((Err(AppError::Unavailable(message.into())), self));
                }
            }
        }
    }

    /// Reads the next page of the log after `last`; a short page means caught up.
    async fn read_page(&mut self) -> Result<(), AppError> {
        // Subscriptions are bounded per tenant: their reads queue without the queue's limit,
        // so subscribers reconnecting all at once (a restart) wait their turn, not refused.
        let _slot = self
            .admission
            .enter_unbounded(self.tenant)
            .await
            .map_err(|refusal| AppError::not_admitted(refusal, "requests"))?;
        let page = log::read_page(
            &self.pool,
            &self.keys,
            self.tenant,
            &self.filter,
            self.last,
            FOLLOW_PAGE_SIZE,
        )
        .await?;
        self.caught_up = (page.events.len() as i64) < FOLLOW_PAGE_SIZE;
        self.last = self.last.max(page.scanned_to);
        self.buffer.extend(page.events);
        Ok(())
    }
}
