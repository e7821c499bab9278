//! Scalars of the contract beyond GraphQL's built-in ones.

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};

/// A tenant log position or event count (see the scalar's description in the SDL).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position(pub i64);

impl From<i64> for Position {
    fn from(position: i64) -> Self {
        Position(position)
    }
}

impl From<u64> for Position {
    fn from(count: u64) -> Self {
        // The log's positions are PostgreSQL bigints, so a count of its events fits.
        Position(i64::try_from(count).unwrap_or(i64::MAX))
    }
}

const EXPECTED: &str = "a Position is a non-negative 64-bit integer written as a decimal string";

/// A position in a tenant's event log, or a number of its events: a non-negative 64-bit
/// integer, sent as a decimal string because GraphQL's `Int` is 32-bit and JSON parsers lose
/// integers above 2^53. As input, the string form is expected; an `Int` literal is also accepted.
#[Scalar(name = "Position")]
impl ScalarType for Position {
    fn parse(value: Value) -> InputValueResult<Self> {
        let parsed = match &value {
            Value::String(text) => text.parse::<i64>().ok(),
            Value::Number(number) => number.as_i64(),
            _ => return Err(InputValueError::expected_type(value)),
        };
        match parsed {
            Some(position) if position >= 0 => Ok(Position(position)),
            _ => Err(InputValueError::custom(EXPECTED)),
        }
    }

    fn is_valid(value: &Value) -> bool {
        matches!(value, Value::String(_) | Value::Number(_))
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_beyond_32_and_53_bits() {
        let big = (1_i64 << 53) + 1;
        let value = Position(big).to_value();
        assert_eq!(value, Value::String("9007199254740993".into()));
        assert_eq!(Position::parse(value).unwrap(), Position(big));
        assert_eq!(Position::parse(Value::from(7)).unwrap(), Position(7));
    }

    #[test]
    fn refuses_negative_and_non_numbers() {
        assert!(Position::parse(Value::String("-1".into())).is_err());
        assert!(Position::parse(Value::String("1e3".into())).is_err());
        assert!(Position::parse(Value::String("9223372036854775808".into())).is_err());
        assert!(Position::parse(Value::Boolean(true)).is_err());
    }
}
