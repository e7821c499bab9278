//! Reading the projections: for GraphQL (pages, rows by id) and for decisions (a course's
//! passing score, the facts a registration needs).

use super::rows::{CourseRow, EnrollmentRow, SubmissionRow, TraineeRow};
use crate::domain::enrollment::EnrollmentStatus;
use crate::domain::{CourseId, EnrollmentId, SubmissionId, TenantId, TraineeId};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

/// A course's passing score, for grading. A plain read: the passing score never changes once
/// the course is created, so no lock is needed to keep it valid until the grade is written.
#[tracing::instrument(level = "debug", name = "db.passing_score", skip_all, fields(db.system = "postgresql"))]
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
#[tracing::instrument(level = "debug", name = "db.registration_facts", skip_all, fields(db.system = "postgresql"))]
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

/// One course, if it exists.
pub async fn course(
    pool: &PgPool,
    tenant: TenantId,
    id: CourseId,
) -> Result<Option<CourseRow>, sqlx::Error> {
    Ok(courses_by_id(pool, tenant, &[id]).await?.pop())
}

/// The courses of `ids` that exist (one statement for a page's worth of relations).
#[tracing::instrument(level = "debug", name = "db.courses_by_id", skip_all, fields(db.system = "postgresql"))]
pub async fn courses_by_id(
    pool: &PgPool,
    tenant: TenantId,
    ids: &[CourseId],
) -> Result<Vec<CourseRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {COURSE_COLUMNS} FROM courses WHERE tenant_id = $1 AND course_id = ANY($2)"
    );
    let ids = ids.iter().map(|id| id.as_uuid()).collect();
    by_ids(pool, tenant, &sql, ids, course_row).await
}

/// The rows `select` finds for `tenant` (`$1`) and `ids` (`$2`, an array), each read by `row`.
async fn by_ids<R>(
    pool: &PgPool,
    tenant: TenantId,
    select: &str,
    ids: Vec<Uuid>,
    row: fn(&PgRow) -> Result<R, sqlx::Error>,
) -> Result<Vec<R>, sqlx::Error> {
    let rows = sqlx::query(select)
        .bind(tenant.as_uuid())
        .bind(ids)
        .fetch_all(pool)
        .await?;
    rows.iter().map(row).collect()
}

/// One keyset page of courses in id order (ids are UUIDv7, so this is creation order).
#[tracing::instrument(level = "debug", name = "db.courses", skip_all, fields(db.system = "postgresql"))]
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

/// One trainee, if it exists.
pub async fn trainee(
    pool: &PgPool,
    tenant: TenantId,
    id: TraineeId,
) -> Result<Option<TraineeRow>, sqlx::Error> {
    Ok(trainees_by_id(pool, tenant, &[id]).await?.pop())
}

/// The trainees of `ids` that exist.
#[tracing::instrument(level = "debug", name = "db.trainees_by_id", skip_all, fields(db.system = "postgresql"))]
pub async fn trainees_by_id(
    pool: &PgPool,
    tenant: TenantId,
    ids: &[TraineeId],
) -> Result<Vec<TraineeRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {TRAINEE_COLUMNS} FROM trainees WHERE tenant_id = $1 AND trainee_id = ANY($2)"
    );
    let ids = ids.iter().map(|id| id.as_uuid()).collect();
    by_ids(pool, tenant, &sql, ids, trainee_row).await
}

#[tracing::instrument(level = "debug", name = "db.trainees", skip_all, fields(db.system = "postgresql"))]
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

#[tracing::instrument(level = "debug", name = "db.enrollment", skip_all, fields(db.system = "postgresql"))]
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

#[tracing::instrument(level = "debug", name = "db.enrollments", skip_all, fields(db.system = "postgresql"))]
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

/// The submissions of the `enrollments` (only of `trainee`'s, when given), each
/// enrollment's in submission order.
#[tracing::instrument(level = "debug", name = "db.submissions", skip_all, fields(db.system = "postgresql"))]
pub async fn submissions(
    pool: &PgPool,
    tenant: TenantId,
    enrollments: &[EnrollmentId],
    trainee: Option<TraineeId>,
) -> Result<Vec<SubmissionRow>, sqlx::Error> {
    let ids: Vec<Uuid> = enrollments.iter().map(|id| id.as_uuid()).collect();
    let rows = sqlx::query(
        "SELECT submission_id, enrollment_id, submitted_at, score, passed, graded_at \
         FROM submissions WHERE tenant_id = $1 AND enrollment_id = ANY($2) \
         AND ($3::uuid IS NULL OR (tenant_id, enrollment_id) IN (SELECT tenant_id, \
              enrollment_id FROM enrollments WHERE tenant_id = $1 AND trainee_id = $3)) \
         ORDER BY enrollment_id, submitted_at, submission_id",
    )
    .bind(tenant.as_uuid())
    .bind(ids)
    .bind(trainee.map(|t| t.as_uuid()))
    .fetch_all(pool)
    .await?;
    rows.iter().map(submission_row).collect()
}
