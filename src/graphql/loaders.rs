//! Per-request data loaders: the relations of a page's rows (`Enrollment.course`, `.trainee`,
//! `.submissions`) are read in one statement per relation, not one per row, so the statements
//! a page costs do not grow with its size (and a page does not take a slot of its tenant's
//! share per row: `app::admission`).
//!
//! A loader gathers the keys asked for within a short window, so on its own how many rows share
//! a statement depends on timing. A page therefore reads its rows' relations itself as soon as
//! it has its rows ([`prefetch_enrollment_relations`]), one statement per relation the query
//! selects, into the loader's per-request cache: the rows' own loads then find them there.

use super::error::GqlResultExt;
use crate::app::views::{CourseRow, EnrollmentRow, SubmissionRow, TraineeRow};
use crate::app::{App, Caller};
use crate::domain::{CourseId, EnrollmentId, TraineeId};
use async_graphql::Context;
use async_graphql::dataloader::{DataLoader, HashMapCache, Loader};
use std::collections::HashMap;

/// Reads rows for one request's caller. Created per request, so nothing is shared between
/// callers (or tenants), and a row read once per request is read once.
pub struct Rows {
    app: App,
    caller: Caller,
}

/// The request's loader, keeping what it read for the rest of the request.
pub type RowLoader = DataLoader<Rows, HashMapCache>;

impl Rows {
    pub fn loader(app: App, caller: Caller) -> RowLoader {
        DataLoader::with_cache(Rows { app, caller }, tokio::spawn, HashMapCache::default())
    }
}

/// Reads the relations that the query selects on a page of enrollments (`course`, `trainee`,
/// `submissions`, under `edges.node` or `nodes`), one statement each, into the loader's cache.
pub async fn prefetch_enrollment_relations(
    ctx: &Context<'_>,
    loader: &RowLoader,
    page: &[EnrollmentRow],
) -> async_graphql::Result<()> {
    let look_ahead = ctx.look_ahead();
    let (edges, nodes) = (
        look_ahead.field("edges").field("node"),
        look_ahead.field("nodes"),
    );
    let selects = |field: &str| edges.field(field).exists() || nodes.field(field).exists();
    let courses = async {
        if selects("course") {
            loader
                .load_many(page.iter().map(|row| row.course_id))
                .await?;
        }
        Ok::<_, async_graphql::Error>(())
    };
    let trainees = async {
        if selects("trainee") {
            loader
                .load_many(page.iter().map(|row| row.trainee_id))
                .await?;
        }
        Ok(())
    };
    let submissions = async {
        if selects("submissions") {
            loader
                .load_many(page.iter().map(|row| row.enrollment_id))
                .await?;
        }
        Ok(())
    };
    futures_util::try_join!(courses, trainees, submissions)?;
    Ok(())
}

impl Loader<CourseId> for Rows {
    type Value = CourseRow;
    type Error = async_graphql::Error;

    async fn load(&self, ids: &[CourseId]) -> Result<HashMap<CourseId, CourseRow>, Self::Error> {
        self.app
            .reads()
            .courses_by_id(&self.caller, ids)
            .await
            .gql()
    }
}

impl Loader<TraineeId> for Rows {
    type Value = TraineeRow;
    type Error = async_graphql::Error;

    async fn load(&self, ids: &[TraineeId]) -> Result<HashMap<TraineeId, TraineeRow>, Self::Error> {
        self.app
            .reads()
            .trainees_by_id(&self.caller, ids)
            .await
            .gql()
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
        let mut found = self
            .app
            .reads()
            .submissions_of(&self.caller, ids)
            .await
            .gql()?;
        // An enrollment without submissions is an answer too, kept in the cache as such.
        for id in ids {
            found.entry(*id).or_default();
        }
        Ok(found)
    }
}
