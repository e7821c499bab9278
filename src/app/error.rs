//! The application's error: domain rejections, bad input, authorization, and infrastructure
//! failures, each with one stable client code. `graphql::error` turns it into a GraphQL error.

use crate::domain::{DomainError, ValidationError};
use crate::store::StoreError;

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
            AppError::Internal(_) => "INTERNAL_SERVER_ERROR",
        }
    }

    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        AppError::Internal(error.into())
    }

    /// Whether a command refused with this error wrote nothing and might have been decided
    /// differently on the stored stream: a domain refusal, a version conflict, a unique index's
    /// refusal, or a command id recorded meanwhile. (An infrastructure error is not one: a
    /// connection lost around COMMIT leaves the outcome unknown, and the command must not run
    /// again on its own.)
    pub fn may_be_stale(&self) -> bool {
        match self {
            AppError::NotFound(_)
            | AppError::AlreadyRegistered
            | AppError::AlreadyExists(_)
            | AppError::InvalidState(_)
            | AppError::ConcurrencyConflict => true,
            AppError::Internal(error) => {
                matches!(error.downcast_ref(), Some(StoreError::DuplicateCommand))
            }
            AppError::Unauthenticated(_) | AppError::Forbidden(_) | AppError::BadInput(_) => false,
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
        AppError::internal(error)
    }
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::VersionConflict => AppError::ConcurrencyConflict,
            StoreError::UnknownTenant => AppError::Unauthenticated("unknown tenant".into()),
            other => AppError::internal(other),
        }
    }
}
