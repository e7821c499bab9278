//! Reports, time travel and projection rebuilds in GraphQL.

use super::context::{app, caller, rows};
use super::error::{GqlResultExt, to_graphql};
use super::scalars::Position;
use super::types::Course;
use crate::app::AppError;
use crate::app::views::Summary;
use crate::app::views::{DurationSpec, GroupKey};
use crate::domain::CourseId;
use async_graphql::{Context, Enum, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A point in an enrollment's lifecycle.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "crate::app::views::LifecyclePoint")]
pub enum LifecyclePoint {
    /// `CourseRegistered`.
    Registered,
    /// `CourseStarted`.
    Started,
    /// The first `TestSubmitted`.
    FirstSubmission,
    /// The first `TestGraded` that passed.
    Passed,
    /// `CourseCompleted`.
    Completed,
    /// `RegistrationWithdrawn`.
    Withdrawn,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "crate::app::views::GroupBy")]
pub enum ReportGrouping {
    /// One row per course.
    Course,
    /// One row per month of the `from` point (cohorts).
    CohortMonth,
    /// One row for everything.
    None,
}

#[derive(InputObject)]
pub struct DurationReportInput {
    pub from: LifecyclePoint,
    pub to: LifecyclePoint,
    #[graphql(default_with = "ReportGrouping::Course")]
    pub group_by: ReportGrouping,
    /// Only these courses (all when absent).
    pub course_ids: Option<Vec<Uuid>>,
    /// Describe the past: replay only events recorded at or before this time (default: now).
    pub as_of: Option<DateTime<Utc>>,
}

#[derive(InputObject)]
pub struct FunnelReportInput {
    pub course_ids: Option<Vec<Uuid>>,
    pub as_of: Option<DateTime<Utc>>,
}

/// Statistics of durations in seconds (exact; percentiles as PostgreSQL's `percentile_cont`).
#[derive(SimpleObject)]
pub struct DurationStats {
    pub count: u64,
    pub mean_seconds: f64,
    pub median_seconds: f64,
    pub p75_seconds: f64,
    pub p90_seconds: f64,
    pub min_seconds: f64,
    pub max_seconds: f64,
}

impl From<Summary> for DurationStats {
    fn from(s: Summary) -> Self {
        Self {
            count: s.count,
            mean_seconds: s.mean,
            median_seconds: s.median,
            p75_seconds: s.p75,
            p90_seconds: s.p90,
            min_seconds: s.min,
            max_seconds: s.max,
        }
    }
}

pub struct DurationReportRow {
    key: GroupKey,
    stats: Option<Summary>,
    still_open: u64,
    ended_early: u64,
}

