//! The GraphQL object types: thin views over the projection rows.

use super::context::{app, caller, rows};
use super::error::GqlResultExt;
use crate::app::views::{CourseRow, EnrollmentRow, SubmissionRow, TraineeRow};
use async_graphql::{Context, Enum, ID, Object};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A course that trainees register for.
pub struct Course(pub CourseRow);

#[Object]
impl Course {
    async fn id(&self) -> Uuid {
        self.0.course_id.as_uuid()
    }
    /// Unique per tenant, upper-case.
    async fn code(&self) -> &str {
        &self.0.code
    }
    async fn title(&self) -> &str {
        &self.0.title
    }
    /// The lowest score (0–100) that passes the course's test.
    async fn passing_score(&self) -> i16 {
        self.0.passing_score
    }
    /// A retired course takes no new registrations.
    async fn retired(&self) -> bool {
        self.0.retired
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn retired_at(&self) -> Option<DateTime<Utc>> {
        self.0.retired_at
    }
    /// The version of the course's stream this view reflects.
    async fn version(&self) -> i32 {
        self.0.version
    }
}

/// A person being trained.
pub struct Trainee(pub TraineeRow);

#[Object]
impl Trainee {
    async fn id(&self) -> Uuid {
        self.0.trainee_id.as_uuid()
    }
    async fn email(&self) -> &str {
        &self.0.email
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn registered_at(&self) -> DateTime<Utc> {
        self.0.registered_at
    }
    async fn version(&self) -> i32 {
        self.0.version
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "crate::domain::enrollment::EnrollmentStatus")]
pub enum EnrollmentStatus {
    Registered,
    Started,
    Completed,
    Withdrawn,
}

/// One registration of a trainee for a course, and how far it has come.
pub struct Enrollment {
    row: EnrollmentRow,
    /// Set for a past state (time travel); the live state reads its submissions' projection.
    submissions_as_of: Option<Vec<SubmissionRow>>,
}

impl Enrollment {
    pub fn live(row: EnrollmentRow) -> Self {
        Self {
            row,
            submissions_as_of: None,
        }
    }

    pub fn as_of(row: EnrollmentRow, submissions: Vec<SubmissionRow>) -> Self {
        Self {
            row,
            submissions_as_of: Some(submissions),
        }
    }
}

#[Object]
impl Enrollment {
    async fn id(&self) -> Uuid {
        self.row.enrollment_id.as_uuid()
    }
    async fn course_id(&self) -> Uuid {
        self.row.course_id.as_uuid()
    }
    async fn trainee_id(&self) -> Uuid {
        self.row.trainee_id.as_uuid()
    }
    async fn course(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Course>> {
        let row = rows(ctx)?.load_one(self.row.course_id).await?;
        Ok(row.map(Course))
    }
    async fn trainee(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Trainee>> {
        let row = rows(ctx)?.load_one(self.row.trainee_id).await?;
        Ok(row.map(Trainee))
    }
    async fn status(&self) -> EnrollmentStatus {
        self.row.status.into()
    }
    async fn registered_at(&self) -> DateTime<Utc> {
        self.row.registered_at
    }
    async fn started_at(&self) -> Option<DateTime<Utc>> {
        self.row.started_at
    }
    async fn completed_at(&self) -> Option<DateTime<Utc>> {
        self.row.completed_at
    }
    async fn withdrawn_at(&self) -> Option<DateTime<Utc>> {
        self.row.withdrawn_at
    }
    async fn withdrawal_reason(&self) -> Option<&str> {
        self.row.withdrawal_reason.as_deref()
    }
    /// How many tests were submitted.
    async fn submission_count(&self) -> i32 {
        self.row.submission_count
    }
    /// The best graded score so far.
    async fn best_score(&self) -> Option<i16> {
        self.row.best_score
    }
    /// When the first passing grade was given.
    async fn passed_at(&self) -> Option<DateTime<Utc>> {
        self.row.passed_at
    }
    async fn submissions(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Submission>> {
        let rows = match &self.submissions_as_of {
            Some(rows) => rows.clone(),
            None => rows(ctx)?
                .load_one(self.row.enrollment_id)
                .await?
                .unwrap_or_default(),
        };
        Ok(rows.into_iter().map(Submission).collect())
    }
    /// The version of the enrollment's stream this view reflects.
    async fn version(&self) -> i32 {
        self.row.version
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.row.updated_at
    }
}

/// A submitted test, graded or not yet.
pub struct Submission(pub SubmissionRow);

#[Object]
impl Submission {
    async fn id(&self) -> Uuid {
        self.0.submission_id.as_uuid()
    }
    async fn submitted_at(&self) -> DateTime<Utc> {
        self.0.submitted_at
    }
    async fn score(&self) -> Option<i16> {
        self.0.score
    }
    async fn passed(&self) -> Option<bool> {
        self.0.passed
    }
    async fn graded_at(&self) -> Option<DateTime<Utc>> {
        self.0.graded_at
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "crate::domain::Role")]
pub enum Role {
    Admin,
    Instructor,
    Trainee,
}

/// The signed-in person, as the token says.
pub struct Me {
    pub subject: Uuid,
    pub tenant_id: Uuid,
    pub role: Role,
}

#[Object]
impl Me {
    /// The token's subject (for a trainee, the trainee's id).
    async fn id(&self) -> ID {
        ID(self.subject.to_string())
    }
    async fn subject(&self) -> Uuid {
        self.subject
    }
    async fn tenant_id(&self) -> Uuid {
        self.tenant_id
    }
    async fn role(&self) -> Role {
        self.role
    }
    /// The caller's trainee record, for a trainee that has been registered.
    async fn trainee(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Trainee>> {
        if self.role != Role::Trainee {
            return Ok(None);
        }
        let id = crate::domain::TraineeId::from_uuid(self.subject);
        let row = app(ctx).reads().trainee(caller(ctx)?, id).await.gql()?;
        Ok(row.map(Trainee))
    }
}
