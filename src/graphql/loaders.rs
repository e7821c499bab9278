//! Per-request data loaders: the relations of a page's rows (`Enrollment.course`, `.trainee`,
//! `.submissions`) are read in one statement per relation, not one per row, so the statements
//! a page costs do not grow with its size (and a page does not take a slot of its tenant's
//! share per row: `app::admission`).

use super::error::GqlResultExt;
use crate::app::{App, Caller};
use crate::domain::{CourseId, EnrollmentId, TraineeId};
use crate::projections::rows::{CourseRow, SubmissionRow, TraineeRow};
use async_graphql::dataloader::{DataLoader, Loader};
use std::collections::HashMap;

/// Reads rows for one request's caller. Created per request, so nothing is shared between
/// callers (or tenants), and a row read once per request is read once.
pub struct Rows {
    app: App,
    caller: Caller,
}

impl Rows {
    pub fn loader(app: App, caller: Caller) -> DataLoader<Rows> {
        DataLoader::new(Rows { app, caller }, tokio::spawn)
    }
}

impl Loader<CourseId> for Rows {
    type Value = CourseRow;
    type Error = async_graphql::Error;

    async fn load(&self, ids: &[CourseId]) -> Result<HashMap<CourseId, CourseRow>, Self::Error> {
        self.app.courses_by_id(&self.caller, ids).await.gql()
    }
}

impl Loader<TraineeId> for Rows {
    type Value = TraineeRow;
    type Error = async_graphql::Error;

    async fn load(&self, ids: &[TraineeId]) -> Result<HashMap<TraineeId, TraineeRow>, Self::Error> {
        self.app.trainees_by_id(&self.caller, ids).await.gql()
    }
}

/// Keys are enrollments the caller was already allowed to read (an `Enrollment` object exists
/// only for such a row); the read narrows a trainee's to its own again.
impl Loader<EnrollmentId> for Rows {
    type Value = Vec<SubmissionRow>;
    type Error = async_graphql::Error;

    async fn load(
        &self,
        ids: &[EnrollmentId],
    ) -> Result<HashMap<EnrollmentId, Vec<SubmissionRow>>, Self::Error> {
        self.app.submissions_of(&self.caller, ids).await.gql()
    }
}
