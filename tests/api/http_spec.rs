//! GraphQL over HTTP as the specification asks, and tokens that must not get in.

use crate::helpers::{AUDIENCE, ISSUER, SECRET, TestApp};
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};
use uuid::Uuid;

#[tokio::test]
async fn http_semantics_follow_the_graphql_over_http_spec() {
    let app = TestApp::spawn().await;
    let admin = app.admin();

    // A mutation over GET is refused with 405.
    let response = get_query(&app, &admin, "mutation { createCourse(input: {code: \"G\", title: \"G\", passingScore: 1}) { position } }").await;
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");
    // A query over GET works.
    let response = get_query(&app, &admin, "{ me { role } }").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"]["me"]["role"], "ADMIN");

    // Parse and validation failures: 400, no data.
    for query in ["{ me { role ", "{ nope }"] {
        let (status, body) = app.post(Some(&admin), query, json!({})).await;
        assert_eq!(status, 400, "{body}");
        assert!(body.get("data").is_none(), "{body}");
        let code = body["errors"][0]["extensions"]["code"].as_str().unwrap();
        assert!(code == "GRAPHQL_PARSE_FAILED" || code == "GRAPHQL_VALIDATION_FAILED");
    }
    failures_asked_for_as_application_json_are_200_with_the_errors(&app, &admin).await;
    // No suggestions for field names.
    let (_, body) = app.post(None, "{ mee { role } }", json!({})).await;
    assert!(!body.to_string().contains("Did you mean"), "{body}");

    // Malformed JSON gets a JSON error body.
    let response = post_json_body(&app, None, None, "{ not json".to_string()).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_REQUEST");

    // Content negotiation.
    let response = post_json_body(
        &app,
        Some("text/plain"),
        None,
        json!({"query": "{ me { role } }"}).to_string(),
    )
    .await;
    assert_eq!(response.status(), 406);
    let response = post_json_body(
        &app,
        Some("application/json"),
        Some(&admin),
        json!({"query": "{ me { role } }"}).to_string(),
    )
    .await;
    assert_eq!(response.headers()["content-type"], "application/json");
    let (status, _) = app.post(Some(&admin), "{ me { role } }", json!({})).await;
    assert_eq!(status, 200);

    batches_are_capped(&app, &admin).await;
    graphiql_is_served_and_its_introspection_fits_the_limits(&app).await;
    health_and_readiness_answer(&app).await;
}

/// GETs /graphql with `query`, as `token`.
async fn get_query(app: &TestApp, token: &str, query: &str) -> reqwest::Response {
    app.client
        .get(app.url())
        .query(&[("query", query)])
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// The parse and validation failures asked for as `application/json`: 200 with the errors, as
/// the GraphQL-over-HTTP specification asks of that media type; so is a variable that does
/// not coerce.
async fn failures_asked_for_as_application_json_are_200_with_the_errors(
    app: &TestApp,
    admin: &str,
) {
    for (query, variables) in [
        ("{ me { role ", json!({})),
        ("{ nope }", json!({})),
        (
            "query($id: UUID!) { course(id: $id) { id } }",
            json!({ "id": 42 }),
        ),
    ] {
        let body = json!({ "query": query, "variables": variables }).to_string();
        let response = post_json_body(app, Some("application/json"), Some(admin), body).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/json");
        let body: Value = response.json().await.unwrap();
        assert!(
            body["errors"][0]["extensions"]["code"].is_string(),
            "{body}"
        );
        assert!(body.get("data").is_none_or(Value::is_null), "{body}");
    }
}

/// A batch of 11 operations is refused; a batch of 2 gets two answers.
async fn batches_are_capped(app: &TestApp, admin: &str) {
    let batch: Vec<Value> = (0..11)
        .map(|_| json!({"query": "{ me { role } }"}))
        .collect();
    let response = post_json_body(app, None, Some(admin), Value::Array(batch).to_string()).await;
    assert_eq!(response.status(), 400);
    let batch: Vec<Value> = (0..2)
        .map(|_| json!({"query": "{ me { role } }"}))
        .collect();
    let response = post_json_body(app, None, Some(admin), Value::Array(batch).to_string()).await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body.as_array().map(|a| a.len()), Some(2));
}

/// GraphiQL for browsers; its introspection query fits the limits.
async fn graphiql_is_served_and_its_introspection_fits_the_limits(app: &TestApp) {
    let response = app
        .client
        .get(app.url())
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("graphiql"));
    let (status, body) = app.post(None, INTROSPECTION, json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["data"]["__schema"]["types"]
            .as_array()
            .is_some_and(|t| t.len() > 10)
    );
}

