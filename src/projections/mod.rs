//! The synchronous projections (courses, trainees, enrollments, submissions): the SQL that
//! writes them inside a command's transaction, and the SQL that reads them for GraphQL.
//!
//! Rows are computed by the pure folds in [`rows`]; this module only moves them in and out of
//! PostgreSQL. Every statement names one tenant (Citus rule 4).

pub mod rebuild;
pub mod rows;

use crate::domain::enrollment::EnrollmentStatus;
use crate::domain::{CourseId, EnrollmentId, SubmissionId, TenantId, TraineeId};
use crate::store::{Alongside, AlongsideBatch, NothingAlongside, PgQuery};
use rows::{CourseRow, EnrollmentRow, StreamRows, SubmissionRow, TraineeRow};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

/// The rows one stream now contributes (after its new events were folded in), written by the
/// same statement as the append ([`crate::store::append_with`]): one round trip per command.
/// A violated unique index surfaces as the database error, named by its constraint.
pub enum ProjectionWrite<'q> {
    Course(&'q CourseRow),
    Trainee(&'q TraineeRow),
    /// An enrollment row, and the submissions the command added or graded.
    Enrollment {
        row: &'q EnrollmentRow,
        submissions: Vec<&'q SubmissionRow>,
    },
    /// A new registration: written only while its course is still not retired. The course row is
    /// locked `FOR SHARE` in the statement, so a concurrent retirement waits for it (or it for
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

// The projection CTEs of one command's statement; parameters from $20 on ($1 is the tenant).
// Each defines `projected`. The conflict clauses are shared with the batch statement.
macro_rules! course_columns {
    () => {
        "courses (tenant_id, course_id, code, title, passing_score, retired, created_at, \
         retired_at, version)"
    };
}
macro_rules! course_conflict {
    () => {
        "ON CONFLICT (tenant_id, course_id) DO UPDATE SET code = EXCLUDED.code, \
         title = EXCLUDED.title, passing_score = EXCLUDED.passing_score, \
         retired = EXCLUDED.retired, retired_at = EXCLUDED.retired_at, version = EXCLUDED.version"
    };
}
macro_rules! trainee_columns {
    () => {
        "trainees (tenant_id, trainee_id, email, name, registered_at, version)"
    };
}
macro_rules! trainee_conflict {
    () => {
        "ON CONFLICT (tenant_id, trainee_id) DO UPDATE SET email = EXCLUDED.email, \
         name = EXCLUDED.name, version = EXCLUDED.version"
    };
}
macro_rules! enrollment_columns {
    () => {
        "enrollments (tenant_id, enrollment_id, course_id, trainee_id, status, registered_at, \
         started_at, completed_at, withdrawn_at, withdrawal_reason, submission_count, best_score, \
         passed_at, version, updated_at)"
    };
}
macro_rules! enrollment_conflict {
    () => {
        "ON CONFLICT (tenant_id, enrollment_id) DO UPDATE SET status = EXCLUDED.status, \
         started_at = EXCLUDED.started_at, completed_at = EXCLUDED.completed_at, \
         withdrawn_at = EXCLUDED.withdrawn_at, withdrawal_reason = EXCLUDED.withdrawal_reason, \
         submission_count = EXCLUDED.submission_count, best_score = EXCLUDED.best_score, \
         passed_at = EXCLUDED.passed_at, version = EXCLUDED.version, \
         updated_at = EXCLUDED.updated_at"
    };
}
macro_rules! submission_columns {
    () => {
        "submissions (tenant_id, submission_id, enrollment_id, submitted_at, score, passed, \
         graded_at)"
    };
}
macro_rules! submission_conflict {
    () => {
        "ON CONFLICT (tenant_id, submission_id) DO UPDATE SET score = EXCLUDED.score, \
         passed = EXCLUDED.passed, graded_at = EXCLUDED.graded_at"
    };
}

const COURSE_STATEMENT: &str = concat!(
    "WITH upserted AS (INSERT INTO ",
    course_columns!(),
    " VALUES ($1, $20, $21, $22, $23, $24, $25, $26, $27) ",
    course_conflict!(),
    " RETURNING 1), \
     projected AS (SELECT count(*) = 1 AS ok FROM upserted), ",
    crate::append_ctes!()
);

const TRAINEE_STATEMENT: &str = concat!(
    "WITH upserted AS (INSERT INTO ",
    trainee_columns!(),
    " VALUES ($1, $20, $21, $22, $23, $24) ",
    trainee_conflict!(),
    " RETURNING 1), \
     projected AS (SELECT count(*) = 1 AS ok FROM upserted), ",
    crate::append_ctes!()
);

const ENROLLMENT_STATEMENT: &str = concat!(
    "WITH upserted AS (INSERT INTO ",
    enrollment_columns!(),
    " VALUES ($1, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33) ",
    enrollment_conflict!(),
    " RETURNING 1), \
     submitted AS (INSERT INTO ",
    submission_columns!(),
    " SELECT $1, s.id, $20, s.submitted_at, s.score, s.passed, s.graded_at \
     FROM unnest($34::uuid[], $35::timestamptz[], $36::int2[], $37::bool[], \
     $38::timestamptz[]) AS s(id, submitted_at, score, passed, graded_at) ",
    submission_conflict!(),
    " RETURNING 1), \
     projected AS (SELECT (SELECT count(*) FROM upserted) = 1 \
     AND (SELECT count(*) FROM submitted) >= 0 AS ok), ",
    crate::append_ctes!()
);

const REGISTRATION_STATEMENT: &str = concat!(
    "WITH course AS (SELECT 1 FROM courses WHERE tenant_id = $1 AND course_id = $21 \
     AND NOT retired FOR SHARE), \
     upserted AS (INSERT INTO ",
    enrollment_columns!(),
    " SELECT $1, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33 \
     WHERE EXISTS (SELECT 1 FROM course) ",
    enrollment_conflict!(),
    " RETURNING 1), \
     projected AS (SELECT count(*) = 1 AS ok FROM upserted), ",
    crate::append_ctes!()
);

/// The projection CTEs of a batch (group commit): every kind of row from arrays, one element
/// per row, parameters from $24 on, each kind inserted in key order (so two batches in flight
/// lock the rows of one table in the same order). A registration (guarded like the single one: its course must
/// exist, not retired, and is locked `FOR SHARE`) carries its write's index, so `refused` can
/// name the writes whose guard refused; `written` reads every row CTE, so the head row (whose
/// `WHERE` reads it) is locked after all of them, as in the single statement.
const BATCH_STATEMENT: &str = concat!(
    "WITH courses_written AS (INSERT INTO ",
    course_columns!(),
    " SELECT $1, r.* FROM unnest($24::uuid[], $25::text[], $26::text[], $27::int2[], \
     $28::bool[], $29::timestamptz[], $30::timestamptz[], $31::int4[]) \
     AS r(course_id) ORDER BY r.course_id ",
    course_conflict!(),
    " RETURNING 1), \
     trainees_written AS (INSERT INTO ",
    trainee_columns!(),
    " SELECT $1, r.* FROM unnest($32::uuid[], $33::text[], $34::text[], $35::timestamptz[], \
     $36::int4[]) AS r(trainee_id) ORDER BY r.trainee_id ",
    trainee_conflict!(),
    " RETURNING 1), \
     enrollments_written AS (INSERT INTO ",
    enrollment_columns!(),
    " SELECT $1, r.* FROM unnest($37::uuid[], $38::uuid[], $39::uuid[], $40::text[], \
     $41::timestamptz[], $42::timestamptz[], $43::timestamptz[], $44::timestamptz[], \
     $45::text[], $46::int4[], $47::int2[], $48::timestamptz[], $49::int4[], \
     $50::timestamptz[]) AS r(enrollment_id) ORDER BY r.enrollment_id ",
    enrollment_conflict!(),
    " RETURNING 1), \
     submissions_written AS (INSERT INTO ",
    submission_columns!(),
    " SELECT $1, r.* FROM unnest($51::uuid[], $52::uuid[], $53::timestamptz[], $54::int2[], \
     $55::bool[], $56::timestamptz[]) AS r(submission_id) ORDER BY r.submission_id ",
    submission_conflict!(),
    " RETURNING 1), \
     registrations AS (SELECT * FROM unnest($57::int4[], $58::uuid[], $59::uuid[], $60::uuid[], \
     $61::text[], $62::timestamptz[], $63::timestamptz[], $64::timestamptz[], \
     $65::timestamptz[], $66::text[], $67::int4[], $68::int2[], $69::timestamptz[], \
     $70::int4[], $71::timestamptz[]) AS r(w, enrollment_id, course_id, trainee_id, status, \
     registered_at, started_at, completed_at, withdrawn_at, withdrawal_reason, \
     submission_count, best_score, passed_at, version, updated_at)), \
     open_courses AS (SELECT course_id FROM courses WHERE tenant_id = $1 \
     AND course_id IN (SELECT course_id FROM registrations) AND NOT retired \
     ORDER BY course_id FOR SHARE), \
     registered AS (INSERT INTO ",
    enrollment_columns!(),
    " SELECT $1, r.enrollment_id, r.course_id, r.trainee_id, r.status, r.registered_at, \
     r.started_at, r.completed_at, r.withdrawn_at, r.withdrawal_reason, r.submission_count, \
     r.best_score, r.passed_at, r.version, r.updated_at FROM registrations r \
     WHERE r.course_id IN (SELECT course_id FROM open_courses) ORDER BY r.enrollment_id ",
    enrollment_conflict!(),
    " RETURNING enrollment_id), \
     refused AS (SELECT r.w FROM registrations r \
     WHERE r.enrollment_id NOT IN (SELECT enrollment_id FROM registered)), \
     written AS (SELECT (SELECT count(*) FROM courses_written) \
     + (SELECT count(*) FROM trainees_written) + (SELECT count(*) FROM enrollments_written) \
     + (SELECT count(*) FROM submissions_written) + (SELECT count(*) FROM registered) AS n), ",
    crate::append_many_ctes!()
);

fn bind_enrollment<'q>(query: PgQuery<'q>, e: &'q EnrollmentRow) -> PgQuery<'q> {
    query
        .bind(e.enrollment_id.as_uuid())
        .bind(e.course_id.as_uuid())
        .bind(e.trainee_id.as_uuid())
        .bind(e.status.as_str())
        .bind(e.registered_at)
        .bind(e.started_at)
        .bind(e.completed_at)
        .bind(e.withdrawn_at)
        .bind(&e.withdrawal_reason)
        .bind(e.submission_count)
        .bind(e.best_score)
        .bind(e.passed_at)
        .bind(e.version)
        .bind(e.updated_at)
}

impl<'q> Alongside<'q> for ProjectionWrite<'q> {
    fn statement(&self) -> &'static str {
        match self {
            ProjectionWrite::Course(_) => COURSE_STATEMENT,
            ProjectionWrite::Trainee(_) => TRAINEE_STATEMENT,
            ProjectionWrite::Enrollment { .. } => ENROLLMENT_STATEMENT,
            ProjectionWrite::Registration(_) => REGISTRATION_STATEMENT,
            ProjectionWrite::Nothing => NothingAlongside.statement(),
        }
    }

    fn bind(self, query: PgQuery<'q>) -> PgQuery<'q> {
        match self {
            ProjectionWrite::Course(course) => query
                .bind(course.course_id.as_uuid())
                .bind(&course.code)
                .bind(&course.title)
                .bind(course.passing_score)
                .bind(course.retired)
                .bind(course.created_at)
                .bind(course.retired_at)
                .bind(course.version),
            ProjectionWrite::Trainee(trainee) => query
                .bind(trainee.trainee_id.as_uuid())
                .bind(&trainee.email)
                .bind(&trainee.name)
                .bind(trainee.registered_at)
                .bind(trainee.version),
            ProjectionWrite::Enrollment { row, submissions } => bind_enrollment(query, row)
                .bind(
                    submissions
                        .iter()
                        .map(|s| s.submission_id.as_uuid())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    submissions
                        .iter()
                        .map(|s| s.submitted_at)
                        .collect::<Vec<_>>(),
                )
                .bind(submissions.iter().map(|s| s.score).collect::<Vec<_>>())
                .bind(submissions.iter().map(|s| s.passed).collect::<Vec<_>>())
                .bind(submissions.iter().map(|s| s.graded_at).collect::<Vec<_>>()),
            ProjectionWrite::Registration(row) => bind_enrollment(query, row),
            ProjectionWrite::Nothing => query,
        }
    }
}

/// The batch statement's row arrays ([`BATCH_STATEMENT`]), one element per row.
#[derive(Default)]
struct BatchRows<'q> {
    courses: Vec<&'q CourseRow>,
    trainees: Vec<&'q TraineeRow>,
    enrollments: Vec<&'q EnrollmentRow>,
    submissions: Vec<&'q SubmissionRow>,
    /// With the index of their write in the batch.
    registrations: Vec<(i32, &'q EnrollmentRow)>,
}

// Rows of one kind bound as one array per column, in the tables' column order after
// `tenant_id`: the batch statement and the rebuild's bulk inserts both use them.

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

impl<'q> AlongsideBatch<'q> for ProjectionWrite<'q> {
    fn statement() -> &'static str {
        BATCH_STATEMENT
    }

    fn bind(writes: Vec<Self>, query: PgQuery<'q>) -> PgQuery<'q> {
        let mut rows = BatchRows::default();
        for (w, write) in writes.into_iter().enumerate() {
            match write {
                ProjectionWrite::Course(course) => rows.courses.push(course),
                ProjectionWrite::Trainee(trainee) => rows.trainees.push(trainee),
                ProjectionWrite::Enrollment { row, submissions } => {
                    rows.enrollments.push(row);
                    rows.submissions.extend(submissions);
                }
                ProjectionWrite::Registration(row) => rows.registrations.push((w as i32, row)),
                ProjectionWrite::Nothing => {}
            }
        }
        let query = bind_courses(query, &rows.courses);
        let query = bind_trainees(query, &rows.trainees);
        let query = bind_enrollments(query, &rows.enrollments);
        let query = bind_submissions(query, &rows.submissions).bind(
            rows.registrations
                .iter()
                .map(|(w, _)| *w)
                .collect::<Vec<_>>(),
        );
        let registrations: Vec<&EnrollmentRow> =
            rows.registrations.iter().map(|(_, row)| *row).collect();
        bind_enrollments(query, &registrations)
    }
}