#[Object]
impl DurationReportRow {
    /// The group: a course id, a month (`2026-03`), or `all`.
    async fn group(&self) -> String {
        match self.key {
            GroupKey::Course(id) => id.to_string(),
            GroupKey::Month(year, month) => format!("{year:04}-{month:02}"),
            GroupKey::All => "all".into(),
        }
    }
    /// The course, when grouped by course.
    async fn course(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Course>> {
        let GroupKey::Course(id) = self.key else {
            return Ok(None);
        };
        let row = rows(ctx)?.load_one(CourseId::from_uuid(id)).await?;
        Ok(row.map(Course))
    }
    /// Number of enrollments that reached both points.
    async fn count(&self) -> u64 {
        self.stats.as_ref().map_or(0, |s| s.count)
    }
    /// `null` when no enrollment reached both points.
    async fn durations(&self) -> Option<DurationStats> {
        self.stats.clone().map(Into::into)
    }
    /// Reached `from` but not yet `to`, and still active.
    async fn still_open(&self) -> u64 {
        self.still_open
    }
    /// Reached `from`, then ended (withdrawn or completed) without reaching `to`.
    async fn ended_early(&self) -> u64 {
        self.ended_early
    }
}

#[derive(SimpleObject)]
pub struct DurationReport {
    pub rows: Vec<DurationReportRow>,
    /// The time the report describes.
    pub as_of: DateTime<Utc>,
    /// The tenant position the replay ended at.
    pub position: Position,
    pub events_replayed: Position,
}

pub struct FunnelReportRow(crate::app::views::FunnelRow);

fn rate(numerator: u64, denominator: u64) -> Option<f64> {
    crate::app::views::FunnelRow::rate(numerator, denominator)
}

#[Object]
impl FunnelReportRow {
    async fn course_id(&self) -> Uuid {
        self.0.course_id
    }
    async fn course(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Course>> {
        let id = CourseId::from_uuid(self.0.course_id);
        let row = rows(ctx)?.load_one(id).await?;
        Ok(row.map(Course))
    }
    async fn registered(&self) -> u64 {
        self.0.registered
    }
    async fn started(&self) -> u64 {
        self.0.started
    }
    /// Enrollments with at least one submitted test.
    async fn submitted(&self) -> u64 {
        self.0.submitted
    }
    /// Enrollments with a passing grade.
    async fn passed(&self) -> u64 {
        self.0.passed
    }
    async fn completed(&self) -> u64 {
        self.0.completed
    }
    async fn withdrawn(&self) -> u64 {
        self.0.withdrawn
    }
    /// started / registered.
    async fn start_rate(&self) -> Option<f64> {
        rate(self.0.started, self.0.registered)
    }
    /// submitted / started.
    async fn submission_rate(&self) -> Option<f64> {
        rate(self.0.submitted, self.0.started)
    }
    /// passed / submitted.
    async fn pass_rate(&self) -> Option<f64> {
        rate(self.0.passed, self.0.submitted)
    }
    /// completed / passed.
    async fn completion_rate(&self) -> Option<f64> {
        rate(self.0.completed, self.0.passed)
    }
    /// completed / registered.
    async fn overall_rate(&self) -> Option<f64> {
        rate(self.0.completed, self.0.registered)
    }
    /// Mean graded attempts up to and including the first pass.
    async fn mean_attempts_to_pass(&self) -> Option<f64> {
        self.0.attempts_to_pass.as_ref().map(|s| s.mean)
    }
    async fn median_attempts_to_pass(&self) -> Option<f64> {
        self.0.attempts_to_pass.as_ref().map(|s| s.median)
    }
    /// Of the enrollments with a grade, the share whose first grade passed.
    async fn first_attempt_pass_rate(&self) -> Option<f64> {
        self.0.first_attempt_pass_rate
    }
}

#[derive(SimpleObject)]
pub struct FunnelReport {
    pub rows: Vec<FunnelReportRow>,
    pub as_of: DateTime<Utc>,
    pub position: Position,
    pub events_replayed: Position,
}

#[derive(SimpleObject)]
pub struct RebuildProjectionsPayload {
    pub events_replayed: Position,
    pub courses: u64,
    pub trainees: u64,
    pub enrollments: u64,
    pub submissions: u64,
}

#[derive(Default)]
pub struct ReportQuery;

#[Object]
impl ReportQuery {
    /// The time between two lifecycle points per enrollment, replayed from the log (admins,
    /// instructors). "How long do trainees take on each course?" is
    /// `{from: STARTED, to: COMPLETED, groupBy: COURSE}`.
    #[graphql(complexity = "super::REPLAY_COMPLEXITY + child_complexity")]
    async fn duration_report(
        &self,
        ctx: &Context<'_>,
        input: DurationReportInput,
    ) -> async_graphql::Result<DurationReport> {
        let caller = caller(ctx)?;
        let spec = DurationSpec::new(input.from.into(), input.to.into(), input.group_by.into())
            .map_err(|message| to_graphql(AppError::BadInput(message)))?;
        let report = app(ctx)
            .reads()
            .duration_report(caller, spec, input.course_ids, input.as_of, |_| {})
            .await
            .gql()?;
        Ok(DurationReport {
            rows: report
                .rows
                .into_iter()
                .map(|row| DurationReportRow {
                    key: row.key,
                    stats: row.summary,
                    still_open: row.still_open,
                    ended_early: row.ended_early,
                })
                .collect(),
            as_of: report.as_of,
            position: report.position.into(),
            events_replayed: report.events_replayed.into(),
        })
    }

    /// Per course, how many enrollments reached each lifecycle point (admins, instructors).
    #[graphql(complexity = "super::REPLAY_COMPLEXITY + child_complexity")]
    async fn funnel_report(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "FunnelReportInput { course_ids: None, as_of: None }")]
        input: FunnelReportInput,
    ) -> async_graphql::Result<FunnelReport> {
        let caller = caller(ctx)?;
        let report = app(ctx)
            .reads()
            .funnel_report(caller, input.course_ids, input.as_of, |_| {})
            .await
            .gql()?;
        Ok(FunnelReport {
            rows: report.rows.into_iter().map(FunnelReportRow).collect(),
            as_of: report.as_of,
            position: report.position.into(),
            events_replayed: report.events_replayed.into(),
        })
    }
}

#[derive(Default)]
pub struct ReportMutation;

#[Object]
impl ReportMutation {
    /// Replays the tenant's log into fresh projections and swaps them in atomically (admins).
    #[graphql(complexity = "super::REPLAY_COMPLEXITY + child_complexity")]
    async fn rebuild_projections(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<RebuildProjectionsPayload> {
        let caller = caller(ctx)?;
        let report = app(ctx)
            .reads()
            .rebuild_projections(caller, |_| {})
            .await
            .gql()?;
        Ok(RebuildProjectionsPayload {
            events_replayed: report.events.into(),
            courses: report.courses,
            trainees: report.trainees,
            enrollments: report.enrollments,
            submissions: report.submissions,
        })
    }
}
