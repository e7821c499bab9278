//! The projection rows as pure folds over one stream's events. Both the live path (append, then
//! upsert the stream's new row) and the rebuild path (replay the log, then bulk-load) compute
//! rows here, which is why a rebuild reproduces the live tables exactly.

use crate::domain::enrollment::EnrollmentStatus;
use crate::domain::events::{CourseRegistered, TestGraded};
use crate::domain::{CourseId, EnrollmentId, Event, EventType, SubmissionId, TraineeId, schema};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Personal event types whose personal fields no row holds (a submission's answers): a rebuild
/// replays them unopened, without reading their trainees' keys or decrypting anything.
pub const UNSTORED_PERSONAL: &[EventType] = &[EventType::TestSubmitted];

/// Where an event sits in its stream, as far as the projections care.
#[derive(Debug, Clone, Copy)]
pub struct EventPlace {
    pub stream_id: Uuid,
    pub version: i32,
    pub recorded_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CourseRow {
    pub course_id: CourseId,
    pub code: String,
    pub title: String,
    pub passing_score: i16,
    pub retired: bool,
    pub created_at: DateTime<Utc>,
    pub retired_at: Option<DateTime<Utc>>,
    pub version: i32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TraineeRow {
    pub trainee_id: TraineeId,
    pub email: String,
    pub name: String,
    pub registered_at: DateTime<Utc>,
    pub version: i32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EnrollmentRow {
    pub enrollment_id: EnrollmentId,
    pub course_id: CourseId,
    pub trainee_id: TraineeId,
    pub status: EnrollmentStatus,
    pub registered_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub withdrawn_at: Option<DateTime<Utc>>,
    pub withdrawal_reason: Option<String>,
    pub submission_count: i32,
    pub best_score: Option<i16>,
    pub passed_at: Option<DateTime<Utc>>,
    pub version: i32,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SubmissionRow {
    pub submission_id: SubmissionId,
    pub enrollment_id: EnrollmentId,
    pub submitted_at: DateTime<Utc>,
    pub score: Option<i16>,
    pub passed: Option<bool>,
    pub graded_at: Option<DateTime<Utc>>,
}

/// Every row one stream contributes to the projections.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamRows {
    pub course: Option<CourseRow>,
    pub trainee: Option<TraineeRow>,
    pub enrollment: Option<EnrollmentRow>,
    pub submissions: Vec<SubmissionRow>,
}

impl StreamRows {
    /// Folds one more event of this stream into its rows.
    pub fn apply(&mut self, place: EventPlace, event: &Event) {
        let at = place.recorded_at;
        match event {
            Event::CourseCreated(created) => {
                self.course = Some(CourseRow {
                    course_id: CourseId::from_uuid(place.stream_id),
                    code: created.code.as_str().to_owned(),
                    title: created.title.as_str().to_owned(),
                    passing_score: i16::from(created.passing_score.value()),
                    retired: false,
                    created_at: at,
                    retired_at: None,
                    version: place.version,
                })
            }
            Event::CourseRetired(_) => {
                if let Some(course) = &mut self.course {
                    course.retired = true;
                    course.retired_at = Some(at);
                    course.version = place.version;
                }
            }
            Event::TraineeRegistered(registered) => {
                self.trainee = Some(TraineeRow {
                    trainee_id: TraineeId::from_uuid(place.stream_id),
                    email: registered.email.as_str().to_owned(),
                    name: registered.name.as_str().to_owned(),
                    registered_at: at,
                    version: place.version,
                })
            }
            Event::TraineeForgotten(_) => {
                if let Some(trainee) = &mut self.trainee {
                    trainee.email = schema::forgotten_email(place.stream_id);
                    trainee.name = schema::FORGOTTEN_NAME.to_owned();
                    trainee.version = place.version;
                }
            }
            Event::CourseRegistered(registered) => {
                self.enrollment = Some(EnrollmentRow::registered(place, registered));
            }
            Event::CourseStarted(_) => self.update_enrollment(place, |row| {
                row.status = EnrollmentStatus::Started;
                row.started_at = Some(at);
            }),
            Event::TestSubmitted(submitted) => {
                let enrollment_id = EnrollmentId::from_uuid(place.stream_id);
                self.submissions.push(SubmissionRow {
                    submission_id: submitted.submission_id,
                    enrollment_id,
                    submitted_at: at,
                    score: None,
                    passed: None,
                    graded_at: None,
                });
                self.update_enrollment(place, |row| row.submission_count += 1);
            }
            Event::TestGraded(graded) => self.grade(place, graded),
            Event::CourseCompleted(_) => self.update_enrollment(place, |row| {
                row.status = EnrollmentStatus::Completed;
                row.completed_at = Some(at);
            }),
            Event::RegistrationWithdrawn(withdrawn) => self.update_enrollment(place, |row| {
                row.status = EnrollmentStatus::Withdrawn;
                row.withdrawn_at = Some(at);
                row.withdrawal_reason = withdrawn.reason.as_ref().map(|r| r.as_str().to_owned());
            }),
        }
    }

    /// A grade: on its submission's row, and the enrollment's best score and first pass.
    fn grade(&mut self, place: EventPlace, graded: &TestGraded) {
        let (at, score) = (place.recorded_at, i16::from(graded.score.value()));
        if let Some(submission) = self
            .submissions
            .iter_mut()
            .find(|s| s.submission_id == graded.submission_id)
        {
            submission.score = Some(score);
            submission.passed = Some(graded.passed);
            submission.graded_at = Some(at);
        }
        self.update_enrollment(place, |row| {
            row.best_score = Some(row.best_score.map_or(score, |best| best.max(score)));
            if graded.passed && row.passed_at.is_none() {
                row.passed_at = Some(at);
            }
        });
    }

    fn update_enrollment(&mut self, place: EventPlace, change: impl FnOnce(&mut EnrollmentRow)) {
        if let Some(row) = &mut self.enrollment {
            change(row);
            row.version = place.version;
            row.updated_at = place.recorded_at;
        }
    }
}

impl EnrollmentRow {
    /// A new enrollment's row.
    fn registered(place: EventPlace, registered: &CourseRegistered) -> Self {
        let at = place.recorded_at;
        EnrollmentRow {
            enrollment_id: EnrollmentId::from_uuid(place.stream_id),
            course_id: registered.course_id,
            trainee_id: registered.trainee_id,
            status: EnrollmentStatus::Registered,
            registered_at: at,
            started_at: None,
            completed_at: None,
            withdrawn_at: None,
            withdrawal_reason: None,
            submission_count: 0,
            best_score: None,
            passed_at: None,
            version: place.version,
            updated_at: at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::events::{CourseRegistered, CourseStarted, TestGraded, TestSubmitted};
    use crate::domain::values::{Answers, Score};

    #[test]
    fn an_enrollment_row_follows_its_stream() {
        let stream_id = Uuid::now_v7();
        let submission_id = SubmissionId::generate();
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let events = [
            Event::CourseRegistered(CourseRegistered {
                course_id: CourseId::generate(),
                trainee_id: TraineeId::generate(),
            }),
            Event::CourseStarted(CourseStarted {}),
            Event::TestSubmitted(TestSubmitted {
                submission_id,
                answers: Answers::parse(serde_json::json!({})).unwrap(),
            }),
            Event::TestGraded(TestGraded {
                submission_id,
                score: Score::parse("s", 88).unwrap(),
                passed: true,
            }),
        ];
        let mut rows = StreamRows::default();
        for (i, event) in events.iter().enumerate() {
            let place = EventPlace {
                stream_id,
                version: i as i32 + 1,
                recorded_at: t0 + chrono::Duration::seconds(i as i64),
            };
            rows.apply(place, event);
        }
        let row = rows.enrollment.unwrap();
        assert_eq!(row.status, EnrollmentStatus::Started);
        assert_eq!(row.version, 4);
        assert_eq!(row.submission_count, 1);
        assert_eq!(row.best_score, Some(88));
        assert_eq!(row.passed_at, Some(t0 + chrono::Duration::seconds(3)));
        assert_eq!(rows.submissions[0].score, Some(88));
    }
}
