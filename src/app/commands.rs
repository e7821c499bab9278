//! The commands, one function each: authorize, gather what the decision needs, decide, write.

use super::command_path::{
    Command, CommandOptions, CommandOutcome, Commands, DIGEST_KEY, OnMiss, Source,
};
use super::write::{CommandResult, Write};
use super::{AppError, Caller, Conn};
use crate::domain::TenantId;
use crate::domain::course::{CourseAggregate, CourseCommand};
use crate::domain::enrollment::{CourseFacts, Enrollment, EnrollmentAggregate, EnrollmentCommand};
use crate::domain::schema;
use crate::domain::trainee::{TraineeAggregate, TraineeCommand};
use crate::domain::values::{
    Answers, CourseCode, CourseTitle, Email, PersonName, Score, WithdrawalReason,
};
use crate::domain::{Aggregate, CourseId, EnrollmentId, Role, SubmissionId, TraineeId};
use crate::projections;
use crate::store::personal::TraineeKey;
use crate::store::{self, StreamEvent};
use uuid::Uuid;

fn fold<A: Aggregate>(stream: &[StreamEvent]) -> A::State {
    A::fold(stream.iter().map(|e| &e.event))
}

/// A submitted test: the command's outcome and the submission it made.
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    pub outcome: CommandOutcome,
    pub submission_id: SubmissionId,
}

/// Erases a trainee's personal data in one transaction: its key and v1 plaintext (the log's
/// tables), its projection rows' personal columns, and the request digests of the commands on
/// its streams. Every statement names the tenant, so on Citus the transaction stays on the
/// tenant's worker. Returns the streams that held its data (its own and its enrollments').
async fn erase(conn: &mut Conn, tenant: TenantId, trainee: Uuid) -> Result<Vec<Uuid>, AppError> {
    let mut tx = sqlx::Acquire::begin(&mut **conn).await?;
    store::personal::erase_key_and_plaintext(&mut tx, tenant, trainee).await?;
    let mut streams = projections::erase_personal_columns(&mut tx, tenant, trainee).await?;
    streams.push(trainee);
    store::personal::erase_digests(&mut tx, tenant, &streams, DIGEST_KEY).await?;
    tx.commit().await?;
    Ok(streams)
}

/// A trainee may act only on its own enrollments; to it, anyone else's do not exist.
fn own_enrollment(caller: &Caller, state: &Option<Enrollment>) -> Result<(), AppError> {
    match state {
        Some(enrollment)
            if caller.role() == Role::Trainee
                && enrollment.trainee_id.as_uuid() != caller.actor_id() =>
        {
            Err(AppError::NotFound("enrollment not found".into()))
        }
        _ => Ok(()),
    }
}

impl Commands {
    pub async fn create_course(
        &self,
        caller: &Caller,
        options: &CommandOptions,
        code: CourseCode,
        title: CourseTitle,
        passing_score: Score,
    ) -> Result<CommandOutcome, AppError> {
        caller.require(&[Role::Admin, Role::Instructor], "create courses")?;
        let course_id = CourseId::generate();
        let command = Command::new(caller, options, "createCourse");

        self.run(command, |conn, _| {
            let (code, title) = (code.clone(), title.clone());
            async move {
                let events = CourseAggregate::decide(
                    &None,
                    CourseCommand::Create {
                        code,
                        title,
                        passing_score,
                    },
                )?;
                let write = Write::course(course_id, &[], events);
                self.commit(conn, command, write).await
            }
        })
        .await
    }

    pub async fn retire_course(
        &self,
        caller: &Caller,
        options: &CommandOptions,
        course_id: CourseId,
    ) -> Result<CommandOutcome, AppError> {
        caller.require(&[Role::Admin, Role::Instructor], "retire courses")?;
        let command = Command::new(caller, options, "retireCourse");

        self.run(command, |mut conn, source| async move {
            let stream = self
                .stream(
                    &mut conn,
                    caller.tenant(),
                    course_id.as_uuid(),
                    source,
                    OnMiss::Read,
                )
                .await?;
            let state = fold::<CourseAggregate>(&stream);
            let events = CourseAggregate::decide(&state, CourseCommand::Retire)?;
            let write = Write::course(course_id, &stream[..], events);
            self.commit(conn, command, write).await
        })
        .await
    }

