//! The enrollment stream: one registration of a trainee for a course, walked through
//! register → start → submit → grade → complete (or withdrawn on the way).

use super::events::{
    CourseCompleted, CourseRegistered, CourseStarted, Event, RegistrationWithdrawn, StreamType,
    TestGraded, TestSubmitted,
};
use super::ids::{CourseId, SubmissionId, TraineeId};
use super::values::{Answers, Score, WithdrawalReason};
use super::{Aggregate, DomainError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EnrollmentStatus {
    Registered,
    Started,
    Completed,
    Withdrawn,
}

impl EnrollmentStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            EnrollmentStatus::Registered => "REGISTERED",
            EnrollmentStatus::Started => "STARTED",
            EnrollmentStatus::Completed => "COMPLETED",
            EnrollmentStatus::Withdrawn => "WITHDRAWN",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [
            EnrollmentStatus::Registered,
            EnrollmentStatus::Started,
            EnrollmentStatus::Completed,
            EnrollmentStatus::Withdrawn,
        ]
        .into_iter()
        .find(|s| s.as_str() == raw)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grade {
    pub score: Score,
    pub passed: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    pub id: SubmissionId,
    pub grade: Option<Grade>,
}

/// What an enrollment stream has established.
#[derive(Debug, Clone, PartialEq)]
pub struct Enrollment {
    pub course_id: CourseId,
    pub trainee_id: TraineeId,
    pub status: EnrollmentStatus,
    pub submissions: Vec<Submission>,
}

impl Enrollment {
    pub fn has_passed(&self) -> bool {
        self.submissions
            .iter()
            .any(|s| s.grade.is_some_and(|g| g.passed))
    }
}

/// What the registration decision needs to know about the course, looked up by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CourseFacts {
    pub retired: bool,
}

pub enum EnrollmentCommand {
    Register {
        course_id: CourseId,
        trainee_id: TraineeId,
        /// `None` when the course does not exist.
        course: Option<CourseFacts>,
        trainee_exists: bool,
        /// Whether the trainee has an active (not withdrawn) enrollment in the course. The
        /// enrollments projection's unique index enforces the same rule against races.
        has_active_enrollment: bool,
    },
    Start,
    Submit {
        submission_id: SubmissionId,
        answers: Answers,
    },
    Grade {
        submission_id: SubmissionId,
        score: Score,
        /// The course's passing score, looked up by the caller.
        passing_score: Score,
    },
    Complete,
    Withdraw {
        reason: Option<WithdrawalReason>,
    },
}

pub struct EnrollmentAggregate;

fn invalid(message: &str) -> DomainError {
    DomainError::InvalidState(message.to_owned())
}

impl Aggregate for EnrollmentAggregate {
    type State = Option<Enrollment>;
    type Command = EnrollmentCommand;
    const STREAM_TYPE: StreamType = StreamType::Enrollment;

    fn evolve(state: Option<Enrollment>, event: &Event) -> Option<Enrollment> {
        if let Event::CourseRegistered(registered) = event {
            return Some(Enrollment {
                course_id: registered.course_id,
                trainee_id: registered.trainee_id,
                status: EnrollmentStatus::Registered,
                submissions: Vec::new(),
            });
        }
        let mut enrollment = state?;
        match event {
            Event::CourseStarted(_) => enrollment.status = EnrollmentStatus::Started,
            Event::TestSubmitted(submitted) => enrollment.submissions.push(Submission {
                id: submitted.submission_id,
                grade: None,
            }),
            Event::TestGraded(graded) => {
                if let Some(submission) = enrollment
                    .submissions
                    .iter_mut()
                    .find(|s| s.id == graded.submission_id)
                {
                    submission.grade = Some(Grade {
                        score: graded.score,
                        passed: graded.passed,
                    });
                }
            }
            Event::CourseCompleted(_) => enrollment.status = EnrollmentStatus::Completed,
            Event::RegistrationWithdrawn(_) => enrollment.status = EnrollmentStatus::Withdrawn,
            _ => {}
        }
        Some(enrollment)
    }

