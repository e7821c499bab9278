//! The reads, with the same role rules as the commands: everything a role may not see is
//! filtered out here, so no resolver can forget it.

use super::{App, AppError, Caller};
use crate::auth::Role;
use crate::domain::{CourseId, EnrollmentId, TraineeId};
use crate::projections::rows::{CourseRow, EnrollmentRow, SubmissionRow, TraineeRow};
use crate::projections::{self, EnrollmentFilter};
use uuid::Uuid;

impl App {
    pub async fn course(
        &self,
        caller: &Caller,
        id: CourseId,
    ) -> Result<Option<CourseRow>, AppError> {
        let _slot = self.admit(caller).await?;
        Ok(projections::course(&self.pool, caller.tenant(), id).await?)
    }

    pub async fn courses(
        &self,
        caller: &Caller,
        after: Option<Uuid>,
        include_retired: bool,
        limit: i64,
    ) -> Result<Vec<CourseRow>, AppError> {
        let _slot = self.admit(caller).await?;
        Ok(
            projections::courses(&self.pool, caller.tenant(), after, include_retired, limit)
                .await?,
        )
    }

    /// A trainee sees only itself; admins and instructors see every trainee of the tenant.
    pub async fn trainee(
        &self,
        caller: &Caller,
        id: TraineeId,
    ) -> Result<Option<TraineeRow>, AppError> {
        if !may_see_trainee(caller, id) {
            return Ok(None);
        }
        let _slot = self.admit(caller).await?;
        Ok(projections::trainee(&self.pool, caller.tenant(), id).await?)
    }

    pub async fn trainees(
        &self,
        caller: &Caller,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<TraineeRow>, AppError> {
        caller.require(&[Role::Admin, Role::Instructor], "list trainees")?;
        let _slot = self.admit(caller).await?;
        Ok(projections::trainees(&self.pool, caller.tenant(), after, limit).await?)
    }

    /// A trainee sees only its own enrollments.
    pub async fn enrollment(
        &self,
        caller: &Caller,
        id: EnrollmentId,
    ) -> Result<Option<EnrollmentRow>, AppError> {
        let _slot = self.admit(caller).await?;
        let row = projections::enrollment(&self.pool, caller.tenant(), id).await?;
        Ok(row.and_then(|row| visible_enrollment(caller, row)))
    }

    pub async fn enrollments(
        &self,
        caller: &Caller,
        mut filter: EnrollmentFilter,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<EnrollmentRow>, AppError> {
        if caller.role() == Role::Trainee {
            let own = TraineeId::from_uuid(caller.actor_id());
            if filter.trainee_id.is_some_and(|asked| asked != own) {
                return Err(AppError::Forbidden(
                    "a trainee may only list its own enrollments".into(),
                ));
            }
            filter.trainee_id = Some(own);
        }
        let _slot = self.admit(caller).await?;
        Ok(projections::enrollments(&self.pool, caller.tenant(), &filter, after, limit).await?)
    }

    /// The submissions of an enrollment the caller has already been allowed to read.
    pub async fn submissions(
        &self,
        caller: &Caller,
        enrollment: &EnrollmentRow,
    ) -> Result<Vec<SubmissionRow>, AppError> {
        let _slot = self.admit(caller).await?;
        Ok(projections::submissions(&self.pool, caller.tenant(), enrollment.enrollment_id).await?)
    }
}

/// A trainee sees only itself; admins and instructors see every trainee of the tenant.
pub fn may_see_trainee(caller: &Caller, id: TraineeId) -> bool {
    caller.role() != Role::Trainee || id.as_uuid() == caller.actor_id()
}

/// The row if the caller may see it: a trainee sees only its own enrollments. Also applied to
/// the rows a command returns, so a payload shows exactly what a query would.
pub fn visible_enrollment(caller: &Caller, row: EnrollmentRow) -> Option<EnrollmentRow> {
    (caller.role() != Role::Trainee || row.trainee_id.as_uuid() == caller.actor_id()).then_some(row)
}
