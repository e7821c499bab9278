//! The funnel report: per course, how many enrollments reached each lifecycle point, with
//! conversion rates, attempts until the first pass, and the first-attempt pass rate.

use super::Summary;
use crate::domain::events::DecodeError;
use crate::domain::{Event, EventType};
use crate::replay::{DataFor, Fold, ReplayEvent};
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

/// The counts of one course.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FunnelRow {
    pub course_id: Uuid,
    pub registered: u64,
    pub started: u64,
    pub submitted: u64,
    pub passed: u64,
    pub completed: u64,
    pub withdrawn: u64,
    /// Graded attempts up to and including the first passing one, per enrollment that passed.
    pub attempts_to_pass: Option<Summary>,
    /// Of the enrollments with at least one grade, the share whose first grade passed.
    pub first_attempt_pass_rate: Option<f64>,
}

impl FunnelRow {
    /// `numerator / denominator`, or `None` when nothing reached the earlier step.
    pub fn rate(numerator: u64, denominator: u64) -> Option<f64> {
        (denominator > 0).then(|| numerator as f64 / denominator as f64)
    }
}

#[derive(Default)]
struct Course {
    row: FunnelRow,
    attempts_to_pass: Vec<f64>,
    graded_enrollments: u64,
    passed_first_time: u64,
}

#[derive(Default)]
struct Enrollment {
    submitted: bool,
    graded_attempts: u32,
    passed: bool,
}

/// The fold. Memory: one small entry per enrollment that has not ended yet.
#[derive(Default)]
pub struct FunnelFold {
    open: HashMap<Uuid, Enrollment>,
    courses: HashMap<Uuid, Course>,
}

impl FunnelFold {
    pub fn new() -> Self {
        Self::default()
    }

    /// The enrollment events, with `TestGraded` data (did it pass?).
    pub fn event_types() -> Vec<EventType> {
        vec![
            EventType::CourseRegistered,
            EventType::CourseStarted,
            EventType::TestSubmitted,
            EventType::TestGraded,
            EventType::CourseCompleted,
            EventType::RegistrationWithdrawn,
        ]
    }

    pub fn data_for() -> DataFor {
        DataFor::Types(vec![EventType::TestGraded])
    }

    /// One row per course, ordered by course id.
    pub fn finish(self) -> Vec<FunnelRow> {
        let ordered: BTreeMap<Uuid, Course> = self.courses.into_iter().collect();
        ordered
            .into_iter()
            .map(|(course_id, mut course)| FunnelRow {
                course_id,
                attempts_to_pass: Summary::of(&mut course.attempts_to_pass),
                first_attempt_pass_rate: FunnelRow::rate(
                    course.passed_first_time,
                    course.graded_enrollments,
                ),
                ..course.row
            })
            .collect()
    }
}

impl Fold for FunnelFold {
    type Error = DecodeError;

    fn apply(&mut self, event: &ReplayEvent) -> Result<(), DecodeError> {
        let Some(course_id) = event.course_id else {
            return Ok(());
        };
        let course = self.courses.entry(course_id).or_default();
        course.row.course_id = course_id;
        let stream = event.stream_id;
        match event.event_type {
            EventType::CourseRegistered => {
                course.row.registered += 1;
                self.open.insert(stream, Enrollment::default());
            }
            EventType::CourseStarted => course.row.started += 1,
            EventType::TestSubmitted => {
                if let Some(enrollment) = self.open.get_mut(&stream)
                    && !enrollment.submitted
                {
                    enrollment.submitted = true;
                    course.row.submitted += 1;
                }
            }
            EventType::TestGraded => {
                let passed = matches!(event.decode()?, Event::TestGraded(g) if g.passed);
                if let Some(enrollment) = self.open.get_mut(&stream) {
                    if enrollment.passed {
                        return Ok(());
                    }
                    enrollment.graded_attempts += 1;
                    if enrollment.graded_attempts == 1 {
                        course.graded_enrollments += 1;
                        if passed {
                            course.passed_first_time += 1;
                        }
                    }
                    if passed {
                        enrollment.passed = true;
                        course.row.passed += 1;
                        course
                            .attempts_to_pass
                            .push(f64::from(enrollment.graded_attempts));
                    }
                }
            }
            EventType::CourseCompleted => {
                course.row.completed += 1;
                self.open.remove(&stream);
            }
            EventType::RegistrationWithdrawn => {
                course.row.withdrawn += 1;
                self.open.remove(&stream);
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::events::*;
    use crate::domain::values::{Answers, Score};
    use crate::domain::{CourseId, SubmissionId, TraineeId};
    use chrono::DateTime;

    #[test]
    fn counts_each_step_once_per_enrollment() {
        let course = Uuid::now_v7();
        let t0 = DateTime::from_timestamp(1_767_225_600, 0).unwrap();
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let sub = || {
            Event::TestSubmitted(TestSubmitted {
                submission_id: SubmissionId::generate(),
                answers: Answers::parse(serde_json::json!({})).unwrap(),
            })
        };
        let grade = |passed| {
            Event::TestGraded(TestGraded {
                submission_id: SubmissionId::generate(),
                score: Score::parse("s", 50).unwrap(),
                passed,
            })
        };
        let reg = || {
            Event::CourseRegistered(CourseRegistered {
                course_id: CourseId::generate(),
                trainee_id: TraineeId::generate(),
            })
        };
        let entries = vec![
            (a, reg()),
            (b, reg()),
            (c, reg()),
            (a, Event::CourseStarted(CourseStarted {})),
            (b, Event::CourseStarted(CourseStarted {})),
            (a, sub()),
            (a, grade(false)),
            (a, sub()),
            (a, grade(true)),
            (a, Event::CourseCompleted(CourseCompleted {})),
            (b, sub()),
            (b, sub()),
            (b, grade(true)),
            (
                c,
                Event::RegistrationWithdrawn(RegistrationWithdrawn { reason: None }),
            ),
        ];
        let mut fold = FunnelFold::new();
        for (i, (stream, event)) in entries.iter().enumerate() {
            fold.apply(&ReplayEvent::for_test(
                i as i64 + 1,
                *stream,
                event,
                t0,
                Some(course),
            ))
            .unwrap();
        }
        let rows = fold.finish();
        let row = &rows[0];
        assert_eq!(
            (
                row.registered,
                row.started,
                row.submitted,
                row.passed,
                row.completed,
                row.withdrawn
            ),
            (3, 2, 2, 2, 1, 1)
        );
        let attempts = row.attempts_to_pass.as_ref().unwrap();
        assert_eq!((attempts.min, attempts.max, attempts.mean), (1.0, 2.0, 1.5));
        assert_eq!(row.first_attempt_pass_rate, Some(0.5));
        assert_eq!(FunnelRow::rate(1, 0), None);
    }
}
