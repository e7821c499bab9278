//! Mutations: one `input:` argument each, parsed into domain values at the edge, then one
//! application command; the payload carries the affected object and the tenant position of the
//! last event appended (usable as a cursor for `auditTrail` / `events`).

use super::context::{app, caller, command_options};
use super::error::{GqlResultExt, to_graphql};
use super::scalars::Position;
use super::types::{Course, Enrollment, Trainee};
use crate::app::{
    App, AppError, Caller, CommandOptions, CommandOutcome, Submitted, may_see_trainee,
    visible_enrollment,
};
use crate::domain::values::{
    Answers, CourseCode, CourseTitle, Email, PersonName, Score, WithdrawalReason,
};
use crate::domain::{CourseId, EnrollmentId, SubmissionId, TraineeId};
use async_graphql::{Context, InputObject, Json, Object, SimpleObject};
use uuid::Uuid;

fn parsed<T>(result: Result<T, crate::domain::ValidationError>) -> async_graphql::Result<T> {
    result.map_err(|e| to_graphql(AppError::from(e)))
}

#[derive(InputObject)]
pub struct CreateCourseInput {
    /// 1–32 letters, digits, '-', '_' or '.'; unique per tenant (stored upper-case).
    pub code: String,
    pub title: String,
    /// 0–100.
    pub passing_score: i32,
    /// Makes the mutation safe to retry: a repeat returns the first result.
    pub command_id: Option<Uuid>,
}

#[derive(InputObject)]
pub struct ForgetTraineeInput {
    pub trainee_id: Uuid,
    pub command_id: Option<Uuid>,
}

#[derive(InputObject)]
pub struct RetireCourseInput {
    pub course_id: Uuid,
    pub command_id: Option<Uuid>,
}

#[derive(InputObject)]
pub struct RegisterTraineeInput {
    pub email: String,
    pub name: String,
    /// An id of your choosing (e.g. the identity provider's subject); generated if absent.
    pub trainee_id: Option<Uuid>,
    pub command_id: Option<Uuid>,
}

#[derive(InputObject)]
pub struct RegisterForCourseInput {
    pub course_id: Uuid,
    /// Required for an admin; a trainee registers itself.
    pub trainee_id: Option<Uuid>,
    pub command_id: Option<Uuid>,
}

#[derive(InputObject)]
pub struct EnrollmentInput {
    pub enrollment_id: Uuid,
    pub command_id: Option<Uuid>,
}

#[derive(InputObject)]
pub struct SubmitTestInput {
    pub enrollment_id: Uuid,
    /// Any JSON, at most 64 KiB.
    pub answers: Json<serde_json::Value>,
    pub command_id: Option<Uuid>,
}

#[derive(InputObject)]
pub struct GradeSubmissionInput {
    pub enrollment_id: Uuid,
    pub submission_id: Uuid,
    /// 0–100; passes when at least the course's passing score.
    pub score: i32,
    pub command_id: Option<Uuid>,
}

#[derive(InputObject)]
pub struct WithdrawRegistrationInput {
    pub enrollment_id: Uuid,
    pub reason: Option<String>,
    pub command_id: Option<Uuid>,
}

#[derive(SimpleObject)]
pub struct CoursePayload {
    pub course: Course,
    /// The tenant position of the last event appended.
    pub position: Position,
    /// True when this answers a repeat of an earlier command (same commandId).
    pub replayed: bool,
}

#[derive(SimpleObject)]
pub struct TraineePayload {
    pub trainee: Trainee,
    pub position: Position,
    pub replayed: bool,
}

#[derive(SimpleObject)]
pub struct EnrollmentPayload {
    pub enrollment: Enrollment,
    pub position: Position,
    pub replayed: bool,
}

#[derive(SimpleObject)]
pub struct SubmitTestPayload {
    pub enrollment: Enrollment,
    pub submission_id: Uuid,
    pub position: Position,
    pub replayed: bool,
}

/// The payload's trainee: as the command wrote it, or (a replayed command) as stored now.
async fn trainee_payload(
    ctx: &Context<'_>,
    caller: &Caller,
    outcome: CommandOutcome,
) -> async_graphql::Result<TraineePayload> {
    let trainee_id = TraineeId::from_uuid(outcome.stream_id);
    let written = outcome.rows.and_then(|rows| rows.trainee);
    let row = match written {
        Some(row) => may_see_trainee(caller, trainee_id).then_some(row),
        None => app(ctx).reads().trainee(caller, trainee_id).await.gql()?,
    };
    let row = row.ok_or_else(|| to_graphql(AppError::NotFound("trainee not found".into())))?;
    Ok(TraineePayload {
        trainee: Trainee(row),
        position: outcome.position.into(),
        replayed: outcome.replayed,
    })
}

