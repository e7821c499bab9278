//! Relay connections over keyset pages: `first` (capped) and an opaque `after` cursor that
//! wraps the page's key (a UUID for projections, a tenant position for the log).

use super::error::to_graphql;
use crate::app::AppError;
use async_graphql::OutputType;
use async_graphql::connection::{Connection, CursorType, Edge, OpaqueCursor};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

pub const DEFAULT_PAGE_SIZE: i32 = 20;
pub const MAX_PAGE_SIZE: i32 = 100;

pub struct PageArgs<K = Uuid> {
    pub first: i64,
    pub after: Option<K>,
}

impl<K: Serialize + DeserializeOwned> PageArgs<K> {
    pub fn parse(first: Option<i32>, after: Option<String>) -> async_graphql::Result<Self> {
        let first = first.unwrap_or(DEFAULT_PAGE_SIZE);
        if !(0..=MAX_PAGE_SIZE).contains(&first) {
            return Err(to_graphql(AppError::BadInput(format!(
                "first must be between 0 and {MAX_PAGE_SIZE}"
            ))));
        }
        let after = after
            .map(|cursor| decode_cursor(&cursor, "after"))
            .transpose()?;
        Ok(Self {
            first: i64::from(first),
            after,
        })
    }

    /// One more row than asked for, to learn whether there is a next page.
    pub fn fetch_limit(&self) -> i64 {
        self.first + 1
    }
}

/// The key inside an opaque cursor; `BAD_USER_INPUT` naming `argument` when it is not one.
pub fn decode_cursor<K: Serialize + DeserializeOwned>(
    cursor: &str,
    argument: &str,
) -> async_graphql::Result<K> {
    OpaqueCursor::<K>::decode_cursor(cursor)
        .map(|c| c.0)
        .map_err(|_| to_graphql(AppError::BadInput(format!("{argument}: invalid cursor"))))
}

/// The opaque cursor of a key.
pub fn encode_cursor<K: Serialize + DeserializeOwned>(key: K) -> String {
    OpaqueCursor(key).encode_cursor()
}

/// Builds a connection from a page fetched with [`PageArgs::fetch_limit`].
pub fn page<K: Serialize + DeserializeOwned, Row, Node: OutputType>(
    args: &PageArgs<K>,
    mut rows: Vec<Row>,
    key: impl Fn(&Row) -> K,
    node: impl Fn(Row) -> Node,
) -> Connection<String, Node> {
    let has_next = rows.len() as i64 > args.first;
    rows.truncate(args.first as usize);
    let mut connection = Connection::new(args.after.is_some(), has_next);
    connection.edges.extend(rows.into_iter().map(|row| {
        let cursor = encode_cursor(key(&row));
        Edge::new(cursor, node(row))
    }));
    connection
}