    /// Registers a trainee. An admin may choose the id (e.g. the identity provider's subject);
    /// a trainee may register only itself, under its own token's subject.
    pub async fn register_trainee(
        &self,
        caller: &Caller,
        options: &CommandOptions,
        email: Email,
        name: PersonName,
        trainee_id: Option<TraineeId>,
    ) -> Result<CommandOutcome, AppError> {
        caller.require(&[Role::Admin, Role::Trainee], "register trainees")?;
        let trainee_id = match (caller.role(), trainee_id) {
            (Role::Trainee, Some(id)) if id.as_uuid() != caller.actor_id() => {
                return Err(AppError::Forbidden(
                    "a trainee may only register itself".into(),
                ));
            }
            (Role::Trainee, _) => TraineeId::from_uuid(caller.actor_id()),
            (_, Some(id)) => id,
            (_, None) => TraineeId::generate(),
        };
        let command = Command::new(caller, options, "registerTrainee");

        self.run(command, |mut conn, source| {
            let (email, name) = (email.clone(), name.clone());
            async move {
                let stream = self
                    .stream(
                        &mut conn,
                        caller.tenant(),
                        trainee_id.as_uuid(),
                        source,
                        OnMiss::AssumeNew,
                    )
                    .await?;
                let state = fold::<TraineeAggregate>(&stream);
                let events =
                    TraineeAggregate::decide(&state, TraineeCommand::Register { email, name })?;
                // A new trainee id has no key yet: the cache's attempt makes one without a read
                // (the write stores it, or is refused if the trainee has one). Read, a
                // forgotten trainee has a keyless row, and is refused here.
                let data_key = match source {
                    Source::Recent => TraineeKey::make(&self.rt.keys),
                    Source::Stored => store::personal::trainee_key(
                        &mut conn,
                        &self.rt.keys,
                        caller.tenant(),
                        trainee_id.as_uuid(),
                    )
                    .await?
                    .ok_or_else(|| AppError::InvalidState("the trainee was forgotten".into()))?,
                };
                let write =
                    Write::trainee(trainee_id, &stream[..], events).sealed_with(Some(data_key));
                self.commit(conn, command, write).await
            }
        })
        .await
    }

    /// Registers a trainee for a course: a trainee registers itself; an admin names the trainee.
    pub async fn register_for_course(
        &self,
        caller: &Caller,
        options: &CommandOptions,
        course_id: CourseId,
        trainee_id: Option<TraineeId>,
    ) -> Result<CommandOutcome, AppError> {
        caller.require(&[Role::Admin, Role::Trainee], "register for courses")?;
        let trainee_id = match (caller.role(), trainee_id) {
            (Role::Trainee, Some(id)) if id.as_uuid() != caller.actor_id() => {
                return Err(AppError::Forbidden(
                    "a trainee may only register itself".into(),
                ));
            }
            (Role::Trainee, _) => TraineeId::from_uuid(caller.actor_id()),
            (_, Some(id)) => id,
            (_, None) => {
                return Err(AppError::BadInput(
                    "traineeId: an admin must name the trainee to register".into(),
                ));
            }
        };
        let enrollment_id = EnrollmentId::generate();
        let command = Command::new(caller, options, "registerForCourse");

        self.run(command, |mut conn, source| async move {
            let tenant = caller.tenant();
            // The cache's attempt assumes the facts that let a registration through, unread:
            // the write itself refuses it if the course is closed or missing, the trainee
            // missing, or an active registration exists, and the command then runs again on
            // the facts as stored, which tell the caller which.
            let (course_retired, trainee_exists, has_active_enrollment) = match source {
                Source::Recent => (Some(false), true, false),
                Source::Stored => {
                    projections::registration_facts(&mut conn, tenant, course_id, trainee_id)
                        .await?
                }
            };
            let events = EnrollmentAggregate::decide(
                &None,
                EnrollmentCommand::Register {
                    course_id,
                    trainee_id,
                    course: course_retired.map(|retired| CourseFacts { retired }),
                    trainee_exists,
                    has_active_enrollment,
                },
            )?;
            let write = Write::registration(enrollment_id, trainee_id, course_id, events);
            self.commit(conn, command, write).await
        })
        .await
    }

    pub async fn start_course(
        &self,
        caller: &Caller,
        options: &CommandOptions,
        enrollment_id: EnrollmentId,
    ) -> Result<CommandOutcome, AppError> {
        caller.require(&[Role::Admin, Role::Trainee], "start courses")?;
        self.enrollment_command(caller, options, "startCourse", enrollment_id, false, |_| {
            Ok(EnrollmentCommand::Start)
        })
        .await
    }

