//! The duration report: per enrollment, the time from one lifecycle point to another, grouped
//! by course, by cohort month (the month of the `from` point) or not at all.

use super::{LifecyclePoint, Summary};
use crate::domain::events::DecodeError;
use crate::domain::{Event, EventType};
use crate::replay::{DataFor, Fold, ReplayEvent};
use chrono::{DateTime, Datelike, Utc};
use std::collections::{BTreeMap, HashMap, HashSet};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Course,
    CohortMonth,
    None,
}

/// A validated pair of points: `to` can follow `from` in a lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationSpec {
    pub from: LifecyclePoint,
    pub to: LifecyclePoint,
    pub group_by: GroupBy,
}

impl DurationSpec {
    /// Refuses pairs that can never be measured (`to` never follows `from`).
    pub fn new(
        from: LifecyclePoint,
        to: LifecyclePoint,
        group_by: GroupBy,
    ) -> Result<Self, String> {
        use LifecyclePoint as P;
        let order = |p: LifecyclePoint| match p {
            P::Registered => 0,
            P::Started => 1,
            P::FirstSubmission => 2,
            P::Passed => 3,
            P::Completed => 4,
            P::Withdrawn => 5,
        };
        let valid = match (from, to) {
            (P::Withdrawn, _) => false,
            (P::Completed, P::Withdrawn) => false,
            // A withdrawal can come after any point but completion.
            (_, P::Withdrawn) => true,
            _ => order(to) > order(from),
        };
        if valid {
            Ok(Self { from, to, group_by })
        } else {
            Err(format!(
                "{} never follows {} in an enrollment's lifecycle",
                to.as_str(),
                from.as_str()
            ))
        }
    }

    /// The event types this report reads: its two points, and the two ends of a lifecycle.
    pub fn event_types(&self) -> Vec<EventType> {
        let mut types = vec![
            self.from.event_type(),
            self.to.event_type(),
            EventType::CourseCompleted,
            EventType::RegistrationWithdrawn,
        ];
        types.sort();
        types.dedup();
        types
    }

    /// Whether an enrollment can reach `from` more than once (submissions and passing grades
    /// can repeat; the first counts).
    fn start_point_can_recur(&self) -> bool {
        matches!(
            self.from,
            LifecyclePoint::FirstSubmission | LifecyclePoint::Passed
        )
    }

    /// Only `TestGraded` data is ever needed (for `PASSED`: did the grade pass?).
    pub fn data_for(&self) -> DataFor {
        if self.from == LifecyclePoint::Passed || self.to == LifecyclePoint::Passed {
            DataFor::Types(vec![EventType::TestGraded])
        } else {
            DataFor::Types(Vec::new())
        }
    }
}

/// A group's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GroupKey {
    Course(Uuid),
    /// (year, month) of the `from` point.
    Month(i32, u32),
    All,
}

/// One row of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct DurationRow {
    pub key: GroupKey,
    /// Durations of the enrollments that reached both points; `None` if none did.
    pub summary: Option<Summary>,
    /// Reached `from`, not yet `to`, and still active.
    pub still_open: u64,
    /// Reached `from`, then ended (withdrawn or completed) without ever reaching `to`.
    pub ended_early: u64,
}

#[derive(Default)]
struct Group {
    durations: Vec<f64>,
    still_open: u64,
    ended_early: u64,
}

struct Open {
    key: GroupKey,
    from_at: DateTime<Utc>,
}

/// The fold. Memory: one entry per enrollment between `from` and `to`, plus one `f64` per
/// measured duration (needed for exact percentiles).
pub struct DurationFold {
    spec: DurationSpec,
    open: HashMap<Uuid, Open>,
    /// Streams measured already whose `from` point can happen again (a later submission or
    /// passing grade), kept until their lifecycle ends so they are not measured twice.
    measured: HashSet<Uuid>,
    groups: HashMap<GroupKey, Group>,
}

impl DurationFold {
    pub fn new(spec: DurationSpec) -> Self {
        Self {
            spec,
            open: HashMap::new(),
            measured: HashSet::new(),
            groups: HashMap::new(),
        }
    }

    /// Whether this event marks `point` (for `PASSED`, only a passing grade does).
    fn marks(point: LifecyclePoint, event: &ReplayEvent) -> Result<bool, DecodeError> {
        if event.event_type != point.event_type() {
            return Ok(false);
        }
        if point == LifecyclePoint::Passed {
            return Ok(matches!(event.decode()?, Event::TestGraded(graded) if graded.passed));
        }
        Ok(true)
    }

