//! Parsed GraphQL documents, by query text. A frontend sends the same few operations over and
//! over; parsing one (async-graphql's pest grammar) was a tenth of the server's CPU under load,
//! more than the command's own code. A parsed document is a pure function of its text, so it
//! is kept and handed to async-graphql (`Request::set_parsed_query`), which still runs every
//! check on it (depth, directives, validation against the schema, complexity) for each request.
//! Text that does not parse is not kept: async-graphql parses it again and reports the error.
//!
//! Before any of that, a document's size with every fragment spread expanded is measured in
//! one pass over it (each fragment once: [`expanded_size`]) and a document larger than
//! [`MAX_EXPANDED_SELECTIONS`] is refused. async-graphql's own checks walk the expanded
//! document (fragments nested ten spreads deep, eight levels: 10⁸ fields from 731 bytes), so
//! without this bound a small anonymous request could hold a runtime worker for minutes.

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use quick_cache::sync::Cache;
use std::collections::HashMap;

/// Most selections (fields, with fragments expanded) an operation document may hold. Far above
/// any real operation (GraphiQL's introspection query expands to a few hundred) and far below
/// what the complexity check could walk quickly.
pub const MAX_EXPANDED_SELECTIONS: usize = 5_000;

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

/// A document refused before validation, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TooLarge {
    #[error(
        "the operation is too large: more than {MAX_EXPANDED_SELECTIONS} selections with its fragments expanded"
    )]
    Selections,
    #[error("fragment {0} spreads itself")]
    Cycle(String),
}

impl Documents {
    /// Gives the request its parsed document, from the cache or parsed now; leaves it alone
    /// when the text does not parse (async-graphql reports that). Refuses a document too large
    /// once its fragments are expanded. Only documents that pass are kept, and only short ones.
    pub fn prepare(&self, request: &mut async_graphql::Request) -> Result<(), TooLarge> {
        if let Some(document) = self.parsed.get(request.query.as_str()) {
            request.set_parsed_query(document);
            return Ok(());
        }
        let Ok(document) = async_graphql::parser::parse_query(&request.query) else {
            return Ok(());
        };
        expanded_size(&document)?;
        if request.query.len() <= MAX_KEPT_QUERY_BYTES {
            self.parsed.insert(request.query.clone(), document.clone());
        }
        request.set_parsed_query(document);
        Ok(())
    }
}

/// The number of selections of a document with every fragment spread expanded (operations
/// and fragments counted once each as spread), up to [`MAX_EXPANDED_SELECTIONS`]. Linear in the
/// document's size: each fragment's expansion is computed once and remembered.
pub fn expanded_size(document: &ExecutableDocument) -> Result<usize, TooLarge> {
    let mut sizes = Sizes {
        document,
        fragments: HashMap::new(),
    };
    let mut total = 0usize;
    for (_, operation) in document.operations.iter() {
        total = total.saturating_add(sizes.of_set(&operation.node.selection_set.node)?);
        if total > MAX_EXPANDED_SELECTIONS {
            return Err(TooLarge::Selections);
        }
    }
    Ok(total)
}

/// Fragment expansions measured so far (`None`: being measured, i.e. on the current path).
struct Sizes<'a> {
    document: &'a ExecutableDocument,
    fragments: HashMap<&'a str, Option<usize>>,
}

impl<'a> Sizes<'a> {
    fn of_set(&mut self, set: &'a SelectionSet) -> Result<usize, TooLarge> {
        let mut size = 0usize;
        for item in &set.items {
            let of_item = match &item.node {
                Selection::Field(field) => {
                    1usize.saturating_add(self.of_set(&field.node.selection_set.node)?)
                }
                Selection::InlineFragment(inline) => {
                    self.of_set(&inline.node.selection_set.node)?
                }
                Selection::FragmentSpread(spread) => {
                    self.of_fragment(spread.node.fragment_name.node.as_str())?
                }
            };
            size = size.saturating_add(of_item);
            if size > MAX_EXPANDED_SELECTIONS {
                return Err(TooLarge::Selections);
            }
        }
        Ok(size)
    }

    fn of_fragment(&mut self, name: &'a str) -> Result<usize, TooLarge> {
        match self.fragments.get(name) {
            Some(Some(size)) => return Ok(*size),
            Some(None) => return Err(TooLarge::Cycle(name.to_owned())),
            None => {}
        }
        // An unknown fragment is left to validation, which names it.
        let Some(fragment) = self.document.fragments.get(name) else {
            return Ok(0);
        };
        self.fragments.insert(name, None);
        let size = self.of_set(&fragment.node.selection_set.node)?;
        self.fragments.insert(name, Some(size));
        Ok(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepared(documents: &Documents, query: &str) -> String {
        let mut request = async_graphql::Request::new(query);
        documents.prepare(&mut request).unwrap();
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

    /// Fragments `F1`…`Fn`, each spreading the one before `width` times.
    fn nested_fragments(levels: usize, width: usize) -> String {
        let mut query = format!("query {{ ...F{levels} }} fragment F1 on Query {{ __typename }}");
        for level in 2..=levels {
            let spreads = vec![format!("...F{}", level - 1); width].join(" ");
            query.push_str(&format!(" fragment F{level} on Query {{ {spreads} }}"));
        }
        query
    }

    #[test]
    fn fragments_are_measured_expanded_once_each_and_a_huge_expansion_is_refused_at_once() {
        let small = async_graphql::parser::parse_query(nested_fragments(3, 10)).unwrap();
        assert_eq!(expanded_size(&small), Ok(100));
        // 10^8 to 10^39 fields from a few KiB of text: refused (each fragment measured once).
        for levels in [9, 10, 40] {
            let text = nested_fragments(levels, 10);
            let mut request = async_graphql::Request::new(text.as_str());
            assert_eq!(
                Documents::default().prepare(&mut request),
                Err(TooLarge::Selections)
            );
        }
        let cycle = async_graphql::parser::parse_query(
            "query { ...A } fragment A on Query { ...B } fragment B on Query { ...A }",
        )
        .unwrap();
        assert!(matches!(expanded_size(&cycle), Err(TooLarge::Cycle(_))));
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
