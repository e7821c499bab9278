//! Validated values ("parse, don't validate"): each is built once at the edge and cannot hold
//! input that the domain or PostgreSQL would reject later (NUL characters, oversized text, …).

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a value was refused; `field` names the input field so a client can point at it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: &'static str,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// Checks what every free-text field shares: trimmed, not empty, bounded, and free of control
/// characters (PostgreSQL rejects `\0` in `text` and `jsonb`; other controls are never wanted).
fn clean_text(field: &'static str, raw: &str, max_chars: usize) -> Result<String, ValidationError> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if text.chars().count() > max_chars {
        return Err(ValidationError::new(
            field,
            format!("must be at most {max_chars} characters"),
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(ValidationError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(text.to_owned())
}

macro_rules! text_value {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The validated text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

text_value!(
    /// A course code, unique per tenant: 1–32 letters, digits, `-`, `_` or `.`, stored upper-case
    /// so that `safety-101` and `SAFETY-101` are the same course.
    CourseCode
);
text_value!(
    /// A course title: 1–200 characters.
    CourseTitle
);
text_value!(
    /// An email address, unique per tenant, stored lower-case.
    Email
);
text_value!(
    /// A person's display name: 1–200 characters.
    PersonName
);
text_value!(
    /// Why a registration was withdrawn: 1–1000 characters.
    WithdrawalReason
);

impl CourseCode {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let code = clean_text("code", raw, 32)?;
        if !code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(ValidationError::new(
                "code",
                "may contain only letters, digits, '-', '_' and '.'",
            ));
        }
        Ok(Self(code.to_ascii_uppercase()))
    }
}

impl CourseTitle {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        clean_text("title", raw, 200).map(Self)
    }
}

impl PersonName {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        clean_text("name", raw, 200).map(Self)
    }
}

impl WithdrawalReason {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        clean_text("reason", raw, 1000).map(Self)
    }
}

impl Email {
    /// A deliberately modest check (one `@`, something on both sides, a dot in the domain, no
    /// spaces): the real proof of an address is a mail that arrives, which is not our job.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let email = clean_text("email", raw, 254)?.to_lowercase();
        let valid = match email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !email.contains(char::is_whitespace)
            }
            None => false,
        };
        if !valid {
            return Err(ValidationError::new(
                "email",
                "is not a valid email address",
            ));
        }
        Ok(Self(email))
    }
}

/// A test score, 0–100 inclusive; also used for a course's passing score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Score(u8);

impl Score {
    pub fn parse(field: &'static str, raw: i64) -> Result<Self, ValidationError> {
        match u8::try_from(raw) {
            Ok(value) if value <= 100 => Ok(Self(value)),
            _ => Err(ValidationError::new(field, "must be between 0 and 100")),
        }
    }
    pub const fn value(self) -> u8 {
        self.0
    }
}

/// The answers of a submitted test: any JSON, at most 64 KiB when serialised, with no NUL
/// character in any key or string (PostgreSQL's `jsonb` cannot store `\u0000`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Answers(serde_json::Value);

impl Answers {
    pub const MAX_BYTES: usize = 64 * 1024;

    pub fn parse(value: serde_json::Value) -> Result<Self, ValidationError> {
        fn has_nul(value: &serde_json::Value) -> bool {
            match value {
                serde_json::Value::String(s) => s.contains('\0'),
                serde_json::Value::Array(items) => items.iter().any(has_nul),
                serde_json::Value::Object(map) => map
                    .iter()
                    .any(|(key, item)| key.contains('\0') || has_nul(item)),
                _ => false,
            }
        }
        if has_nul(&value) {
            return Err(ValidationError::new(
                "answers",
                "must not contain NUL characters",
            ));
        }
        let size = serde_json::to_vec(&value)
            .map(|bytes| bytes.len())
            .unwrap_or(usize::MAX);
        if size > Self::MAX_BYTES {
            return Err(ValidationError::new(
                "answers",
                format!("must be at most {} bytes of JSON", Self::MAX_BYTES),
            ));
        }
        Ok(Self(value))
    }

    pub fn as_json(&self) -> &serde_json::Value {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn course_codes_are_normalised_and_checked() {
        assert_eq!(
            CourseCode::parse(" safety-101 ").unwrap().as_str(),
            "SAFETY-101"
        );
        assert!(CourseCode::parse("").is_err());
        assert!(CourseCode::parse("has space").is_err());
        assert!(CourseCode::parse(&"A".repeat(33)).is_err());
    }

    #[test]
    fn text_rejects_nul_and_oversize() {
        assert!(CourseTitle::parse("a\0b").is_err());
        assert!(PersonName::parse(&"x".repeat(201)).is_err());
        assert!(PersonName::parse("   ").is_err());
        assert_eq!(PersonName::parse(" Ada ").unwrap().as_str(), "Ada");
    }

    #[test]
    fn emails_are_lower_cased_and_checked() {
        assert_eq!(
            Email::parse("Ada@Example.COM").unwrap().as_str(),
            "ada@example.com"
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "a@b@c.d",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn scores_are_bounded() {
        assert_eq!(Score::parse("score", 0).unwrap().value(), 0);
        assert_eq!(Score::parse("score", 100).unwrap().value(), 100);
        assert!(Score::parse("score", -1).is_err());
        assert!(Score::parse("score", 101).is_err());
    }

    #[test]
    fn answers_reject_nul_anywhere_and_oversize() {
        assert!(Answers::parse(serde_json::json!({"q1": "a\u{0}"})).is_err());
        assert!(Answers::parse(serde_json::json!({"q\u{0}": 1})).is_err());
        assert!(Answers::parse(serde_json::json!([["deep\u{0}"]])).is_err());
        assert!(Answers::parse(serde_json::json!("x".repeat(70_000))).is_err());
        assert!(Answers::parse(serde_json::json!({"q1": "b"})).is_ok());
    }
}