    fn decide(
        state: &Option<Enrollment>,
        command: EnrollmentCommand,
    ) -> Result<Vec<Event>, DomainError> {
        match (state, command) {
            (
                None,
                EnrollmentCommand::Register {
                    course_id,
                    trainee_id,
                    course,
                    trainee_exists,
                    has_active_enrollment,
                },
            ) => {
                let course =
                    course.ok_or_else(|| DomainError::NotFound("course not found".into()))?;
                if course.retired {
                    return Err(invalid(
                        "the course is retired and takes no new registrations",
                    ));
                }
                if !trainee_exists {
                    return Err(DomainError::NotFound("trainee not found".into()));
                }
                if has_active_enrollment {
                    return Err(DomainError::AlreadyRegistered);
                }
                Ok(vec![Event::CourseRegistered(CourseRegistered {
                    course_id,
                    trainee_id,
                })])
            }
            (Some(_), EnrollmentCommand::Register { .. }) => Err(DomainError::AlreadyExists(
                "the enrollment exists already".into(),
            )),
            (None, _) => Err(DomainError::NotFound("enrollment not found".into())),
            (Some(enrollment), command) => decide_on(enrollment, command),
        }
    }
}

/// A command on an enrollment that exists (every command but `Register`).
fn decide_on(
    enrollment: &Enrollment,
    command: EnrollmentCommand,
) -> Result<Vec<Event>, DomainError> {
    use EnrollmentStatus as S;
    match command {
        EnrollmentCommand::Register { .. } => Err(DomainError::AlreadyExists(
            "the enrollment exists already".into(),
        )),
        EnrollmentCommand::Start => match enrollment.status {
            S::Registered => Ok(vec![Event::CourseStarted(CourseStarted {})]),
            S::Started => Err(invalid("the course has been started already")),
            S::Completed => Err(invalid("the course has been completed already")),
            S::Withdrawn => Err(invalid("the registration has been withdrawn")),
        },
        EnrollmentCommand::Submit {
            submission_id,
            answers,
        } => submit(enrollment, submission_id, answers),
        EnrollmentCommand::Grade {
            submission_id,
            score,
            passing_score,
        } => grade(enrollment, submission_id, score, passing_score),
        EnrollmentCommand::Complete => match enrollment.status {
            S::Completed => Err(invalid("the course has been completed already")),
            S::Withdrawn => Err(invalid("the registration has been withdrawn")),
            S::Registered | S::Started if !enrollment.has_passed() => {
                Err(invalid("completing the course requires a passing grade"))
            }
            S::Registered | S::Started => Ok(vec![Event::CourseCompleted(CourseCompleted {})]),
        },
        EnrollmentCommand::Withdraw { reason } => match enrollment.status {
            S::Registered | S::Started => {
                Ok(vec![Event::RegistrationWithdrawn(RegistrationWithdrawn {
                    reason,
                })])
            }
            S::Completed => Err(invalid("a completed course cannot be withdrawn from")),
            S::Withdrawn => Err(invalid("the registration has been withdrawn already")),
        },
    }
}

fn submit(
    enrollment: &Enrollment,
    submission_id: SubmissionId,
    answers: Answers,
) -> Result<Vec<Event>, DomainError> {
    use EnrollmentStatus as S;
    match enrollment.status {
        S::Started => {
            if enrollment.submissions.iter().any(|s| s.id == submission_id) {
                return Err(DomainError::AlreadyExists(
                    "a submission with this id exists already".into(),
                ));
            }
            Ok(vec![Event::TestSubmitted(TestSubmitted {
                submission_id,
                answers,
            })])
        }
        S::Registered => Err(invalid(
            "the course must be started before submitting a test",
        )),
        S::Completed => Err(invalid("the course has been completed already")),
        S::Withdrawn => Err(invalid("the registration has been withdrawn")),
    }
}