/// The payload's course: as the command wrote it, or (a replayed command) as stored now.
async fn course_payload(
    ctx: &Context<'_>,
    caller: &Caller,
    outcome: CommandOutcome,
) -> async_graphql::Result<CoursePayload> {
    let row = match outcome.rows.and_then(|rows| rows.course) {
        Some(row) => Some(row),
        None => app(ctx)
            .reads()
            .course(caller, CourseId::from_uuid(outcome.stream_id))
            .await
            .gql()?,
    };
    let row = row.ok_or_else(|| {
        to_graphql(AppError::internal(anyhow::anyhow!(
            "course row missing after command"
        )))
    })?;
    Ok(CoursePayload {
        course: Course(row),
        position: outcome.position.into(),
        replayed: outcome.replayed,
    })
}

/// The payload's enrollment: as the command wrote it (no read back), or (a replayed command)
/// as stored now; either way filtered by the same rule as the `enrollment` query.
async fn enrollment_payload(
    ctx: &Context<'_>,
    caller: &Caller,
    outcome: CommandOutcome,
) -> async_graphql::Result<EnrollmentPayload> {
    let row = match outcome.rows.and_then(|rows| rows.enrollment) {
        Some(row) => visible_enrollment(caller, row),
        None => app(ctx)
            .reads()
            .enrollment(caller, EnrollmentId::from_uuid(outcome.stream_id))
            .await
            .gql()?,
    };
    let row = row.ok_or_else(|| to_graphql(AppError::NotFound("enrollment not found".into())))?;
    Ok(EnrollmentPayload {
        enrollment: Enrollment::live(row),
        position: outcome.position.into(),
        replayed: outcome.replayed,
    })
}

/// Runs an enrollment command for the request's caller, with the request's command options,
/// and answers with the enrollment it wrote.
async fn enrollment_command(
    ctx: &Context<'_>,
    command_id: Option<Uuid>,
    command: impl AsyncFnOnce(&App, &Caller, &CommandOptions) -> Result<CommandOutcome, AppError>,
) -> async_graphql::Result<EnrollmentPayload> {
    let caller = caller(ctx)?;
    let options = command_options(ctx, command_id);
    let outcome = command(app(ctx), caller, &options).await.gql()?;
    enrollment_payload(ctx, caller, outcome).await
}

#[derive(Default)]
pub struct CoreMutation;

#[Object]
impl CoreMutation {
    /// Creates a course (admins, instructors).
    async fn create_course(
        &self,
        ctx: &Context<'_>,
        input: CreateCourseInput,
    ) -> async_graphql::Result<CoursePayload> {
        let caller = caller(ctx)?;
        let code = parsed(CourseCode::parse(&input.code))?;
        let title = parsed(CourseTitle::parse(&input.title))?;
        let passing = parsed(Score::parse("passingScore", i64::from(input.passing_score)))?;
        let options = command_options(ctx, input.command_id);
        let outcome = app(ctx)
            .commands()
            .create_course(caller, &options, code, title, passing)
            .await
            .gql()?;
        course_payload(ctx, caller, outcome).await
    }

    /// Retires a course: it takes no new registrations (admins, instructors).
    async fn retire_course(
        &self,
        ctx: &Context<'_>,
        input: RetireCourseInput,
    ) -> async_graphql::Result<CoursePayload> {
        let caller = caller(ctx)?;
        let options = command_options(ctx, input.command_id);
        let outcome = app(ctx)
            .commands()
            .retire_course(caller, &options, CourseId::from_uuid(input.course_id))
            .await
            .gql()?;
        course_payload(ctx, caller, outcome).await
    }

    /// Registers a trainee (admins; a trainee may register itself).
    async fn register_trainee(
        &self,
        ctx: &Context<'_>,
        input: RegisterTraineeInput,
    ) -> async_graphql::Result<TraineePayload> {
        let caller = caller(ctx)?;
        let email = parsed(Email::parse(&input.email))?;
        let name = parsed(PersonName::parse(&input.name))?;
        let options = command_options(ctx, input.command_id);
        let outcome = app(ctx)
            .commands()
            .register_trainee(
                caller,
                &options,
                email,
                name,
                input.trainee_id.map(TraineeId::from_uuid),
            )
            .await
            .gql()?;
        trainee_payload(ctx, caller, outcome).await
    }

