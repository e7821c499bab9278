//! The synchronous projections (courses, trainees, enrollments, submissions): the SQL that
//! writes them inside a command's transaction ([`write`]), and the SQL that reads them for
//! GraphQL and for decisions ([`read`]).
//!
//! Rows are computed by the pure folds in [`rows`]; this module only moves them in and out of
//! PostgreSQL. Every statement names one tenant (Citus rule 4).

mod copy;
mod read;
pub mod rebuild;
pub mod rows;
mod write;

pub use read::*;
pub use write::{ProjectionWrite, erase_personal_columns};
