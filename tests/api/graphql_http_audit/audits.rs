//! graphql-http's server audits as data: each audit's id, requirement, request and checks,
//! in the package's order (read from the requests the real audit sends).

pub(super) const JSON: &str = "application/json";
pub(super) const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";

/// A request header, as the audit sets it.
pub(super) type Header = (&'static str, &'static str);

pub(super) const CONTENT_TYPE_JSON: Header = ("content-type", "application/json");
pub(super) const ACCEPT_JSON: Header = ("accept", "application/json");
pub(super) const ACCEPT_GRAPHQL_RESPONSE_JSON: Header =
    ("accept", "application/graphql-response+json");
pub(super) const ACCEPT_ANY: Header = ("accept", "*/*");

/// The body most audits send: `JSON.stringify({ query: '{ __typename }' })`.
pub(super) const TYPENAME: &str = r#"{"query":"{ __typename }"}"#;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Method {
    Get,
    Post,
}

/// One assertion of an audit: graphql-http's `ressert(res)…`.
#[derive(Clone, Copy, Debug)]
pub(super) enum Check {
    /// `status.toBe(code)`
    Status(u16),
    /// `status.toBeBetween(min, max)`
    StatusBetween(u16, u16),
    /// `status.toBeBetweenMultiple(ranges)`
    StatusInRanges(&'static [(u16, u16)]),
    /// `header('content-type').toContain(part)`
    ContentTypeContains(&'static str),
    /// The body decodes as UTF-8 (audit 82A3); here also: no charset but UTF-8 is declared.
    Utf8Body,
    /// `bodyAsExecutionResult.notToHaveProperty('errors')`: the body is JSON without `errors`.
    NoErrors,
    /// `bodyAsExecutionResult.data.toBe(undefined)`: the body is JSON without `data`.
    NoData,
}

/// One of graphql-http's server audits.
pub(super) struct Audit {
    pub(super) id: &'static str,
    /// The requirement, starting with MUST, SHOULD or MAY.
    pub(super) name: &'static str,
    pub(super) method: Method,
    /// GET: the URL's search parameters (encoded as `URLSearchParams` does).
    pub(super) params: &'static [(&'static str, &'static str)],
    /// The headers the audit sets, and no others.
    pub(super) headers: &'static [Header],
    /// POST: the body exactly as the audit sends it (`JSON.stringify`'s output), if any.
    pub(super) body: Option<&'static str>,
    pub(super) checks: &'static [Check],
}

const fn post(
    id: &'static str,
    name: &'static str,
    headers: &'static [Header],
    body: &'static str,
    checks: &'static [Check],
) -> Audit {
    Audit {
        id,
        name,
        method: Method::Post,
        params: &[],
        headers,
        body: Some(body),
        checks,
    }
}

const fn post_without_body(
    id: &'static str,
    name: &'static str,
    headers: &'static [Header],
    checks: &'static [Check],
) -> Audit {
    Audit {
        id,
        name,
        method: Method::Post,
        params: &[],
        headers,
        body: None,
        checks,
    }
}

const fn get(
    id: &'static str,
    name: &'static str,
    params: &'static [(&'static str, &'static str)],
    headers: &'static [Header],
    checks: &'static [Check],
) -> Audit {
    Audit {
        id,
        name,
        method: Method::Get,
        params,
        headers,
        body: None,
        checks,
    }
}

/// graphql-http's server audits, in its order.
pub(super) const AUDITS: &[Audit] = &[
    post(
        "22EB",
        "SHOULD accept application/graphql-response+json and match the content-type",
        &[CONTENT_TYPE_JSON, ACCEPT_GRAPHQL_RESPONSE_JSON],
        TYPENAME,
        &[
            Check::Status(200),
            Check::ContentTypeContains(GRAPHQL_RESPONSE_JSON),
        ],
    ),
    post(
        "4655",
        "MUST accept application/json and match the content-type",
        &[CONTENT_TYPE_JSON, ACCEPT_JSON],
        TYPENAME,
        &[Check::Status(200), Check::ContentTypeContains(JSON)],
    ),
    post(
        "47DE",
        "SHOULD accept */* and use application/json for the content-type",
        &[CONTENT_TYPE_JSON, ACCEPT_ANY],
        TYPENAME,
        &[Check::Status(200), Check::ContentTypeContains(JSON)],
    ),
    post(
        "80D8",
        "SHOULD assume application/json content-type when accept is missing",
        &[CONTENT_TYPE_JSON],
        TYPENAME,
        &[Check::Status(200), Check::ContentTypeContains(JSON)],
    ),
    post(
        "82A3",
        "MUST use utf-8 encoding when responding",
        &[CONTENT_TYPE_JSON],
        TYPENAME,
        &[Check::Status(200), Check::Utf8Body],
    ),
    post(
        "BF61",
        "MUST accept utf-8 encoded request",
        &[("content-type", "application/json; charset=utf-8")],
        r#"{"query":"{ __type(name: \"Run🏃Swim🏊\") { name } }"}"#,
        &[Check::Status(200)],
    ),
    post(
        "78D5",
        "MUST assume utf-8 in request if encoding is unspecified",
        &[CONTENT_TYPE_JSON],
        TYPENAME,
        &[Check::Status(200)],
    ),
    post(
        "2C94",
        "MUST accept POST requests",
        &[CONTENT_TYPE_JSON],
        TYPENAME,
        &[Check::Status(200)],
    ),
    get(
        "5A70",
        "MAY accept application/x-www-form-urlencoded formatted GET requests",
        &[("query", "{ __typename }")],
        &[],
        &[Check::Status(200)],
    ),
    get(
        "9C48",
        "MAY NOT allow executing mutations on GET requests",
        &[("query", "mutation { __typename }")],
        &[ACCEPT_GRAPHQL_RESPONSE_JSON],
        &[Check::StatusBetween(400, 499)],
    ),
    post(
        "9ABE",
        "SHOULD respond with 4xx status code if content-type is not supplied on POST requests",
        &[],
        TYPENAME,
        &[Check::StatusBetween(400, 499)],
    ),
    post(
        "03D4",
        "MUST accept application/json POST requests",
        &[CONTENT_TYPE_JSON],
        TYPENAME,
        &[Check::Status(200)],
    ),
    post_without_body(
        "A5BF",
        "MAY use 400 status code when request body is missing on POST",
        &[CONTENT_TYPE_JSON],
        &[Check::Status(400)],
    ),
    post(
        "423L",
        "MAY use 400 status code on missing {query} parameter",
        &[CONTENT_TYPE_JSON, ACCEPT_GRAPHQL_RESPONSE_JSON],
        r#"{"notquery":"{ __typename }"}"#,
        &[Check::Status(400)],
    ),
    post(
        "LKJ0",
        "MAY use 400 status code on object {query} parameter",
        &[CONTENT_TYPE_JSON],
        r#"{"query":{"obj":"ect"}}"#,
        &[Check::Status(400)],
    ),
    post(
        "LKJ1",
        "MAY use 400 status code on number {query} parameter",
        &[CONTENT_TYPE_JSON],
        r#"{"query":0}"#,
        &[Check::Status(400)],
    ),
    post(
        "LKJ2",
        "MAY use 400 status code on boolean {query} parameter",
        &[CONTENT_TYPE_JSON],
        r#"{"query":false}"#,
        &[Check::Status(400)],
    ),
    post(
        "LKJ3",
        "MAY use 400 status code on array {query} parameter",
        &[CONTENT_TYPE_JSON],
        r#"{"query":["array"]}"#,
        &[Check::Status(400)],
    ),
    post(
        "34A2",
        "SHOULD allow string {query} parameter when accepting application/graphql-response+json",
        &[CONTENT_TYPE_JSON, ACCEPT_GRAPHQL_RESPONSE_JSON],
        TYPENAME,
        &[Check::Status(200)],
    ),
    post(
        "13EE",
        "MUST allow string {query} parameter when accepting application/json",
        &[CONTENT_TYPE_JSON, ACCEPT_JSON],
        TYPENAME,
        &[Check::Status(200), Check::NoErrors],
    ),
    post(
        "6C00",
        "MAY use 400 status code on object {operationName} parameter",
        &[CONTENT_TYPE_JSON],
        r#"{"operationName":{"obj":"ect"},"query":"{ __typename }"}"#,
        &[Check::Status(400)],
    ),
    post(
        "6C01",
        "MAY use 400 status code on number {operationName} parameter",
        &[CONTENT_TYPE_JSON],
        r#"{"operationName":0,"query":"{ __typename }"}"#,
        &[Check::Status(400)],
    ),
    post(
        "6C02",
        "MAY use 400 status code on boolean {operationName} parameter",
        &[CONTENT_TYPE_JSON],
        r#"{"operationName":false,"query":"{ __typename }"}"#,
        &[Check::Status(400)],
    ),
    post(
        "6C03",
        "MAY use 400 status code on array {operationName} parameter",
        &[CONTENT_TYPE_JSON],
        r#"{"operationName":["array"],"query":"{ __typename }"}"#,
        &[Check::Status(400)],
    ),
    post(
        "8161",
        "SHOULD allow string {operationName} parameter when accepting application/graphql-response+json",
        &[CONTENT_TYPE_JSON, ACCEPT_GRAPHQL_RESPONSE_JSON],
        r#"{"operationName":"Query","query":"query Query { __typename }"}"#,
        &[Check::Status(200)],
    ),
    post(
        "B8B3",
        "MUST allow string {operationName} parameter when accepting application/json",
        &[CONTENT_TYPE_JSON, ACCEPT_JSON],
        r#"{"operationName":"Query","query":"query Query { __typename }"}"#,
        &[Check::Status(200), Check::NoErrors],
    ),
    post(
        "94B0",
        "SHOULD allow null {variables} parameter when accepting application/graphql-response+json",
        &[CONTENT_TYPE_JSON, ACCEPT_GRAPHQL_RESPONSE_JSON],
        r#"{"query":"{ __typename }","variables":null}"#,
        &[Check::Status(200), Check::NoErrors],
    ),
    post(
        "0220",
        "MUST allow null {variables} parameter when accepting application/json",
        &[CONTENT_TYPE_JSON, ACCEPT_JSON],
        r#"{"query":"{ __typename }","variables":null}"#,
        &[Check::Status(200), Check::NoErrors],
    ),
    post(
        "94B1",
        "SHOULD allow null {operationName} parameter when accepting application/graphql-response+json",
        &[CONTENT_TYPE_JSON, ACCEPT_GRAPHQL_RESPONSE_JSON],
        r#"{"query":"{ __typename }","operationName":null}"#,
        &[Check::Status(200), Check::NoErrors],
    ),
    post(
        "0221",
        "MUST allow null {operationName} parameter when accepting application/json",
        &[CONTENT_TYPE_JSON, ACCEPT_JSON],
        r#"{"query":"{ __typename }","operationName":null}"#,
        &[Check::Status(200), Check::NoErrors],
    ),
    post(
        "94B2",
        "SHOULD allow null {extensions} parameter when accepting application/graphql-response+json",
        &[CONTENT_TYPE_JSON, ACCEPT_GRAPHQL_RESPONSE_JSON],
        r#"{"query":"{ __typename }","extensions":null}"#,
        &[Check::Status(200), Check::NoErrors],
    ),
    post(
        "0222",
        "MUST allow null {extensions} parameter when accepting application/json",
        &[CONTENT_TYPE_JSON, ACCEPT_JSON],
        r#"{"query":"{ __typename }","extensions":null}"#,
        &[Check::Status(200), Check::NoErrors],
    ),
    post(
        "4760",
        "MAY use 400 status code on string {variables} parameter",
        &[CONTENT_TYPE_JSON],
        r#"{"query":"{ __typename }","variables":"string"}"#,
        &[Check::Status(400)],
    ),
    post(
        "4761",
        "MAY use 400 status code on number {variables} parameter",
        &[CONTENT_TYPE_JSON],
        r#"{"query":"{ __typename }","variables":0}"#,
        &[Check::Status(400)],
    ),
    post(
        "4762",
        "MAY use 400 status code on boolean {variables} parameter",
        &[CONTENT_TYPE_JSON],
        r#"{"query":"{ __typename }","variables":false}"#,
        &[Check::Status(400)],
    ),
    post(
        "4763",
        "MAY use 400 status code on array {variables} parameter",
        &[CONTENT_TYPE_JSON],
        r#"{"query":"{ __typename }","variables":["array"]}"#,
        &[Check::Status(400)],
    ),
    post(
        "2EA1",
        "SHOULD allow map {variables} parameter when accepting application/graphql-response+json",
        &[CONTENT_TYPE_JSON, ACCEPT_GRAPHQL_RESPONSE_JSON],
        r#"{"query":"query Type($name: String!) { __type(name: $name) { name } }","variables":{"name":"sometype"}}"#,
        &[Check::Status(200)],
    ),
    post(
        "28B9",
        "MUST allow map {variables} parameter when accepting application/json",
        &[CONTENT_TYPE_JSON, ACCEPT_JSON],
        r#"{"query":"query Type($name: String!) { __type(name: $name) { name } }","variables":{"name":"sometype"}}"#,
        &[Check::Status(200), Check::NoErrors],
    ),
    get(
        "D6D5",
        "MAY allow URL-encoded JSON string {variables} parameter in GETs when accepting application/graphql-response+json",
        &[
            (
                "query",
                "query Type($name: String!) { __type(name: $name) { name } }",
            ),
            ("variables", r#"{"name":"sometype"}"#),
        ],
        &[ACCEPT_GRAPHQL_RESPONSE_JSON],
        &[Check::Status(200), Check::NoErrors],
    ),
    get(
        "6A70",
        "MAY allow URL-encoded JSON string {variables} parameter in GETs when accepting application/json",
        &[
            (
                "query",
                "query Type($name: String!) { __type(name: $name) { name } }",
            ),
            ("variables", r#"{"name":"sometype"}"#),
        ],
        &[ACCEPT_JSON],
        &[Check::Status(200), Check::NoErrors],
    ),
    post(
        "58B0",
        "MAY use 400 status code on string {extensions} parameter",
        &[CONTENT_TYPE_JSON],
        r#"{"query":"{ __typename }","extensions":"string"}"#,
        &[Check::Status(400)],
    ),
    post(
        "58B1",
        "MAY use 400 status code on number {extensions} parameter",
        &[CONTENT_TYPE_JSON],
        r#"{"query":"{ __typename }","extensions":0}"#,
        &[Check::Status(400)],
    ),
    post(
        "58B2",
        "MAY use 400 status code on boolean {extensions} parameter",
        &[CONTENT_TYPE_JSON],
        r#"{"query":"{ __typename }","extensions":false}"#,
        &[Check::Status(400)],
    ),
    post(
        "58B3",
        "MAY use 400 status code on array {extensions} parameter",
        &[CONTENT_TYPE_JSON],
        r#"{"query":"{ __typename }","extensions":["array"]}"#,
        &[Check::Status(400)],
    ),
    post(
        "428F",
        "SHOULD allow map {extensions} parameter when accepting application/graphql-response+json",
        &[CONTENT_TYPE_JSON, ACCEPT_GRAPHQL_RESPONSE_JSON],
        r#"{"query":"{ __typename }","extensions":{"some":"value"}}"#,
        &[Check::Status(200)],
    ),
    post(
        "1B7A",
        "MUST allow map {extensions} parameter when accepting application/json",
        &[CONTENT_TYPE_JSON, ACCEPT_JSON],
        r#"{"query":"{ __typename }","extensions":{"some":"value"}}"#,
        &[Check::Status(200), Check::NoErrors],
    ),
    post(
        "B6DC",
        "MAY use 2xx, 4xx, or 5xx status codes on JSON parsing failure when accepting application/json",
        &[CONTENT_TYPE_JSON, ACCEPT_JSON],
        r#"{ "not a JSON"#,
        &[Check::StatusInRanges(&[(200, 299), (400, 499), (500, 599)])],
    ),
    post(
        "BCF8",
        "SHOULD use 400 status code on JSON parsing failure when accepting application/json",
        &[CONTENT_TYPE_JSON, ACCEPT_JSON],
        r#"{ "not a JSON"#,
        &[Check::Status(400)],
    ),
    post(
        "B7N8",
        "SHOULD use 400 status code on JSON parsing failure when accepting application/graphql-response+json",
        &[CONTENT_TYPE_JSON, ACCEPT_GRAPHQL_RESPONSE_JSON],
        r#"{ "not a JSON"#,
        &[Check::Status(400)],
    ),
    post(
        "8764",
        "MAY use 4xx or 5xx status codes if parameters are invalid",
        &[CONTENT_TYPE_JSON],
        r#"{"qeury":"{ __typename }"}"#,
        &[Check::StatusBetween(400, 599)],
    ),
    post(
        "3E3A",
        "MAY use 400 status code if parameters are invalid",
        &[CONTENT_TYPE_JSON],
        r#"{"qeury":"{ __typename }"}"#,
        &[Check::Status(400)],
    ),
    post(
        "572B",
        "SHOULD use 200 status code on document parsing failure when accepting application/json",
        &[CONTENT_TYPE_JSON, ACCEPT_JSON],
        r#"{"query":"{"}"#,
        &[Check::Status(200)],
    ),
    post(
        "FDE2",
        "SHOULD use 200 status code on document validation failure when accepting application/json",
        &[CONTENT_TYPE_JSON, ACCEPT_JSON],
        r#"{"query":"{ 8f31403dfe404bccbb0e835f2629c6a7 }"}"#,
        &[Check::Status(200)],
    ),
    post(
        "7B9B",
        "SHOULD use a status code of 200 on variable coercion failure when accepting application/json",
        &[CONTENT_TYPE_JSON, ACCEPT_JSON],
        r#"{"query":"query CoerceFailure($id: ID!){ __typename }","variables":{"id":null}}"#,
        &[Check::Status(200)],
    ),
    post(
        "865D",
        "SHOULD use 4xx or 5xx status codes on document parsing failure when accepting application/graphql-response+json",
        &[CONTENT_TYPE_JSON, ACCEPT_GRAPHQL_RESPONSE_JSON],
        r#"{"query":"{"}"#,
        &[Check::StatusBetween(400, 599)],
    ),
    post(
        "556A",
        "SHOULD use 400 status code on document parsing failure when accepting application/graphql-response+json",
        &[CONTENT_TYPE_JSON, ACCEPT_GRAPHQL_RESPONSE_JSON],
        r#"{"query":"{"}"#,
        &[Check::Status(400)],
    ),
    post(
        "D586",
        "SHOULD not contain the data entry on document parsing failure when accepting application/graphql-response+json",
        &[CONTENT_TYPE_JSON, ACCEPT_GRAPHQL_RESPONSE_JSON],
        r#"{"query":"{"}"#,
        &[Check::NoData],
    ),
    post(
        "51FE",
        "SHOULD use 4xx or 5xx status codes on document validation failure when accepting application/graphql-response+json",
        &[CONTENT_TYPE_JSON, ACCEPT_GRAPHQL_RESPONSE_JSON],
        r#"{"query":"{ 8f31403dfe404bccbb0e835f2629c6a7 }"}"#,
        &[Check::StatusBetween(400, 599)],
    ),
    post(
        "74FF",
        "SHOULD use 400 status code on document validation failure when accepting application/graphql-response+json",
        &[CONTENT_TYPE_JSON, ACCEPT_GRAPHQL_RESPONSE_JSON],
        r#"{"query":"{ 8f31403dfe404bccbb0e835f2629c6a7 }"}"#,
        &[Check::Status(400)],
    ),
    post(
        "5E5B",
        "SHOULD not contain the data entry on document validation failure when accepting application/graphql-response+json",
        &[CONTENT_TYPE_JSON, ACCEPT_GRAPHQL_RESPONSE_JSON],
        r#"{"query":"{ 8f31403dfe404bccbb0e835f2629c6a7 }"}"#,
        &[Check::NoData],
    ),
    post(
        "86EE",
        "SHOULD use a status code of 400 on variable coercion failure when accepting application/graphql-response+json",
        &[CONTENT_TYPE_JSON, ACCEPT_GRAPHQL_RESPONSE_JSON],
        r#"{"query":"query CoerceFailure($id: ID!){ __typename }","variables":{"id":null}}"#,
        &[Check::Status(400)],
    ),
];
