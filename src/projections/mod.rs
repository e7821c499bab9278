//! The synchronous projections (courses, trainees, enrollments, submissions): the SQL that
//! writes them inside a command's transaction, and the SQL that reads them for GraphQL.
//!
//! Rows are computed by the pure folds in [`rows`]; this module only moves them in and out of
//! PostgreSQL. Every statement names one tenant (Citus rule 4).

pub mod rebuild;
pub mod rows;

use crate::domain::enrollment::EnrollmentStatus;
use crate::domain::{CourseId, EnrollmentId, SubmissionId, TenantId, TraineeId};
use rows::{CourseRow, EnrollmentRow, StreamRows, SubmissionRow, TraineeRow};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

/// Writes the rows one stream now contributes (after its new events were folded in).
/// A violated unique index surfaces as the database error, named by its constraint.
pub async fn upsert_stream_rows(
    conn: &mut PgConnection,
    tenant: TenantId,
    rows: &StreamRows,
    touched_submissions: &[SubmissionId],
) -> Result<(), sqlx::Error> {
    if let Some(course) = &rows.course {
        sqlx::query(
            "INSERT INTO courses (tenant_id, course_id, code, title, passing_score, retired, \
             created_at, retired_at, version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (tenant_id, course_id) DO UPDATE SET code = EXCLUDED.code, \
             title = EXCLUDED.title, passing_score = EXCLUDED.passing_score, \
             retired = EXCLUDED.retired, retired_at = EXCLUDED.retired_at, version = EXCLUDED.version",
        )
        .bind(tenant.as_uuid())
        .bind(course.course_id.as_uuid())
        .bind(&course.code)
        .bind(&course.title)
        .bind(course.passing_score)
        .bind(course.retired)
        .bind(course.created_at)
        .bind(course.retired_at)
        .bind(course.version)
        .execute(&mut *conn)
        .await?;
    }
    if let Some(trainee) = &rows.trainee {
        sqlx::query(
            "INSERT INTO trainees (tenant_id, trainee_id, email, name, registered_at, version) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, trainee_id) DO UPDATE SET \
             email = EXCLUDED.email, name = EXCLUDED.name, version = EXCLUDED.version",
        )
        .bind(tenant.as_uuid())
        .bind(trainee.trainee_id.as_uuid())
        .bind(&trainee.email)
        .bind(&trainee.name)
        .bind(trainee.registered_at)
        .bind(trainee.version)
        .execute(&mut *conn)
        .await?;
    }
    if let Some(e) = &rows.enrollment {
        sqlx::query(
            "INSERT INTO enrollments (tenant_id, enrollment_id, course_id, trainee_id, status, \
             registered_at, started_at, completed_at, withdrawn_at, withdrawal_reason, \
             submission_count, best_score, passed_at, version, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
             ON CONFLICT (tenant_id, enrollment_id) DO UPDATE SET status = EXCLUDED.status, \
             started_at = EXCLUDED.started_at, completed_at = EXCLUDED.completed_at, \
             withdrawn_at = EXCLUDED.withdrawn_at, withdrawal_reason = EXCLUDED.withdrawal_reason, \
             submission_count = EXCLUDED.submission_count, best_score = EXCLUDED.best_score, \
             passed_at = EXCLUDED.passed_at, version = EXCLUDED.version, \
             updated_at = EXCLUDED.updated_at",
        )
        .bind(tenant.as_uuid())
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
        .execute(&mut *conn)
        .await?;
    }
    for submission in rows
        .submissions
        .iter()
        .filter(|s| touched_submissions.contains(&s.submission_id))
    {
        sqlx::query(
            "INSERT INTO submissions (tenant_id, submission_id, enrollment_id, submitted_at, \
             score, passed, graded_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (tenant_id, submission_id) DO UPDATE SET score = EXCLUDED.score, \
             passed = EXCLUDED.passed, graded_at = EXCLUDED.graded_at",
        )
        .bind(tenant.as_uuid())
        .bind(submission.submission_id.as_uuid())
        .bind(submission.enrollment_id.as_uuid())
        .bind(submission.submitted_at)
        .bind(submission.score)
        .bind(submission.passed)
        .bind(submission.graded_at)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// What a registration or grading decision needs to know about a course. `FOR SHARE` makes a
/// concurrent retirement wait for this transaction (and vice versa), so "registered for a
/// retired course" cannot slip through a race.
pub async fn course_for_decision(
    conn: &mut PgConnection,
    tenant: TenantId,
    course: CourseId,
) -> Result<Option<(bool, i16)>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT retired, passing_score FROM courses WHERE tenant_id = $1 AND course_id = $2 FOR SHARE",
    )
    .bind(tenant.as_uuid())
    .bind(course.as_uuid())
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
}

/// Whether the trainee exists, and whether it already has an active enrollment in the course;
/// one round trip for both facts the registration decision needs.
pub async fn registration_facts(
    conn: &mut PgConnection,
    tenant: TenantId,
    course: CourseId,
    trainee: TraineeId,
) -> Result<(bool, bool), sqlx::Error> {
    let row = sqlx::query(
        "SELECT EXISTS (SELECT 1 FROM trainees WHERE tenant_id = $1 AND trainee_id = $3), \
         EXISTS (SELECT 1 FROM enrollments WHERE tenant_id = $1 AND course_id = $2 \
         AND trainee_id = $3 AND status <> 'WITHDRAWN')",
    )
    .bind(tenant.as_uuid())
    .bind(course.as_uuid())
    .bind(trainee.as_uuid())
    .fetch_one(&mut *conn)
    .await?;
    Ok((row.try_get(0)?, row.try_get(1)?))
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
