//! The GraphQL layer: a thin translation between the contract in `schema.graphql` and the
//! application. Resolvers parse input into domain values, call one application function, and
//! wrap the result; they hold no SQL and no business rules.

mod audit;
mod context;
mod error;
mod extension;
mod loaders;
mod mutation;
mod pagination;
mod query;
mod reports;
mod scalars;
mod types;

pub use context::RequestContext;
pub use error::{PARSE_FAILED, VALIDATION_FAILED, code_of, ensure_code, request_error};

use crate::app::App;
use async_graphql::{MergedObject, Schema, SchemaBuilder};

// The roots: each area's operations, merged so each area keeps its own file. (Plain comments:
// a doc comment would become the root type's description in the SDL.)
#[derive(MergedObject, Default)]
pub struct Query(query::CoreQuery, reports::ReportQuery, audit::AuditQuery);

#[derive(MergedObject, Default)]
pub struct Mutation(mutation::CoreMutation, reports::ReportMutation);

pub type AppSchema = Schema<Query, Mutation, audit::Subscription>;

/// Deepest selection nesting accepted. GraphiQL's introspection query nests 13 levels.
pub const MAX_DEPTH: usize = 16;
/// Highest query complexity (roughly: fields selected, lists counted once) accepted.
pub const MAX_COMPLEXITY: usize = 2_000;
/// What a field that replays the tenant's whole log (a report, a rebuild) counts toward
/// [`MAX_COMPLEXITY`]: an operation holds at most three, whatever else it selects. (Each
/// also takes a slot of the reports' share: `app::admission`.)
pub const REPLAY_COMPLEXITY: usize = 500;

fn builder() -> SchemaBuilder<Query, Mutation, audit::Subscription> {
    Schema::build(Query::default(), Mutation::default(), audit::Subscription)
        .extension(extension::PhaseCodes)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
        .limit_directives(16)
        // Field suggestions ("did you mean …?") would map the schema for anyone probing it.
        .disable_suggestions()
}

/// The schema served over HTTP.
pub fn build_schema(app: App) -> AppSchema {
    builder().data(app).finish()
}

/// The SDL of the served schema: what `schema.graphql` must contain.
pub fn sdl() -> String {
    builder().finish().sdl()
}
