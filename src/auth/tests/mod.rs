//! Tests of `auth`, one file per part: `verify.rs` (round trips through every key source and
//! the claim checks), `attacks.rs` (forged and malformed tokens), `keys.rs` (configuration and
//! key files), `mint.rs` (the issuer). This file holds what they share: the test keys (files
//! in `../testdata/`), settings, and helpers to sign and pick apart tokens.

use std::path::PathBuf;

use chrono::Utc;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use uuid::Uuid;

use super::*;

mod attacks;
mod keys;
mod mint;
mod verify;

// Test-only key pairs, generated once with `openssl genpkey` for these tests. They protect
// nothing and must never be used outside this module.
const TEST_RSA_PRIVATE_PEM: &str = include_str!("../testdata/rsa_private.pem");
const TEST_RSA_PUBLIC_PEM: &str = include_str!("../testdata/rsa_public.pem");
const TEST_EC_PRIVATE_PEM: &str = include_str!("../testdata/ec_private.pem");
const TEST_EC_PUBLIC_PEM: &str = include_str!("../testdata/ec_public.pem");
/// The two public keys above as a JWKS: `kid` `rsa-2026` (RS256) and `ec-2026` (ES256).
const TEST_JWKS: &str = include_str!("../testdata/jwks.json");

const ISS: &str = "https://auth.coursetrail.test";
const AUD: &str = "coursetrail-api";
const SECRET: &str = "test-only-secret-0123456789abcdef-0123456789";
const TENANT: &str = "0b6a3a4e-5a59-4c55-9a8e-2f5f1f6f1a01";
const SUBJECT: &str = "7d3e2c1b-8f4a-4b6c-9d2e-1a2b3c4d5e6f";

/// A file in the system temp dir, removed on drop: the verifier reads keys from paths.
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

    fn path(&self) -> PathBuf {
        self.0.clone()
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

fn settings(keys: KeySource) -> JwtSettings {
    JwtSettings::new(keys, ISS, AUD)
}

fn verifier(keys: KeySource) -> TokenVerifier {
    TokenVerifier::new(&settings(keys)).expect("verifier")
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

/// Asserts that `verified` is the test tenant's test subject with `role`, expiring at `exp`.
/// (A test cannot build the expected [`Principal`]: only the verifier makes one.)
#[track_caller]
fn assert_principal(verified: Result<Principal, AuthError>, role: Role, exp: i64) {
    let principal = verified.expect("verify");
    assert_eq!(principal.tenant().as_uuid(), tenant());
    assert_eq!(principal.subject(), subject());
    assert_eq!(principal.role(), role);
    assert_eq!(principal.expires_at().timestamp(), exp);
}

/// Splits a compact JWT into its three segments.
fn segments(token: &str) -> (&str, &str, &str) {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) => (h, p, s),
        _ => panic!("not a compact JWT: {token}"),
    }
}

#[track_caller]
fn assert_claims_rejected(claims: Value, expected: AuthError) {
    assert_eq!(hs_verifier().verify(&sign_hs(&claims)), Err(expected));
}
