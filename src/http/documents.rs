//! Parsed GraphQL documents, by query text. A frontend sends the same few operations over and
//! over; parsing one (async-graphql's pest grammar) was a tenth of the server's CPU under load,
//! more than the command's own code. A parsed document is a pure function of its text, so it
//! is kept and handed to async-graphql (`Request::set_parsed_query`), which still runs every
//! check on it (depth, directives, validation against the schema, complexity) for each request.
//! Text that does not parse is not kept: async-graphql parses it again and reports the error.

use async_graphql::parser::types::ExecutableDocument;
use quick_cache::sync::Cache;

/// Distinct operations kept. A client sending ever-new texts only churns the cache.
const CAPACITY: usize = 1_000;
/// Longer texts are parsed every time (real operations are far shorter).
const MAX_KEPT_QUERY_BYTES: usize = 16 * 1024;

pub struct Documents {
    parsed: Cache<String, ExecutableDocument>,
}

impl Default for Documents {
    fn default() -> Self {
        Self {
            parsed: Cache::new(CAPACITY),
        }
    }
}

impl Documents {
    /// Gives the request its parsed document, from the cache or parsed now; leaves it alone
    /// when the text does not parse or is too long to keep.
    pub fn prepare(&self, request: &mut async_graphql::Request) {
        if request.query.len() > MAX_KEPT_QUERY_BYTES {
            return;
        }
        let document = match self.parsed.get(request.query.as_str()) {
            Some(document) => document,
            None => match async_graphql::parser::parse_query(&request.query) {
                Ok(document) => {
                    self.parsed.insert(request.query.clone(), document.clone());
                    document
                }
                Err(_) => return,
            },
        };
        request.set_parsed_query(document);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepared(documents: &Documents, query: &str) -> String {
        let mut request = async_graphql::Request::new(query);
        documents.prepare(&mut request);
        format!("{:?}", request.parsed_query().map_err(|e| e.message))
    }

    #[test]
    fn a_document_is_parsed_once_and_handed_out_unchanged() {
        let documents = Documents::default();
        let query = "mutation($i: StartCourseInput!) { startCourse(input: $i) { position } }";
        let fresh = async_graphql::parser::parse_query(query).unwrap();
        let first = prepared(&documents, query);
        assert_eq!(first, format!("{:?}", Ok::<_, String>(fresh)));
        assert!(documents.parsed.get(query).is_some());
        assert_eq!(prepared(&documents, query), first);
    }

    #[test]
    fn text_that_does_not_parse_or_is_too_long_is_not_kept() {
        let documents = Documents::default();
        let broken = "mutation { startCourse(";
        assert!(prepared(&documents, broken).starts_with("Err("));
        assert!(documents.parsed.get(broken).is_none());
        let long = format!("{{ __typename }}{}", " ".repeat(MAX_KEPT_QUERY_BYTES));
        assert!(prepared(&documents, &long).starts_with("Ok("));
        assert!(documents.parsed.get(long.as_str()).is_none());
    }
}
