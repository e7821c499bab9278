//! What a resolver can reach: the application, and the verified caller of this request.

use super::error::to_graphql;
use crate::app::{App, AppError, Caller, CommandOptions};
use async_graphql::Context;
use uuid::Uuid;

/// Per-request data, put into the GraphQL request by the HTTP layer.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// `None` when the request carried no token.
    pub caller: Option<Caller>,
    /// Ties together everything this request causes (from `X-Correlation-Id` or generated).
    pub correlation_id: Uuid,
}

pub fn app<'a>(ctx: &'a Context<'_>) -> &'a App {
    ctx.data_unchecked::<App>()
}

/// The verified caller, or `UNAUTHENTICATED`.
pub fn caller<'a>(ctx: &'a Context<'_>) -> async_graphql::Result<&'a Caller> {
    ctx.data_opt::<RequestContext>()
        .and_then(|request| request.caller.as_ref())
        .ok_or_else(|| {
            to_graphql(AppError::Unauthenticated(
                "a bearer token is required".into(),
            ))
        })
}

/// Command options from a mutation input's `commandId` and the request's correlation id.
pub fn command_options(ctx: &Context<'_>, command_id: Option<Uuid>) -> CommandOptions {
    CommandOptions {
        command_id,
        correlation_id: ctx.data_opt::<RequestContext>().map(|r| r.correlation_id),
    }
}
