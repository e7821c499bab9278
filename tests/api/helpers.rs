//! The test harness: real PostgreSQL, a migrated template database, and per test a fresh
//! database cloned from it with a server on a free port.
//!
//! The engine: by default one private PostgreSQL cluster per test process. With
//! `COURSETRAIL_TEST_CITUS=1`, the local Citus cluster of `scripts/citus` (a coordinator and
//! two workers, started if it is not running): each test database is then a distributed
//! database of its own, cloned from a distributed template on every node.

use coursetrail::app::{App, AppSettings, Caller, CommandOptions};
use coursetrail::auth::{JwtSettings, KeySource, Role, TokenIssuer, TokenVerifier};
use coursetrail::citus::LocalCitus;
use coursetrail::config::{Config, JwtKeys};
use coursetrail::db;
use coursetrail::domain::CourseId;
use coursetrail::domain::TenantId;
use coursetrail::domain::values::{Answers, CourseCode, CourseTitle, Score};
use coursetrail::domain::{EnrollmentId, SubmissionId};
use coursetrail::http as server_state;
use coursetrail::pgcluster::PrivateCluster;
use coursetrail::server;
use serde_json::{Value, json};
use sqlx::PgPool;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;
use uuid::Uuid;

pub const SECRET: &str = "test-secret-of-a-reasonable-length-0123456789";
pub const ISSUER: &str = "coursetrail";
pub const AUDIENCE: &str = "coursetrail";
const TEMPLATE: &str = "coursetrail_template";

/// Where the tests' databases live.
enum Engine {
    Plain(PrivateCluster),
    Citus(LocalCitus),
}

struct SharedEngine {
    engine: Engine,
    // Kept alive for the whole process: the cluster's supervisor pipe belongs to it.
    _runtime: tokio::runtime::Runtime,
}

/// Whether the suite runs on Citus (`COURSETRAIL_TEST_CITUS=1`).
/// A `Position` from a response: a 64-bit integer sent as a decimal string.
pub fn position(value: &serde_json::Value) -> i64 {
    value
        .as_str()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| panic!("not a Position: {value}"))
}

pub fn on_citus() -> bool {
    std::env::var("COURSETRAIL_TEST_CITUS").is_ok_and(|v| v == "1" || v == "true")
}

/// The process-wide engine, started and templated on first use. It is never dropped: when the
/// test process exits, a private cluster's supervisor pipe closes and PostgreSQL shuts itself
/// down; the Citus cluster keeps running (`scripts/citus stop` stops it).
fn engine() -> &'static Engine {
    static ENGINE: OnceLock<SharedEngine> = OnceLock::new();
    &ENGINE
        .get_or_init(|| {
            std::thread::spawn(|| {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .expect("a runtime for the cluster");
                let engine = runtime.block_on(async {
                    if on_citus() {
                        Engine::Citus(citus_template().await)
                    } else {
                        Engine::Plain(plain_template().await)
                    }
                });
                SharedEngine {
                    engine,
                    _runtime: runtime,
                }
            })
            .join()
            .expect("cluster start-up thread")
        })
        .engine
}

async fn plain_template() -> PrivateCluster {
    let cluster = PrivateCluster::start_ephemeral()
        .await
        .expect("start a private PostgreSQL cluster for the tests");
    let admin = db::connect(&cluster.url("postgres"), 1)
        .await
        .expect("connect");
    db::create_database_if_missing(&admin, TEMPLATE)
        .await
        .expect("template");
    admin.close().await;
    let template = db::connect(&cluster.url(TEMPLATE), 1)
        .await
        .expect("connect");
    db::migrate(&template).await.expect("migrate the template");
    template.close().await;
    cluster
}

/// The local Citus cluster (`scripts/citus`, with the tests' settings: fsync off), started if
/// need be, holding a fresh distributed template.
async fn citus_template() -> LocalCitus {
    let citus = LocalCitus::start(
        concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/citus"),
        &[("CITUS_FAST", "1")],
    )
    .expect("start the local Citus cluster");
    // Databases of earlier runs go first: they hold background workers on every node.
    citus
        .drop_databases("test\\_%")
        .await
        .expect("drop databases of earlier runs");
    citus
        .drop_databases(TEMPLATE)
        .await
        .expect("drop the earlier template");
    let url = citus
        .create_database(TEMPLATE, None)
        .await
        .expect("create the template");
    // Fewer shards than Citus's default make the clones cheaper (each shard is files to copy);
    // both workers still hold shards, so statements still cross the network.
    let template = db::connect(&url, 1).await.expect("connect to the template");
    sqlx::query(&format!(
        "ALTER DATABASE {TEMPLATE} SET citus.shard_count = 8"
    ))
    .execute(&template)
    .await
    .expect("set the template's shard count");
    template.close().await;
    let template = db::connect(&url, 1).await.expect("connect to the template");
    db::migrate(&template).await.expect("migrate the template");
    template.close().await;
    citus
        .close_database(TEMPLATE)
        .await
        .expect("close the template");
    citus
}

