//! Bearer-token (JWT) authentication: this module owns turning an `Authorization: Bearer`
//! token into a verified [`Principal`] (a request's tenant, subject and role: what the
//! application layer's `Caller` is made from), and minting HS256 tokens for development and
//! scripts.
//!
//! - `keys.rs`: key sources ([`KeySource`]: an HS256 secret, a PEM public key, a local JWKS
//!   file), read and checked once at startup, each key pinned to one algorithm.
//! - `verify.rs`: [`TokenVerifier`], the signature and claim checks (`exp`/`nbf`/`iss`/`aud`/
//!   `sub`/`tenant`/`role`), and [`Principal`], which only the verifier can make.
//! - `mint.rs`: [`TokenIssuer`].
//!
//! It does not fetch keys over the network (no remote JWKS; `jku`, `jwk`, `x5u` and `x5c`
//! headers are ignored), refresh or revoke tokens, decide what a role may do (the roles are the
//! domain's, their rights the application layer's), or log: callers log
//! [`TokenVerifier::warnings`] once at startup and map every [`AuthError`] to UNAUTHENTICATED.

use std::path::PathBuf;

mod keys;
mod mint;
mod verify;

#[cfg(test)]
mod tests;

pub use crate::domain::{Role, UnknownRole};
pub use keys::KeySource;
pub use mint::TokenIssuer;
pub use verify::{Principal, TokenVerifier};

/// Clock-skew allowance applied to `exp` and `nbf` when the configuration does not say otherwise.
pub const DEFAULT_LEEWAY_SECONDS: u64 = 30;

/// Largest accepted leeway: beyond a few minutes, "expired" stops meaning much.
pub const MAX_LEEWAY_SECONDS: u64 = 300;

/// HS256 secrets shorter than this are accepted but reported in [`TokenVerifier::warnings`]
/// (RFC 7518 §3.2 asks for a key at least as long as the hash output).
pub const RECOMMENDED_MIN_SECRET_BYTES: usize = 32;

/// Token validation settings, built from configuration.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    /// Where the verification key(s) come from.
    pub keys: KeySource,
    /// The exact `iss` value tokens must carry.
    pub issuer: String,
    /// The `aud` value tokens must carry (as the string, or as one entry of an array).
    pub audience: String,
    /// Clock-skew allowance for `exp` and `nbf`, in seconds (default 30, at most 300).
    pub leeway_seconds: u64,
}

impl JwtSettings {
    /// Settings with the default leeway of [`DEFAULT_LEEWAY_SECONDS`].
    pub fn new(keys: KeySource, issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        JwtSettings {
            keys,
            issuer: issuer.into(),
            audience: audience.into(),
            leeway_seconds: DEFAULT_LEEWAY_SECONDS,
        }
    }
}

/// Why a token was refused. Every variant means UNAUTHENTICATED to the client; the messages
/// are short and safe to return (they never echo token contents).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Not a well-formed JWT (wrong shape, bad base64, bad JSON, unsupported `crit`, too long).
    #[error("malformed token")]
    Malformed,
    /// The header names no algorithm we accept for the selected key (`none`, an unknown one,
    /// none at all, or one other than the key's).
    #[error("unsupported algorithm")]
    UnsupportedAlgorithm,
    /// The signature does not match the header and payload under the selected key.
    #[error("invalid token signature")]
    InvalidSignature,
    /// The token's `kid` names no key in the configured JWKS.
    #[error("unknown key id")]
    UnknownKeyId,
    /// The token has no `kid` but the configured JWKS holds more than one key.
    #[error("missing key id")]
    MissingKeyId,
    /// `exp` is in the past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// A required claim is absent or has the wrong value or type; names the claim.
    #[error("missing or invalid claim: {0}")]
    InvalidClaim(&'static str),
    /// [`TokenIssuer::mint`] could not produce a token; says why.
    #[error("cannot mint token: {0}")]
    Mint(&'static str),
}

/// Why the JWT configuration cannot be used; reported once at startup.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    /// A required setting (secret, issuer, audience) is empty.
    #[error("JWT {0} must not be empty")]
    Empty(&'static str),
    /// The leeway is larger than [`MAX_LEEWAY_SECONDS`].
    #[error("JWT leeway of {seconds} s is above the maximum of {max} s")]
    LeewayTooLarge {
        /// The configured leeway.
        seconds: u64,
        /// The largest accepted leeway.
        max: u64,
    },
    /// A key file could not be read.
    #[error("cannot read JWT key file {}: {source}", .path.display())]
    ReadFile {
        /// The configured path.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The PEM file is not a usable RSA or EC P-256 public key.
    #[error("invalid JWT public key in {}: {reason}", .path.display())]
    InvalidKey {
        /// The configured path.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The JWKS file is not a usable set of public verification keys.
    #[error("invalid JWKS file {}: {reason}", .path.display())]
    InvalidJwks {
        /// The configured path.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// Extracts the token from an `Authorization: Bearer <token>` header value (case-insensitive
/// scheme); `None` if the value is empty, uses another scheme, or is not a single token.
pub fn bearer_token(header_value: &str) -> Option<&str> {
    let (scheme, token) = header_value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim_start_matches(' ');
    if token.is_empty() || token.contains(char::is_whitespace) {
        return None;
    }
    Some(token)
}
