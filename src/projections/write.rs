//! Writing a stream's projection rows with its append: the rows bound as arrays, one per
//! column, after the store's own parameters.

use super::rows::{CourseRow, EnrollmentRow, StreamRows, SubmissionRow, TraineeRow};
use crate::domain::SubmissionId;
use crate::store::{PgQuery, ProjectionRows};

/// The rows one stream now contributes (after its new events were folded in), written by the
/// same call as the append ([`crate::store::append_with`]): one round trip per command. A
/// unique rule that refuses a row is reported by the write ([`crate::store::Refusal`]).
pub enum ProjectionWrite<'q> {
    Course(&'q CourseRow),
    Trainee(&'q TraineeRow),
    /// An enrollment row, and the submissions the command added or graded.
    Enrollment {
        row: &'q EnrollmentRow,
        submissions: Vec<&'q SubmissionRow>,
    },
    /// A new registration: written only while its course is still not retired. The course row is
    /// locked `FOR SHARE` by the write, so a concurrent retirement waits for it (or it for
    /// the retirement, and then finds the course retired and writes nothing): "registered for a
    /// retired course" cannot slip through a race even though the decision read the course
    /// earlier, outside this statement.
    Registration(&'q EnrollmentRow),
    /// A stream without projection rows.
    Nothing,
}

impl<'q> ProjectionWrite<'q> {
    /// What a stream's folded rows need written; `touched` are the submissions the new events
    /// added or changed, `registration` whether the command opens an enrollment.
    pub fn of(rows: &'q StreamRows, touched: &[SubmissionId], registration: bool) -> Self {
        if let Some(course) = &rows.course {
            ProjectionWrite::Course(course)
        } else if let Some(trainee) = &rows.trainee {
            ProjectionWrite::Trainee(trainee)
        } else if let Some(row) = &rows.enrollment {
            if registration {
                ProjectionWrite::Registration(row)
            } else {
                let submissions = rows
                    .submissions
                    .iter()
                    .filter(|s| touched.contains(&s.submission_id))
                    .collect();
                ProjectionWrite::Enrollment { row, submissions }
            }
        } else {
            ProjectionWrite::Nothing
        }
    }
}

// Rows of one kind bound as one array per column, in the tables' column order after
// `tenant_id`: the write function and the rebuild's swap both take them so.

/// One column of `rows`, as an array parameter.
fn column<'q, R, T>(rows: &[&'q R], value: impl Fn(&'q R) -> T) -> Vec<T> {
    rows.iter().map(|row| value(row)).collect()
}

pub(crate) fn bind_courses<'q>(query: PgQuery<'q>, rows: &[&'q CourseRow]) -> PgQuery<'q> {
    query
        .bind(column(rows, |r| r.course_id.as_uuid()))
        .bind(column(rows, |r| r.code.as_str()))
        .bind(column(rows, |r| r.title.as_str()))
        .bind(column(rows, |r| r.passing_score))
        .bind(column(rows, |r| r.retired))
        .bind(column(rows, |r| r.created_at))
        .bind(column(rows, |r| r.retired_at))
        .bind(column(rows, |r| r.version))
}

pub(crate) fn bind_trainees<'q>(query: PgQuery<'q>, rows: &[&'q TraineeRow]) -> PgQuery<'q> {
    query
        .bind(column(rows, |r| r.trainee_id.as_uuid()))
        .bind(column(rows, |r| r.email.as_str()))
        .bind(column(rows, |r| r.name.as_str()))
        .bind(column(rows, |r| r.registered_at))
        .bind(column(rows, |r| r.version))
}

pub(crate) fn bind_enrollments<'q>(query: PgQuery<'q>, rows: &[&'q EnrollmentRow]) -> PgQuery<'q> {
    query
        .bind(column(rows, |e| e.enrollment_id.as_uuid()))
        .bind(column(rows, |e| e.course_id.as_uuid()))
        .bind(column(rows, |e| e.trainee_id.as_uuid()))
        .bind(column(rows, |e| e.status.as_str()))
        .bind(column(rows, |e| e.registered_at))
        .bind(column(rows, |e| e.started_at))
        .bind(column(rows, |e| e.completed_at))
        .bind(column(rows, |e| e.withdrawn_at))
        .bind(column(rows, |e| e.withdrawal_reason.as_deref()))
        .bind(column(rows, |e| e.submission_count))
        .bind(column(rows, |e| e.best_score))
        .bind(column(rows, |e| e.passed_at))
        .bind(column(rows, |e| e.version))
        .bind(column(rows, |e| e.updated_at))
}

pub(crate) fn bind_submissions<'q>(query: PgQuery<'q>, rows: &[&'q SubmissionRow]) -> PgQuery<'q> {
    query
        .bind(column(rows, |r| r.submission_id.as_uuid()))
        .bind(column(rows, |r| r.enrollment_id.as_uuid()))
        .bind(column(rows, |r| r.submitted_at))
        .bind(column(rows, |r| r.score))
        .bind(column(rows, |r| r.passed))
        .bind(column(rows, |r| r.graded_at))
}

/// The rows of a call's writes, gathered by kind in batch order, with where each write's row is.
#[derive(Default)]
struct WriteRows<'q> {
    /// Per write: the kind of its row (`course`, `trainee`, `enrollment`, `registration`,
    /// `none`) and its 1-based index among the rows of that kind (registrations are
    /// enrollment rows).
    kinds: Vec<&'static str>,
    indexes: Vec<i32>,
    submission_counts: Vec<i32>,
    courses: Vec<&'q CourseRow>,
    trainees: Vec<&'q TraineeRow>,
    enrollments: Vec<&'q EnrollmentRow>,
    submissions: Vec<&'q SubmissionRow>,
}

impl<'q> WriteRows<'q> {
    fn add(&mut self, write: ProjectionWrite<'q>) {
        let (kind, index, submissions) = match write {
            ProjectionWrite::Course(row) => {
                self.courses.push(row);
                ("course", self.courses.len(), Vec::new())
            }
            ProjectionWrite::Trainee(row) => {
                self.trainees.push(row);
                ("trainee", self.trainees.len(), Vec::new())
            }
            ProjectionWrite::Enrollment { row, submissions } => {
                self.enrollments.push(row);
                ("enrollment", self.enrollments.len(), submissions)
            }
            ProjectionWrite::Registration(row) => {
                self.enrollments.push(row);
                ("registration", self.enrollments.len(), Vec::new())
            }
            ProjectionWrite::Nothing => ("none", 0, Vec::new()),
        };
        self.kinds.push(kind);
        self.indexes.push(index as i32);
        self.submission_counts.push(submissions.len() as i32);
        self.submissions.extend(submissions);
    }
}

impl<'q> ProjectionRows<'q> for ProjectionWrite<'q> {
    fn bind(writes: Vec<Self>, query: PgQuery<'q>) -> PgQuery<'q> {
        let mut rows = WriteRows::default();
        for write in writes {
            rows.add(write);
        }
        let query = query
            .bind(rows.kinds)
            .bind(rows.indexes)
            .bind(rows.submission_counts);
        let query = bind_courses(query, &rows.courses);
        let query = bind_trainees(query, &rows.trainees);
        let query = bind_enrollments(query, &rows.enrollments);
        bind_submissions(query, &rows.submissions)
    }
}