/// The Citus cluster the suite runs on (`None` on plain PostgreSQL).
pub fn citus() -> Option<&'static LocalCitus> {
    match engine() {
        Engine::Citus(citus) => Some(citus),
        Engine::Plain(_) => None,
    }
}

/// A fresh, migrated database of its own.
pub async fn fresh_database() -> (PgPool, String) {
    new_database(Some(TEMPLATE), 30).await
}

/// An empty database, not migrated (on Citus: distributed, with its nodes registered).
pub async fn empty_database() -> (PgPool, String) {
    new_database(None, 10).await
}

async fn new_database(template: Option<&str>, connections: u32) -> (PgPool, String) {
    let name = format!("test_{}", Uuid::new_v4().simple());
    let url = match engine() {
        Engine::Plain(cluster) => {
            let admin = db::connect(&cluster.url("postgres"), 1)
                .await
                .expect("connect");
            let from = template.map_or(String::new(), |t| format!(" TEMPLATE {t}"));
            sqlx::query(&format!("CREATE DATABASE {name}{from}"))
                .execute(&admin)
                .await
                .expect("create a test database");
            admin.close().await;
            cluster.url(&name)
        }
        Engine::Citus(citus) => citus
            .create_database(&name, template)
            .await
            .expect("create a distributed test database"),
    };
    let pool = db::connect(&url, connections)
        .await
        .expect("connect to the test database");
    (pool, url)
}

/// The suite's server configuration: every setting at its default, with the suite's token
/// secret. Not read with `Config::from_env`, so that nothing in the environment of whoever
/// runs the suite (a `METRICS_TOKEN`, a `TENANT_QUEUE`) changes what the tests see.
pub fn config() -> Config {
    Config {
        listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        jwt_keys: JwtKeys::Secret(SECRET.into()),
        jwt_issuer: ISSUER.into(),
        jwt_audience: AUDIENCE.into(),
        ..Config::defaults()
    }
}

/// The reports' own pool, as a server has one (`DATABASE_REPORT_CONNECTIONS`): `connections`
/// more to where `pool` connects (through the same proxy, if it goes through one), opened
/// when reports, rebuilds or exports first need them.
fn report_pool_beside(pool: &PgPool, connections: u32) -> PgPool {
    pool.options()
        .clone()
        .max_connections(connections)
        .connect_lazy_with((*pool.connect_options()).clone())
}