    /// Forgets a trainee (right to erasure): its e-mail, name and test answers become
    /// unreadable everywhere, for good, and read as placeholders; ids, times and scores stay,
    /// so reports do not change. The e-mail address is free again. Admins; a trainee may
    /// forget itself.
    async fn forget_trainee(
        &self,
        ctx: &Context<'_>,
        input: ForgetTraineeInput,
    ) -> async_graphql::Result<TraineePayload> {
        let caller = caller(ctx)?;
        let options = command_options(ctx, input.command_id);
        let trainee_id = TraineeId::from_uuid(input.trainee_id);
        let outcome = app(ctx)
            .commands()
            .forget_trainee(caller, &options, trainee_id)
            .await
            .gql()?;
        trainee_payload(ctx, caller, outcome).await
    }

    /// Registers a trainee for a course: a trainee registers itself, an admin names the trainee.
    async fn register_for_course(
        &self,
        ctx: &Context<'_>,
        input: RegisterForCourseInput,
    ) -> async_graphql::Result<EnrollmentPayload> {
        let course = CourseId::from_uuid(input.course_id);
        let trainee = input.trainee_id.map(TraineeId::from_uuid);
        enrollment_command(ctx, input.command_id, async |app, caller, options| {
            app.commands()
                .register_for_course(caller, options, course, trainee)
                .await
        })
        .await
    }

    async fn start_course(
        &self,
        ctx: &Context<'_>,
        input: EnrollmentInput,
    ) -> async_graphql::Result<EnrollmentPayload> {
        let enrollment = EnrollmentId::from_uuid(input.enrollment_id);
        enrollment_command(ctx, input.command_id, async |app, caller, options| {
            app.commands()
                .start_course(caller, options, enrollment)
                .await
        })
        .await
    }

    /// Submits a test for grading; the payload carries the new submission's id.
    async fn submit_test(
        &self,
        ctx: &Context<'_>,
        input: SubmitTestInput,
    ) -> async_graphql::Result<SubmitTestPayload> {
        let caller = caller(ctx)?;
        let answers = parsed(Answers::parse(input.answers.0))?;
        let options = command_options(ctx, input.command_id);
        let submitted = app(ctx)
            .commands()
            .submit_test(
                caller,
                &options,
                EnrollmentId::from_uuid(input.enrollment_id),
                answers,
            )
            .await
            .gql()?;
        let Submitted {
            outcome,
            submission_id,
        } = submitted;
        let payload = enrollment_payload(ctx, caller, outcome).await?;
        Ok(SubmitTestPayload {
            enrollment: payload.enrollment,
            submission_id: submission_id.as_uuid(),
            position: payload.position,
            replayed: payload.replayed,
        })
    }

    /// Grades a submitted test (admins, instructors).
    async fn grade_submission(
        &self,
        ctx: &Context<'_>,
        input: GradeSubmissionInput,
    ) -> async_graphql::Result<EnrollmentPayload> {
        let score = parsed(Score::parse("score", i64::from(input.score)))?;
        let enrollment = EnrollmentId::from_uuid(input.enrollment_id);
        let submission = SubmissionId::from_uuid(input.submission_id);
        enrollment_command(ctx, input.command_id, async |app, caller, options| {
            app.commands()
                .grade_submission(caller, options, enrollment, submission, score)
                .await
        })
        .await
    }

    /// Completes the course; needs a passing grade.
    async fn complete_course(
        &self,
        ctx: &Context<'_>,
        input: EnrollmentInput,
    ) -> async_graphql::Result<EnrollmentPayload> {
        let enrollment = EnrollmentId::from_uuid(input.enrollment_id);
        enrollment_command(ctx, input.command_id, async |app, caller, options| {
            app.commands()
                .complete_course(caller, options, enrollment)
                .await
        })
        .await
    }

    /// Withdraws a registration that is not completed.
    async fn withdraw_registration(
        &self,
        ctx: &Context<'_>,
        input: WithdrawRegistrationInput,
    ) -> async_graphql::Result<EnrollmentPayload> {
        let reason = input
            .reason
            .as_deref()
            .map(WithdrawalReason::parse)
            .transpose();
        let reason = parsed(reason)?;
        let enrollment = EnrollmentId::from_uuid(input.enrollment_id);
        enrollment_command(ctx, input.command_id, async |app, caller, options| {
            app.commands()
                .withdraw_registration(caller, options, enrollment, reason)
                .await
        })
        .await
    }
}
