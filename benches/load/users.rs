//! The virtual users: each runs enrollment lifecycles in a loop through the GraphQL endpoint
//! and tallies the commands started inside the measured window (latency, error codes,
//! replayed answers).

use super::Args;
use super::client::{
    COMPLETE_COURSE, Client, GRADE_SUBMISSION, REGISTER_FOR_COURSE, REGISTER_TRAINEE, Reply,
    START_COURSE, SUBMIT_TEST, Tenant, trainee_registration,
};
use super::common::{self, Tokens};
use super::env::Environment;
use anyhow::{Context, bail};
use coursetrail::auth::Role;
use hdrhistogram::Histogram;
use rand::Rng;
use serde_json::{Value, json};
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// What one virtual user (or loop of requests) measured.
pub struct Tally {
    pub latency: Histogram<u64>,
    pub commands: u64,
    pub replayed: u64,
    pub codes: BTreeMap<String, u64>,
    pub lifecycles: u64,
}

impl Tally {
    pub fn new() -> Self {
        Self {
            latency: common::latency_histogram(),
            commands: 0,
            replayed: 0,
            codes: BTreeMap::new(),
            lifecycles: 0,
        }
    }

    /// Tallies one answer if its request started inside the measured window.
    pub fn record(&mut self, window: Window, started: Instant, reply: &Reply) {
        if started >= window.from && started < window.to {
            common::record_since(&mut self.latency, started);
            self.commands += 1;
            if reply.replayed {
                self.replayed += 1;
            }
            if let Some(code) = &reply.code {
                *self.codes.entry(code.clone()).or_default() += 1;
            }
        }
    }

    pub fn merge(&mut self, other: Tally) {
        self.latency
            .add(&other.latency)
            .expect("same histogram bounds");
        self.commands += other.commands;
        self.replayed += other.replayed;
        self.lifecycles += other.lifecycles;
        for (code, n) in other.codes {
            *self.codes.entry(code).or_default() += n;
        }
    }
}

/// The measured window: commands started in it are counted.
#[derive(Clone, Copy)]
pub struct Window {
    pub from: Instant,
    pub to: Instant,
}

/// What one lifecycle does besides the happy path, drawn at its start.
struct Choices {
    duplicate: bool,
    invalid: bool,
    retry: bool,
    course: Uuid,
}

impl Choices {
    fn draw(args: &Args, tenant: &Tenant) -> Self {
        let mut rng = rand::rng();
        Self {
            duplicate: rng.random_bool(args.duplicate_share),
            invalid: rng.random_bool(args.invalid_share),
            retry: rng.random_bool(args.retry_share),
            course: tenant.courses[rng.random_range(0..tenant.courses.len())],
        }
    }
}

struct User<'a> {
    client: Client,
    tokens: &'a Tokens,
    window: Window,
    tally: Tally,
    args: &'a Args,
}

