//! What a command's write needs besides the call itself: the projection rows of its stream,
//! the store's refusals as the command's errors, and the stream as stored after it (for the
//! stream cache). Pure, but for the types they work on.

use super::recent::Stream;
use super::{AppError, Write};
use crate::domain::{Event, SubmissionId};
use crate::projections::rows::{EventPlace, StreamRows};
use crate::store::{StoreError, StreamEvent, UniqueRule};
use chrono::{DateTime, Utc};

/// The projection rows of a write's stream after it (the prior events folded again, then the
/// new ones at their versions), and the submissions its events touch.
pub(super) fn project(
    write: &Write<'_>,
    recorded_at: DateTime<Utc>,
) -> (StreamRows, Vec<SubmissionId>) {
    let expected_version = write.prior.last().map_or(0, |e| e.version);
    let mut rows = StreamRows::default();
    let placed = write
        .prior
        .iter()
        .map(|e| (e.version, e.recorded_at, &e.event))
        .chain(
            write
                .events
                .iter()
                .zip(expected_version + 1..)
                .map(|(event, version)| (version, recorded_at, event)),
        );
    for (version, recorded_at, event) in placed {
        let place = EventPlace {
            stream_id: write.stream_id,
            version,
            recorded_at,
        };
        rows.apply(place, event);
    }
    let touched_submissions = write
        .events
        .iter()
        .filter_map(|event| match event {
            Event::TestSubmitted(e) => Some(e.submission_id),
            Event::TestGraded(e) => Some(e.submission_id),
            _ => None,
        })
        .collect();
    (rows, touched_submissions)
}

/// A write the store refused, as the command's error.
pub(super) fn write_refused(error: StoreError) -> AppError {
    match error {
        // Another request with the same commandId committed first: the next attempt finds its
        // record and answers with it.
        StoreError::DuplicateCommand => AppError::ConcurrencyConflict,
        // The course was retired after the decision, or the write lost a lock cycle (nothing
        // written either way): decide again on the new state.
        StoreError::Refused | StoreError::Deadlock => AppError::ConcurrencyConflict,
        // A cross-stream rule, possibly for a concurrent command that committed first.
        StoreError::Taken(UniqueRule::CourseCode) => {
            AppError::AlreadyExists("a course with this code exists already".into())
        }
        StoreError::Taken(UniqueRule::TraineeEmail) => {
            AppError::AlreadyExists("a trainee with this email exists already".into())
        }
        StoreError::Taken(UniqueRule::ActiveEnrollment) => AppError::AlreadyRegistered,
        other => AppError::from(other),
    }
}

/// The stream as stored after a write: its `prior` events, then the written ones.
pub(super) fn stored_stream(
    prior: &[StreamEvent],
    events: Vec<Event>,
    versions: std::ops::RangeFrom<i32>,
    recorded_at: DateTime<Utc>,
) -> Stream {
    let written = events
        .into_iter()
        .zip(versions)
        .map(|(event, version)| StreamEvent {
            version,
            recorded_at,
            event,
        });
    prior.iter().cloned().chain(written).collect()
}
