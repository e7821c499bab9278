//! Writing a stream's projection rows with its append: the rows bound as arrays, one per
//! column, after the store's own parameters; and erasing a forgotten trainee's columns.

use super::rows::{CourseRow, EnrollmentRow, StreamRows, SubmissionRow, TraineeRow};
use crate::domain::{SubmissionId, TenantId, schema};
use crate::store::{Call, ProjectionRows};
use sqlx::PgConnection;
use uuid::Uuid;

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
// `tenant_id`, as the write function takes them.

/// One column of `rows`, as an array parameter.
fn column<'q, R, T>(rows: &[&'q R], value: impl Fn(&'q R) -> T) -> Vec<T> {
    rows.iter().map(|row| value(row)).collect()
}

fn bind_courses<'q>(call: Call<'q>, rows: &[&'q CourseRow]) -> Call<'q> {
    call.arg("c_course_id", column(rows, |r| r.course_id.as_uuid()))
        .arg("c_code", column(rows, |r| r.code.as_str()))
        .arg("c_title", column(rows, |r| r.title.as_str()))
        .arg("c_passing_score", column(rows, |r| r.passing_score))
        .arg("c_retired", column(rows, |r| r.retired))
        .arg("c_created_at", column(rows, |r| r.created_at))
        .arg("c_retired_at", column(rows, |r| r.retired_at))
        .arg("c_version", column(rows, |r| r.version))
}

fn bind_trainees<'q>(call: Call<'q>, rows: &[&'q TraineeRow]) -> Call<'q> {
    call.arg("t_trainee_id", column(rows, |r| r.trainee_id.as_uuid()))
        .arg("t_email", column(rows, |r| r.email.as_str()))
        .arg("t_name", column(rows, |r| r.name.as_str()))
        .arg("t_registered_at", column(rows, |r| r.registered_at))
        .arg("t_version", column(rows, |r| r.version))
}

fn bind_enrollments<'q>(call: Call<'q>, rows: &[&'q EnrollmentRow]) -> Call<'q> {
    call.arg(
        "n_enrollment_id",
        column(rows, |e| e.enrollment_id.as_uuid()),
    )
    .arg("n_course_id", column(rows, |e| e.course_id.as_uuid()))
    .arg("n_trainee_id", column(rows, |e| e.trainee_id.as_uuid()))
    .arg("n_status", column(rows, |e| e.status.as_str()))
    .arg("n_registered_at", column(rows, |e| e.registered_at))
    .arg("n_started_at", column(rows, |e| e.started_at))
    .arg("n_completed_at", column(rows, |e| e.completed_at))
    .arg("n_withdrawn_at", column(rows, |e| e.withdrawn_at))
    .arg(
        "n_withdrawal_reason",
        column(rows, |e| e.withdrawal_reason.as_deref()),
    )
    .arg("n_submission_count", column(rows, |e| e.submission_count))
    .arg("n_best_score", column(rows, |e| e.best_score))
    .arg("n_passed_at", column(rows, |e| e.passed_at))
    .arg("n_version", column(rows, |e| e.version))
    .arg("n_updated_at", column(rows, |e| e.updated_at))
}

fn bind_submissions<'q>(call: Call<'q>, rows: &[&'q SubmissionRow]) -> Call<'q> {
    call.arg(
        "s_submission_id",
        column(rows, |r| r.submission_id.as_uuid()),
    )
    .arg(
        "s_enrollment_id",
        column(rows, |r| r.enrollment_id.as_uuid()),
    )
    .arg("s_submitted_at", column(rows, |r| r.submitted_at))
    .arg("s_score", column(rows, |r| r.score))
    .arg("s_passed", column(rows, |r| r.passed))
    .arg("s_graded_at", column(rows, |r| r.graded_at))
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
    fn bind(writes: Vec<Self>, call: Call<'q>) -> Call<'q> {
        let mut rows = WriteRows::default();
        for write in writes {
            rows.add(write);
        }
        let call = call
            .arg("p_row_kind", rows.kinds)
            .arg("p_row", rows.indexes)
            .arg("p_submission_count", rows.submission_counts);
        let call = bind_courses(call, &rows.courses);
        let call = bind_trainees(call, &rows.trainees);
        let call = bind_enrollments(call, &rows.enrollments);
        bind_submissions(call, &rows.submissions)
    }
}

/// Replaces the trainee's personal columns with the forgotten placeholders (its row's version
/// unchanged: the `TraineeForgotten` write that follows moves it) and clears its enrollments'
/// withdrawal reasons. Part of the erasure's transaction (`app`'s `forget_trainee`). Returns
/// the trainee's enrollments (their streams held its data).
pub async fn erase_personal_columns(
    conn: &mut PgConnection,
    tenant: TenantId,
    trainee_id: Uuid,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query(
        "UPDATE trainees SET email = $3, name = $4 WHERE tenant_id = $1 AND trainee_id = $2",
    )
    .bind(tenant.as_uuid())
    .bind(trainee_id)
    .bind(schema::forgotten_email(trainee_id))
    .bind(schema::FORGOTTEN_NAME)
    .execute(&mut *conn)
    .await?;
    sqlx::query_scalar(
        "UPDATE enrollments SET withdrawal_reason = NULL \
         WHERE tenant_id = $1 AND trainee_id = $2 RETURNING enrollment_id",
    )
    .bind(tenant.as_uuid())
    .bind(trainee_id)
    .fetch_all(&mut *conn)
    .await
}
