//! The application's error: domain rejections, bad input, authorization, and infrastructure
//! failures, each with one stable client code. `graphql::error` turns it into a GraphQL error.

use crate::domain::{DomainError, ValidationError};
use crate::store::{StoreError, UniqueRule};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadInput(String),
    #[error("the trainee already has an active registration for this course")]
    AlreadyRegistered,
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    InvalidState(String),
    #[error("the stream kept changing concurrently; retry the command")]
    ConcurrencyConflict,
    /// The commandId was recorded for another command, input or caller.
    #[error("{0}")]
    CommandIdReused(String),
    /// The caller's tenant has its share of the server busy and its queue full.
    #[error("{0}")]
    RateLimited(String),
    /// The server could not take the work on in time.
    #[error("{0}")]
    Overloaded(String),
    /// A live subscription fell so far behind that events it had not taken were dropped.
    #[error("the subscriber fell too far behind; resubscribe from the last position received")]
    SlowConsumer,
    /// The database does not answer (it is down, or unreachable), or went away while a
    /// command was written (the message says so: a retry with the same commandId tells).
    #[error("{0}")]
    Unavailable(String),
    /// The work did not finish within its time limit (nothing of a command was written, or
    /// its outcome is told by a retry with the same commandId).
    #[error("{0}")]
    Timeout(String),
    /// Anything the client cannot act on. The cause is logged, never shown: this variant's
    /// message deliberately omits it, so even an accidental `Display` leaks nothing.
    #[error("internal server error")]
    Internal(#[source] anyhow::Error),
}

impl AppError {
    /// The stable `extensions.code` of this error.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Unauthenticated(_) => "UNAUTHENTICATED",
            AppError::Forbidden(_) => "FORBIDDEN",
            AppError::NotFound(_) => "NOT_FOUND",
            AppError::BadInput(_) => "BAD_USER_INPUT",
            AppError::AlreadyRegistered => "ALREADY_REGISTERED",
            AppError::AlreadyExists(_) => "ALREADY_EXISTS",
            AppError::InvalidState(_) => "INVALID_STATE",
            AppError::ConcurrencyConflict => "CONCURRENCY_CONFLICT",
            AppError::CommandIdReused(_) => "COMMAND_ID_REUSED",
            AppError::RateLimited(_) => "RATE_LIMITED",
            AppError::Overloaded(_) => "OVERLOADED",
            AppError::Unavailable(_) => "DATABASE_UNAVAILABLE",
            AppError::SlowConsumer => "SLOW_CONSUMER",
            AppError::Timeout(_) => "TIMEOUT",
            AppError::Internal(_) => "INTERNAL_SERVER_ERROR",
        }
    }

    /// For errors a client should retry later: after how many seconds (HTTP's `Retry-After`).
    pub fn retry_after_seconds(&self) -> Option<u64> {
        match self {
            AppError::RateLimited(_) | AppError::Overloaded(_) | AppError::Unavailable(_) => {
                Some(1)
            }
            _ => None,
        }
    }

    /// A refusal of admission ([`admission`](super::admission)) as the client hears it.
    pub fn not_admitted(refusal: super::admission::Refusal, what: &str) -> Self {
        use super::admission::Refusal;
        match refusal {
            Refusal::TenantBusy => AppError::RateLimited(format!(
                "too many {what} of this tenant at once; retry shortly"
            )),
            Refusal::Saturated => {
                AppError::Overloaded(format!("the server is too busy for {what}; retry shortly"))
            }
        }
    }

    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        AppError::Internal(error.into())
    }

    /// Whether a command refused with this error wrote nothing and might have been decided
    /// differently on the stored stream: a domain refusal, a unique index's refusal, or a
    /// conflict (the stream changed, or its command id was recorded meanwhile). An
    /// infrastructure error is not one: a connection lost around COMMIT leaves the outcome
    /// unknown, and the command must not run again on its own.
    pub fn may_be_stale(&self) -> bool {
        match self {
            AppError::NotFound(_)
            | AppError::AlreadyRegistered
            | AppError::AlreadyExists(_)
            | AppError::InvalidState(_)
            | AppError::ConcurrencyConflict => true,
            AppError::Unauthenticated(_)
            | AppError::Forbidden(_)
            | AppError::BadInput(_)
            | AppError::CommandIdReused(_)
            | AppError::RateLimited(_)
            | AppError::Overloaded(_)
            | AppError::Unavailable(_)
            | AppError::SlowConsumer
            | AppError::Timeout(_)
            | AppError::Internal(_) => false,
        }
    }
}

