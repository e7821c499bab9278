//! Queries: parse arguments, call the application, wrap the rows.

use super::context::{app, caller, rows as row_loader};
use super::error::GqlResultExt;
use super::loaders::prefetch_enrollment_relations;
use super::pagination::{PageArgs, page};
use super::types::{Course, Enrollment, EnrollmentStatus, Me, Trainee};
use crate::app::views::EnrollmentFilter;
use crate::domain::{CourseId, EnrollmentId, TraineeId};
use async_graphql::connection::Connection;
use async_graphql::{Context, Object};
use chrono::{DateTime, Utc};
use uuid::Uuid;

#[derive(Default)]
pub struct CoreQuery;

#[Object]
impl CoreQuery {
    /// The signed-in person.
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<Me> {
        let caller = caller(ctx)?;
        Ok(Me {
            subject: caller.actor_id(),
            tenant_id: caller.tenant().as_uuid(),
            role: caller.role().into(),
        })
    }

    async fn course(&self, ctx: &Context<'_>, id: Uuid) -> async_graphql::Result<Option<Course>> {
        let row = app(ctx)
            .reads()
            .course(caller(ctx)?, CourseId::from_uuid(id))
            .await
            .gql()?;
        Ok(row.map(Course))
    }

    /// The tenant's courses in creation order; retired ones only when asked for.
    async fn courses(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = false)] include_retired: bool,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Course>> {
        let caller = caller(ctx)?;
        let args = PageArgs::parse(first, after)?;
        let rows = app(ctx)
            .reads()
            .courses(caller, args.after, include_retired, args.fetch_limit())
            .await
            .gql()?;
        Ok(page(&args, rows, |row| row.course_id.as_uuid(), Course))
    }

    async fn trainee(&self, ctx: &Context<'_>, id: Uuid) -> async_graphql::Result<Option<Trainee>> {
        let row = app(ctx)
            .reads()
            .trainee(caller(ctx)?, TraineeId::from_uuid(id))
            .await
            .gql()?;
        Ok(row.map(Trainee))
    }

    /// The tenant's trainees (admins and instructors).
    async fn trainees(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Trainee>> {
        let caller = caller(ctx)?;
        let args = PageArgs::parse(first, after)?;
        let rows = app(ctx)
            .reads()
            .trainees(caller, args.after, args.fetch_limit())
            .await
            .gql()?;
        Ok(page(&args, rows, |row| row.trainee_id.as_uuid(), Trainee))
    }

    /// An enrollment; with `asOf`, as it was at that time (replayed from its stream).
    async fn enrollment(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
        as_of: Option<DateTime<Utc>>,
    ) -> async_graphql::Result<Option<Enrollment>> {
        let (caller, id) = (caller(ctx)?, EnrollmentId::from_uuid(id));
        if let Some(as_of) = as_of {
            let past = app(ctx)
                .reads()
                .enrollment_as_of(caller, id, as_of)
                .await
                .gql()?;
            return Ok(past.map(|(row, submissions)| Enrollment::as_of(row, submissions)));
        }
        let row = app(ctx).reads().enrollment(caller, id).await.gql()?;
        Ok(row.map(Enrollment::live))
    }

    /// Enrollments, optionally of one course, one trainee, or in one status. A trainee sees
    /// only its own.
    async fn enrollments(
        &self,
        ctx: &Context<'_>,
        course_id: Option<Uuid>,
        trainee_id: Option<Uuid>,
        status: Option<EnrollmentStatus>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Enrollment>> {
        let caller = caller(ctx)?;
        let args = PageArgs::parse(first, after)?;
        let filter = EnrollmentFilter {
            course_id: course_id.map(CourseId::from_uuid),
            trainee_id: trainee_id.map(TraineeId::from_uuid),
            status: status.map(Into::into),
        };
        let rows = app(ctx)
            .reads()
            .enrollments(caller, filter, args.after, args.fetch_limit())
            .await
            .gql()?;
        prefetch_enrollment_relations(ctx, row_loader(ctx)?, &rows).await?;
        Ok(page(
            &args,
            rows,
            |row| row.enrollment_id.as_uuid(),
            Enrollment::live,
        ))
    }
}
