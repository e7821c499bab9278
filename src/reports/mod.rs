//! Reports: pure folds over a tenant's events in position order, fed by the replay engine.
//! They never read projection tables and do no I/O, so they are tested with plain event lists.
//! Memory grows with the number of enrollments still open, not with the number of events.

pub mod duration;
pub mod funnel;

use crate::domain::EventType;

/// A point in an enrollment's lifecycle that reports measure between.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LifecyclePoint {
    Registered,
    Started,
    FirstSubmission,
    Passed,
    Completed,
    Withdrawn,
}

impl LifecyclePoint {
    pub const ALL: [LifecyclePoint; 6] = [
        LifecyclePoint::Registered,
        LifecyclePoint::Started,
        LifecyclePoint::FirstSubmission,
        LifecyclePoint::Passed,
        LifecyclePoint::Completed,
        LifecyclePoint::Withdrawn,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            LifecyclePoint::Registered => "REGISTERED",
            LifecyclePoint::Started => "STARTED",
            LifecyclePoint::FirstSubmission => "FIRST_SUBMISSION",
            LifecyclePoint::Passed => "PASSED",
            LifecyclePoint::Completed => "COMPLETED",
            LifecyclePoint::Withdrawn => "WITHDRAWN",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        let wanted = raw.trim().to_ascii_uppercase().replace('-', "_");
        Self::ALL.into_iter().find(|p| p.as_str() == wanted)
    }

    /// The event that marks this point (the first such event of an enrollment; for `Passed`,
    /// the first `TestGraded` with `passed: true`).
    pub const fn event_type(self) -> EventType {
        match self {
            LifecyclePoint::Registered => EventType::CourseRegistered,
            LifecyclePoint::Started => EventType::CourseStarted,
            LifecyclePoint::FirstSubmission => EventType::TestSubmitted,
            LifecyclePoint::Passed => EventType::TestGraded,
            LifecyclePoint::Completed => EventType::CourseCompleted,
            LifecyclePoint::Withdrawn => EventType::RegistrationWithdrawn,
        }
    }
}

/// Summary statistics of a set of durations, in seconds. Percentiles interpolate linearly
/// between the closest ranks — the definition of PostgreSQL's `percentile_cont`, so a report
/// can be checked against SQL exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub count: u64,
    pub mean: f64,
    pub median: f64,
    pub p75: f64,
    pub p90: f64,
    pub min: f64,
    pub max: f64,
}

impl Summary {
    /// `None` for no values. Sorts `values` in place.
    pub fn of(values: &mut [f64]) -> Option<Summary> {
        if values.is_empty() {
            return None;
        }
        values.sort_unstable_by(f64::total_cmp);
        let sum: f64 = values.iter().sum();
        Some(Summary {
            count: values.len() as u64,
            mean: sum / values.len() as f64,
            median: percentile_cont(values, 0.5),
            p75: percentile_cont(values, 0.75),
            p90: percentile_cont(values, 0.9),
            min: values[0],
            max: values[values.len() - 1],
        })
    }
}

/// PostgreSQL's `percentile_cont` on sorted, non-empty values. (Written here rather than taken
/// from a statistics crate because those use other interpolation rules, and reports must match
/// what a SQL user computes.)
fn percentile_cont(sorted: &[f64], fraction: f64) -> f64 {
    let rank = fraction * (sorted.len() - 1) as f64;
    let (lower, upper) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[lower] + (sorted[upper] - sorted[lower]) * (rank - lower as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_matches_percentile_cont() {
        let mut values = vec![4.0, 1.0, 3.0, 2.0];
        let s = Summary::of(&mut values).unwrap();
        assert_eq!((s.count, s.min, s.max, s.mean), (4, 1.0, 4.0, 2.5));
        assert_eq!(s.median, 2.5);
        assert_eq!(s.p75, 3.25);
        assert!((s.p90 - 3.7).abs() < 1e-12);
        assert_eq!(Summary::of(&mut []), None);
        let single = Summary::of(&mut [7.0]).unwrap();
        assert_eq!((single.median, single.p90), (7.0, 7.0));
    }

    #[test]
    fn lifecycle_points_parse_their_names() {
        for point in LifecyclePoint::ALL {
            assert_eq!(LifecyclePoint::parse(point.as_str()), Some(point));
        }
        assert_eq!(
            LifecyclePoint::parse("first-submission"),
            Some(LifecyclePoint::FirstSubmission)
        );
        assert_eq!(LifecyclePoint::parse("nope"), None);
    }
}
