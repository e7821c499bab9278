//! `verify.rs` against forged, tampered and malformed tokens: each is refused, and for a
//! reason that gives nothing away.

use super::*;
use crate::auth::verify::MAX_TOKEN_BYTES;

/// base64url of `{"alg":"none","typ":"JWT"}` and of `{"alg":"None"}`.
const ALG_NONE_HEADERS: [&str; 2] = ["eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0", "eyJhbGciOiJOb25lIn0"];

#[test]
fn alg_none_is_rejected_by_every_key_source() {
    let pem = TempFile::new("pem", TEST_RSA_PUBLIC_PEM);
    let jwks = TempFile::new("json", TEST_JWKS);
    let verifiers = [
        hs_verifier(),
        verifier(KeySource::PublicKeyPem(pem.path())),
        verifier(KeySource::Jwks(jwks.path())),
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
    let verifier = verifier(KeySource::PublicKeyPem(file.path()));
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
    let ec_verifier = verifier(KeySource::PublicKeyPem(file.path()));
    assert_eq!(
        ec_verifier.verify(&format!("{header}.{payload}.")),
        Err(AuthError::InvalidSignature)
    );
}

#[test]
fn unknown_kid_with_jwks_is_rejected() {
    let file = TempFile::new("json", TEST_JWKS);
    let verifier = verifier(KeySource::Jwks(file.path()));
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
