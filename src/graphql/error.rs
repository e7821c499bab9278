//! The one place where application errors become GraphQL errors with a stable
//! `extensions.code`. Internal causes are logged here and never returned.

use crate::app::{AppError, ErrorCode};
use async_graphql::{ErrorExtensions, ServerError};

/// Turns an [`AppError`] into a GraphQL error; logs internal causes.
pub fn to_graphql(error: AppError) -> async_graphql::Error {
    error.log_if_internal();
    let code = error.code();
    let retry_after = error.retry_after_seconds();
    async_graphql::Error::new(error.to_string()).extend_with(|_, e| {
        e.set("code", code);
        if let Some(seconds) = retry_after {
            e.set("retryAfterSeconds", seconds);
        }
    })
}

/// `.gql()` on an application result: the explicit conversion resolvers use instead of `?`.
pub trait GqlResultExt<T> {
    fn gql(self) -> async_graphql::Result<T>;
}

impl<T> GqlResultExt<T> for Result<T, AppError> {
    fn gql(self) -> async_graphql::Result<T> {
        self.map_err(to_graphql)
    }
}

/// Codes for errors raised before any resolver ran.
pub const PARSE_FAILED: &str = ErrorCode::GraphqlParseFailed.as_str();
pub const VALIDATION_FAILED: &str = ErrorCode::GraphqlValidationFailed.as_str();

/// The code an error carries, if any.
pub fn code_of(error: &ServerError) -> Option<String> {
    error
        .extensions
        .as_ref()
        .and_then(|ext| ext.get("code"))
        .and_then(|value| match value {
            async_graphql::Value::String(code) => Some(code.clone()),
            _ => None,
        })
}

/// Gives every error a code. Errors that reach the response without one were raised by
/// async-graphql itself while coercing arguments (an invalid UUID, an Int out of range, …):
/// those are the client's input errors.
pub fn ensure_code(error: &mut ServerError) {
    if code_of(error).is_none() {
        error
            .extensions
            .get_or_insert_with(Default::default)
            .set("code", ErrorCode::BadUserInput.as_str());
    }
}

/// Marks errors of one phase (parse or validation) with that phase's code.
pub fn with_code(mut error: ServerError, code: ErrorCode) -> ServerError {
    let extensions = error.extensions.get_or_insert_with(Default::default);
    extensions.set("code", code.as_str());
    if let Some(seconds) = code.retry_after_seconds() {
        extensions.set("retryAfterSeconds", seconds);
    }
    error
}

/// An error for the HTTP layer, outside any GraphQL execution.
pub fn request_error(message: impl Into<String>, code: ErrorCode) -> ServerError {
    with_code(ServerError::new(message, None), code)
}
