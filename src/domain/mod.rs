//! The domain: commands, events, state, and the pure `decide`/`evolve` functions of the course,
//! trainee and enrollment streams.
//!
//! Invariant: nothing here does I/O, is async, or knows about SQL, HTTP or tokens. Whatever a
//! decision needs to look up (does the course exist? is it retired?) arrives inside the command,
//! gathered by the application layer. So this module cannot fail for infrastructure reasons, and
//! its tests run in microseconds.

pub mod course;
pub mod enrollment;
pub mod events;
pub mod ids;
pub mod role;
pub mod schema;
pub mod trainee;
pub mod values;

pub use events::{Event, EventType, StreamType};
pub use ids::{CourseId, EnrollmentId, SubmissionId, TenantId, TraineeId};
pub use role::{Role, UnknownRole};
pub use values::ValidationError;

/// Why the domain refused a command. Each variant maps to one stable GraphQL error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// Something the command refers to does not exist (`NOT_FOUND`).
    #[error("{0}")]
    NotFound(String),
    /// The thing to create exists already (`ALREADY_EXISTS`).
    #[error("{0}")]
    AlreadyExists(String),
    /// The trainee has an active (not withdrawn) enrollment in the course (`ALREADY_REGISTERED`).
    #[error("the trainee already has an active registration for this course")]
    AlreadyRegistered,
    /// The command does not fit the stream's lifecycle; the message says why (`INVALID_STATE`).
    #[error("{0}")]
    InvalidState(String),
}

/// One kind of stream: its state is a left fold of its events, and a command is decided against
/// that state alone.
pub trait Aggregate {
    /// The state folded from the stream's events; `Default` is the state of an empty stream.
    type State: Default;
    type Command;
    const STREAM_TYPE: StreamType;

    fn evolve(state: Self::State, event: &Event) -> Self::State;
    fn decide(state: &Self::State, command: Self::Command) -> Result<Vec<Event>, DomainError>;

    /// Folds a whole stream.
    fn fold<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self::State {
        events
            .into_iter()
            .fold(Self::State::default(), |state, event| {
                Self::evolve(state, event)
            })
    }
}

/// A given/when/then harness for the aggregates' tests.
#[cfg(test)]
pub(crate) mod spec {
    use super::*;

    /// Given these past events, when this command arrives, the result is returned.
    pub fn given_when<A: Aggregate>(
        given: &[Event],
        command: A::Command,
    ) -> Result<Vec<Event>, DomainError> {
        let state = A::fold(given);
        A::decide(&state, command)
    }
}
