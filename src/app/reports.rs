//! Reports, time travel and projection rebuilds: replays of the log, with the role rules.

use super::{AppError, Caller, Reads};
use crate::domain::{EnrollmentId, EventType, Role};
use crate::projections::rebuild::{self, RebuildError, RebuildReport};
use crate::projections::rows::{EnrollmentRow, EventPlace, StreamRows, SubmissionRow};
use crate::replay::{self, DataFor, Fold, ReplayError, ReplayQuery};
use crate::reports::duration::{DurationFold, DurationRow, DurationSpec};
use crate::reports::funnel::{FunnelFold, FunnelRow};
use crate::store;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A report and what it was computed from.
#[derive(Debug, Clone)]
pub struct ReportOutput<Row> {
    pub rows: Vec<Row>,
    /// The time the report describes: only events recorded at or before it were replayed.
    pub as_of: DateTime<Utc>,
    /// The tenant position the replay stopped at (the head when the report began).
    pub position: i64,
    pub events_replayed: u64,
}

/// A database that cannot be reached is `DATABASE_UNAVAILABLE` here too; anything else
/// (a stored event this build cannot read, a fold's refusal) is internal.
impl<E: std::error::Error + Send + Sync + 'static> From<ReplayError<E>> for AppError {
    fn from(error: ReplayError<E>) -> Self {
        match error {
            ReplayError::Database(error) => AppError::from(error),
            ReplayError::Head(error) => AppError::from(error),
            other => AppError::internal(other),
        }
    }
}

impl From<RebuildError> for AppError {
    fn from(error: RebuildError) -> Self {
        match error {
            RebuildError::KeptMoving => AppError::ConcurrencyConflict,
            RebuildError::UnknownTenant => AppError::Unauthenticated("unknown tenant".into()),
            RebuildError::Database(error) => AppError::from(error),
            RebuildError::Replay(error) => AppError::from(error),
        }
    }
}

impl Reads {
    /// Replays the caller's tenant up to its current head, `as_of` a time (default now), into
    /// `fold`, and finishes it into report rows.
    #[allow(clippy::too_many_arguments)]
    async fn report<F, Row>(
        &self,
        caller: &Caller,
        mut fold: F,
        event_types: Vec<EventType>,
        data_for: DataFor,
        course_ids: Option<Vec<Uuid>>,
        as_of: Option<DateTime<Utc>>,
        progress: impl FnMut(u64),
        finish: impl FnOnce(F) -> Vec<Row>,
    ) -> Result<ReportOutput<Row>, AppError>
    where
        F: Fold,
        F::Error: std::error::Error + Send + Sync + 'static,
    {
        caller.require(&[Role::Admin, Role::Instructor], "run reports")?;
        let as_of = as_of.unwrap_or_else(Utc::now);
        let _slot = self.rt.admit_heavy(caller).await?;
        let position = store::log::head(&self.rt.heavy_pool, caller.tenant()).await?;
        let query = ReplayQuery {
            tenant: caller.tenant(),
            as_of: Some(as_of),
            until_position: Some(position),
            event_types: Some(event_types),
            course_ids,
            data_for,
            keys: self.rt.keys.clone(),
            unopened: Vec::new(),
        };
        let started = std::time::Instant::now();
        let replay = async {
            Ok::<_, AppError>(
                replay::replay(&self.rt.heavy_pool, &query, &mut fold, progress).await?,
            )
        };
        let stats = super::within(self.rt.timeouts.report, "report", replay).await?;
        self.rt
            .metrics
            .replay("report", stats.events, started.elapsed());
        Ok(ReportOutput {
            rows: finish(fold),
            as_of,
            position,
            events_replayed: stats.events,
        })
    }

    /// The duration report (admins and instructors).
    pub async fn duration_report(
        &self,
        caller: &Caller,
        spec: DurationSpec,
        course_ids: Option<Vec<Uuid>>,
        as_of: Option<DateTime<Utc>>,
        progress: impl FnMut(u64),
    ) -> Result<ReportOutput<DurationRow>, AppError> {
        let fold = DurationFold::new(spec);
        let (types, data_for) = (spec.event_types(), spec.data_for());
        self.report(
            caller,
            fold,
            types,
            data_for,
            course_ids,
            as_of,
            progress,
            DurationFold::finish,
        )
        .await
    }

    /// The funnel report (admins and instructors).
    pub async fn funnel_report(
        &self,
        caller: &Caller,
        course_ids: Option<Vec<Uuid>>,
        as_of: Option<DateTime<Utc>>,
        progress: impl FnMut(u64),
    ) -> Result<ReportOutput<FunnelRow>, AppError> {
        let (types, data_for) = (FunnelFold::event_types(), FunnelFold::data_for());
        self.report(
            caller,
            FunnelFold::new(),
            types,
            data_for,
            course_ids,
            as_of,
            progress,
            FunnelFold::finish,
        )
        .await
    }

    /// Rebuilds the caller's tenant's projections from its log (admins).
    pub async fn rebuild_projections(
        &self,
        caller: &Caller,
        progress: impl FnMut(u64),
    ) -> Result<RebuildReport, AppError> {
        caller.require(&[Role::Admin], "rebuild projections")?;
        let _slot = self.rt.admit_heavy(caller).await?;
        let started = std::time::Instant::now();
        let rebuild = async {
            let conn = self.rt.heavy_pool.acquire().await?;
            let (mut loader, _) = self
                .rt
                .routes
                .connection(conn, &self.rt.heavy_pool, caller.tenant())
                .await;
            let tenant = caller.tenant();
            let rebuilt = rebuild::rebuild_tenant(
                &self.rt.heavy_pool,
                &mut loader,
                &self.rt.keys,
                tenant,
                progress,
            )
            .await;
            if rebuilt.is_err() {
                self.rt.routes.forget(tenant);
            }
            Ok::<_, AppError>(rebuilt?)
        };
        let report = super::within(self.rt.timeouts.report, "rebuild", rebuild).await?;
        self.rt
            .metrics
            .replay("rebuild", report.events, started.elapsed());
        Ok(report)
    }

    /// An enrollment as it was at `as_of`, by replaying its stream up to then. `None` if it did
    /// not exist yet (or the caller may not see it).
    pub async fn enrollment_as_of(
        &self,
        caller: &Caller,
        id: EnrollmentId,
        as_of: DateTime<Utc>,
    ) -> Result<Option<(EnrollmentRow, Vec<SubmissionRow>)>, AppError> {
        let _slot = self.rt.admit(caller).await?;
        let mut conn = self.rt.pool.acquire().await?;
        let stream =
            store::load_stream(&mut conn, &self.rt.keys, caller.tenant(), id.as_uuid()).await?;
        let mut rows = StreamRows::default();
        for event in stream.iter().filter(|e| e.recorded_at <= as_of) {
            let place = EventPlace {
                stream_id: id.as_uuid(),
                version: event.version,
                recorded_at: event.recorded_at,
            };
            rows.apply(place, &event.event);
        }
        let Some(enrollment) = rows.enrollment else {
            return Ok(None);
        };
        if caller.role() == Role::Trainee && enrollment.trainee_id.as_uuid() != caller.actor_id() {
            return Ok(None);
        }
        Ok(Some((enrollment, rows.submissions)))
    }
}