impl From<DomainError> for AppError {
    fn from(error: DomainError) -> Self {
        match error {
            DomainError::NotFound(message) => AppError::NotFound(message),
            DomainError::AlreadyExists(message) => AppError::AlreadyExists(message),
            DomainError::AlreadyRegistered => AppError::AlreadyRegistered,
            DomainError::InvalidState(message) => AppError::InvalidState(message),
        }
    }
}

impl From<ValidationError> for AppError {
    fn from(error: ValidationError) -> Self {
        AppError::BadInput(error.to_string())
    }
}

impl From<sqlx::Error> for AppError {
    fn from(error: sqlx::Error) -> Self {
        if is_unreachable(&error) {
            AppError::Unavailable("the database is unavailable; retry shortly".into())
        } else {
            AppError::internal(error)
        }
    }
}

/// The one mapping of store errors: every refusal (nothing was written) to what the client is
/// told, so that `?` on a store call can never turn a refusal into an internal error.
impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        match error {
            // The stream moved, or another request with the same commandId committed first,
            // or a guard of the write no longer holds (a course retired, a trainee forgotten,
            // a key changed), or the write lost a lock cycle: nothing was written, and the
            // command is decided again on what is stored (which finds the winner's record).
            StoreError::VersionConflict
            | StoreError::DuplicateCommand
            | StoreError::Refused
            | StoreError::Deadlock => AppError::ConcurrencyConflict,
            // A cross-stream rule, possibly for a concurrent command that committed first.
            StoreError::Taken(UniqueRule::CourseCode) => {
                AppError::AlreadyExists("a course with this code exists already".into())
            }
            StoreError::Taken(UniqueRule::TraineeEmail) => {
                AppError::AlreadyExists("a trainee with this email exists already".into())
            }
            StoreError::Taken(UniqueRule::ActiveEnrollment) => AppError::AlreadyRegistered,
            StoreError::UnknownTenant => AppError::Unauthenticated("unknown tenant".into()),
            StoreError::Database(error) => AppError::from(error),
            StoreError::OutcomeUnknown(cause) => {
                tracing::warn!(cause = %cause, "a write's outcome is unknown");
                AppError::Unavailable(
                    "the database connection was lost while the command was written; retry \
                     with the same commandId to learn whether it was"
                        .into(),
                )
            }
            other => AppError::internal(other),
        }
    }
}

/// Whether an error means the database cannot be reached or is going away, rather than that
/// this statement failed: no connection within the pool's acquire timeout (admission keeps a
/// healthy server's work from waiting that long), a broken connection, or PostgreSQL's
/// connection-exception (08) and shutdown (57P) classes.
fn is_unreachable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
        sqlx::Error::Database(error) => error
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_refusal_of_the_store_becomes_an_internal_error() {
        let refusals = [
            StoreError::VersionConflict,
            StoreError::DuplicateCommand,
            StoreError::Refused,
            StoreError::Deadlock,
            StoreError::Taken(UniqueRule::CourseCode),
            StoreError::Taken(UniqueRule::TraineeEmail),
            StoreError::Taken(UniqueRule::ActiveEnrollment),
            StoreError::UnknownTenant,
        ];
        for refusal in refusals {
            let shown = format!("{refusal:?}");
            let error = AppError::from(refusal);
            assert_ne!(error.code(), "INTERNAL_SERVER_ERROR", "{shown}");
        }
        assert_eq!(
            AppError::from(StoreError::Taken(UniqueRule::ActiveEnrollment)).code(),
            "ALREADY_REGISTERED"
        );
        assert_eq!(
            AppError::from(StoreError::Taken(UniqueRule::CourseCode)).code(),
            "ALREADY_EXISTS"
        );
    }
}
