//! Bearer-token (JWT) authentication: this module owns turning an `Authorization: Bearer`
//! token into a verified [`Principal`] (key loading from a secret, a PEM public key or a
//! local JWKS file; algorithm pinning; `exp`/`nbf`/`iss`/`aud`/`sub`/`tenant`/`role` checks)
//! and minting HS256 tokens for development and scripts.
//!
//! It does not fetch keys over the network (no remote JWKS; `jku`, `jwk`, `x5u` and `x5c`
//! headers are ignored), refresh or revoke tokens, decide what a role may do, or log:
//! callers log [`TokenVerifier::warnings`] once at startup and map every [`AuthError`] to
//! UNAUTHENTICATED.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Clock-skew allowance applied to `exp` and `nbf` when the configuration does not say otherwise.
pub const DEFAULT_LEEWAY_SECONDS: u64 = 30;

/// Largest accepted leeway: beyond a few minutes, "expired" stops meaning much.
pub const MAX_LEEWAY_SECONDS: u64 = 300;

/// HS256 secrets shorter than this are accepted but reported in [`TokenVerifier::warnings`]
/// (RFC 7518 §3.2 asks for a key at least as long as the hash output).
pub const RECOMMENDED_MIN_SECRET_BYTES: usize = 32;

/// Tokens longer than this are refused before any parsing; ours are a few hundred bytes,
/// and the cap bounds the work an unauthenticated caller can make us do.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The spec claims a token must carry; jsonwebtoken only requires `exp` by default and would
/// otherwise accept a token that simply leaves out `iss` or `aud`.
const REQUIRED_SPEC_CLAIMS: [&str; 4] = ["exp", "iss", "aud", "sub"];

/// What a caller may do inside their tenant, as stated by the token's `role` claim.
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

    /// The claim / CLI spelling: `"admin"`, `"instructor"` or `"trainee"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Instructor => "instructor",
            Role::Trainee => "trainee",
        }
    }

    /// Strict parse used for token claims: exactly the lowercase spelling, nothing else.
    fn from_claim(value: &str) -> Option<Role> {
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
    /// token claims go through a strict lowercase-only parse instead.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim();
        Role::ALL
            .into_iter()
            .find(|role| role.as_str().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// Who is calling, as proven by a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The tenant every query of this request is scoped to (the token's `tenant` claim).
    pub tenant_id: Uuid,
    /// The person calling (the token's `sub` claim).
    pub subject: Uuid,
    /// What they may do inside the tenant (the token's `role` claim).
    pub role: Role,
    /// When the token stops being accepted (the token's `exp` claim, before leeway).
    pub expires_at: DateTime<Utc>,
}

/// How tokens are validated, built from configuration.
#[derive(Clone)]
pub enum KeySource {
    /// Shared secret; tokens must be HS256. The string's UTF-8 bytes are the key (no base64).
    Secret(String),
    /// Path to a PEM public key (`PUBLIC KEY` or `RSA PUBLIC KEY`): an RSA key pins RS256,
    /// an EC P-256 key pins ES256.
    PublicKeyPem(PathBuf),
    /// Path to a local JWKS file; keys are selected by the token's `kid` and each key's
    /// algorithm comes from its own `alg` (or, absent that, its `kty`/`crv`).
    Jwks(PathBuf),
}

impl fmt::Debug for KeySource {
    /// Never prints the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Secret(_) => f.debug_tuple("Secret").field(&"[redacted]").finish(),
            KeySource::PublicKeyPem(path) => f.debug_tuple("PublicKeyPem").field(path).finish(),
            KeySource::Jwks(path) => f.debug_tuple("Jwks").field(path).finish(),
        }
    }
}

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

/// One verification key with its pinned algorithm and the validation policy built for it.
struct VerifyKey {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
    validation: Validation,
}

