//! Token verification: the signature under the pinned key first, then every claim, ending in
//! a [`Principal`]. Verification does no I/O; the keys were loaded once by `keys.rs`.

use std::fmt;

use chrono::{DateTime, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::keys::{self, LoadedKeys, PinnedKey};
use super::{AuthConfigError, AuthError, JwtSettings, MAX_LEEWAY_SECONDS};
use crate::domain::{Role, TenantId};

/// Tokens longer than this are refused before any parsing; ours are a few hundred bytes,
/// and the cap bounds the work an unauthenticated caller can make us do.
pub(super) const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The spec claims a token must carry; jsonwebtoken only requires `exp` by default and would
/// otherwise accept a token that simply leaves out `iss` or `aud`.
const REQUIRED_SPEC_CLAIMS: [&str; 4] = ["exp", "iss", "aud", "sub"];

/// Who is calling, as proven by a verified token.
///
/// Only [`TokenVerifier::verify`] makes one (the fields are private and there is no
/// constructor), so holding a `Principal` means a token carrying these claims passed every
/// check: code outside this module can read one, never forge one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    tenant: TenantId,
    subject: Uuid,
    role: Role,
    expires_at: DateTime<Utc>,
}

impl Principal {
    /// The tenant every query of this request is scoped to (the token's `tenant` claim).
    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    /// The person calling (the token's `sub` claim).
    pub fn subject(&self) -> Uuid {
        self.subject
    }

    /// What they may do inside the tenant (the token's `role` claim).
    pub fn role(&self) -> Role {
        self.role
    }

    /// When the token stops being accepted (the token's `exp` claim, before leeway).
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.expires_at
    }
}

/// One verification key with the validation policy built for its pinned algorithm.
struct VerifyKey {
    pinned: PinnedKey,
    validation: Validation,
}

impl VerifyKey {
    fn new(pinned: PinnedKey, settings: &JwtSettings) -> Self {
        // `Validation::new` lists exactly one algorithm, so jsonwebtoken itself also refuses a
        // header naming any other: the token never chooses how it is checked.
        let mut validation = Validation::new(pinned.algorithm);
        validation.leeway = settings.leeway_seconds;
        validation.validate_exp = true;
        // Off by default in jsonwebtoken; `nbf` is optional but must hold when present.
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.reject_tokens_expiring_in_less_than = 0;
        validation.set_required_spec_claims(&REQUIRED_SPEC_CLAIMS);
        validation.set_issuer(&[settings.issuer.as_str()]);
        validation.set_audience(&[settings.audience.as_str()]);
        VerifyKey { pinned, validation }
    }

    /// Its key id and algorithm, for `Debug`: never the key material.
    fn describe(&self) -> (Option<&str>, Algorithm) {
        (self.pinned.kid.as_deref(), self.pinned.algorithm)
    }
}

enum KeyStore {
    /// A secret or a PEM key: every token is checked against it, whatever its `kid`.
    Single(Box<VerifyKey>),
    /// A JWKS: the token's `kid` selects the key.
    Set(Vec<VerifyKey>),
}

/// Verifies bearer tokens against keys loaded once from configuration. Cheap to share
/// (`Arc`) across requests; verification does no I/O.
pub struct TokenVerifier {
    keys: KeyStore,
    issuer: String,
    warnings: Vec<String>,
}

impl fmt::Debug for TokenVerifier {
    /// Lists key ids and algorithms only; key material is never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<(Option<&str>, Algorithm)> = match &self.keys {
            KeyStore::Single(key) => vec![key.describe()],
            KeyStore::Set(keys) => keys.iter().map(VerifyKey::describe).collect(),
        };
        f.debug_struct("TokenVerifier")
            .field("keys", &keys)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// Builds a verifier, reading and parsing any key file once, here.
    pub fn new(settings: &JwtSettings) -> Result<Self, AuthConfigError> {
        if settings.issuer.trim().is_empty() {
            return Err(AuthConfigError::Empty("issuer"));
        }
        if settings.audience.trim().is_empty() {
            return Err(AuthConfigError::Empty("audience"));
        }
        if settings.leeway_seconds > MAX_LEEWAY_SECONDS {
            return Err(AuthConfigError::LeewayTooLarge {
                seconds: settings.leeway_seconds,
                max: MAX_LEEWAY_SECONDS,
            });
        }
        let mut warnings = Vec::new();
        let keys = match keys::load(&settings.keys, &mut warnings)? {
            LoadedKeys::Single(key) => KeyStore::Single(Box::new(VerifyKey::new(key, settings))),
            LoadedKeys::Set(keys) => KeyStore::Set(
                keys.into_iter()
                    .map(|key| VerifyKey::new(key, settings))
                    .collect(),
            ),
        };
        Ok(TokenVerifier {
            keys,
            issuer: settings.issuer.clone(),
            warnings,
        })
    }

    /// Things about the configuration worth a log line at startup (short secret, skipped
    /// JWKS keys); empty when all is well.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Verifies `token` (without the `Bearer ` prefix) and returns who is calling.
    ///
    /// The signature is checked before any claim, so a forged token only ever learns
    /// "invalid token signature" (or a header-level reason), never which claim was wrong.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(header_error)?;
        // RFC 7515 §4.1.11: a `crit` header lists extensions the recipient must understand,
        // and we understand none, so its mere presence means we cannot process the token.
        if header.crit.is_some() {
            return Err(AuthError::Malformed);
        }
        let key = self.select_key(header.kid.as_deref())?;
        // jsonwebtoken refuses this too (the validation lists one algorithm); checking here
        // keeps the pinning visible and independent of library defaults.
        if header.alg != key.pinned.algorithm {
            return Err(AuthError::UnsupportedAlgorithm);
        }
        let data = jsonwebtoken::decode::<RawClaims>(token, &key.pinned.key, &key.validation)
            .map_err(decode_error)?;
        self.principal(data.claims)
    }

    fn select_key(&self, kid: Option<&str>) -> Result<&VerifyKey, AuthError> {
        match &self.keys {
            KeyStore::Single(key) => Ok(key),
            KeyStore::Set(keys) => match kid {
                Some(kid) => keys
                    .iter()
                    .find(|key| key.pinned.kid.as_deref() == Some(kid))
                    .ok_or(AuthError::UnknownKeyId),
                // Without a `kid` the only unambiguous choice is a set of one.
                None => match keys.as_slice() {
                    [only] => Ok(only),
                    _ => Err(AuthError::MissingKeyId),
                },
            },
        }
    }

    /// Turns claims whose signature, `exp`, `nbf`, `aud` and presence checks already passed
    /// into a principal, checking what jsonwebtoken does not know about. The one place a
    /// [`Principal`] is made.
    fn principal(&self, claims: RawClaims) -> Result<Principal, AuthError> {
        // jsonwebtoken also accepts an array `iss` when any entry matches; RFC 7519 §4.1.1
        // makes the issuer one string, so only the exact configured string passes.
        match &claims.iss {
            Some(Value::String(iss)) if *iss == self.issuer => {}
            _ => return Err(AuthError::InvalidClaim("iss")),
        }
        let subject = uuid_claim(claims.sub.as_ref(), "sub")?;
        let tenant = TenantId::from_uuid(uuid_claim(claims.tenant.as_ref(), "tenant")?);
        // Strict: exactly the lowercase spelling, unlike the CLI's forgiving parse.
        let role = match &claims.role {
            Some(Value::String(role)) => {
                Role::parse(role).ok_or(AuthError::InvalidClaim("role"))?
            }
            _ => return Err(AuthError::InvalidClaim("role")),
        };
        let expires_at = claims
            .exp
            .as_ref()
            .and_then(numeric_date)
            .ok_or(AuthError::InvalidClaim("exp"))?;
        Ok(Principal {
            tenant,
            subject,
            role,
            expires_at,
        })
    }
}