/// A course's passing score, for grading. A plain read: the passing score never changes once
/// the course is created, so no lock is needed to keep it valid until the grade is written.
pub async fn passing_score(
    conn: &mut PgConnection,
    tenant: TenantId,
    course: CourseId,
) -> Result<Option<i16>, sqlx::Error> {
    sqlx::query_scalar("SELECT passing_score FROM courses WHERE tenant_id = $1 AND course_id = $2")
        .bind(tenant.as_uuid())
        .bind(course.as_uuid())
        .fetch_optional(&mut *conn)
        .await
}

/// What a registration decision needs, in one round trip: whether the course exists and is
/// retired (`None`: no such course), whether the trainee exists, and whether it already has an
/// active enrollment in the course. The write then re-checks the course under a lock
/// ([`ProjectionWrite::Registration`]) and the unique index re-checks the enrollment, so these
/// reads need no lock of their own.
pub async fn registration_facts(
    conn: &mut PgConnection,
    tenant: TenantId,
    course: CourseId,
    trainee: TraineeId,
) -> Result<(Option<bool>, bool, bool), sqlx::Error> {
    let row = sqlx::query(
        "SELECT (SELECT retired FROM courses WHERE tenant_id = $1 AND course_id = $2), \
         EXISTS (SELECT 1 FROM trainees WHERE tenant_id = $1 AND trainee_id = $3), \
         EXISTS (SELECT 1 FROM enrollments WHERE tenant_id = $1 AND course_id = $2 \
         AND trainee_id = $3 AND status <> 'WITHDRAWN')",
    )
    .bind(tenant.as_uuid())
    .bind(course.as_uuid())
    .bind(trainee.as_uuid())
    .fetch_one(&mut *conn)
    .await?;
    Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))
}