fn grade(
    enrollment: &Enrollment,
    submission_id: SubmissionId,
    score: Score,
    passing_score: Score,
) -> Result<Vec<Event>, DomainError> {
    if enrollment.status == EnrollmentStatus::Withdrawn {
        return Err(invalid("the registration has been withdrawn"));
    }
    let submission = enrollment
        .submissions
        .iter()
        .find(|s| s.id == submission_id)
        .ok_or_else(|| invalid("no such submission in this enrollment"))?;
    if submission.grade.is_some() {
        return Err(invalid("the submission has been graded already"));
    }
    Ok(vec![Event::TestGraded(TestGraded {
        submission_id,
        score,
        passed: score >= passing_score,
    })])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::spec::given_when;
    use EnrollmentCommand as C;

    fn score(value: i64) -> Score {
        Score::parse("score", value).unwrap()
    }

    struct Given {
        course_id: CourseId,
        trainee_id: TraineeId,
        submission: SubmissionId,
    }

    impl Given {
        fn new() -> Self {
            Self {
                course_id: CourseId::generate(),
                trainee_id: TraineeId::generate(),
                submission: SubmissionId::generate(),
            }
        }
        fn register(&self) -> C {
            self.register_with(Some(CourseFacts { retired: false }), true, false)
        }
        fn register_with(
            &self,
            course: Option<CourseFacts>,
            trainee_exists: bool,
            has_active_enrollment: bool,
        ) -> C {
            C::Register {
                course_id: self.course_id,
                trainee_id: self.trainee_id,
                course,
                trainee_exists,
                has_active_enrollment,
            }
        }
        fn registered(&self) -> Vec<Event> {
            vec![Event::CourseRegistered(CourseRegistered {
                course_id: self.course_id,
                trainee_id: self.trainee_id,
            })]
        }
        fn started(&self) -> Vec<Event> {
            let mut events = self.registered();
            events.push(Event::CourseStarted(CourseStarted {}));
            events
        }
        fn submitted(&self) -> Vec<Event> {
            let mut events = self.started();
            events.push(Event::TestSubmitted(TestSubmitted {
                submission_id: self.submission,
                answers: Answers::parse(serde_json::json!({"q1": "a"})).unwrap(),
            }));
            events
        }
        fn graded(&self, value: i64, passed: bool) -> Vec<Event> {
            let mut events = self.submitted();
            events.push(Event::TestGraded(TestGraded {
                submission_id: self.submission,
                score: score(value),
                passed,
            }));
            events
        }
        fn completed(&self) -> Vec<Event> {
            let mut events = self.graded(90, true);
            events.push(Event::CourseCompleted(CourseCompleted {}));
            events
        }
        fn withdrawn(&self) -> Vec<Event> {
            let mut events = self.registered();
            events.push(Event::RegistrationWithdrawn(RegistrationWithdrawn {
                reason: None,
            }));
            events
        }
        fn submit(&self) -> C {
            C::Submit {
                submission_id: SubmissionId::generate(),
                answers: Answers::parse(serde_json::json!({"q1": "b"})).unwrap(),
            }
        }
        fn grade(&self, value: i64) -> C {
            C::Grade {
                submission_id: self.submission,
                score: score(value),
                passing_score: score(70),
            }
        }
    }

    fn assert_invalid(result: Result<Vec<Event>, DomainError>, why: &str) {
        match result {
            Err(DomainError::InvalidState(message)) => {
                assert!(
                    message.contains(why),
                    "message {message:?} should say {why:?}"
                )
            }
            other => panic!("expected INVALID_STATE ({why}), got {other:?}"),
        }
    }

    #[test]
    fn registration_records_course_and_trainee() {
        let g = Given::new();
        let events = given_when::<EnrollmentAggregate>(&[], g.register()).unwrap();
        assert_eq!(events, g.registered());
    }

    #[test]
    fn registration_needs_an_existing_active_course_and_trainee() {
        let g = Given::new();
        let missing_course = g.register_with(None, true, false);
        assert!(matches!(
            given_when::<EnrollmentAggregate>(&[], missing_course),
            Err(DomainError::NotFound(m)) if m.contains("course")
        ));
        let retired = g.register_with(Some(CourseFacts { retired: true }), true, false);
        assert_invalid(given_when::<EnrollmentAggregate>(&[], retired), "retired");
        let missing_trainee = g.register_with(Some(CourseFacts { retired: false }), false, false);
        assert!(matches!(
            given_when::<EnrollmentAggregate>(&[], missing_trainee),
            Err(DomainError::NotFound(m)) if m.contains("trainee")
        ));
    }

    #[test]
    fn a_second_active_registration_is_refused() {
        let g = Given::new();
        let again = g.register_with(Some(CourseFacts { retired: false }), true, true);
        assert_eq!(
            given_when::<EnrollmentAggregate>(&[], again),
            Err(DomainError::AlreadyRegistered)
        );
        assert!(matches!(
            given_when::<EnrollmentAggregate>(&g.registered(), g.register()),
            Err(DomainError::AlreadyExists(_))
        ));
    }

    #[test]
    fn commands_on_a_missing_enrollment_are_not_found() {
        for command in [C::Start, C::Complete, C::Withdraw { reason: None }] {
            assert!(matches!(
                given_when::<EnrollmentAggregate>(&[], command),
                Err(DomainError::NotFound(_))
            ));
        }
    }

    #[test]
    fn start_only_once_after_registration() {
        let g = Given::new();
        let events = given_when::<EnrollmentAggregate>(&g.registered(), C::Start).unwrap();
        assert_eq!(events, vec![Event::CourseStarted(CourseStarted {})]);
        assert_invalid(
            given_when::<EnrollmentAggregate>(&g.started(), C::Start),
            "started already",
        );
        assert_invalid(
            given_when::<EnrollmentAggregate>(&g.completed(), C::Start),
            "completed",
        );
        assert_invalid(
            given_when::<EnrollmentAggregate>(&g.withdrawn(), C::Start),
            "withdrawn",
        );
    }

    #[test]
    fn submit_requires_started_and_not_completed() {
        let g = Given::new();
        let events = given_when::<EnrollmentAggregate>(&g.started(), g.submit()).unwrap();
        assert!(matches!(&events[..], [Event::TestSubmitted(_)]));
        assert_invalid(
            given_when::<EnrollmentAggregate>(&g.registered(), g.submit()),
            "started before",
        );
        assert_invalid(
            given_when::<EnrollmentAggregate>(&g.completed(), g.submit()),
            "completed",
        );
        assert_invalid(
            given_when::<EnrollmentAggregate>(&g.withdrawn(), g.submit()),
            "withdrawn",
        );
        // A resubmission after a failed grade is allowed: trainees may retake a test.
        assert!(given_when::<EnrollmentAggregate>(&g.graded(10, false), g.submit()).is_ok());
    }

    #[test]
    fn grading_decides_pass_from_the_passing_score() {
        let g = Given::new();
        let pass = given_when::<EnrollmentAggregate>(&g.submitted(), g.grade(70)).unwrap();
        assert!(matches!(&pass[..], [Event::TestGraded(t)] if t.passed && t.score.value() == 70));
        let fail = given_when::<EnrollmentAggregate>(&g.submitted(), g.grade(69)).unwrap();
        assert!(matches!(&fail[..], [Event::TestGraded(t)] if !t.passed));
    }

    #[test]
    fn grading_needs_an_ungraded_submission() {
        let g = Given::new();
        assert_invalid(
            given_when::<EnrollmentAggregate>(&g.started(), g.grade(80)),
            "no such submission",
        );
        assert_invalid(
            given_when::<EnrollmentAggregate>(&g.graded(80, true), g.grade(80)),
            "graded already",
        );
        let mut withdrawn = g.submitted();
        withdrawn.push(Event::RegistrationWithdrawn(RegistrationWithdrawn {
            reason: None,
        }));
        assert_invalid(
            given_when::<EnrollmentAggregate>(&withdrawn, g.grade(80)),
            "withdrawn",
        );
    }

    #[test]
    fn completion_requires_a_passing_grade_once() {
        let g = Given::new();
        assert_invalid(
            given_when::<EnrollmentAggregate>(&g.submitted(), C::Complete),
            "passing grade",
        );
        assert_invalid(
            given_when::<EnrollmentAggregate>(&g.graded(10, false), C::Complete),
            "passing grade",
        );
        let events = given_when::<EnrollmentAggregate>(&g.graded(90, true), C::Complete).unwrap();
        assert_eq!(events, vec![Event::CourseCompleted(CourseCompleted {})]);
        assert_invalid(
            given_when::<EnrollmentAggregate>(&g.completed(), C::Complete),
            "completed already",
        );
    }

    #[test]
    fn withdrawal_before_completion_only() {
        let g = Given::new();
        assert!(
            given_when::<EnrollmentAggregate>(&g.registered(), C::Withdraw { reason: None })
                .is_ok()
        );
        assert!(
            given_when::<EnrollmentAggregate>(&g.started(), C::Withdraw { reason: None }).is_ok()
        );
        assert_invalid(
            given_when::<EnrollmentAggregate>(&g.completed(), C::Withdraw { reason: None }),
            "completed",
        );
        assert_invalid(
            given_when::<EnrollmentAggregate>(&g.withdrawn(), C::Withdraw { reason: None }),
            "withdrawn already",
        );
    }

    #[test]
    fn evolve_tracks_the_lifecycle() {
        let g = Given::new();
        let state = EnrollmentAggregate::fold(&g.completed()).unwrap();
        assert_eq!(state.status, EnrollmentStatus::Completed);
        assert!(state.has_passed());
        assert_eq!(state.submissions.len(), 1);
    }
}