    /// Forgets a trainee (erasure): deletes its data key and with it every sealed personal
    /// field, erases its v1 plaintext and its commands' request digests, and records
    /// `TraineeForgotten`. Admins may forget anyone; a trainee only itself. Forgetting again
    /// finishes an erasure that was cut short and records nothing more.
    pub async fn forget_trainee(
        &self,
        caller: &Caller,
        options: &CommandOptions,
        trainee_id: TraineeId,
    ) -> Result<CommandOutcome, AppError> {
        caller.require(&[Role::Admin, Role::Trainee], "forget trainees")?;
        if caller.role() == Role::Trainee && trainee_id.as_uuid() != caller.actor_id() {
            return Err(AppError::Forbidden(
                "a trainee may only forget itself".into(),
            ));
        }
        let command = Command::new(caller, options, "forgetTrainee");

        self.run(command, |mut conn, source| async move {
            let tenant = caller.tenant();
            let stream = self
                .stream(
                    &mut conn,
                    tenant,
                    trainee_id.as_uuid(),
                    source,
                    OnMiss::Read,
                )
                .await?;
            let state = fold::<TraineeAggregate>(&stream);
            let events = TraineeAggregate::decide(&state, TraineeCommand::Forget)?;
            // The erasure goes first, in one transaction: once it committed the data is gone,
            // whatever happens to the rest of the command (a retry records the event).
            let streams = erase(&mut conn, tenant, trainee_id.as_uuid()).await?;
            if events.is_empty() {
                self.recent.drop_streams(tenant, &streams);
                return Ok(CommandOutcome {
                    stream_id: trainee_id.as_uuid(),
                    position: store::log::head(&mut *conn, tenant).await?,
                    result: CommandResult::default(),
                    replayed: false,
                    rows: None,
                });
            }
            let write = Write::trainee(trainee_id, &stream[..], events);
            let outcome = self.commit(conn, command, write).await;
            // Dropped after the write, which caches the stream it wrote.
            self.recent.drop_streams(tenant, &streams);
            outcome
        })
        .await
    }

    /// Submits a test; the new submission's id is in the outcome's `result.submissionId`.
    pub async fn submit_test(
        &self,
        caller: &Caller,
        options: &CommandOptions,
        enrollment_id: EnrollmentId,
        answers: Answers,
    ) -> Result<Submitted, AppError> {
        caller.require(&[Role::Admin, Role::Trainee], "submit tests")?;
        let submission_id = SubmissionId::generate();
        let outcome = self
            .enrollment_command(caller, options, "submitTest", enrollment_id, false, |_| {
                Ok(EnrollmentCommand::Submit {
                    submission_id,
                    answers: answers.clone(),
                })
            })
            .await?;
        // A retry's outcome carries the first request's submission, recorded with it.
        let submission_id = outcome.result.submission_id.ok_or_else(|| {
            AppError::internal(anyhow::anyhow!(
                "a submitTest record without its submission"
            ))
        })?;
        Ok(Submitted {
            outcome,
            submission_id,
        })
    }

    pub async fn grade_submission(
        &self,
        caller: &Caller,
        options: &CommandOptions,
        enrollment_id: EnrollmentId,
        submission_id: SubmissionId,
        score: Score,
    ) -> Result<CommandOutcome, AppError> {
        caller.require(&[Role::Admin, Role::Instructor], "grade submissions")?;
        self.enrollment_command(
            caller,
            options,
            "gradeSubmission",
            enrollment_id,
            true,
            |passing| {
                Ok(EnrollmentCommand::Grade {
                    submission_id,
                    score,
                    passing_score: passing.ok_or_else(|| {
                        AppError::internal(anyhow::anyhow!("the enrollment's course is missing"))
                    })?,
                })
            },
        )
        .await
    }

    pub async fn complete_course(
        &self,
        caller: &Caller,
        options: &CommandOptions,
        enrollment_id: EnrollmentId,
    ) -> Result<CommandOutcome, AppError> {
        caller.require(&[Role::Admin, Role::Trainee], "complete courses")?;
        self.enrollment_command(
            caller,
            options,
            "completeCourse",
            enrollment_id,
            false,
            |_| Ok(EnrollmentCommand::Complete),
        )
        .await
    }

