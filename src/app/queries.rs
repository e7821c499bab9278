//! The reads, with the same role rules as the commands: everything a role may not see is
//! filtered out here, so no resolver can forget it.

use super::{AppError, Caller, Reads};
use crate::domain::{CourseId, EnrollmentId, Role, TraineeId};
use crate::projections::rows::{CourseRow, EnrollmentRow, SubmissionRow, TraineeRow};
use crate::projections::{self, EnrollmentFilter};
use std::collections::HashMap;
use uuid::Uuid;

impl Reads {
    pub async fn course(
        &self,
        caller: &Caller,
        id: CourseId,
    ) -> Result<Option<CourseRow>, AppError> {
        let _slot = self.rt.admit(caller).await?;
        Ok(projections::course(&self.rt.pool, caller.tenant(), id).await?)
    }

    pub async fn courses(
        &self,
        caller: &Caller,
        after: Option<Uuid>,
        include_retired: bool,
        limit: i64,
    ) -> Result<Vec<CourseRow>, AppError> {
        let _slot = self.rt.admit(caller).await?;
        Ok(projections::courses(
            &self.rt.pool,
            caller.tenant(),
            after,
            include_retired,
            limit,
        )
        .await?)
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
        let _slot = self.rt.admit(caller).await?;
        Ok(projections::trainee(&self.rt.pool, caller.tenant(), id).await?)
    }

    pub async fn trainees(
        &self,
        caller: &Caller,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<TraineeRow>, AppError> {
        caller.require(&[Role::Admin, Role::Instructor], "list trainees")?;
        let _slot = self.rt.admit(caller).await?;
        Ok(projections::trainees(&self.rt.pool, caller.tenant(), after, limit).await?)
    }

    /// A trainee sees only its own enrollments.
    pub async fn enrollment(
        &self,
        caller: &Caller,
        id: EnrollmentId,
    ) -> Result<Option<EnrollmentRow>, AppError> {
        let _slot = self.rt.admit(caller).await?;
        let row = projections::enrollment(&self.rt.pool, caller.tenant(), id).await?;
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
        let _slot = self.rt.admit(caller).await?;
        Ok(projections::enrollments(&self.rt.pool, caller.tenant(), &filter, after, limit).await?)
    }

    /// The courses of `ids` that exist, in one read (a page's relations: the GraphQL layer's
    /// data loader).
    pub async fn courses_by_id(
        &self,
        caller: &Caller,
        ids: &[CourseId],
    ) -> Result<HashMap<CourseId, CourseRow>, AppError> {
        let _slot = self.rt.admit(caller).await?;
        let rows = projections::courses_by_id(&self.rt.pool, caller.tenant(), ids).await?;
        Ok(rows.into_iter().map(|row| (row.course_id, row)).collect())
    }

    /// The trainees of `ids` the caller may see, in one read.
    pub async fn trainees_by_id(
        &self,
        caller: &Caller,
        ids: &[TraineeId],
    ) -> Result<HashMap<TraineeId, TraineeRow>, AppError> {
        let visible: Vec<TraineeId> = ids
            .iter()
            .copied()
            .filter(|id| may_see_trainee(caller, *id))
            .collect();
        if visible.is_empty() {
            return Ok(HashMap::new());
        }
        let _slot = self.rt.admit(caller).await?;
        let rows = projections::trainees_by_id(&self.rt.pool, caller.tenant(), &visible).await?;
        Ok(rows.into_iter().map(|row| (row.trainee_id, row)).collect())
    }

    /// The submissions of enrollments, each in submission order, in one read. Only for the
    /// enrollments the caller may see: a trainee's are narrowed to its own.
    pub async fn submissions_of(
        &self,
        caller: &Caller,
        enrollments: &[EnrollmentId],
    ) -> Result<HashMap<EnrollmentId, Vec<SubmissionRow>>, AppError> {
        let own = (caller.role() == Role::Trainee).then(|| TraineeId::from_uuid(caller.actor_id()));
        let _slot = self.rt.admit(caller).await?;
        let rows =
            projections::submissions(&self.rt.pool, caller.tenant(), enrollments, own).await?;
        let mut by_enrollment: HashMap<EnrollmentId, Vec<SubmissionRow>> = HashMap::new();
        for row in rows {
            by_enrollment
                .entry(row.enrollment_id)
                .or_default()
                .push(row);
        }
        Ok(by_enrollment)
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
