//! `verify.rs`: good tokens through every key source, then each claim check.

use super::*;

// ---- round trips ----

#[test]
fn rs256_with_pem_public_key() {
    let file = TempFile::new("pem", TEST_RSA_PUBLIC_PEM);
    let verifier = verifier(KeySource::PublicKeyPem(file.path()));
    let claims = valid_claims();
    let token = sign(Algorithm::RS256, None, &claims, &rsa_key());
    let exp = claims["exp"].as_i64().expect("exp");
    assert_principal(verifier.verify(&token), Role::Instructor, exp);
    // The same claims under the EC key must not pass the RSA verifier.
    let es = sign(Algorithm::ES256, None, &claims, &ec_key());
    assert_eq!(verifier.verify(&es), Err(AuthError::UnsupportedAlgorithm));
}

#[test]
fn es256_with_pem_public_key() {
    let file = TempFile::new("pem", TEST_EC_PUBLIC_PEM);
    let verifier = verifier(KeySource::PublicKeyPem(file.path()));
    let claims = with(valid_claims(), "role", json!("admin"));
    let token = sign(Algorithm::ES256, None, &claims, &ec_key());
    let exp = claims["exp"].as_i64().expect("exp");
    assert_principal(verifier.verify(&token), Role::Admin, exp);
    let rs = sign(Algorithm::RS256, None, &claims, &rsa_key());
    assert_eq!(verifier.verify(&rs), Err(AuthError::UnsupportedAlgorithm));
}

#[test]
fn jwks_with_two_keys_selects_by_kid() {
    let file = TempFile::new("json", TEST_JWKS);
    let verifier = verifier(KeySource::Jwks(file.path()));
    assert!(verifier.warnings().is_empty(), "{:?}", verifier.warnings());
    let claims = valid_claims();
    let exp = claims["exp"].as_i64().expect("exp");
    let rs = sign(Algorithm::RS256, Some("rsa-2026"), &claims, &rsa_key());
    let es = sign(Algorithm::ES256, Some("ec-2026"), &claims, &ec_key());
    assert_principal(verifier.verify(&rs), Role::Instructor, exp);
    assert_principal(verifier.verify(&es), Role::Instructor, exp);
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
    let verifier = verifier(KeySource::Jwks(file.path()));
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

// ---- claims ----

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

// ---- the header ----

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