/// The claims we read, kept as raw JSON so that a claim of the wrong type is reported by
/// name ("missing or invalid claim: sub") instead of failing deserialization as a whole.
#[derive(Deserialize)]
struct RawClaims {
    sub: Option<Value>,
    tenant: Option<Value>,
    role: Option<Value>,
    iss: Option<Value>,
    exp: Option<Value>,
}

fn uuid_claim(value: Option<&Value>, name: &'static str) -> Result<Uuid, AuthError> {
    match value {
        // The nil UUID is what an unset id defaults to, never a real tenant or person.
        Some(Value::String(text)) => match Uuid::parse_str(text) {
            Ok(id) if !id.is_nil() => Ok(id),
            _ => Err(AuthError::InvalidClaim(name)),
        },
        _ => Err(AuthError::InvalidClaim(name)),
    }
}

/// A JWT NumericDate (seconds since the epoch, possibly fractional) as a UTC time.
fn numeric_date(value: &Value) -> Option<DateTime<Utc>> {
    let seconds = match value.as_i64() {
        Some(seconds) => seconds,
        None => {
            let seconds = value.as_f64().filter(|s| s.is_finite())?;
            // `as` saturates; an out-of-range value then fails `from_timestamp` below.
            seconds.floor() as i64
        }
    };
    DateTime::from_timestamp(seconds, 0)
}

/// Maps a failure to parse the header alone.
fn header_error(error: jsonwebtoken::errors::Error) -> AuthError {
    match error.kind() {
        // Valid JSON that does not fit jsonwebtoken's `Header`: in practice an `alg` it does
        // not implement (above all `none`, which has no variant and so can never verify) or
        // no `alg` at all.
        ErrorKind::Json(json) if json.classify() == serde_json::error::Category::Data => {
            AuthError::UnsupportedAlgorithm
        }
        _ => AuthError::Malformed,
    }
}

/// Maps a failure of `jsonwebtoken::decode` (signature, then claims) to a client-facing reason.
fn decode_error(error: jsonwebtoken::errors::Error) -> AuthError {
    match error.kind() {
        ErrorKind::InvalidSignature => AuthError::InvalidSignature,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::InvalidAlgorithmName => AuthError::UnsupportedAlgorithm,
        ErrorKind::MissingRequiredClaim(claim) | ErrorKind::InvalidClaimFormat(claim) => {
            AuthError::InvalidClaim(spec_claim_name(claim))
        }
        ErrorKind::InvalidIssuer => AuthError::InvalidClaim("iss"),
        ErrorKind::InvalidAudience => AuthError::InvalidClaim("aud"),
        ErrorKind::InvalidSubject => AuthError::InvalidClaim("sub"),
        // Keys were proven usable at startup, so a key-shaped error here comes from the
        // token's signature bytes (e.g. an ES256 signature of the wrong length).
        ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => AuthError::InvalidSignature,
        // InvalidToken, Base64, Json, Utf8, and any kind a later jsonwebtoken adds.
        _ => AuthError::Malformed,
    }
}

/// A `'static` claim name for the error message, so no token text is ever echoed back.
fn spec_claim_name(claim: &str) -> &'static str {
    match claim {
        "exp" => "exp",
        "nbf" => "nbf",
        "iss" => "iss",
        "aud" => "aud",
        "sub" => "sub",
        _ => "unknown",
    }
}
