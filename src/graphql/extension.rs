//! An async-graphql extension that tags parse and validation failures with their codes, so the
//! HTTP layer can answer them with 400 as the GraphQL-over-HTTP specification asks.

use super::error::with_code;
use crate::app::ErrorCode;
use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextValidation,
};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{ServerError, ServerResult, ValidationResult, Variables};
use std::sync::Arc;

pub struct PhaseCodes;

impl ExtensionFactory for PhaseCodes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(PhaseCodesExtension)
    }
}

struct PhaseCodesExtension;

#[async_graphql::async_trait::async_trait]
impl Extension for PhaseCodesExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        next.run(ctx, query, variables)
            .await
            .map_err(|error| with_code(error, ErrorCode::GraphqlParseFailed))
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx).await.map_err(|errors| {
            errors
                .into_iter()
                .map(|error| with_code(error, ErrorCode::GraphqlValidationFailed))
                .collect()
        })
    }
}
