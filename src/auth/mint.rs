//! HS256 token minting for development and scripts (`coursetrail token ...`). Production
//! tokens come from the identity provider; this exists so a dev setup needs no IdP.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use uuid::Uuid;

use super::AuthError;
use crate::domain::Role;

/// Mints HS256 tokens that a [`TokenVerifier`](super::TokenVerifier) configured with the same
/// secret, issuer and audience accepts.
pub struct TokenIssuer {
    key: EncodingKey,
    secret_is_empty: bool,
    issuer: String,
    audience: String,
}

impl fmt::Debug for TokenIssuer {
    /// Never prints the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

/// The claims [`TokenIssuer::mint`] writes.
#[derive(Serialize)]
struct MintClaims<'a> {
    sub: Uuid,
    tenant: Uuid,
    role: Role,
    iss: &'a str,
    aud: &'a str,
    exp: i64,
    iat: i64,
}

impl TokenIssuer {
    /// An issuer signing with `secret` (its UTF-8 bytes, as
    /// [`KeySource::Secret`](super::KeySource::Secret) reads it). An empty secret is refused
    /// by [`TokenIssuer::mint`], not here, so that building the issuer from configuration
    /// cannot fail.
    pub fn new(secret: &str, issuer: &str, audience: &str) -> Self {
        TokenIssuer {
            key: EncodingKey::from_secret(secret.as_bytes()),
            secret_is_empty: secret.trim().is_empty(),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        }
    }

    /// Mints a token for `subject` in `tenant_id` with `role`, valid from now for `ttl`
    /// (whole seconds, at least one).
    pub fn mint(
        &self,
        tenant_id: Uuid,
        subject: Uuid,
        role: Role,
        ttl: Duration,
    ) -> Result<String, AuthError> {
        if self.secret_is_empty {
            return Err(AuthError::Mint("empty secret"));
        }
        if tenant_id.is_nil() || subject.is_nil() {
            // The verifier refuses nil ids, so such a token would be useless.
            return Err(AuthError::Mint("nil tenant or subject id"));
        }
        if ttl.as_secs() == 0 {
            return Err(AuthError::Mint("ttl must be at least one second"));
        }
        let now = Utc::now().timestamp();
        let exp = i64::try_from(ttl.as_secs())
            .ok()
            .and_then(|ttl| now.checked_add(ttl))
            .filter(|exp| DateTime::from_timestamp(*exp, 0).is_some())
            .ok_or(AuthError::Mint("ttl too large"))?;
        let claims = MintClaims {
            sub: subject,
            tenant: tenant_id,
            role,
            iss: &self.issuer,
            aud: &self.audience,
            exp,
            iat: now,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.key)
            .map_err(|_| AuthError::Mint("signing failed"))
    }
}