impl VerifyKey {
    fn new(
        kid: Option<String>,
        algorithm: Algorithm,
        key: DecodingKey,
        settings: &JwtSettings,
    ) -> Self {
        // `Validation::new` lists exactly one algorithm, so jsonwebtoken itself also refuses a
        // header naming any other: the token never chooses how it is checked.
        let mut validation = Validation::new(algorithm);
        validation.leeway = settings.leeway_seconds;
        validation.validate_exp = true;
        // Off by default in jsonwebtoken; `nbf` is optional but must hold when present.
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.reject_tokens_expiring_in_less_than = 0;
        validation.set_required_spec_claims(&REQUIRED_SPEC_CLAIMS);
        validation.set_issuer(&[settings.issuer.as_str()]);
        validation.set_audience(&[settings.audience.as_str()]);
        VerifyKey {
            kid,
            algorithm,
            key,
            validation,
        }
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
            KeyStore::Single(key) => vec![(key.kid.as_deref(), key.algorithm)],
            KeyStore::Set(keys) => keys
                .iter()
                .map(|k| (k.kid.as_deref(), k.algorithm))
                .collect(),
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
        let keys = match &settings.keys {
            KeySource::Secret(secret) => {
                if secret.trim().is_empty() {
                    return Err(AuthConfigError::Empty("HS256 secret"));
                }
                if secret.len() < RECOMMENDED_MIN_SECRET_BYTES {
                    warnings.push(format!(
                        "HS256 secret is {} bytes; use at least {RECOMMENDED_MIN_SECRET_BYTES} random bytes",
                        secret.len()
                    ));
                }
                let key = DecodingKey::from_secret(secret.as_bytes());
                KeyStore::Single(Box::new(VerifyKey::new(
                    None,
                    Algorithm::HS256,
                    key,
                    settings,
                )))
            }
            KeySource::PublicKeyPem(path) => {
                let pem = read_key_file(path)?;
                let (algorithm, key) =
                    parse_public_pem(&pem).map_err(|reason| AuthConfigError::InvalidKey {
                        path: path.clone(),
                        reason,
                    })?;
                KeyStore::Single(Box::new(VerifyKey::new(None, algorithm, key, settings)))
            }
            KeySource::Jwks(path) => {
                let json = read_key_file(path)?;
                let keys = parse_jwks(&json, settings, &mut warnings).map_err(|reason| {
                    AuthConfigError::InvalidJwks {
                        path: path.clone(),
                        reason,
                    }
                })?;
                KeyStore::Set(keys)
            }
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
        if header.alg != key.algorithm {
            return Err(AuthError::UnsupportedAlgorithm);
        }
        let data = jsonwebtoken::decode::<RawClaims>(token, &key.key, &key.validation)
            .map_err(decode_error)?;
        self.principal(data.claims)
    }

    fn select_key(&self, kid: Option<&str>) -> Result<&VerifyKey, AuthError> {
        match &self.keys {
            KeyStore::Single(key) => Ok(key),
            KeyStore::Set(keys) => match kid {
                Some(kid) => keys
                    .iter()
                    .find(|key| key.kid.as_deref() == Some(kid))
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
    /// into a principal, checking what jsonwebtoken does not know about.
    fn principal(&self, claims: RawClaims) -> Result<Principal, AuthError> {
        // jsonwebtoken also accepts an array `iss` when any entry matches; RFC 7519 §4.1.1
        // makes the issuer one string, so only the exact configured string passes.
        match &claims.iss {
            Some(Value::String(iss)) if *iss == self.issuer => {}
            _ => return Err(AuthError::InvalidClaim("iss")),
        }
        let subject = uuid_claim(claims.sub.as_ref(), "sub")?;
        let tenant_id = uuid_claim(claims.tenant.as_ref(), "tenant")?;
        let role = match &claims.role {
            Some(Value::String(role)) => {
                Role::from_claim(role).ok_or(AuthError::InvalidClaim("role"))?
            }
            _ => return Err(AuthError::InvalidClaim("role")),
        };
        let expires_at = claims
            .exp
            .as_ref()
            .and_then(numeric_date)
            .ok_or(AuthError::InvalidClaim("exp"))?;
        Ok(Principal {
            tenant_id,
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

fn read_key_file(path: &Path) -> Result<Vec<u8>, AuthConfigError> {
    std::fs::read(path).map_err(|source| AuthConfigError::ReadFile {
        path: path.to_path_buf(),
        source,
    })
}

/// Parses a PEM public key and decides its algorithm from the key itself: RSA → RS256,
/// EC P-256 → ES256. Anything else is refused.
fn parse_public_pem(pem: &[u8]) -> Result<(Algorithm, DecodingKey), String> {
    let text = std::str::from_utf8(pem).map_err(|_| "not a PEM text file".to_owned())?;
    // A private key here would verify nothing useful and means the wrong file was deployed
    // (and a private key now sits on the API hosts): say so instead of guessing.
    if text.contains("PRIVATE KEY-----") {
        return Err(
            "the file holds a private key; configure the public key (`openssl pkey -pubout`)"
                .to_owned(),
        );
    }
    // Only the first PEM block is read, so a certificate (or chain) ahead of the key would
    // be what gets used; ask for the bare key instead.
    if text.contains("-----BEGIN CERTIFICATE-----") {
        return Err("certificates are not accepted; configure the bare public key (`openssl x509 -pubkey -noout`)".to_owned());
    }
    if !text.contains("-----BEGIN PUBLIC KEY-----")
        && !text.contains("-----BEGIN RSA PUBLIC KEY-----")
    {
        return Err("expected a PEM block `PUBLIC KEY` or `RSA PUBLIC KEY`".to_owned());
    }
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        // `from_rsa_pem` only unwraps the PEM and SubjectPublicKeyInfo layers; parsing the
        // PKCS#1 body now makes a corrupt key fail at startup rather than on every request.
        Jwk::from_decoding_key(&key, Some(Algorithm::RS256))
            .map_err(|e| format!("invalid RSA public key: {e}"))?;
        return Ok((Algorithm::RS256, key));
    }
    let key = DecodingKey::from_ec_pem(pem)
        .map_err(|_| "not an RSA or EC P-256 public key".to_owned())?;
    // `from_decoding_key` reads the curve off the point's length (65 bytes: P-256).
    let jwk =
        Jwk::from_decoding_key(&key, None).map_err(|e| format!("invalid EC public key: {e}"))?;
    match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(params) if params.curve == EllipticCurve::P256 => {
            probe_key(Algorithm::ES256, &key)?;
            Ok((Algorithm::ES256, key))
        }
        _ => Err("unsupported EC curve (only P-256, for ES256)".to_owned()),
    }
}

/// Builds a verifier for `key` once so that unusable key material (an EC point off the
/// curve, a wrong-length Ed25519 key) fails at startup. The probe signature is empty, so
/// its outcome is always "no match" and only the key matters.
fn probe_key(algorithm: Algorithm, key: &DecodingKey) -> Result<(), String> {
    jsonwebtoken::crypto::verify("", b"startup key check", key, algorithm)
        .map(|_| ())
        .map_err(|e| format!("key is not usable for {algorithm:?}: {e}"))
}

/// What to do with one JWK of the set.
enum JwkPlan {
    /// Verify tokens with this algorithm.
    Verify(Algorithm),
    /// Leave the key out (with this reason as a startup warning).
    Skip(&'static str),
}

/// Parses a JWKS file into verification keys. Keys that are not ours to use (encryption
/// keys, algorithms or curves we do not support) are skipped with a warning, since identity
/// providers publish such keys routinely; keys that are inconsistent, duplicated or secret
/// are errors, since they mean the file itself is wrong.
fn parse_jwks(
    json: &[u8],
    settings: &JwtSettings,
    warnings: &mut Vec<String>,
) -> Result<Vec<VerifyKey>, String> {
    let set: JwkSet = serde_json::from_slice(json).map_err(|e| format!("not a JWK set: {e}"))?;
    let mut keys: Vec<VerifyKey> = Vec::with_capacity(set.keys.len());
    for (index, jwk) in set.keys.iter().enumerate() {
        let kid = jwk.common.key_id.clone();
        let label = kid
            .as_deref()
            .map_or_else(|| format!("#{index}"), |kid| format!("{kid:?}"));
        let algorithm = match plan_for(jwk).map_err(|reason| format!("key {label}: {reason}"))? {
            JwkPlan::Verify(algorithm) => algorithm,
            JwkPlan::Skip(reason) => {
                warnings.push(format!("JWKS key {label} skipped: {reason}"));
                continue;
            }
        };
        let key = DecodingKey::from_jwk(jwk)
            .map_err(|e| format!("key {label}: invalid key material: {e}"))?;
        probe_key(algorithm, &key).map_err(|reason| format!("key {label}: {reason}"))?;
        if let Some(kid) = &kid
            && keys.iter().any(|known| known.kid.as_ref() == Some(kid))
        {
            return Err(format!("duplicate key id {kid:?}"));
        }
        keys.push(VerifyKey::new(kid, algorithm, key, settings));
    }
    if keys.is_empty() {
        return Err("no usable signature verification key".to_owned());
    }
    if keys.len() > 1 {
        for (index, key) in keys.iter().enumerate() {
            if key.kid.is_none() {
                warnings.push(format!(
                    "JWKS key #{index} has no `kid` and can never be selected in a multi-key set"
                ));
            }
        }
    }
    Ok(keys)
}

/// Decides a JWK's algorithm from its `alg`, checked against its `kty`/`crv`, or from the
/// `kty`/`crv` alone when `alg` is absent.
fn plan_for(jwk: &Jwk) -> Result<JwkPlan, String> {
    if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
        return Ok(JwkPlan::Skip("`use` is `enc`"));
    }
    let declared = jwk.common.key_algorithm;
    if let Some(KeyAlgorithm::RSA1_5 | KeyAlgorithm::RSA_OAEP | KeyAlgorithm::RSA_OAEP_256) =
        declared
    {
        return Ok(JwkPlan::Skip("encryption algorithm"));
    }
    if declared == Some(KeyAlgorithm::UNKNOWN_ALGORITHM) {
        return Ok(JwkPlan::Skip("unsupported `alg`"));
    }
    let (natural, allowed): (Algorithm, &[Algorithm]) = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => (
            Algorithm::RS256,
            &[
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ],
        ),
        AlgorithmParameters::EllipticCurve(params) => match params.curve {
            EllipticCurve::P256 => (Algorithm::ES256, &[Algorithm::ES256]),
            EllipticCurve::P384 => (Algorithm::ES384, &[Algorithm::ES384]),
            _ => return Ok(JwkPlan::Skip("unsupported EC curve")),
        },
        AlgorithmParameters::OctetKeyPair(params) => match params.curve {
            EllipticCurve::Ed25519 => (Algorithm::EdDSA, &[Algorithm::EdDSA]),
            _ => return Ok(JwkPlan::Skip("unsupported OKP curve")),
        },
        // A JWKS is a public document by design; a shared secret in one is a leak waiting to
        // happen, and HS256 has its own setting.
        AlgorithmParameters::OctetKey(_) => {
            return Err(
                "symmetric (`oct`) keys are not accepted from a JWKS; configure a secret instead"
                    .to_owned(),
            );
        }
        _ => return Ok(JwkPlan::Skip("unsupported `kty`")),
    };
    match declared {
        None => Ok(JwkPlan::Verify(natural)),
        Some(declared) => allowed
            .iter()
            .copied()
            .find(|algorithm| KeyAlgorithm::from(*algorithm) == declared)
            .map(JwkPlan::Verify)
            .ok_or_else(|| format!("`alg` {declared} does not match the key type")),
    }
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

/// Mints HS256 tokens, for development and scripts (`coursetrail token ...`). Production
/// tokens come from the identity provider; this exists so a dev setup needs no IdP.
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
    /// An issuer signing with `secret` (its UTF-8 bytes, as [`KeySource::Secret`] reads it).
    /// An empty secret is refused by [`TokenIssuer::mint`], not here, so that building the
    /// issuer from configuration cannot fail.
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // Test-only key pairs, generated once with `openssl genpkey` for these tests. They protect
    // nothing and must never be used outside this module.
    const TEST_RSA_PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQC0x6IOtKK4Qinr
6Hbtbo8rG3rX3NxtRJAq/n4ReCexuBN1azK6cUoe8FfBecK8+8ut75+nxhoqUP/8
6Htjw8D0OBQ2SbR0Sp/4Y9w7O9U8M/xd7skU9iKWWl0puj/TLrnA/hOtYNtV7r9X
wKSGjxdKbMUWIZIfVXYIKqTYMv4MZomcLBIh79WqbDYZ7mKrhFtyTv9/q+fFr0ft
y/wgdV0pkbUzVBhRcPxDOu3GyxmaeRrJYyPnLzHLZJMRXoEwVkTtSb3+ZWcPd2Dw
lLuVlrOzH4UEPW5PKU2waUJiEpRI8l+shlwy2U9GBcn7UouGWuWA/zyiDdphZj5L
ANnDSZa1AgMBAAECggEARHaMMZyIOVbZUH2/uGiT8MPd8G00z27VWGr77HrAMaZg
PComUoSACRqFaYDG1tJXDx6+LIgyNY9qeunCfQRQCU1Jnkuoexgd4DBVYdtlhIC9
lQdPANC8RYugV6Kw9DXwZB307sbNGgyqSz3qMQl0zRtHQnvhPlubsTkRJ82b966k
HlG7XwDrCw7Or3CneZciaL9vlf5lRAmA+FRLYoLRz0eMTAWTbZYB9QMV7EFPUztk
YrAx+KrhSipKSeadlJswU4nZkS/cmxfdTofZM4eUULy1TyQLco4YyOf2XaQn38tB
hjBKWMd2IYEx/lP6YihXBNd2a8Y+Xcag+/ccbjdo6wKBgQDmiWb/dc7WGSN0ry39
07AkMn90OrkQJl9X6/D+svCvB/tpG/OrWS1acYhBtpFlWqGb/DlM/xfwuMkv40kf
jrmK7M/eaPdBE/+HoJTtGEQnzJCHyk8Y2yxHU9ZadJuJlOUKLqx3A8KC9NV0e/7D
dZVV8KSSY0UZTfyRWlNE3ubMdwKBgQDIv1Elik9XOv6wof9cBt9EjQ1e5F01I5+d
4pmQJJEsQWnzCmWvwmxeYLUnRsqtpc7y1U5N/RPAvALSR8XPglILm4wSeZT5Y126
f8Tkos64Bc0DxwzH/TTb1cQuODqubjtqbOa3PMdA/AYl1tCdiEsi81zqgIBLKR1P
R1Q1Mj29MwKBgQCG6ag2HepyjvmZ4p7mqYiuVkMScP82fU5UtMYvN+b0d5Zg17PM
9f49rK1Rz5bdGqHzGDMsZSjMfkd21+tGJY9dxuKLRSBVnG9xHr+o1QelxuhaH0IU
yMbr4xtRimYvqMw1HkVdzPx7CO8WIS5hkqFXTuHwrVmVynbhVVvftRaaVwKBgFDL
t5Q9Y4t/QgzDVqyqU2gawTvk+6KskMyR7C54mTlPpp3cHGst/EHL+H0zX9Wd+3n+
4gI/jpiu0w/hNTs8f1sOosS4zH3HQW0TiaJf6IVmSEpx7bH8Ni8YjVnw5aVY1m8S
H5W2T5fXF35ZRCNzPJJ3knkLeRdHF/XVho3Wh8TDAoGBAOCXnBOeR8DN646AJPMu
KfXBF5mkUFs+HSnwaCYtgYFKuv6U+mMkzw/El1yfLQlIgQIQ2jhknrhaKVCziN5a
9DgIPLERSE2G1sQ70HnGpehaIDF/6wgqbffS+hYNLa4Qluk6OWp3NaZagkPjwP8x
3VZ0etdO4y3W+4RhKxyEjO2R
-----END PRIVATE KEY-----
";

    const TEST_RSA_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAtMeiDrSiuEIp6+h27W6P
Kxt619zcbUSQKv5+EXgnsbgTdWsyunFKHvBXwXnCvPvLre+fp8YaKlD//Oh7Y8PA
9DgUNkm0dEqf+GPcOzvVPDP8Xe7JFPYillpdKbo/0y65wP4TrWDbVe6/V8Ckho8X
SmzFFiGSH1V2CCqk2DL+DGaJnCwSIe/Vqmw2Ge5iq4Rbck7/f6vnxa9H7cv8IHVd
KZG1M1QYUXD8QzrtxssZmnkayWMj5y8xy2STEV6BMFZE7Um9/mVnD3dg8JS7lZaz
sx+FBD1uTylNsGlCYhKUSPJfrIZcMtlPRgXJ+1KLhlrlgP88og3aYWY+SwDZw0mW
tQIDAQAB
-----END PUBLIC KEY-----
";

    const TEST_EC_PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgb9mF+Ipg5MR86LVk
Ikxqk4x3M1Mv32WqKLEH1B27be+hRANCAAR9swaB+86J/dNBn3owOiCPQx+F+jvF
0a25kPos3UuJm8viaHGWcSgbe1Mxr0ZNbm/Sukvx/3p3Vwf1TaZ+xXe/
-----END PRIVATE KEY-----
";

    const TEST_EC_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEfbMGgfvOif3TQZ96MDogj0Mfhfo7
xdGtuZD6LN1LiZvL4mhxlnEoG3tTMa9GTW5v0rpL8f96d1cH9U2mfsV3vw==
-----END PUBLIC KEY-----
";

    /// The two public keys above as a JWKS (n/e and x/y taken from `openssl pkey -text`).
    const TEST_JWKS: &str = r#"{
  "keys": [
    {
      "kty": "RSA",
      "use": "sig",
      "alg": "RS256",
      "kid": "rsa-2026",
      "n": "tMeiDrSiuEIp6-h27W6PKxt619zcbUSQKv5-EXgnsbgTdWsyunFKHvBXwXnCvPvLre-fp8YaKlD__Oh7Y8PA9DgUNkm0dEqf-GPcOzvVPDP8Xe7JFPYillpdKbo_0y65wP4TrWDbVe6_V8Ckho8XSmzFFiGSH1V2CCqk2DL-DGaJnCwSIe_Vqmw2Ge5iq4Rbck7_f6vnxa9H7cv8IHVdKZG1M1QYUXD8QzrtxssZmnkayWMj5y8xy2STEV6BMFZE7Um9_mVnD3dg8JS7lZazsx-FBD1uTylNsGlCYhKUSPJfrIZcMtlPRgXJ-1KLhlrlgP88og3aYWY-SwDZw0mWtQ",
      "e": "AQAB"
    },
    {
      "kty": "EC",
      "use": "sig",
      "alg": "ES256",
      "kid": "ec-2026",
      "crv": "P-256",
      "x": "fbMGgfvOif3TQZ96MDogj0Mfhfo7xdGtuZD6LN1LiZs",
      "y": "y-JocZZxKBt7UzGvRk1ub9K6S_H_endXB_VNpn7Fd78"
    }
  ]
}"#;

    /// base64url of `{"alg":"none","typ":"JWT"}` and of `{"alg":"None"}`.
    const ALG_NONE_HEADERS: [&str; 2] =
        ["eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0", "eyJhbGciOiJOb25lIn0"];

    const ISS: &str = "https://auth.coursetrail.test";
    const AUD: &str = "coursetrail-api";
    const SECRET: &str = "test-only-secret-0123456789abcdef-0123456789";
    const TENANT: &str = "0b6a3a4e-5a59-4c55-9a8e-2f5f1f6f1a01";
    const SUBJECT: &str = "7d3e2c1b-8f4a-4b6c-9d2e-1a2b3c4d5e6f";

    /// A file in the system temp dir, removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(extension: &str, contents: &str) -> TempFile {
            let path = std::env::temp_dir().join(format!(
                "coursetrail-auth-test-{}-{}.{extension}",
                std::process::id(),
                Uuid::new_v4()
            ));
            std::fs::write(&path, contents).expect("write temp key file");
            TempFile(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn now() -> i64 {
        Utc::now().timestamp()
    }

    fn tenant() -> Uuid {
        Uuid::parse_str(TENANT).expect("tenant uuid")
    }

    fn subject() -> Uuid {
        Uuid::parse_str(SUBJECT).expect("subject uuid")
    }

    fn verifier(keys: KeySource) -> TokenVerifier {
        TokenVerifier::new(&JwtSettings::new(keys, ISS, AUD)).expect("verifier")
    }

    fn hs_verifier() -> TokenVerifier {
        verifier(KeySource::Secret(SECRET.to_owned()))
    }

    fn valid_claims() -> Value {
        json!({
            "sub": SUBJECT,
            "tenant": TENANT,
            "role": "instructor",
            "iss": ISS,
            "aud": AUD,
            "exp": now() + 600,
            "iat": now(),
        })
    }

    fn with(mut claims: Value, name: &str, value: Value) -> Value {
        claims[name] = value;
        claims
    }

    fn without(mut claims: Value, name: &str) -> Value {
        claims.as_object_mut().expect("claims object").remove(name);
        claims
    }

    fn sign(algorithm: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
        let mut header = Header::new(algorithm);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, key).expect("sign test token")
    }

    fn sign_hs(claims: &Value) -> String {
        sign(
            Algorithm::HS256,
            None,
            claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
    }

    fn rsa_key() -> EncodingKey {
        EncodingKey::from_rsa_pem(TEST_RSA_PRIVATE_PEM.as_bytes()).expect("test RSA key")
    }

    fn ec_key() -> EncodingKey {
        EncodingKey::from_ec_pem(TEST_EC_PRIVATE_PEM.as_bytes()).expect("test EC key")
    }

    fn expected_principal(role: Role, exp: i64) -> Principal {
        Principal {
            tenant_id: tenant(),
            subject: subject(),
            role,
            expires_at: DateTime::from_timestamp(exp, 0).expect("exp"),
        }
    }

    /// Splits a compact JWT into its three segments.
    fn segments(token: &str) -> (&str, &str, &str) {
        let mut parts = token.split('.');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(h), Some(p), Some(s), None) => (h, p, s),
            _ => panic!("not a compact JWT: {token}"),
        }
    }

    fn assert_claims_rejected(claims: Value, expected: AuthError) {
        assert_eq!(hs_verifier().verify(&sign_hs(&claims)), Err(expected));
    }

    // ---- round trips ----

    #[test]
    fn hs256_round_trip_through_issuer_and_verifier() {
        let issuer = TokenIssuer::new(SECRET, ISS, AUD);
        let before = now();
        let token = issuer
            .mint(tenant(), subject(), Role::Trainee, Duration::from_secs(900))
            .expect("mint");
        let after = now();
        let principal = hs_verifier().verify(&token).expect("verify");
        assert_eq!(principal.tenant_id, tenant());
        assert_eq!(principal.subject, subject());
        assert_eq!(principal.role, Role::Trainee);
        let exp = principal.expires_at.timestamp();
        assert!(
            (before + 900..=after + 900).contains(&exp),
            "exp {exp} not now+900"
        );
        assert_eq!(
            segments(&token).0,
            segments(&sign_hs(&valid_claims())).0,
            "HS256 header"
        );
    }

    #[test]
    fn rs256_with_pem_public_key() {
        let file = TempFile::new("pem", TEST_RSA_PUBLIC_PEM);
        let verifier = verifier(KeySource::PublicKeyPem(file.0.clone()));
        let claims = valid_claims();
        let token = sign(Algorithm::RS256, None, &claims, &rsa_key());
        let exp = claims["exp"].as_i64().expect("exp");
        assert_eq!(
            verifier.verify(&token),
            Ok(expected_principal(Role::Instructor, exp))
        );
        // The same claims under the EC key must not pass the RSA verifier.
        let es = sign(Algorithm::ES256, None, &claims, &ec_key());
        assert_eq!(verifier.verify(&es), Err(AuthError::UnsupportedAlgorithm));
    }

    #[test]
    fn es256_with_pem_public_key() {
        let file = TempFile::new("pem", TEST_EC_PUBLIC_PEM);
        let verifier = verifier(KeySource::PublicKeyPem(file.0.clone()));
        let claims = with(valid_claims(), "role", json!("admin"));
        let token = sign(Algorithm::ES256, None, &claims, &ec_key());
        let exp = claims["exp"].as_i64().expect("exp");
        assert_eq!(
            verifier.verify(&token),
            Ok(expected_principal(Role::Admin, exp))
        );
        let rs = sign(Algorithm::RS256, None, &claims, &rsa_key());
        assert_eq!(verifier.verify(&rs), Err(AuthError::UnsupportedAlgorithm));
    }

    #[test]
    fn jwks_with_two_keys_selects_by_kid() {
        let file = TempFile::new("json", TEST_JWKS);
        let verifier = verifier(KeySource::Jwks(file.0.clone()));
        assert!(verifier.warnings().is_empty(), "{:?}", verifier.warnings());
        let claims = valid_claims();
        let exp = claims["exp"].as_i64().expect("exp");
        let rs = sign(Algorithm::RS256, Some("rsa-2026"), &claims, &rsa_key());
        let es = sign(Algorithm::ES256, Some("ec-2026"), &claims, &ec_key());
        assert_eq!(
            verifier.verify(&rs),
            Ok(expected_principal(Role::Instructor, exp))
        );
        assert_eq!(
            verifier.verify(&es),
            Ok(expected_principal(Role::Instructor, exp))
        );
        // A kid pointing at the other key: the key's pinned algorithm wins over the header.
        let crossed = sign(Algorithm::RS256, Some("ec-2026"), &claims, &rsa_key());
        assert_eq!(
            verifier.verify(&crossed),
            Err(AuthError::UnsupportedAlgorithm)
        );
        // With two keys a token must say which one.
        let no_kid = sign(Algorithm::RS256, None, &claims, &rsa_key());
        assert_eq!(verifier.verify(&no_kid), Err(AuthError::MissingKeyId));
    }

    #[test]
    fn jwks_with_one_key_accepts_token_without_kid() {
        let mut set: Value = serde_json::from_str(TEST_JWKS).expect("jwks json");
        set["keys"].as_array_mut().expect("keys").truncate(1);
        let file = TempFile::new("json", &set.to_string());
        let verifier = verifier(KeySource::Jwks(file.0.clone()));
        let token = sign(Algorithm::RS256, None, &valid_claims(), &rsa_key());
        assert!(verifier.verify(&token).is_ok());
        // Still: a kid that is not in the set is refused.
        let other = sign(
            Algorithm::RS256,
            Some("rsa-2025"),
            &valid_claims(),
            &rsa_key(),
        );
        assert_eq!(verifier.verify(&other), Err(AuthError::UnknownKeyId));
    }

    // ---- attacks ----

    #[test]
    fn alg_none_is_rejected_by_every_key_source() {
        let pem = TempFile::new("pem", TEST_RSA_PUBLIC_PEM);
        let jwks = TempFile::new("json", TEST_JWKS);
        let verifiers = [
            hs_verifier(),
            verifier(KeySource::PublicKeyPem(pem.0.clone())),
            verifier(KeySource::Jwks(jwks.0.clone())),
        ];
        let valid = sign_hs(&valid_claims());
        let (_, payload, signature) = segments(&valid);
        for header in ALG_NONE_HEADERS {
            for token in [
                format!("{header}.{payload}."),
                format!("{header}.{payload}.{signature}"),
            ] {
                for verifier in &verifiers {
                    assert_eq!(
                        verifier.verify(&token),
                        Err(AuthError::UnsupportedAlgorithm),
                        "{token}"
                    );
                }
            }
        }
        // A header with no `alg` at all (`{}`) fares no better.
        let no_alg = format!("e30.{payload}.{signature}");
        assert_eq!(
            verifiers[0].verify(&no_alg),
            Err(AuthError::UnsupportedAlgorithm)
        );
    }

    #[test]
    fn rsa_public_key_used_as_hmac_secret_is_rejected() {
        let file = TempFile::new("pem", TEST_RSA_PUBLIC_PEM);
        let verifier = verifier(KeySource::PublicKeyPem(file.0.clone()));
        let confused_key = EncodingKey::from_secret(TEST_RSA_PUBLIC_PEM.as_bytes());
        // Classic form: header says HS256, MAC keyed with the public PEM the attacker knows.
        let hs = sign(Algorithm::HS256, None, &valid_claims(), &confused_key);
        assert_eq!(verifier.verify(&hs), Err(AuthError::UnsupportedAlgorithm));
        // Variant: header kept at RS256 but the signature is that HMAC.
        let genuine = sign(Algorithm::RS256, None, &valid_claims(), &rsa_key());
        let (header, payload, _) = segments(&genuine);
        let message = format!("{header}.{payload}");
        let mac = jsonwebtoken::crypto::sign(message.as_bytes(), &confused_key, Algorithm::HS256)
            .expect("hmac");
        assert_eq!(
            verifier.verify(&format!("{message}.{mac}")),
            Err(AuthError::InvalidSignature)
        );
    }

    #[test]
    fn expired_token_is_rejected_beyond_leeway_only() {
        assert_claims_rejected(
            with(valid_claims(), "exp", json!(now() - 120)),
            AuthError::Expired,
        );
        // 10 s past exp is inside the default 30 s leeway.
        let recent = sign_hs(&with(valid_claims(), "exp", json!(now() - 10)));
        assert!(hs_verifier().verify(&recent).is_ok());
    }

    #[test]
    fn not_yet_valid_token_is_rejected_beyond_leeway_only() {
        assert_claims_rejected(
            with(valid_claims(), "nbf", json!(now() + 120)),
            AuthError::NotYetValid,
        );
        let soon = sign_hs(&with(valid_claims(), "nbf", json!(now() + 10)));
        assert!(hs_verifier().verify(&soon).is_ok());
    }

    #[test]
    fn missing_exp_is_rejected() {
        assert_claims_rejected(
            without(valid_claims(), "exp"),
            AuthError::InvalidClaim("exp"),
        );
        assert_claims_rejected(
            with(valid_claims(), "exp", json!("tomorrow")),
            AuthError::InvalidClaim("exp"),
        );
    }

    #[test]
    fn wrong_audience_is_rejected() {
        assert_claims_rejected(
            with(valid_claims(), "aud", json!("another-api")),
            AuthError::InvalidClaim("aud"),
        );
        assert_claims_rejected(
            with(valid_claims(), "aud", json!(["another-api"])),
            AuthError::InvalidClaim("aud"),
        );
        // An audience list naming us is the RFC 7519 form and passes.
        let listed = sign_hs(&with(valid_claims(), "aud", json!(["another-api", AUD])));
        assert!(hs_verifier().verify(&listed).is_ok());
    }

    #[test]
    fn missing_audience_is_rejected() {
        assert_claims_rejected(
            without(valid_claims(), "aud"),
            AuthError::InvalidClaim("aud"),
        );
    }

    #[test]
    fn wrong_issuer_is_rejected() {
        assert_claims_rejected(
            with(valid_claims(), "iss", json!("https://evil.test")),
            AuthError::InvalidClaim("iss"),
        );
        // jsonwebtoken would take an array containing our issuer; an issuer is one string.
        assert_claims_rejected(
            with(valid_claims(), "iss", json!([ISS, "https://evil.test"])),
            AuthError::InvalidClaim("iss"),
        );
    }

    #[test]
    fn missing_issuer_is_rejected() {
        assert_claims_rejected(
            without(valid_claims(), "iss"),
            AuthError::InvalidClaim("iss"),
        );
    }

    #[test]
    fn missing_subject_is_rejected() {
        assert_claims_rejected(
            without(valid_claims(), "sub"),
            AuthError::InvalidClaim("sub"),
        );
    }

    #[test]
    fn non_uuid_subject_is_rejected() {
        for bad in [
            json!("alice"),
            json!(42),
            json!(""),
            json!(Uuid::nil().to_string()),
        ] {
            assert_claims_rejected(
                with(valid_claims(), "sub", bad),
                AuthError::InvalidClaim("sub"),
            );
        }
    }

    #[test]
    fn missing_or_invalid_tenant_is_rejected() {
        assert_claims_rejected(
            without(valid_claims(), "tenant"),
            AuthError::InvalidClaim("tenant"),
        );
        for bad in [
            json!("acme"),
            json!(7),
            json!(null),
            json!([TENANT]),
            json!(Uuid::nil().to_string()),
        ] {
            assert_claims_rejected(
                with(valid_claims(), "tenant", bad),
                AuthError::InvalidClaim("tenant"),
            );
        }
    }

    #[test]
    fn unknown_role_is_rejected() {
        for bad in [json!("superuser"), json!("Admin"), json!(""), json!(1)] {
            assert_claims_rejected(
                with(valid_claims(), "role", bad),
                AuthError::InvalidClaim("role"),
            );
        }
        assert_claims_rejected(
            without(valid_claims(), "role"),
            AuthError::InvalidClaim("role"),
        );
    }

    #[test]
    fn tampered_payload_is_rejected() {
        let genuine = sign_hs(&valid_claims());
        let (header, _, signature) = segments(&genuine);
        // A payload granting admin, lifted from a token signed with another key.
        let forged = sign(
            Algorithm::HS256,
            None,
            &with(valid_claims(), "role", json!("admin")),
            &EncodingKey::from_secret(b"attacker"),
        );
        let (_, admin_payload, _) = segments(&forged);
        let tampered = format!("{header}.{admin_payload}.{signature}");
        assert_eq!(
            hs_verifier().verify(&tampered),
            Err(AuthError::InvalidSignature)
        );
    }

    #[test]
    fn stripped_signature_is_rejected() {
        let genuine = sign_hs(&valid_claims());
        let (header, payload, _) = segments(&genuine);
        assert_eq!(
            hs_verifier().verify(&format!("{header}.{payload}.")),
            Err(AuthError::InvalidSignature)
        );
        let file = TempFile::new("pem", TEST_EC_PUBLIC_PEM);
        let es = sign(Algorithm::ES256, None, &valid_claims(), &ec_key());
        let (header, payload, _) = segments(&es);
        let ec_verifier = verifier(KeySource::PublicKeyPem(file.0.clone()));
        assert_eq!(
            ec_verifier.verify(&format!("{header}.{payload}.")),
            Err(AuthError::InvalidSignature)
        );
    }

    #[test]
    fn unknown_kid_with_jwks_is_rejected() {
        let file = TempFile::new("json", TEST_JWKS);
        let verifier = verifier(KeySource::Jwks(file.0.clone()));
        let token = sign(
            Algorithm::RS256,
            Some("rsa-2019"),
            &valid_claims(),
            &rsa_key(),
        );
        assert_eq!(verifier.verify(&token), Err(AuthError::UnknownKeyId));
    }

    #[test]
    fn garbage_is_rejected() {
        let too_long = "a".repeat(MAX_TOKEN_BYTES + 1);
        for garbage in [
            "",
            "garbage",
            "a.b.c",
            "a.b",
            "....",
            "Bearer x.y.z",
            "%%%.e30.e30",
            too_long.as_str(),
        ] {
            assert_eq!(
                hs_verifier().verify(garbage),
                Err(AuthError::Malformed),
                "{garbage}"
            );
        }
    }

    #[test]
    fn token_signed_with_another_secret_is_rejected() {
        let token = sign(
            Algorithm::HS256,
            None,
            &valid_claims(),
            &EncodingKey::from_secret(b"another-secret-that-is-also-32-bytes-long"),
        );
        assert_eq!(
            hs_verifier().verify(&token),
            Err(AuthError::InvalidSignature)
        );
    }

    #[test]
    fn critical_header_extension_is_rejected() {
        let mut header = Header::new(Algorithm::HS256);
        header.crit = Some(vec!["exp".to_owned()]);
        let token = jsonwebtoken::encode(
            &header,
            &valid_claims(),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("sign");
        assert_eq!(hs_verifier().verify(&token), Err(AuthError::Malformed));
    }

    // ---- configuration ----

    #[test]
    fn empty_settings_are_refused() {
        let empty_secret = JwtSettings::new(KeySource::Secret("  ".to_owned()), ISS, AUD);
        assert!(matches!(
            TokenVerifier::new(&empty_secret),
            Err(AuthConfigError::Empty("HS256 secret"))
        ));
        let no_issuer = JwtSettings::new(KeySource::Secret(SECRET.to_owned()), "", AUD);
        assert!(matches!(
            TokenVerifier::new(&no_issuer),
            Err(AuthConfigError::Empty("issuer"))
        ));
        let no_audience = JwtSettings::new(KeySource::Secret(SECRET.to_owned()), ISS, "");
        assert!(matches!(
            TokenVerifier::new(&no_audience),
            Err(AuthConfigError::Empty("audience"))
        ));
        let mut lax = JwtSettings::new(KeySource::Secret(SECRET.to_owned()), ISS, AUD);
        lax.leeway_seconds = 3600;
        assert!(matches!(
            TokenVerifier::new(&lax),
            Err(AuthConfigError::LeewayTooLarge { .. })
        ));
    }

    #[test]
    fn short_secret_is_accepted_with_a_warning() {
        let verifier = verifier(KeySource::Secret("short".to_owned()));
        assert_eq!(verifier.warnings().len(), 1);
        assert!(hs_verifier().warnings().is_empty());
    }

    #[test]
    fn bad_key_files_are_refused() {
        let missing =
            std::env::temp_dir().join(format!("coursetrail-auth-test-missing-{}", Uuid::new_v4()));
        let settings = JwtSettings::new(KeySource::PublicKeyPem(missing), ISS, AUD);
        assert!(matches!(
            TokenVerifier::new(&settings),
            Err(AuthConfigError::ReadFile { .. })
        ));

        for contents in [
            TEST_RSA_PRIVATE_PEM,
            TEST_EC_PRIVATE_PEM,
            "not a key",
            TEST_JWKS,
        ] {
            let file = TempFile::new("pem", contents);
            let settings = JwtSettings::new(KeySource::PublicKeyPem(file.0.clone()), ISS, AUD);
            assert!(
                matches!(
                    TokenVerifier::new(&settings),
                    Err(AuthConfigError::InvalidKey { .. })
                ),
                "{contents}"
            );
        }
    }

    #[test]
    fn bad_jwks_files_are_refused() {
        let set: Value = serde_json::from_str(TEST_JWKS).expect("jwks json");
        let rsa = set["keys"][0].clone();
        let ec = set["keys"][1].clone();
        let cases = [
            json!({ "keys": [] }),
            json!({ "keys": [{ "kty": "oct", "alg": "HS256", "kid": "s", "k": "c2VjcmV0" }] }),
            json!({ "keys": [rsa.clone(), with(rsa.clone(), "alg", json!("ES256"))] }),
            json!({ "keys": [with(ec.clone(), "alg", json!("RS256"))] }),
            json!({ "keys": [with(ec.clone(), "x", json!("AAAA"))] }),
            json!({ "keys": [with(rsa.clone(), "use", json!("enc"))] }),
            json!({ "not": "a jwks" }),
        ];
        for jwks in cases {
            let file = TempFile::new("json", &jwks.to_string());
            let settings = JwtSettings::new(KeySource::Jwks(file.0.clone()), ISS, AUD);
            assert!(
                matches!(
                    TokenVerifier::new(&settings),
                    Err(AuthConfigError::InvalidJwks { .. })
                ),
                "{jwks}"
            );
        }
        // Duplicate key id (same kid twice).
        let dup = json!({ "keys": [rsa.clone(), with(ec.clone(), "kid", json!("rsa-2026"))] });
        let file = TempFile::new("json", &dup.to_string());
        let settings = JwtSettings::new(KeySource::Jwks(file.0.clone()), ISS, AUD);
        assert!(matches!(
            TokenVerifier::new(&settings),
            Err(AuthConfigError::InvalidJwks { .. })
        ));
        // An encryption key next to a signing key is skipped, not fatal.
        let mixed = json!({ "keys": [with(rsa.clone(), "use", json!("enc")), ec] });
        let file = TempFile::new("json", &mixed.to_string());
        let verifier = verifier(KeySource::Jwks(file.0.clone()));
        assert_eq!(verifier.warnings().len(), 1);
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let settings = JwtSettings::new(KeySource::Secret(SECRET.to_owned()), ISS, AUD);
        assert!(!format!("{settings:?}").contains(SECRET));
        assert!(!format!("{:?}", TokenIssuer::new(SECRET, ISS, AUD)).contains(SECRET));
        assert!(!format!("{:?}", hs_verifier()).contains(SECRET));
    }

    // ---- minting ----

    #[test]
    fn mint_refuses_unusable_input() {
        let issuer = TokenIssuer::new(SECRET, ISS, AUD);
        let hour = Duration::from_secs(3600);
        assert!(matches!(
            TokenIssuer::new("", ISS, AUD).mint(tenant(), subject(), Role::Admin, hour),
            Err(AuthError::Mint(_))
        ));
        assert!(matches!(
            issuer.mint(tenant(), subject(), Role::Admin, Duration::ZERO),
            Err(AuthError::Mint(_))
        ));
        assert!(matches!(
            issuer.mint(Uuid::nil(), subject(), Role::Admin, hour),
            Err(AuthError::Mint(_))
        ));
        assert!(matches!(
            issuer.mint(tenant(), subject(), Role::Admin, Duration::MAX),
            Err(AuthError::Mint(_))
        ));
    }

    #[test]
    fn minted_token_fails_under_another_audience() {
        let token = TokenIssuer::new(SECRET, ISS, "other-api")
            .mint(tenant(), subject(), Role::Admin, Duration::from_secs(60))
            .expect("mint");
        assert_eq!(
            hs_verifier().verify(&token),
            Err(AuthError::InvalidClaim("aud"))
        );
    }

    // ---- header and role parsing ----

    #[test]
    fn bearer_token_parsing() {
        assert_eq!(bearer_token("Bearer abc.def.ghi"), Some("abc.def.ghi"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER abc"), Some("abc"));
        assert_eq!(bearer_token("Bearer   abc"), Some("abc"));
        assert_eq!(bearer_token("  Bearer abc  "), Some("abc"));
        assert_eq!(bearer_token(""), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearerabc"), None);
        assert_eq!(bearer_token("Basic dXNlcjpwYXNz"), None);
        assert_eq!(bearer_token("Token abc"), None);
        assert_eq!(bearer_token("Bearer abc def"), None);
        assert_eq!(bearer_token("Bearer\tabc"), None);
    }

    #[test]
    fn role_text_forms() {
        for role in Role::ALL {
            assert_eq!(role.to_string(), role.as_str());
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
            assert_eq!(
                serde_json::to_value(role).expect("serialize"),
                json!(role.as_str())
            );
        }
        assert_eq!(" Instructor ".parse::<Role>(), Ok(Role::Instructor));
        assert_eq!("root".parse::<Role>(), Err(UnknownRole("root".to_owned())));
    }
}
