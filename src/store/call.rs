//! A call of the database write function `coursetrail_append`, with its arguments bound by
//! position, each under the name of the parameter it is bound to.
//!
//! Why: the function takes dozens of positional parameters, many of the same type side by
//! side, so arguments bound in the wrong order would run and store wrong data. Each argument
//! is bound with its parameter's name next to it, and a test (`tests/api/schema.rs`) checks
//! the names, in order, against its signature in `pg_proc`: two lines swapped in Rust, or two
//! parameters swapped in a migration, fail it.

use sqlx::postgres::Postgres;

/// A query of the write path, with its bound arguments.
pub type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

/// A database function and its statement: `SELECT name($1, …, $arity)`.
pub struct Function {
    pub name: &'static str,
    statement: std::sync::OnceLock<String>,
    arity: usize,
}

impl Function {
    pub const fn new(name: &'static str, arity: usize) -> Self {
        Self {
            name,
            statement: std::sync::OnceLock::new(),
            arity,
        }
    }

    fn statement(&self) -> &str {
        self.statement.get_or_init(|| {
            let placeholders: Vec<String> = (1..=self.arity).map(|n| format!("${n}")).collect();
            format!("SELECT {}({})", self.name, placeholders.join(", "))
        })
    }

    /// A call with no argument bound yet.
    pub fn call<'q>(&'static self) -> Call<'q> {
        Call {
            function: self,
            query: sqlx::query(self.statement()),
            names: Vec::with_capacity(self.arity),
        }
    }
}

/// A call being bound: the query, and the names of the parameters bound so far.
pub struct Call<'q> {
    function: &'static Function,
    query: PgQuery<'q>,
    names: Vec<&'static str>,
}

impl<'q> Call<'q> {
    /// Binds the next argument, to the parameter `name`.
    pub fn arg<T>(mut self, name: &'static str, value: T) -> Self
    where
        T: 'q + sqlx::Encode<'q, Postgres> + sqlx::Type<Postgres>,
    {
        self.query = self.query.bind(value);
        self.names.push(name);
        self
    }

    /// The parameters bound, in order.
    pub fn names(&self) -> &[&'static str] {
        &self.names
    }

    /// The query to run, with every argument bound.
    pub fn query(self) -> PgQuery<'q> {
        debug_assert_eq!(
            self.names.len(),
            self.function.arity,
            "{}: every parameter bound",
            self.function.name
        );
        self.query
    }
}
