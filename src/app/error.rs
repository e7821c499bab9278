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

/// Every code a client can receive in `extensions.code`, from the application or from the
/// request's own handling, with its HTTP status and retry hint: the one table every interface
/// (GraphQL, HTTP, WebSocket, the exports) renders errors through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    Unauthenticated,
    Forbidden,
    NotFound,
    BadUserInput,
    AlreadyRegistered,
    AlreadyExists,
    InvalidState,
    ConcurrencyConflict,
    CommandIdReused,
    RateLimited,
    Overloaded,
    DatabaseUnavailable,
    SlowConsumer,
    Timeout,
    Internal,
    /// A request that is not a GraphQL request (no query, not JSON, a bad batch).
    BadRequest,
    MethodNotAllowed,
    UnsupportedMediaType,
    PayloadTooLarge,
    RequestTimeout,
    TooManyOperations,
    GraphqlParseFailed,
    GraphqlValidationFailed,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 23] = [
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::BadUserInput,
        ErrorCode::AlreadyRegistered,
        ErrorCode::AlreadyExists,
        ErrorCode::InvalidState,
        ErrorCode::ConcurrencyConflict,
        ErrorCode::CommandIdReused,
        ErrorCode::RateLimited,
        ErrorCode::Overloaded,
        ErrorCode::DatabaseUnavailable,
        ErrorCode::SlowConsumer,
        ErrorCode::Timeout,
        ErrorCode::Internal,
        ErrorCode::BadRequest,
        ErrorCode::MethodNotAllowed,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::PayloadTooLarge,
        ErrorCode::RequestTimeout,
        ErrorCode::TooManyOperations,
        ErrorCode::GraphqlParseFailed,
        ErrorCode::GraphqlValidationFailed,
    ];

    /// The table: the code's name, the HTTP status of a request refused with it as a whole,
    /// and, for a code that asks the client to come back later, after how many seconds.
    const fn wire(self) -> (&'static str, u16, Option<u64>) {
        match self {
            ErrorCode::Unauthenticated => ("UNAUTHENTICATED", 401, None),
            ErrorCode::Forbidden => ("FORBIDDEN", 403, None),
            ErrorCode::NotFound => ("NOT_FOUND", 404, None),
            ErrorCode::BadUserInput => ("BAD_USER_INPUT", 400, None),
            ErrorCode::AlreadyRegistered => ("ALREADY_REGISTERED", 409, None),
            ErrorCode::AlreadyExists => ("ALREADY_EXISTS", 409, None),
            ErrorCode::InvalidState => ("INVALID_STATE", 409, None),
            ErrorCode::ConcurrencyConflict => ("CONCURRENCY_CONFLICT", 409, None),
            ErrorCode::CommandIdReused => ("COMMAND_ID_REUSED", 409, None),
            ErrorCode::RateLimited => ("RATE_LIMITED", 429, Some(1)),
            ErrorCode::Overloaded => ("OVERLOADED", 503, Some(1)),
            ErrorCode::DatabaseUnavailable => ("DATABASE_UNAVAILABLE", 503, Some(1)),
            ErrorCode::SlowConsumer => ("SLOW_CONSUMER", 400, None),
            ErrorCode::Timeout => ("TIMEOUT", 504, None),
            ErrorCode::Internal => ("INTERNAL_SERVER_ERROR", 500, None),
            ErrorCode::BadRequest => ("BAD_REQUEST", 400, None),
            ErrorCode::MethodNotAllowed => ("METHOD_NOT_ALLOWED", 405, None),
            ErrorCode::UnsupportedMediaType => ("UNSUPPORTED_MEDIA_TYPE", 415, None),
            ErrorCode::PayloadTooLarge => ("PAYLOAD_TOO_LARGE", 413, None),
            ErrorCode::RequestTimeout => ("REQUEST_TIMEOUT", 408, None),
            ErrorCode::TooManyOperations => ("TOO_MANY_OPERATIONS", 400, None),
            ErrorCode::GraphqlParseFailed => ("GRAPHQL_PARSE_FAILED", 400, None),
            ErrorCode::GraphqlValidationFailed => ("GRAPHQL_VALIDATION_FAILED", 400, None),
        }
    }

    /// The stable `extensions.code`.
    pub const fn as_str(self) -> &'static str {
        self.wire().0
    }

    /// The HTTP status of a request refused as a whole with this code.
    pub const fn http_status(self) -> u16 {
        self.wire().1
    }

    /// For a code that asks the client to come back later: after how many seconds
    /// (`Retry-After`, `extensions.retryAfterSeconds`).
    pub const fn retry_after_seconds(self) -> Option<u64> {
        self.wire().2
    }

    /// The code of this name (`None` for a name no error carries).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|code| code.as_str() == name)
    }
}

impl AppError {
    /// The stable code of this error, with its HTTP status and retry hint.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            AppError::Unauthenticated(_) => ErrorCode::Unauthenticated,
            AppError::Forbidden(_) => ErrorCode::Forbidden,
            AppError::NotFound(_) => ErrorCode::NotFound,
            AppError::BadInput(_) => ErrorCode::BadUserInput,
            AppError::AlreadyRegistered => ErrorCode::AlreadyRegistered,
            AppError::AlreadyExists(_) => ErrorCode::AlreadyExists,
            AppError::InvalidState(_) => ErrorCode::InvalidState,
            AppError::ConcurrencyConflict => ErrorCode::ConcurrencyConflict,
            AppError::CommandIdReused(_) => ErrorCode::CommandIdReused,
            AppError::RateLimited(_) => ErrorCode::RateLimited,
            AppError::Overloaded(_) => ErrorCode::Overloaded,
            AppError::Unavailable(_) => ErrorCode::DatabaseUnavailable,
            AppError::SlowConsumer => ErrorCode::SlowConsumer,
            AppError::Timeout(_) => ErrorCode::Timeout,
            AppError::Internal(_) => ErrorCode::Internal,
        }
    }

    /// The stable `extensions.code` of this error.
    pub fn code(&self) -> &'static str {
        self.error_code().as_str()
    }

    /// For errors a client should retry later: after how many seconds (HTTP's `Retry-After`).
    pub fn retry_after_seconds(&self) -> Option<u64> {
        self.error_code().retry_after_seconds()
    }

    /// Logs the cause of an internal error (never shown to the client); every interface calls
    /// this where it renders an error.
    pub fn log_if_internal(&self) {
        if let AppError::Internal(cause) = self {
            tracing::error!(error = format!("{cause:#}"), "internal error");
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

    fn operations_page() -> String {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md");
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn every_code_has_one_name_and_the_operations_page_lists_it_with_its_status() {
        let page = operations_page();
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code), "{code:?}");
            let row = format!("| `{}` | {} |", code.as_str(), code.http_status());
            assert!(
                page.contains(&row),
                "docs/operations.md lacks the row {row}"
            );
        }
    }

    #[test]
    fn every_outcome_an_alert_of_the_operations_page_matches_is_a_code_the_server_emits() {
        let page = operations_page();
        let mut alternatives = 0;
        for (at, _) in page.match_indices("outcome=~\"") {
            let rest = &page[at + "outcome=~\"".len()..];
            let pattern = &rest[..rest.find('"').unwrap()];
            for outcome in pattern.split('|') {
                alternatives += 1;
                assert!(
                    outcome == "ok" || ErrorCode::parse(outcome).is_some(),
                    "an alert matches the outcome {outcome}, which no operation is counted with"
                );
            }
        }
        assert!(alternatives > 0, "the page has an alert on outcomes");
    }

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
