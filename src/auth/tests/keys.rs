//! `keys.rs` and the settings checks of `TokenVerifier::new`: what configuration is refused,
//! what is accepted with a warning, and that no secret is ever printed.

use super::*;

#[test]
fn empty_settings_are_refused() {
    let empty_secret = settings(KeySource::Secret("  ".to_owned()));
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
    let mut lax = settings(KeySource::Secret(SECRET.to_owned()));
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
    assert!(matches!(
        TokenVerifier::new(&settings(KeySource::PublicKeyPem(missing))),
        Err(AuthConfigError::ReadFile { .. })
    ));

    for contents in [
        TEST_RSA_PRIVATE_PEM,
        TEST_EC_PRIVATE_PEM,
        "not a key",
        TEST_JWKS,
    ] {
        let file = TempFile::new("pem", contents);
        assert!(
            matches!(
                TokenVerifier::new(&settings(KeySource::PublicKeyPem(file.path()))),
                Err(AuthConfigError::InvalidKey { .. })
            ),
            "{contents}"
        );
    }
}

/// Whether a JWKS file holding `jwks` is refused as a whole.
fn jwks_refused(jwks: &Value) -> bool {
    let file = TempFile::new("json", &jwks.to_string());
    matches!(
        TokenVerifier::new(&settings(KeySource::Jwks(file.path()))),
        Err(AuthConfigError::InvalidJwks { .. })
    )
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
        // Duplicate key id (same kid twice).
        json!({ "keys": [rsa.clone(), with(ec.clone(), "kid", json!("rsa-2026"))] }),
    ];
    for jwks in &cases {
        assert!(jwks_refused(jwks), "{jwks}");
    }
}

#[test]
fn jwks_encryption_key_beside_a_signing_key_is_skipped_with_a_warning() {
    let set: Value = serde_json::from_str(TEST_JWKS).expect("jwks json");
    let enc = with(set["keys"][0].clone(), "use", json!("enc"));
    let mixed = json!({ "keys": [enc, set["keys"][1].clone()] });
    let file = TempFile::new("json", &mixed.to_string());
    let verifier = verifier(KeySource::Jwks(file.path()));
    assert_eq!(verifier.warnings().len(), 1);
}

#[test]
fn debug_output_hides_the_secret() {
    let settings = settings(KeySource::Secret(SECRET.to_owned()));
    assert!(!format!("{settings:?}").contains(SECRET));
    assert!(!format!("{:?}", TokenIssuer::new(SECRET, ISS, AUD)).contains(SECRET));
    assert!(!format!("{:?}", hs_verifier()).contains(SECRET));
}