    pub async fn withdraw_registration(
        &self,
        caller: &Caller,
        options: &CommandOptions,
        enrollment_id: EnrollmentId,
        reason: Option<WithdrawalReason>,
    ) -> Result<CommandOutcome, AppError> {
        caller.require(&[Role::Admin, Role::Trainee], "withdraw registrations")?;
        self.enrollment_command(
            caller,
            options,
            "withdrawRegistration",
            enrollment_id,
            false,
            |_| {
                Ok(EnrollmentCommand::Withdraw {
                    reason: reason.clone(),
                })
            },
        )
        .await
    }

    /// The shared shape of every command on an existing enrollment. `make` builds the command
    /// from the course's passing score (looked up only for grading).
    async fn enrollment_command(
        &self,
        caller: &Caller,
        options: &CommandOptions,
        command_type: &'static str,
        enrollment_id: EnrollmentId,
        needs_passing_score: bool,
        make: impl Fn(Option<Score>) -> Result<EnrollmentCommand, AppError>,
    ) -> Result<CommandOutcome, AppError> {
        let make = &make;
        let command = Command::new(caller, options, command_type);

        self.run(command, |mut conn, source| async move {
            let tenant = caller.tenant();
            let stream = self
                .stream(
                    &mut conn,
                    tenant,
                    enrollment_id.as_uuid(),
                    source,
                    OnMiss::Read,
                )
                .await?;
            let state = fold::<EnrollmentAggregate>(&stream);
            own_enrollment(caller, &state)?;
            if state.is_none() && needs_passing_score {
                // Nothing to grade, in this tenant: not the enrollment's missing course.
                return Err(AppError::NotFound("enrollment not found".into()));
            }
            let passing_score = match (&state, needs_passing_score) {
                (Some(enrollment), true) => {
                    self.passing_score(&mut conn, tenant, enrollment.course_id)
                        .await?
                }
                _ => None,
            };
            let decision = make(passing_score)?;
            let submission_id = match &decision {
                EnrollmentCommand::Submit { submission_id, .. } => Some(*submission_id),
                EnrollmentCommand::Grade { submission_id, .. } => Some(*submission_id),
                _ => None,
            };
            let events = EnrollmentAggregate::decide(&state, decision)?;
            let of = state.as_ref().map(|e| (e.trainee_id, e.course_id));
            let data_key = match of {
                Some((trainee, _))
                    if events.iter().any(|e| schema::is_personal(e.event_type())) =>
                {
                    let key = self
                        .trainee_key(&mut conn, tenant, trainee.as_uuid(), source)
                        .await?;
                    Some(key.ok_or_else(|| {
                        AppError::InvalidState("the trainee was forgotten".into())
                    })?)
                }
                _ => None,
            };
            let write = Write::enrollment(enrollment_id, &stream[..], events, of)
                .sealed_with(data_key)
                .with_result(CommandResult { submission_id });
            self.commit(conn, command, write).await
        })
        .await
    }
}

/// What commands read besides their stream, remembered where it cannot change.
impl Commands {
    /// A course's passing score (`None`: no such course). It never changes, so it is read once.
    async fn passing_score(
        &self,
        conn: &mut Conn,
        tenant: TenantId,
        course: CourseId,
    ) -> Result<Option<Score>, AppError> {
        if let Some(score) = self.recent.passing_score(tenant, course) {
            return Ok(Some(score));
        }
        let Some(stored) = projections::passing_score(conn, tenant, course).await? else {
            return Ok(None);
        };
        let score = Score::parse("passingScore", i64::from(stored))?;
        self.recent.store_passing_score(tenant, course, score);
        Ok(Some(score))
    }

    /// The data key that seals a write's personal data for `trainee`: on [`Source::Recent`] the
    /// key this server last wrote or read, without a read; else the stored one (or a new one,
    /// which the write stores). A key that is not (or no longer) the stored one refuses the
    /// write, which then runs again on [`Source::Stored`]. `None`: the trainee was forgotten.
    async fn trainee_key(
        &self,
        conn: &mut Conn,
        tenant: TenantId,
        trainee: Uuid,
        source: Source,
    ) -> Result<Option<TraineeKey>, AppError> {
        if source == Source::Recent
            && let Some(key) = self.recent.trainee_key(tenant, trainee)
        {
            return Ok(Some(key));
        }
        let key = store::personal::trainee_key(conn, &self.rt.keys, tenant, trainee).await?;
        if let Some(key) = key.as_ref().filter(|key| !key.new) {
            self.recent.store_trainee_key(tenant, trainee, key.clone());
        }
        Ok(key)
    }
}