    fn key(&self, event: &ReplayEvent) -> GroupKey {
        match self.spec.group_by {
            GroupBy::Course => GroupKey::Course(event.course_id.unwrap_or_default()),
            GroupBy::CohortMonth => {
                GroupKey::Month(event.recorded_at.year(), event.recorded_at.month())
            }
            GroupBy::None => GroupKey::All,
        }
    }

    /// The report rows, ordered by key.
    pub fn finish(mut self) -> Vec<DurationRow> {
        for open in self.open.values() {
            self.groups.entry(open.key).or_default().still_open += 1;
        }
        let ordered: BTreeMap<GroupKey, Group> = self.groups.into_iter().collect();
        ordered
            .into_iter()
            .map(|(key, mut group)| DurationRow {
                key,
                summary: Summary::of(&mut group.durations),
                still_open: group.still_open,
                ended_early: group.ended_early,
            })
            .collect()
    }
}

impl Fold for DurationFold {
    type Error = DecodeError;

    fn apply(&mut self, event: &ReplayEvent) -> Result<(), DecodeError> {
        let stream = event.stream_id;
        let terminal = matches!(
            event.event_type,
            EventType::CourseCompleted | EventType::RegistrationWithdrawn
        );
        if self.open.contains_key(&stream) {
            if Self::marks(self.spec.to, event)? {
                if let Some(open) = self.open.remove(&stream) {
                    let micros = (event.recorded_at - open.from_at)
                        .num_microseconds()
                        .unwrap_or(i64::MAX);
                    let group = self.groups.entry(open.key).or_default();
                    group.durations.push(micros as f64 / 1e6);
                }
                if !terminal && self.spec.start_point_can_recur() {
                    self.measured.insert(stream);
                }
            } else if terminal && let Some(open) = self.open.remove(&stream) {
                self.groups.entry(open.key).or_default().ended_early += 1;
            }
        } else if terminal {
            // Nothing follows the end of a lifecycle: forget the stream.
            self.measured.remove(&stream);
        } else if !self.measured.contains(&stream) && Self::marks(self.spec.from, event)? {
            let key = self.key(event);
            self.open.insert(
                stream,
                Open {
                    key,
                    from_at: event.recorded_at,
                },
            );
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

    /// Builds a position-ordered list of events: (stream, course, event, seconds since t0).
    fn log(entries: &[(Uuid, Uuid, Event, i64)]) -> Vec<ReplayEvent> {
        let t0 = DateTime::from_timestamp(1_767_225_600, 0).unwrap(); // 2026-01-01
        entries
            .iter()
            .enumerate()
            .map(|(i, (stream, course, event, at))| {
                ReplayEvent::for_test(
                    i as i64 + 1,
                    *stream,
                    event,
                    t0 + chrono::Duration::seconds(*at),
                    Some(*course),
                )
            })
            .collect()
    }

    fn run(spec: DurationSpec, events: &[ReplayEvent]) -> Vec<DurationRow> {
        let mut fold = DurationFold::new(spec);
        let wanted = spec.event_types();
        for event in events.iter().filter(|e| wanted.contains(&e.event_type)) {
            fold.apply(event).unwrap();
        }
        fold.finish()
    }

    fn registered() -> Event {
        Event::CourseRegistered(CourseRegistered {
            course_id: CourseId::generate(),
            trainee_id: TraineeId::generate(),
        })
    }
    fn started() -> Event {
        Event::CourseStarted(CourseStarted {})
    }
    fn completed() -> Event {
        Event::CourseCompleted(CourseCompleted {})
    }
    fn withdrawn() -> Event {
        Event::RegistrationWithdrawn(RegistrationWithdrawn { reason: None })
    }
    fn submitted() -> Event {
        Event::TestSubmitted(TestSubmitted {
            submission_id: SubmissionId::generate(),
            answers: Answers::parse(serde_json::json!({})).unwrap(),
        })
    }
    fn graded(passed: bool) -> Event {
        Event::TestGraded(TestGraded {
            submission_id: SubmissionId::generate(),
            score: Score::parse("s", if passed { 90 } else { 10 }).unwrap(),
            passed,
        })
    }

    #[test]
    fn start_to_completion_per_course() {
        let (c1, c2) = (Uuid::now_v7(), Uuid::now_v7());
        let (a, b, c, d, e) = (
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
        );
        let events = log(&[
            (a, c1, registered(), 0),
            (a, c1, started(), 10),
            (b, c1, started(), 20),
            (c, c2, started(), 30),
            (a, c1, completed(), 110), // 100 s
            (b, c1, completed(), 320), // 300 s
            (d, c2, registered(), 40), // never started: not counted anywhere
            (e, c2, started(), 50),
            (e, c2, withdrawn(), 60), // ended early
        ]);
        let spec = DurationSpec::new(
            LifecyclePoint::Started,
            LifecyclePoint::Completed,
            GroupBy::Course,
        )
        .unwrap();
        let rows = run(spec, &events);
        let row = |course| {
            rows.iter()
                .find(|r| r.key == GroupKey::Course(course))
                .unwrap()
        };
        let s1 = row(c1).summary.clone().unwrap();
        assert_eq!(
            (s1.count, s1.min, s1.max, s1.mean, s1.median),
            (2, 100.0, 300.0, 200.0, 200.0)
        );
        assert_eq!(row(c1).still_open, 0);
        assert_eq!(row(c2).summary, None);
        assert_eq!((row(c2).still_open, row(c2).ended_early), (1, 1));
    }

    #[test]
    fn passed_uses_the_first_passing_grade_and_cohorts_by_month_of_from() {
        let course = Uuid::now_v7();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let day = 86_400;
        let events = log(&[
            (a, course, registered(), 0),
            (b, course, registered(), 40 * day), // February cohort
            (a, course, submitted(), 5),
            (a, course, graded(false), 6),
            (a, course, graded(true), 3600), // passes one hour after registering
            (b, course, submitted(), 40 * day + 10),
            (b, course, graded(true), 40 * day + 70),
        ]);
        let spec = DurationSpec::new(
            LifecyclePoint::Registered,
            LifecyclePoint::Passed,
            GroupBy::CohortMonth,
        )
        .unwrap();
        let rows = run(spec, &events);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].key, GroupKey::Month(2026, 1));
        assert_eq!(rows[0].summary.as_ref().unwrap().max, 3600.0);
        assert_eq!(rows[1].key, GroupKey::Month(2026, 2));
        assert_eq!(rows[1].summary.as_ref().unwrap().max, 70.0);
    }