pub struct TestApp {
    pub address: SocketAddr,
    pub pool: PgPool,
    /// The test database's URL (on Citus: the coordinator's).
    pub database_url: String,
    pub tenant: TenantId,
    pub client: reqwest::Client,
    issuer: TokenIssuer,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

impl TestApp {
    /// Shuts the server down, as a SIGTERM does `coursetrail serve`.
    pub fn shut_down(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    /// A server on a free port over a fresh database holding one tenant.
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// [`TestApp::spawn`], with the server's settings adjusted first.
    pub async fn spawn_with(adjust: impl FnOnce(&mut server_state::HttpState)) -> TestApp {
        Self::spawn_configured(|_| {}, adjust).await
    }

    /// [`TestApp::spawn`], with the application (its limits) and the server's settings
    /// adjusted first.
    pub async fn spawn_configured(
        configure: impl FnOnce(&mut AppSettings),
        adjust: impl FnOnce(&mut server_state::HttpState),
    ) -> TestApp {
        // Server logs go to the test's captured output (shown when a test fails).
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
        let (pool, database_url) = fresh_database().await;
        Self::spawn_over(pool.clone(), database_url, pool, configure, adjust).await
    }

    /// A server whose application works on `server_pool` (say, through a proxy the test can
    /// cut), while the test reads and writes the same database directly through `pool`.
    pub async fn spawn_over(
        pool: PgPool,
        database_url: String,
        server_pool: PgPool,
        configure: impl FnOnce(&mut AppSettings),
        adjust: impl FnOnce(&mut server_state::HttpState),
    ) -> TestApp {
        // The server is wired as `coursetrail serve` wires it, from the suite's configuration;
        // the test then adjusts the application and the state.
        let config = config();
        let verifier = server::verifier(&config, None).expect("verifier");
        let report_pool = report_pool_beside(&server_pool, config.report_connections);
        let mut state =
            server::configured_state_with(&config, server_pool, report_pool, verifier, configure);
        adjust(&mut state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server::serve_on(listener, state, async move {
            let _ = rx.await;
        }));
        let mut app = TestApp {
            address,
            pool,
            database_url,
            tenant: TenantId::from_uuid(Uuid::nil()),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
            issuer: TokenIssuer::new(SECRET, ISSUER, AUDIENCE),
            shutdown: Some(tx),
        };
        app.tenant = app.new_tenant("Acme").await;
        app
    }

    pub async fn new_tenant(&self, name: &str) -> TenantId {
        let mut tx = self.pool.begin().await.expect("begin");
        let tenant = coursetrail::store::create_tenant(&mut tx, name)
            .await
            .expect("tenant");
        tx.commit().await.expect("commit");
        tenant
    }

    pub fn url(&self) -> String {
        format!("http://{}/graphql", self.address)
    }

    pub fn token_for(&self, tenant: TenantId, role: Role, sub: Uuid) -> String {
        self.issuer
            .mint(tenant.as_uuid(), sub, role, Duration::from_secs(3600))
            .expect("mint")
    }

    pub fn token_with_ttl(&self, tenant: TenantId, role: Role, sub: Uuid, ttl: Duration) -> String {
        self.issuer
            .mint(tenant.as_uuid(), sub, role, ttl)
            .expect("mint")
    }

    pub fn admin(&self) -> String {
        self.token_for(self.tenant, Role::Admin, Uuid::now_v7())
    }

    pub fn instructor(&self) -> String {
        self.token_for(self.tenant, Role::Instructor, Uuid::now_v7())
    }

    pub fn trainee(&self, trainee_id: Uuid) -> String {
        self.token_for(self.tenant, Role::Trainee, trainee_id)
    }

    /// POSTs a GraphQL operation; returns the status and the JSON body.
    pub async fn post(&self, token: Option<&str>, query: &str, variables: Value) -> (u16, Value) {
        let mut request = self
            .client
            .post(self.url())
            .header("content-type", "application/json")
            .header("accept", "application/graphql-response+json")
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// A GraphQL operation that must succeed; returns `data`.
    pub async fn ok(&self, token: &str, query: &str, variables: Value) -> Value {
        let (status, body) = self.post(Some(token), query, variables).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.get("errors").is_none(), "unexpected errors: {body}");
        body["data"].clone()
    }

    /// A GraphQL operation that must fail; returns the first error's code.
    pub async fn error_code(&self, token: Option<&str>, query: &str, variables: Value) -> String {
        let (_, body) = self.post(token, query, variables).await;
        let code = body["errors"][0]["extensions"]["code"].as_str();
        code.unwrap_or_else(|| panic!("expected an error with a code: {body}"))
            .to_owned()
    }

    pub async fn event_count(&self, tenant: TenantId) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events WHERE tenant_id = $1")
            .bind(tenant.as_uuid())
            .fetch_one(&self.pool)
            .await
            .expect("count")
    }

    /// Appends `n` synthetic events (each a new course stream) straight into the log, with the
    /// head row bumped in the same statement, and without a notification: for
    /// tests that need volume, or need a commit nobody announced. Returns the new head.
    pub async fn seed_events(&self, tenant: TenantId, n: i64) -> i64 {
        sqlx::query_scalar(
            "WITH head AS ( \
                 UPDATE tenant_heads SET last_position = last_position + $2 \
                 WHERE tenant_id = $1 RETURNING last_position \
             ), appended AS ( \
                 INSERT INTO events (tenant_id, stream_id, version, position, event_id, \
                     stream_type, event_type, schema_version, data, recorded_at, actor_id, \
                     actor_role, correlation_id, course_id) \
                 SELECT $1, s.id, 1, head.last_position - $2 + s.g, gen_random_uuid(), \
                     'course', 'CourseRetired', 1, \
                     jsonb_build_object('seq', s.g, 'note', E'a, \"quoted\"\nline'), now(), \
                     gen_random_uuid(), 'admin', gen_random_uuid(), s.id \
                 FROM head, (SELECT g, gen_random_uuid() AS id FROM generate_series(1, $2) g) s \
             ) \
             SELECT last_position FROM head",
        )
        .bind(tenant.as_uuid())
        .bind(n)
        .fetch_one(&self.pool)
        .await
        .expect("seed events")
    }

    pub async fn head(&self, tenant: TenantId) -> i64 {
        sqlx::query_scalar("SELECT last_position FROM tenant_heads WHERE tenant_id = $1")
            .bind(tenant.as_uuid())
            .fetch_one(&self.pool)
            .await
            .expect("head")
    }

