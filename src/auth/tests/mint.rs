//! `mint.rs`: minted tokens verify, and unusable input is refused.

use std::time::Duration;

use super::*;

#[test]
fn hs256_round_trip_through_issuer_and_verifier() {
    let issuer = TokenIssuer::new(SECRET, ISS, AUD);
    let before = now();
    let token = issuer
        .mint(tenant(), subject(), Role::Trainee, Duration::from_secs(900))
        .expect("mint");
    let after = now();
    let principal = hs_verifier().verify(&token).expect("verify");
    assert_eq!(principal.tenant().as_uuid(), tenant());
    assert_eq!(principal.subject(), subject());
    assert_eq!(principal.role(), Role::Trainee);
    let exp = principal.expires_at().timestamp();
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
