//! Key sources: where verification keys come from (an HS256 secret, a PEM public key, a local
//! JWKS file), read and checked once at startup, each key pinned to the one algorithm it may
//! verify. Warnings about usable-but-doubtful configuration are collected here for the caller
//! to log; nothing here looks at a token.

use std::fmt;
use std::path::{Path, PathBuf};

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::{AuthConfigError, RECOMMENDED_MIN_SECRET_BYTES};

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

/// One verification key and the one algorithm it verifies: the token never chooses.
pub(super) struct PinnedKey {
    pub(super) kid: Option<String>,
    pub(super) algorithm: Algorithm,
    pub(super) key: DecodingKey,
}

/// The keys a [`KeySource`] yields.
pub(super) enum LoadedKeys {
    /// A secret or a PEM key: every token is checked against it, whatever its `kid`.
    Single(PinnedKey),
    /// A JWKS: the token's `kid` selects the key.
    Set(Vec<PinnedKey>),
}

/// Reads and checks the keys of `source`, once; doubtful but usable configuration (a short
/// secret, skipped JWKS keys) is added to `warnings`.
pub(super) fn load(
    source: &KeySource,
    warnings: &mut Vec<String>,
) -> Result<LoadedKeys, AuthConfigError> {
    match source {
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
            Ok(LoadedKeys::Single(PinnedKey {
                kid: None,
                algorithm: Algorithm::HS256,
                key: DecodingKey::from_secret(secret.as_bytes()),
            }))
        }
        KeySource::PublicKeyPem(path) => {
            let pem = read_key_file(path)?;
            let (algorithm, key) =
                parse_public_pem(&pem).map_err(|reason| AuthConfigError::InvalidKey {
                    path: path.clone(),
                    reason,
                })?;
            Ok(LoadedKeys::Single(PinnedKey {
                kid: None,
                algorithm,
                key,
            }))
        }
        KeySource::Jwks(path) => {
            let json = read_key_file(path)?;
            let keys =
                parse_jwks(&json, warnings).map_err(|reason| AuthConfigError::InvalidJwks {
                    path: path.clone(),
                    reason,
                })?;
            Ok(LoadedKeys::Set(keys))
        }
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
fn parse_jwks(json: &[u8], warnings: &mut Vec<String>) -> Result<Vec<PinnedKey>, String> {
    let set: JwkSet = serde_json::from_slice(json).map_err(|e| format!("not a JWK set: {e}"))?;
    let mut keys: Vec<PinnedKey> = Vec::with_capacity(set.keys.len());
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
        keys.push(PinnedKey {
            kid,
            algorithm,
            key,
        });
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