    // --- Shortcuts for the common steps (each asserts success). ---

    pub async fn create_course(&self, token: &str, code: &str, passing: i32) -> Uuid {
        let data = self
            .ok(
                token,
                "mutation($i: CreateCourseInput!) { createCourse(input: $i) { course { id } } }",
                json!({ "i": { "code": code, "title": format!("Course {code}"), "passingScore": passing } }),
            )
            .await;
        uuid(&data["createCourse"]["course"]["id"])
    }

    pub async fn register_trainee(&self, token: &str, email: &str) -> Uuid {
        let data = self
            .ok(
                token,
                "mutation($i: RegisterTraineeInput!) { registerTrainee(input: $i) { trainee { id } } }",
                json!({ "i": { "email": email, "name": "Test Trainee" } }),
            )
            .await;
        uuid(&data["registerTrainee"]["trainee"]["id"])
    }

    pub async fn register_for_course(
        &self,
        token: &str,
        course: Uuid,
        trainee: Option<Uuid>,
    ) -> Uuid {
        let data = self
            .ok(
                token,
                "mutation($i: RegisterForCourseInput!) { registerForCourse(input: $i) { enrollment { id } } }",
                json!({ "i": { "courseId": course, "traineeId": trainee } }),
            )
            .await;
        uuid(&data["registerForCourse"]["enrollment"]["id"])
    }

    pub async fn enrollment_step(&self, token: &str, mutation: &str, enrollment: Uuid) -> Value {
        let query = format!(
            "mutation($i: EnrollmentInput!) {{ {mutation}(input: $i) {{ position enrollment {{ status version }} }} }}"
        );
        self.ok(
            token,
            &query,
            json!({ "i": { "enrollmentId": enrollment } }),
        )
        .await[mutation]
            .clone()
    }

    pub async fn submit(&self, token: &str, enrollment: Uuid) -> Uuid {
        let data = self
            .ok(
                token,
                "mutation($i: SubmitTestInput!) { submitTest(input: $i) { submissionId } }",
                json!({ "i": { "enrollmentId": enrollment, "answers": { "q1": "a" } } }),
            )
            .await;
        uuid(&data["submitTest"]["submissionId"])
    }

    pub async fn grade(
        &self,
        token: &str,
        enrollment: Uuid,
        submission: Uuid,
        score: i32,
    ) -> Value {
        self.ok(
            token,
            "mutation($i: GradeSubmissionInput!) { gradeSubmission(input: $i) { enrollment { bestScore } } }",
            json!({ "i": { "enrollmentId": enrollment, "submissionId": submission, "score": score } }),
        )
        .await
    }
}

/// A course created through the application layer (passing score 50), by `admin`.
pub async fn course_through(app: &App, admin: &Caller, code: &str) -> CourseId {
    let created = app
        .commands()
        .create_course(
            admin,
            &CommandOptions::default(),
            CourseCode::parse(code).unwrap(),
            CourseTitle::parse("Through the application").unwrap(),
            Score::parse("passingScore", 50).unwrap(),
        )
        .await
        .unwrap();
    CourseId::from_uuid(created.stream_id)
}

/// A test submitted through the application layer for `enrollment`, by `caller`; returns the
/// submission id the command recorded.
pub async fn submit_through(app: &App, caller: &Caller, enrollment: EnrollmentId) -> SubmissionId {
    let submitted = app
        .commands()
        .submit_test(
            caller,
            &CommandOptions::default(),
            enrollment,
            Answers::parse(serde_json::json!({ "q1": "a" })).unwrap(),
        )
        .await
        .unwrap();
    submitted.submission_id
}

/// A verified caller of the application layer, made as a request makes one: a token minted
/// with the suite's secret, then verified (a `Principal` comes only from the verifier).
pub fn caller(tenant: TenantId, role: Role, sub: Uuid) -> Caller {
    let token = TokenIssuer::new(SECRET, ISSUER, AUDIENCE)
        .mint(tenant.as_uuid(), sub, role, Duration::from_secs(3600))
        .expect("mint a test token");
    let settings = JwtSettings::new(KeySource::Secret(SECRET.into()), ISSUER, AUDIENCE);
    let principal = TokenVerifier::new(&settings)
        .expect("verifier")
        .verify(&token)
        .expect("verify the test token");
    Caller::from_principal(&principal)
}

pub fn uuid(value: &Value) -> Uuid {
    value
        .as_str()
        .and_then(|s| Uuid::parse_str(s).ok())
        .unwrap_or_else(|| panic!("expected a UUID, got {value}"))
}