const COURSE_COLUMNS: &str =
    "course_id, code, title, passing_score, retired, created_at, retired_at, version";
const TRAINEE_COLUMNS: &str = "trainee_id, email, name, registered_at, version";
const ENROLLMENT_COLUMNS: &str = "enrollment_id, course_id, trainee_id, status, registered_at, \
     started_at, completed_at, withdrawn_at, withdrawal_reason, submission_count, best_score, \
     passed_at, version, updated_at";

fn course_row(r: &PgRow) -> Result<CourseRow, sqlx::Error> {
    Ok(CourseRow {
        course_id: CourseId::from_uuid(r.try_get("course_id")?),
        code: r.try_get("code")?,
        title: r.try_get("title")?,
        passing_score: r.try_get("passing_score")?,
        retired: r.try_get("retired")?,
        created_at: r.try_get("created_at")?,
        retired_at: r.try_get("retired_at")?,
        version: r.try_get("version")?,
    })
}

fn trainee_row(r: &PgRow) -> Result<TraineeRow, sqlx::Error> {
    Ok(TraineeRow {
        trainee_id: TraineeId::from_uuid(r.try_get("trainee_id")?),
        email: r.try_get("email")?,
        name: r.try_get("name")?,
        registered_at: r.try_get("registered_at")?,
        version: r.try_get("version")?,
    })
}