impl User<'_> {
    /// Sends one mutation and tallies it if it started inside the measured window.
    async fn send(&mut self, token: &str, query: &str, variables: Value) -> Reply {
        let started = Instant::now();
        let reply = self.client.mutate(token, query, variables).await;
        self.tally.record(self.window, started, &reply);
        reply
    }

    /// register trainee → register for a course → start → submit → grade → complete, with the
    /// configured shares of duplicate registrations, invalid commands and retried commands.
    /// Returns early (the lifecycle abandoned) when a step that should succeed fails.
    async fn lifecycle(&mut self, tenant: &Tenant) -> anyhow::Result<()> {
        let choices = Choices::draw(self.args, tenant);
        let (trainee, enrollment) = self.enroll(tenant, &choices).await?;
        self.complete(tenant, &trainee, &enrollment, choices.retry)
            .await?;
        let now = Instant::now();
        if now < self.window.to && now >= self.window.from {
            self.tally.lifecycles += 1;
        }
        Ok(())
    }

    /// Registers a new trainee and enrolls it in the chosen course (twice, if so chosen, and
    /// with a premature completion, if so chosen); returns its token and the enrollment id.
    async fn enroll(
        &mut self,
        tenant: &Tenant,
        choices: &Choices,
    ) -> anyhow::Result<(String, String)> {
        let trainee_id = Uuid::now_v7();
        let reply = self
            .send(
                &tenant.admin,
                REGISTER_TRAINEE,
                trainee_registration(trainee_id),
            )
            .await;
        expect_ok(&reply)?;
        let hour = Duration::from_secs(3600);
        let trainee = self
            .tokens
            .mint(tenant.id, Role::Trainee, trainee_id, hour)?;
        let register = json!({"input": {"courseId": choices.course}});
        let reply = self
            .send(&trainee, REGISTER_FOR_COURSE, register.clone())
            .await;
        expect_ok(&reply)?;
        let enrollment = reply
            .data_str(&["registerForCourse", "enrollment", "id"])
            .context("no enrollment id")?
            .to_owned();
        if choices.duplicate {
            self.send(&trainee, REGISTER_FOR_COURSE, register).await;
        }
        if choices.invalid {
            // Completing before a passing grade: INVALID_STATE.
            self.send(
                &trainee,
                COMPLETE_COURSE,
                json!({"input": {"enrollmentId": enrollment}}),
            )
            .await;
        }
        Ok((trainee, enrollment))
    }

    /// start (again with the same commandId, if `retry`) → submit → grade → complete.
    async fn complete(
        &mut self,
        tenant: &Tenant,
        trainee: &str,
        enrollment: &str,
        retry: bool,
    ) -> anyhow::Result<()> {
        let start = json!({"input": {"enrollmentId": enrollment, "commandId": Uuid::now_v7()}});
        expect_ok(&self.send(trainee, START_COURSE, start.clone()).await)?;
        if retry {
            // A frontend retry after a timeout: the same commandId answers the same way.
            expect_ok(&self.send(trainee, START_COURSE, start).await)?;
        }
        let reply = self
            .send(
                trainee,
                SUBMIT_TEST,
                json!({"input": {"enrollmentId": enrollment,
                                  "answers": {"q1": "b", "q2": [1, 3], "q3": "because"}}}),
            )
            .await;
        expect_ok(&reply)?;
        let submission = reply
            .data_str(&["submitTest", "submissionId"])
            .context("no submission id")?
            .to_owned();
        let reply = self
            .send(
                &tenant.instructor,
                GRADE_SUBMISSION,
                json!({"input": {"enrollmentId": enrollment, "submissionId": submission,
                                  "score": 80}}),
            )
            .await;
        expect_ok(&reply)?;
        let reply = self
            .send(
                trainee,
                COMPLETE_COURSE,
                json!({"input": {"enrollmentId": enrollment}}),
            )
            .await;
        expect_ok(&reply)
    }
}

fn expect_ok(reply: &Reply) -> anyhow::Result<()> {
    match &reply.code {
        None => Ok(()),
        Some(code) => bail!("{code}"),
    }
}

pub struct LoadResult {
    pub tally: Tally,
    pub elapsed: Duration,
    /// Transactions the database committed and rolled back during the measured window (every
    /// statement of the write path is its own transaction), if the statistics could be read.
    pub transactions: Option<(i64, i64)>,
}

/// The database's committed and rolled-back transaction counters.
async fn transaction_counters(pool: &PgPool) -> Option<(i64, i64)> {
    sqlx::query_as(
        "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(pool)
    .await
    .ok()
}

/// `--users` virtual users running lifecycles on random tenants through the warm-up and the
/// measured window.
pub async fn drive_load(
    args: &Args,
    env: &Environment,
    client: &Client,
    tenants: &[Tenant],
) -> LoadResult {
    let from = Instant::now() + args.warmup;
    let window = Window {
        from,
        to: from + args.duration,
    };
    let users = (0..args.users).map(|_| {
        let client = client.clone();
        async move {
            let mut user = User {
                client,
                tokens: &env.tokens,
                window,
                tally: Tally::new(),
                args,
            };
            while Instant::now() < window.to {
                let tenant = &tenants[rand::rng().random_range(0..tenants.len())];
                // An abandoned lifecycle was already tallied under its error code.
                let _ = user.lifecycle(tenant).await;
            }
            user.tally
        }
    });
    let counted = async {
        tokio::time::sleep_until(window.from.into()).await;
        let before = transaction_counters(&env.pool).await?;
        tokio::time::sleep_until(window.to.into()).await;
        // Backends report their counters at most once a second.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let after = transaction_counters(&env.pool).await?;
        Some((after.0 - before.0, after.1 - before.1))
    };
    let (tallies, transactions) = tokio::join!(futures_util::future::join_all(users), counted);
    let mut total = Tally::new();
    for tally in tallies {
        total.merge(tally);
    }
    LoadResult {
        tally: total,
        elapsed: args.duration,
        transactions,
    }
}
