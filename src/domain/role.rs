//! The roles a person holds inside a tenant. What each role may do is decided by the
//! application layer (`app`); how a role is proven (a token's `role` claim) is `auth`'s.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a person may do inside their tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Manages the tenant.
    Admin,
    /// Runs courses.
    Instructor,
    /// Takes courses.
    Trainee,
}

impl Role {
    /// Every role, in a stable order.
    pub const ALL: [Role; 3] = [Role::Admin, Role::Instructor, Role::Trainee];

    /// The one spelling used everywhere a role is written down (token claims, the command
    /// line, stored events): `"admin"`, `"instructor"` or `"trainee"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Instructor => "instructor",
            Role::Trainee => "trainee",
        }
    }

    /// Strict parse of the exact [`Role::as_str`] spelling, nothing else; for text a machine
    /// wrote (a token claim, a stored row). People's input goes through [`FromStr`] instead.
    pub fn parse(value: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == value)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error from parsing a [`Role`] from text that names no role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?} (expected admin, instructor or trainee)")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    /// Parses a role name for the CLI. Case-insensitive and trimmed, because people type it;
    /// token claims go through the strict [`Role::parse`] instead.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim();
        Role::ALL
            .into_iter()
            .find(|role| role.as_str().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn role_text_forms() {
        for role in Role::ALL {
            assert_eq!(role.to_string(), role.as_str());
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
            assert_eq!(Role::parse(role.as_str()), Some(role));
            assert_eq!(
                serde_json::to_value(role).expect("serialize"),
                json!(role.as_str())
            );
        }
        assert_eq!(" Instructor ".parse::<Role>(), Ok(Role::Instructor));
        assert_eq!("root".parse::<Role>(), Err(UnknownRole("root".to_owned())));
    }

    #[test]
    fn strict_parse_takes_only_the_exact_spelling() {
        for loose in ["Admin", " admin", "ADMIN", "", "root"] {
            assert_eq!(Role::parse(loose), None, "{loose:?}");
        }
    }
}