fn enrollment_row(r: &PgRow) -> Result<EnrollmentRow, sqlx::Error> {
    let status: String = r.try_get("status")?;
    Ok(EnrollmentRow {
        enrollment_id: EnrollmentId::from_uuid(r.try_get("enrollment_id")?),
        course_id: CourseId::from_uuid(r.try_get("course_id")?),
        trainee_id: TraineeId::from_uuid(r.try_get("trainee_id")?),
        status: EnrollmentStatus::parse(&status).ok_or_else(|| sqlx::Error::ColumnDecode {
            index: "status".into(),
            source: format!("unknown enrollment status {status:?}").into(),
        })?,
        registered_at: r.try_get("registered_at")?,
        started_at: r.try_get("started_at")?,
        completed_at: r.try_get("completed_at")?,
        withdrawn_at: r.try_get("withdrawn_at")?,
        withdrawal_reason: r.try_get("withdrawal_reason")?,
        submission_count: r.try_get("submission_count")?,
        best_score: r.try_get("best_score")?,
        passed_at: r.try_get("passed_at")?,
        version: r.try_get("version")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn submission_row(r: &PgRow) -> Result<SubmissionRow, sqlx::Error> {
    Ok(SubmissionRow {
        submission_id: SubmissionId::from_uuid(r.try_get("submission_id")?),
        enrollment_id: EnrollmentId::from_uuid(r.try_get("enrollment_id")?),
        submitted_at: r.try_get("submitted_at")?,
        score: r.try_get("score")?,
        passed: r.try_get("passed")?,
        graded_at: r.try_get("graded_at")?,
    })
}

pub async fn course(
    pool: &PgPool,
    tenant: TenantId,
    id: CourseId,
) -> Result<Option<CourseRow>, sqlx::Error> {
    let sql =
        format!("SELECT {COURSE_COLUMNS} FROM courses WHERE tenant_id = $1 AND course_id = $2");
    let row = sqlx::query(&sql)
        .bind(tenant.as_uuid())
        .bind(id.as_uuid())
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(course_row).transpose()
}

/// One keyset page of courses in id order (ids are UUIDv7, so this is creation order).
pub async fn courses(
    pool: &PgPool,
    tenant: TenantId,
    after: Option<Uuid>,
    include_retired: bool,
    limit: i64,
) -> Result<Vec<CourseRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {COURSE_COLUMNS} FROM courses WHERE tenant_id = $1 \
         AND ($2::uuid IS NULL OR course_id > $2) AND ($3 OR NOT retired) \
         ORDER BY course_id LIMIT $4"
    );
    let rows = sqlx::query(&sql)
        .bind(tenant.as_uuid())
        .bind(after)
        .bind(include_retired)
        .bind(limit)
        .fetch_all(pool)
        .await?;
    rows.iter().map(course_row).collect()
}

pub async fn trainee(
    pool: &PgPool,
    tenant: TenantId,
    id: TraineeId,
) -> Result<Option<TraineeRow>, sqlx::Error> {
    let sql =
        format!("SELECT {TRAINEE_COLUMNS} FROM trainees WHERE tenant_id = $1 AND trainee_id = $2");
    let row = sqlx::query(&sql)
        .bind(tenant.as_uuid())
        .bind(id.as_uuid())
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(trainee_row).transpose()
}

pub async fn trainees(
    pool: &PgPool,
    tenant: TenantId,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<TraineeRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {TRAINEE_COLUMNS} FROM trainees WHERE tenant_id = $1 \
         AND ($2::uuid IS NULL OR trainee_id > $2) ORDER BY trainee_id LIMIT $3"
    );
    let rows = sqlx::query(&sql)
        .bind(tenant.as_uuid())
        .bind(after)
        .bind(limit)
        .fetch_all(pool)
        .await?;
    rows.iter().map(trainee_row).collect()
}

