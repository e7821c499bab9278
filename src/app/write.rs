//! What a command's write needs besides the call itself: the projection rows of its stream,
//! the store's refusals as the command's errors, and the stream as stored after it (for the
//! stream cache). Pure, but for the types they work on.

use super::AppError;
use super::recent::Stream;
use crate::domain::{CourseId, EnrollmentId, Event, StreamType, SubmissionId, TraineeId};
use crate::projections::rows::{EventPlace, StreamRows};
use crate::store::personal::TraineeKey;
use crate::store::{StoreError, StreamEvent};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// What a command returns besides its stream and position. Recorded with the command, so a
/// retry with the same command id returns it too.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommandResult {
    /// The submission a `submitTest` made (or a `gradeSubmission` graded).
    pub submission_id: Option<SubmissionId>,
}

/// The new events of one command and what is stored with them.
pub(super) struct Write<'a> {
    pub(super) stream_id: Uuid,
    pub(super) stream_type: StreamType,
    pub(super) prior: &'a [StreamEvent],
    pub(super) events: Vec<Event>,
    pub(super) trainee_id: Option<Uuid>,
    pub(super) course_id: Option<Uuid>,
    pub(super) result: CommandResult,
    /// The command opens an enrollment: written only while its course is not retired.
    pub(super) registration: bool,
    /// The data key of the trainee whose personal data the events hold, if they hold any.
    pub(super) data_key: Option<TraineeKey>,
}

impl<'a> Write<'a> {
    /// New events of a course's stream.
    pub(super) fn course(id: CourseId, prior: &'a [StreamEvent], events: Vec<Event>) -> Self {
        Self::of(
            id.as_uuid(),
            StreamType::Course,
            prior,
            events,
            None,
            Some(id.as_uuid()),
        )
    }

    /// New events of a trainee's stream.
    pub(super) fn trainee(id: TraineeId, prior: &'a [StreamEvent], events: Vec<Event>) -> Self {
        Self::of(
            id.as_uuid(),
            StreamType::Trainee,
            prior,
            events,
            Some(id.as_uuid()),
            None,
        )
    }

    /// New events of an enrollment's stream, of the trainee and course it is about (none
    /// before it exists).
    pub(super) fn enrollment(
        id: EnrollmentId,
        prior: &'a [StreamEvent],
        events: Vec<Event>,
        of: Option<(TraineeId, CourseId)>,
    ) -> Self {
        let (trainee, course) = of.map(|(t, c)| (t.as_uuid(), c.as_uuid())).unzip();
        Self::of(
            id.as_uuid(),
            StreamType::Enrollment,
            prior,
            events,
            trainee,
            course,
        )
    }

    /// A new enrollment's first events: written only while its course is not retired.
    pub(super) fn registration(
        id: EnrollmentId,
        trainee: TraineeId,
        course: CourseId,
        events: Vec<Event>,
    ) -> Self {
        Self {
            registration: true,
            ..Self::enrollment(id, &[], events, Some((trainee, course)))
        }
    }

    /// The events hold personal data, sealed with `key`.
    pub(super) fn sealed_with(self, key: Option<TraineeKey>) -> Self {
        Self {
            data_key: key,
            ..self
        }
    }

    pub(super) fn with_result(self, result: CommandResult) -> Self {
        Self { result, ..self }
    }

    fn of(
        stream_id: Uuid,
        stream_type: StreamType,
        prior: &'a [StreamEvent],
        events: Vec<Event>,
        trainee_id: Option<Uuid>,
        course_id: Option<Uuid>,
    ) -> Self {
        Self {
            stream_id,
            stream_type,
            prior,
            events,
            trainee_id,
            course_id,
            result: CommandResult::default(),
            registration: false,
            data_key: None,
        }
    }
}

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

/// A write that failed, as the command's error: a refusal as [`AppError`]'s one mapping of
/// store errors says; an error the database reported about the write itself (not a refusal,
/// which is returned, never raised) as an unavailable database. Nothing in the server can
/// tell a client what such an error means for its command — on Citus a worker may have
/// committed it before the coordinator failed — so the client is told to retry with the same
/// commandId, which then either replays the outcome or writes the command once.
pub(super) fn write_failed(error: StoreError) -> AppError {
    match error {
        StoreError::Database(error) => {
            tracing::error!(%error, "the write function failed; its outcome is told by a retry");
            AppError::Unavailable(
                "the command could not be written; retry with the same commandId (it is \
                 written once, or its first outcome is returned)"
                    .into(),
            )
        }
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