    #[test]
    fn a_second_submission_does_not_open_a_measured_enrollment_again() {
        let course = Uuid::now_v7();
        let a = Uuid::now_v7();
        let events = log(&[
            (a, course, submitted(), 0),
            (a, course, graded(true), 30),
            (a, course, submitted(), 40),
        ]);
        let spec = DurationSpec::new(
            LifecyclePoint::FirstSubmission,
            LifecyclePoint::Passed,
            GroupBy::None,
        )
        .unwrap();
        let rows = run(spec, &events);
        assert_eq!(rows[0].summary.as_ref().unwrap().count, 1);
        assert_eq!(rows[0].still_open, 0);
    }

    #[test]
    fn impossible_pairs_are_refused() {
        use LifecyclePoint as P;
        assert!(DurationSpec::new(P::Completed, P::Started, GroupBy::None).is_err());
        assert!(DurationSpec::new(P::Started, P::Started, GroupBy::None).is_err());
        assert!(DurationSpec::new(P::Withdrawn, P::Completed, GroupBy::None).is_err());
        assert!(DurationSpec::new(P::Completed, P::Withdrawn, GroupBy::None).is_err());
        assert!(DurationSpec::new(P::Started, P::Withdrawn, GroupBy::None).is_ok());
    }

    #[test]
    fn to_withdrawn_measures_time_to_drop_out() {
        let course = Uuid::now_v7();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let events = log(&[
            (a, course, registered(), 0),
            (b, course, registered(), 0),
            (a, course, withdrawn(), 50),
            (b, course, started(), 1),
        ]);
        let spec = DurationSpec::new(
            LifecyclePoint::Registered,
            LifecyclePoint::Withdrawn,
            GroupBy::None,
        )
        .unwrap();
        let rows = run(spec, &events);
        assert_eq!(rows[0].summary.as_ref().unwrap().count, 1);
        assert_eq!(rows[0].still_open, 1);
    }
}