async fn health_and_readiness_answer(app: &TestApp) {
    for path in ["health", "ready"] {
        let response = app
            .client
            .get(format!("http://{}/{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "/{path}");
    }
}

/// POSTs a raw JSON body to /graphql, for the cases `TestApp::post` does not cover.
async fn post_json_body(
    app: &TestApp,
    accept: Option<&str>,
    token: Option<&str>,
    body: String,
) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url())
        .header("content-type", "application/json")
        .body(body);
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

fn claims(overrides: Value) -> Value {
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({
        "sub": Uuid::now_v7(), "tenant": Uuid::now_v7(), "role": "admin",
        "exp": now + 600, "iat": now, "iss": ISSUER, "aud": AUDIENCE,
    });
    for (key, value) in overrides.as_object().unwrap() {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(key);
        } else {
            claims[key] = value.clone();
        }
    }
    claims
}

fn hs256(claims: &Value, secret: &str) -> String {
    encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn forged_expired_or_misaddressed_tokens_are_unauthenticated() {
    let app = TestApp::spawn().await;
    let now = chrono::Utc::now().timestamp();
    let valid = hs256(&claims(json!({})), SECRET);
    let parts: Vec<&str> = valid.split('.').collect();
    let tampered_payload = b64(claims(json!({"role": "admin", "tenant": Uuid::now_v7()}))
        .to_string()
        .as_bytes());
    let none_header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let attacks = vec![
        ("alg none", format!("{none_header}.{}.", parts[1])),
        ("stripped signature", format!("{}.{}.", parts[0], parts[1])),
        (
            "tampered payload",
            format!("{}.{}.{}", parts[0], tampered_payload, parts[2]),
        ),
        (
            "other secret",
            hs256(&claims(json!({})), "another-secret-entirely-0123456789"),
        ),
        (
            "expired",
            hs256(&claims(json!({"exp": now - 3600})), SECRET),
        ),
        (
            "not yet valid",
            hs256(&claims(json!({"nbf": now + 3600})), SECRET),
        ),
        (
            "wrong audience",
            hs256(&claims(json!({"aud": "someone-else"})), SECRET),
        ),
        (
            "missing audience",
            hs256(&claims(json!({"aud": null})), SECRET),
        ),
        (
            "wrong issuer",
            hs256(&claims(json!({"iss": "evil"})), SECRET),
        ),
        (
            "missing issuer",
            hs256(&claims(json!({"iss": null})), SECRET),
        ),
        (
            "missing subject",
            hs256(&claims(json!({"sub": null})), SECRET),
        ),
        (
            "unknown role",
            hs256(&claims(json!({"role": "root"})), SECRET),
        ),
        ("garbage", "not.a.token".to_string()),
    ];
    for (what, token) in attacks {
        let (status, body) = app.post(Some(&token), "{ me { role } }", json!({})).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
            "{what}"
        );
        assert!(body.get("data").is_none(), "{what}");
    }
    // The valid one gets in.
    let (status, _) = app.post(Some(&valid), "{ me { role } }", json!({})).await;
    assert_eq!(status, 200);
}

const INTROSPECTION: &str = r#"
query IntrospectionQuery {
  __schema {
    queryType { name } mutationType { name } subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) { name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name
    ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } }
}
"#;

#[tokio::test]
async fn every_response_echoes_its_request_and_correlation_ids() {
    let app = TestApp::spawn().await;
    let health = format!("http://{}/health", app.address);
    let response = app
        .client
        .get(&health)
        .header("x-request-id", "req-42")
        .header("x-correlation-id", "0190b6a4-7d3e-7c41-9b5a-1c2d3e4f5a6b")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "req-42");
    assert_eq!(
        response.headers()["x-correlation-id"],
        "0190b6a4-7d3e-7c41-9b5a-1c2d3e4f5a6b"
    );
    // None given, or an unusable one: fresh ids.
    for given in [None, Some("has spaces in it")] {
        let mut request = app.client.get(&health);
        if let Some(given) = given {
            request = request.header("x-request-id", given);
        }
        let response = request.send().await.unwrap();
        let id = response.headers()["x-request-id"].to_str().unwrap();
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
        let correlation = response.headers()["x-correlation-id"].to_str().unwrap();
        assert!(uuid::Uuid::parse_str(correlation).is_ok(), "{correlation}");
    }
}
