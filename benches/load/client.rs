//! The load's GraphQL client: the mutations the virtual users send, one answer reduced to its
//! error code, and the tenants provisioned before a load (courses created over HTTP).

use super::env::Environment;
use anyhow::Context;
use coursetrail::domain::TenantId;
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

const COURSES_PER_TENANT: usize = 3;
const PASSING_SCORE: i64 = 60;

pub const CREATE_COURSE: &str = "mutation($input: CreateCourseInput!) { createCourse(input: $input) \
     { course { id } position } }";
pub const REGISTER_TRAINEE: &str = "mutation($input: RegisterTraineeInput!) { \
     registerTrainee(input: $input) { trainee { id } position } }";
pub const REGISTER_FOR_COURSE: &str = "mutation($input: RegisterForCourseInput!) { \
     registerForCourse(input: $input) { enrollment { id status version } position } }";
pub const START_COURSE: &str = "mutation($input: EnrollmentInput!) { startCourse(input: $input) \
     { enrollment { id status version } position replayed } }";
pub const SUBMIT_TEST: &str = "mutation($input: SubmitTestInput!) { submitTest(input: $input) \
     { enrollment { id status version } submissionId position } }";
pub const GRADE_SUBMISSION: &str = "mutation($input: GradeSubmissionInput!) { \
     gradeSubmission(input: $input) { enrollment { id status bestScore version } position } }";
pub const COMPLETE_COURSE: &str = "mutation($input: EnrollmentInput!) { completeCourse(input: $input) \
     { enrollment { id status version } position } }";

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    url: Arc<str>,
}

/// One answer: `code` is `None` on success, else the first error's `extensions.code` (or a
/// transport / HTTP status description).
pub struct Reply {
    pub data: Value,
    pub code: Option<String>,
    pub replayed: bool,
}

impl Reply {
    pub fn data_str(&self, path: &[&str]) -> Option<&str> {
        path.iter()
            .try_fold(&self.data, |value, key| value.get(key))
            .and_then(Value::as_str)
    }

    fn failed(code: String) -> Self {
        Self {
            data: Value::Null,
            code: Some(code),
            replayed: false,
        }
    }
}

impl Client {
    pub fn new(url: &str, connections: usize) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(connections)
                .timeout(Duration::from_secs(30))
                .build()?,
            url: url.into(),
        })
    }

    pub async fn mutate(&self, token: &str, query: &str, variables: Value) -> Reply {
        let request = self
            .http
            .post(&*self.url)
            .bearer_auth(token)
            .header("accept", "application/graphql-response+json")
            .json(&json!({ "query": query, "variables": variables }));
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => return Reply::failed(format!("TRANSPORT ({error})")),
        };
        let status = response.status();
        let body: Value = match response.json().await {
            Ok(body) => body,
            Err(_) => return Reply::failed(format!("HTTP_{}", status.as_u16())),
        };
        let code = body["errors"].get(0).map(|e| {
            e["extensions"]["code"]
                .as_str()
                .unwrap_or("NO_CODE")
                .to_owned()
        });
        let data = body.get("data").cloned().unwrap_or(Value::Null);
        let replayed = data
            .as_object()
            .and_then(|o| o.values().next())
            .is_some_and(|payload| payload["replayed"] == Value::Bool(true));
        Reply {
            data,
            code,
            replayed,
        }
    }
}

/// `registerTrainee`'s variables for a new trainee (its own email).
pub fn trainee_registration(trainee_id: Uuid) -> Value {
    json!({"input": {"email": format!("{}@load.example", trainee_id.simple()),
                     "name": "Load Trainee", "traineeId": trainee_id}})
}

/// One tenant as the virtual users see it.
pub struct Tenant {
    pub id: TenantId,
    pub admin: String,
    pub instructor: String,
    pub courses: Vec<Uuid>,
}

/// `count` new tenants, each with an admin's and an instructor's token and
/// [`COURSES_PER_TENANT`] courses.
pub async fn provision(
    env: &Environment,
    count: usize,
    client: &Client,
) -> anyhow::Result<Vec<Tenant>> {
    let tenants: Vec<anyhow::Result<Tenant>> = futures_util::stream::iter(0..count)
        .map(|i| provision_one(env, i, client))
        .buffer_unordered(8)
        .collect()
        .await;
    tenants.into_iter().collect()
}

async fn provision_one(env: &Environment, i: usize, client: &Client) -> anyhow::Result<Tenant> {
    let id = super::common::new_tenant(&env.pool, &format!("load tenant {i}")).await?;
    let day = Duration::from_secs(24 * 3600);
    let admin = env.tokens.admin(id, day)?;
    let instructor = env.tokens.instructor(id, day)?;
    let mut courses = Vec::new();
    for c in 0..COURSES_PER_TENANT {
        let reply = client
            .mutate(
                &admin,
                CREATE_COURSE,
                json!({"input": {"code": format!("LOAD-{c}"), "title": "Load course",
                                  "passingScore": PASSING_SCORE}}),
            )
            .await;
        let id = reply
            .data_str(&["createCourse", "course", "id"])
            .and_then(|id| Uuid::parse_str(id).ok())
            .with_context(|| format!("createCourse failed: {:?}", reply.code))?;
        courses.push(id);
    }
    Ok(Tenant {
        id,
        admin,
        instructor,
        courses,
    })
}