pub async fn enrollment(
    pool: &PgPool,
    tenant: TenantId,
    id: EnrollmentId,
) -> Result<Option<EnrollmentRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {ENROLLMENT_COLUMNS} FROM enrollments WHERE tenant_id = $1 AND enrollment_id = $2"
    );
    let row = sqlx::query(&sql)
        .bind(tenant.as_uuid())
        .bind(id.as_uuid())
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(enrollment_row).transpose()
}

/// Filters of the `enrollments` query; `None` means "any".
#[derive(Debug, Clone, Default)]
pub struct EnrollmentFilter {
    pub course_id: Option<CourseId>,
    pub trainee_id: Option<TraineeId>,
    pub status: Option<EnrollmentStatus>,
}

pub async fn enrollments(
    pool: &PgPool,
    tenant: TenantId,
    filter: &EnrollmentFilter,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<EnrollmentRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {ENROLLMENT_COLUMNS} FROM enrollments WHERE tenant_id = $1 \
         AND ($2::uuid IS NULL OR course_id = $2) AND ($3::uuid IS NULL OR trainee_id = $3) \
         AND ($4::text IS NULL OR status = $4) AND ($5::uuid IS NULL OR enrollment_id > $5) \
         ORDER BY enrollment_id LIMIT $6"
    );
    let rows = sqlx::query(&sql)
        .bind(tenant.as_uuid())
        .bind(filter.course_id.map(|c| c.as_uuid()))
        .bind(filter.trainee_id.map(|t| t.as_uuid()))
        .bind(filter.status.map(|s| s.as_str()))
        .bind(after)
        .bind(limit)
        .fetch_all(pool)
        .await?;
    rows.iter().map(enrollment_row).collect()
}

pub async fn submissions(
    pool: &PgPool,
    tenant: TenantId,
    enrollment: EnrollmentId,
) -> Result<Vec<SubmissionRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT submission_id, enrollment_id, submitted_at, score, passed, graded_at \
         FROM submissions WHERE tenant_id = $1 AND enrollment_id = $2 \
         ORDER BY submitted_at, submission_id",
    )
    .bind(tenant.as_uuid())
    .bind(enrollment.as_uuid())
    .fetch_all(pool)
    .await?;
    rows.iter().map(submission_row).collect()
}
