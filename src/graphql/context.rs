//! What a resolver can reach: the application, and the verified caller of this request.

use super::error::to_graphql;
use super::loaders::{RowLoader, Rows};
use crate::app::{App, AppError, Caller, CommandOptions};
use async_graphql::Context;
use std::sync::Arc;
use uuid::Uuid;

/// Per-request data, put into the GraphQL request by the HTTP layer.
#[derive(Clone)]
pub struct RequestContext {
    /// `None` when the request carried no token.
    pub caller: Option<Caller>,
    /// Ties together everything this request causes (from `X-Correlation-Id` or generated).
    pub correlation_id: Uuid,
    /// The caller's row loader (`None` without a caller).
    rows: Option<Arc<RowLoader>>,
}

impl RequestContext {
    pub fn new(app: &App, caller: Option<Caller>, correlation_id: Uuid) -> Self {
        let rows = caller
            .clone()
            .map(|caller| Arc::new(Rows::loader(app.clone(), caller)));
        Self {
            caller,
            correlation_id,
            rows,
        }
    }
}

/// The request's row loader ([`Rows`]), or `UNAUTHENTICATED`.
pub fn rows<'a>(ctx: &'a Context<'_>) -> async_graphql::Result<&'a RowLoader> {
    ctx.data_opt::<RequestContext>()
        .and_then(|request| request.rows.as_deref())
        .ok_or_else(|| {
            to_graphql(AppError::Unauthenticated(
                "a bearer token is required".into(),
            ))
        })
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
/// With a `commandId`, the mutation's arguments (without it) go along in a canonical form, so
/// that the id reused for another input is told apart from a retry.
pub fn command_options(ctx: &Context<'_>, command_id: Option<Uuid>) -> CommandOptions {
    let input = command_id.and_then(|_| {
        let arguments = ctx.field().arguments().ok()?;
        let arguments: serde_json::Map<String, serde_json::Value> = arguments
            .into_iter()
            .filter_map(|(name, value)| Some((name.to_string(), value.into_json().ok()?)))
            .collect();
        let mut arguments = serde_json::Value::Object(arguments);
        canonical(&mut arguments);
        Some(format!("{}{arguments}", ctx.field().name()))
    });
    CommandOptions {
        command_id,
        correlation_id: ctx.data_opt::<RequestContext>().map(|r| r.correlation_id),
        input,
    }
}

/// Drops `commandId` and null fields (an omitted optional field means the same), and orders
/// every object's keys, so equal inputs print equal however they were written.
fn canonical(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(fields) => {
            fields.retain(|name, value| name != "commandId" && !value.is_null());
            let mut sorted: Vec<(String, serde_json::Value)> =
                std::mem::take(fields).into_iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            for (name, mut value) in sorted {
                canonical(&mut value);
                fields.insert(name, value);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(canonical),
        _ => {}
    }
}
