//! xAPI 1.0.3 (IEEE 9274.1.1) statements: the pure mapping of one stored event to at most one
//! statement, for the `/xapi/statements` export (`http::xapi`). See docs/xapi.md and
//! docs/decisions/0026-xapi-statements.md.
//!
//! Invariants: no I/O, no clock, no randomness — a statement is a function of the event, the
//! tenant and the configured home page, so two exports of one history carry identical
//! statements. Nothing that identifies a person is read or written: the actor is the trainee's
//! id under the home page; answers, withdrawal reasons, e-mails and names are never read.
//! Events that are not a learner's experience (course and trainee streams) have no statement.

use crate::domain::events::TestGraded;
use crate::domain::{EventType, TenantId};
use crate::store::log::LoggedEvent;
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use uuid::{Uuid, uuid};

/// The xAPI version the statements follow (their `version`, and the response header's).
pub const VERSION: &str = "1.0.3";
/// `context.platform` of every statement.
pub const PLATFORM: &str = "coursetrail";
/// The home page when `XAPI_HOME_PAGE` is not set (`.example` is reserved: never a real site).
pub const DEFAULT_HOME_PAGE: &str = "https://coursetrail.example";

/// The event types that have a statement: an enrollment's lifecycle, in the order it happens.
pub const LEARNER_EVENTS: [EventType; 6] = [
    EventType::CourseRegistered,
    EventType::CourseStarted,
    EventType::TestSubmitted,
    EventType::TestGraded,
    EventType::CourseCompleted,
    EventType::RegistrationWithdrawn,
];

/// Statement ids are UUID v5 of (tenant, event id) in this namespace, which is itself
/// v5(URL namespace, "urn:coursetrail:xapi:statement"). The event ids are v7, which validators
/// written against RFC 4122 (versions 1–5) refuse; a v5 is valid everywhere and stable.
const STATEMENT_NAMESPACE: Uuid = uuid!("335a2393-72c5-592f-9817-f22a62a6b2df");
/// `context.registration` is v5 of (tenant, enrollment id) in this namespace,
/// v5(URL namespace, "urn:coursetrail:xapi:registration"), for the same reason.
const REGISTRATION_NAMESPACE: Uuid = uuid!("8bf3136a-5936-510b-bad6-3eff43a1c4a3");

const ACTIVITY_TYPE_COURSE: &str = "http://adlnet.gov/expapi/activities/course";

/// The system the trainees' accounts are on (`actor.account.homePage`), and the base of every
/// IRI the statements mint: an absolute `http(s)` URL without query, fragment or trailing `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HomePage(String);

impl HomePage {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let trimmed = raw.trim().trim_end_matches('/');
        let rest = trimmed
            .strip_prefix("https://")
            .or_else(|| trimmed.strip_prefix("http://"))
            .ok_or("must be an absolute http:// or https:// URL")?;
        if rest.is_empty() || rest.starts_with('/') {
            return Err("must name a host".into());
        }
        // Credentials in the authority would be copied into every statement sent to an LRS.
        let authority = rest.split('/').next().unwrap_or(rest);
        if authority.contains('@') {
            return Err("must not hold credentials".into());
        }
        if trimmed
            .contains(|c: char| c.is_whitespace() || c.is_control() || "?#<>\"{}|\\^`".contains(c))
        {
            return Err("must not hold spaces, a query or a fragment".into());
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for HomePage {
    fn default() -> Self {
        Self(DEFAULT_HOME_PAGE.to_owned())
    }
}

/// The IRIs minted under a home page, built once per export.
#[derive(Debug, Clone)]
pub struct Iris {
    home_page: String,
    /// `{home}/courses/`: a course's activity id is this and the course id.
    course: String,
    tenant: String,
    position: String,
    enrollment: String,
    submission: String,
}

impl Iris {
    pub fn new(home: &HomePage) -> Self {
        let home = home.as_str();
        let extension = |name: &str| format!("{home}/xapi/extensions/{name}");
        Self {
            home_page: home.to_owned(),
            course: format!("{home}/courses/"),
            tenant: extension("tenant"),
            position: extension("position"),
            enrollment: extension("enrollment"),
            submission: extension("submission"),
        }
    }
}

/// A stored event the mapping cannot read.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("event {event_id} ({event_type}) has no {missing}")]
    Missing {
        event_id: Uuid,
        event_type: &'static str,
        missing: &'static str,
    },
    #[error("event {event_id}: malformed {event_type} data: {source}")]
    Malformed {
        event_id: Uuid,
        event_type: &'static str,
        source: serde_json::Error,
    },
}

/// One statement, serialised in the order the specification lists its properties.
#[derive(Debug, Serialize)]
pub struct Statement<'a> {
    pub id: Uuid,
    pub actor: Agent<'a>,
    pub verb: Verb,
    pub object: Activity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Outcome>,
    pub context: Context<'a>,
    pub timestamp: String,
    pub stored: String,
    pub version: &'static str,
}

#[derive(Debug, Serialize)]
pub struct Agent<'a> {
    #[serde(rename = "objectType")]
    pub object_type: &'static str,
    pub account: Account<'a>,
}

#[derive(Debug, Serialize)]
pub struct Account<'a> {
    #[serde(rename = "homePage")]
    pub home_page: &'a str,
    /// The trainee id: never an e-mail address or a name.
    pub name: String,
}

#[derive(Debug, Serialize)]
pub struct Verb {
    pub id: &'static str,
    pub display: LanguageMap,
}

/// A language map with its one entry, in US English.
#[derive(Debug, Serialize)]
pub struct LanguageMap {
    #[serde(rename = "en-US")]
    pub en_us: &'static str,
}

#[derive(Debug, Serialize)]
pub struct Activity {
    #[serde(rename = "objectType")]
    pub object_type: &'static str,
    pub id: String,
    pub definition: Definition,
}

#[derive(Debug, Serialize)]
pub struct Definition {
    #[serde(rename = "type")]
    pub activity_type: &'static str,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Outcome {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<ScoreResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub success: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion: Option<bool>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct ScoreResult {
    pub scaled: f64,
    pub raw: u8,
    pub min: u8,
    pub max: u8,
}

#[derive(Debug, Serialize)]
pub struct Context<'a> {
    pub registration: Uuid,
    pub platform: &'static str,
    pub extensions: Extensions<'a>,
}

/// `context.extensions`: ids only, under IRIs of the home page.
#[derive(Debug)]
pub struct Extensions<'a> {
    iris: &'a Iris,
    pub tenant: TenantId,
    pub position: i64,
    pub enrollment: Uuid,
    pub submission: Option<Uuid>,
}

impl Serialize for Extensions<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry(&self.iris.tenant, &self.tenant.as_uuid())?;
        map.serialize_entry(&self.iris.position, &self.position)?;
        map.serialize_entry(&self.iris.enrollment, &self.enrollment)?;
        if let Some(submission) = self.submission {
            map.serialize_entry(&self.iris.submission, &submission)?;
        }
        map.end()
    }
}

/// The ADL verb (http://adlnet.gov/expapi/verbs/…) of a learner event; `None` for the events
/// that have no statement. A graded test is `passed` or `failed`, decided by its data.
fn verb(event_type: EventType, passed: Option<bool>) -> Option<Verb> {
    let (id, display) = match (event_type, passed) {
        (EventType::CourseRegistered, _) => {
            ("http://adlnet.gov/expapi/verbs/registered", "registered")
        }
        (EventType::CourseStarted, _) => ("http://adlnet.gov/expapi/verbs/launched", "launched"),
        (EventType::TestSubmitted, _) => ("http://adlnet.gov/expapi/verbs/attempted", "attempted"),
        (EventType::TestGraded, Some(true)) => ("http://adlnet.gov/expapi/verbs/passed", "passed"),
        (EventType::TestGraded, _) => ("http://adlnet.gov/expapi/verbs/failed", "failed"),
        (EventType::CourseCompleted, _) => {
            ("http://adlnet.gov/expapi/verbs/completed", "completed")
        }
        // The trainee left the course for good: "exited" (intentionally departed from the
        // activity) is ADL's verb for it; "terminated" and "suspended" are a session's.
        (EventType::RegistrationWithdrawn, _) => {
            ("http://adlnet.gov/expapi/verbs/exited", "exited")
        }
        (
            EventType::CourseCreated
            | EventType::CourseRetired
            | EventType::TraineeRegistered
            | EventType::TraineeForgotten,
            _,
        ) => {
            return None;
        }
    };
    Some(Verb {
        id,
        display: LanguageMap { en_us: display },
    })
}

/// What a submission's events carry that a statement uses: the submission id (a submitted
/// test's answers are skipped unread).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Submission {
    submission_id: Uuid,
}

/// The statement of `event`, stored in `tenant`'s log; `None` for an event that is not a
/// learner's experience (see [`LEARNER_EVENTS`]).
pub fn statement<'a>(
    event: &LoggedEvent,
    tenant: TenantId,
    iris: &'a Iris,
) -> Result<Option<Statement<'a>>, MappingError> {
    let kind = event.event_type;
    if !LEARNER_EVENTS.contains(&kind) {
        return Ok(None);
    }
    let missing = |missing| MappingError::Missing {
        event_id: event.event_id,
        event_type: kind.as_str(),
        missing,
    };
    // The log hands over every event's data upcast to its type's current shape
    // (`domain::schema`), whatever version it was stored in: one mapping per type suffices.
    let trainee = event.trainee_id.ok_or_else(|| missing("trainee"))?;
    let course = event.course_id.ok_or_else(|| missing("course"))?;
    let Said {
        result,
        submission,
        passed,
    } = said_of(event)?;
    let Some(verb) = verb(kind, passed) else {
        return Ok(None);
    };
    let at = event
        .recorded_at
        .to_rfc3339_opts(SecondsFormat::Micros, true);
    Ok(Some(Statement {
        id: derived(STATEMENT_NAMESPACE, tenant, event.event_id),
        actor: Agent {
            object_type: "Agent",
            account: Account {
                home_page: &iris.home_page,
                name: trainee.to_string(),
            },
        },
        verb,
        object: Activity {
            object_type: "Activity",
            id: format!("{}{course}", iris.course),
            definition: Definition {
                activity_type: ACTIVITY_TYPE_COURSE,
            },
        },
        result,
        context: Context {
            registration: derived(REGISTRATION_NAMESPACE, tenant, event.stream_id),
            platform: PLATFORM,
            extensions: Extensions {
                iris,
                tenant,
                position: event.position,
                enrollment: event.stream_id,
                submission,
            },
        },
        // The log holds one time per event, taken just before it was written: it is both when
        // it happened and when it was stored.
        timestamp: at.clone(),
        stored: at,
        version: VERSION,
    }))
}

/// What a learner event's data says of its result: the statement's `result`, the submission it
/// is about, and whether it passed (for the verb).
#[derive(Default)]
struct Said {
    result: Option<Outcome>,
    submission: Option<Uuid>,
    passed: Option<bool>,
}

fn said_of(event: &LoggedEvent) -> Result<Said, MappingError> {
    let kind = event.event_type;
    let malformed = |source| MappingError::Malformed {
        event_id: event.event_id,
        event_type: kind.as_str(),
        source,
    };
    Ok(match kind {
        EventType::TestGraded => {
            let graded = TestGraded::deserialize(&event.data).map_err(malformed)?;
            let raw = graded.score.value();
            let outcome = Outcome {
                score: Some(ScoreResult {
                    scaled: f64::from(raw) / 100.0,
                    raw,
                    min: 0,
                    max: 100,
                }),
                success: Some(graded.passed),
                completion: None,
            };
            Said {
                result: Some(outcome),
                submission: Some(graded.submission_id.as_uuid()),
                passed: Some(graded.passed),
            }
        }
        EventType::TestSubmitted => {
            let submitted = Submission::deserialize(&event.data).map_err(malformed)?;
            Said {
                submission: Some(submitted.submission_id),
                ..Said::default()
            }
        }
        EventType::CourseCompleted => {
            let outcome = Outcome {
                score: None,
                success: None,
                completion: Some(true),
            };
            Said {
                result: Some(outcome),
                ..Said::default()
            }
        }
        _ => Said::default(),
    })
}

/// A v5 UUID of `(tenant, id)` in `namespace`: the same inputs always give the same id, and the
/// same id in two tenants gives two.
fn derived(namespace: Uuid, tenant: TenantId, id: Uuid) -> Uuid {
    let mut name = [0u8; 32];
    name[..16].copy_from_slice(tenant.as_uuid().as_bytes());
    name[16..].copy_from_slice(id.as_bytes());
    Uuid::new_v5(&namespace, &name)
}

/// xAPI's `since` (exclusive) and `until` (inclusive) bounds on `stored`, as the log's
/// `from` (inclusive) and `to` (exclusive) bounds on `recordedAt`. Exact, because recorded
/// times have microsecond precision: `t > s` is `t >= floor(s) + 1µs`, `t <= u` is
/// `t < floor(u) + 1µs`.
pub fn stored_bounds(
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let next_micro = |at: DateTime<Utc>| {
        let floor = at - TimeDelta::nanoseconds(i64::from(at.timestamp_subsec_nanos() % 1_000));
        floor + TimeDelta::microseconds(1)
    };
    (since.map(next_micro), until.map(next_micro))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Role, StreamType};
    use crate::store::Metadata;
    use serde_json::{Value, json};

    const TRAINEE: Uuid = uuid!("0190f0f0-0000-7000-8000-000000000001");
    const COURSE: Uuid = uuid!("0190f0f0-0000-7000-8000-000000000002");
    const ENROLLMENT: Uuid = uuid!("0190f0f0-0000-7000-8000-000000000003");
    const SUBMISSION: Uuid = uuid!("0190f0f0-0000-7000-8000-000000000004");
    const EVENT: Uuid = uuid!("0190f0f0-0000-7000-8000-000000000005");
    const TENANT: TenantId = TenantId::from_uuid(uuid!("0190f0f0-0000-7000-8000-000000000006"));

    fn event(event_type: EventType, data: Value) -> LoggedEvent {
        LoggedEvent {
            position: 42,
            event_id: EVENT,
            stream_id: ENROLLMENT,
            stream_type: event_type.stream_type(),
            version: 3,
            event_type,
            schema_version: 1,
            data,
            recorded_at: "2026-11-30T10:15:00.123456Z".parse().unwrap(),
            metadata: Metadata {
                actor_id: TRAINEE,
                actor_role: Role::Trainee,
                command_id: None,
                correlation_id: Uuid::nil(),
                causation_id: None,
            },
            trainee_id: Some(TRAINEE),
            course_id: Some(COURSE),
        }
    }

    fn iris() -> Iris {
        Iris::new(&HomePage::parse("https://lms.example.org/").unwrap())
    }

    /// The statement of `event` as JSON.
    fn mapped(event: &LoggedEvent) -> Value {
        let iris = iris();
        let statement = statement(event, TENANT, &iris)
            .expect("mapped")
            .expect("a statement");
        serde_json::to_value(&statement).unwrap()
    }

    #[test]
    fn the_lifecycle_maps_to_adl_verbs_on_the_course_activity() {
        let cases = [
            (
                EventType::CourseRegistered,
                json!({"courseId": COURSE, "traineeId": TRAINEE}),
                "registered",
            ),
            (EventType::CourseStarted, json!({}), "launched"),
            (
                EventType::TestSubmitted,
                json!({"submissionId": SUBMISSION, "answers": {"q": 1}}),
                "attempted",
            ),
            (
                EventType::TestGraded,
                json!({"submissionId": SUBMISSION, "score": 80, "passed": true}),
                "passed",
            ),
            (
                EventType::TestGraded,
                json!({"submissionId": SUBMISSION, "score": 30, "passed": false}),
                "failed",
            ),
            (EventType::CourseCompleted, json!({}), "completed"),
            (
                EventType::RegistrationWithdrawn,
                json!({"reason": "moved away"}),
                "exited",
            ),
        ];
        for (event_type, data, verb) in cases {
            let s = mapped(&event(event_type, data));
            assert_eq!(
                s["verb"]["id"],
                format!("http://adlnet.gov/expapi/verbs/{verb}")
            );
            assert_eq!(s["verb"]["display"]["en-US"], verb);
            assert_eq!(s["object"]["objectType"], "Activity");
            assert_eq!(
                s["object"]["id"],
                format!("https://lms.example.org/courses/{COURSE}")
            );
            assert_eq!(s["object"]["definition"]["type"], ACTIVITY_TYPE_COURSE);
            assert_eq!(
                s["actor"],
                json!({"objectType": "Agent",
                "account": {"homePage": "https://lms.example.org", "name": TRAINEE.to_string()}})
            );
            assert_eq!(s["version"], "1.0.3");
            assert_eq!(s["timestamp"], "2026-11-30T10:15:00.123456Z");
            assert_eq!(s["stored"], s["timestamp"]);
        }
    }

    #[test]
    fn a_grade_carries_its_score_and_success_and_a_completion_its_completion() {
        let passed = mapped(&event(
            EventType::TestGraded,
            json!({"submissionId": SUBMISSION, "score": 80, "passed": true}),
        ));
        assert_eq!(
            passed["result"],
            json!({"score": {"scaled": 0.8, "raw": 80, "min": 0, "max": 100}, "success": true})
        );
        let failed = mapped(&event(
            EventType::TestGraded,
            json!({"submissionId": SUBMISSION, "score": 7, "passed": false}),
        ));
        assert_eq!(failed["result"]["score"]["scaled"], 0.07);
        assert_eq!(failed["result"]["success"], false);
        let completed = mapped(&event(EventType::CourseCompleted, json!({})));
        assert_eq!(completed["result"], json!({"completion": true}));
        assert!(
            mapped(&event(EventType::CourseStarted, json!({})))
                .get("result")
                .is_none()
        );
    }

    #[test]
    fn ids_are_stable_v5_uuids_of_the_tenant_and_the_event() {
        let e = event(EventType::CourseStarted, json!({}));
        let (first, second) = (mapped(&e), mapped(&e));
        assert_eq!(first, second);
        let id: Uuid = first["id"].as_str().unwrap().parse().unwrap();
        let registration: Uuid = first["context"]["registration"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        for id in [id, registration] {
            assert_eq!(id.get_version_num(), 5);
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        }
        assert_ne!(id, EVENT);
        // Every event of an enrollment shares its registration; another event, another id.
        let mut other = event(EventType::CourseCompleted, json!({}));
        other.event_id = SUBMISSION;
        let other = mapped(&other);
        assert_eq!(
            other["context"]["registration"],
            first["context"]["registration"]
        );
        assert_ne!(other["id"], first["id"]);
        // The same event id in another tenant is another statement.
        let iris = iris();
        let elsewhere = TenantId::from_uuid(COURSE);
        let theirs = statement(&e, elsewhere, &iris).unwrap().unwrap();
        assert_ne!(theirs.id, id);
    }

    #[test]
    fn the_namespaces_are_what_their_comments_say() {
        for (namespace, name) in [
            (STATEMENT_NAMESPACE, "urn:coursetrail:xapi:statement"),
            (REGISTRATION_NAMESPACE, "urn:coursetrail:xapi:registration"),
        ] {
            assert_eq!(
                namespace,
                Uuid::new_v5(&Uuid::NAMESPACE_URL, name.as_bytes())
            );
        }
    }

    #[test]
    fn the_context_names_the_tenant_position_enrollment_and_submission_by_id_only() {
        let s = mapped(&event(
            EventType::TestSubmitted,
            json!({"submissionId": SUBMISSION, "answers": {"secret": "the answer"}}),
        ));
        let ext = "https://lms.example.org/xapi/extensions";
        assert_eq!(
            s["context"]["extensions"],
            json!({
                format!("{ext}/tenant"): TENANT.as_uuid(),
                format!("{ext}/position"): 42,
                format!("{ext}/enrollment"): ENROLLMENT,
                format!("{ext}/submission"): SUBMISSION,
            })
        );
        assert_eq!(s["context"]["platform"], "coursetrail");
        let text = s.to_string();
        assert!(
            !text.contains("the answer") && !text.contains("secret"),
            "{text}"
        );
        let withdrawn = mapped(&event(
            EventType::RegistrationWithdrawn,
            json!({"reason": "private"}),
        ));
        assert!(!withdrawn.to_string().contains("private"));
    }

    #[test]
    fn course_and_trainee_events_have_no_statement() {
        let iris = iris();
        for (event_type, data) in [
            (
                EventType::CourseCreated,
                json!({"code": "C", "title": "T", "passingScore": 50}),
            ),
            (EventType::CourseRetired, json!({})),
            (
                EventType::TraineeRegistered,
                json!({"personal": {"email": "a@example.com", "name": "A"}}),
            ),
            (EventType::TraineeForgotten, json!({})),
        ] {
            let mut e = event(event_type, data);
            e.stream_type = StreamType::Course;
            assert!(
                statement(&e, TENANT, &iris).unwrap().is_none(),
                "{event_type:?}"
            );
        }
    }

    #[test]
    fn an_unreadable_event_is_an_error_not_a_statement() {
        let iris = iris();
        let mut no_trainee = event(EventType::CourseStarted, json!({}));
        no_trainee.trainee_id = None;
        let malformed = event(EventType::TestGraded, json!({"score": "high"}));
        for e in [no_trainee, malformed] {
            assert!(statement(&e, TENANT, &iris).is_err(), "{e:?}");
        }
    }

    #[test]
    fn home_pages_are_absolute_http_urls() {
        assert_eq!(
            HomePage::parse(" https://a.example/lms/ ")
                .unwrap()
                .as_str(),
            "https://a.example/lms"
        );
        assert_eq!(HomePage::default().as_str(), DEFAULT_HOME_PAGE);
        for bad in [
            "",
            "a.example",
            "ftp://a.example",
            "https://",
            "https:///x",
            "https://a b",
            "https://a?x=1",
            "https://user:secret@a.example/lms",
        ] {
            assert!(HomePage::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn since_is_exclusive_and_until_inclusive_at_microsecond_precision() {
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let (from, to) = stored_bounds(
            Some(at("2026-01-01T00:00:00.000001Z")),
            Some(at("2026-01-01T00:00:01.0000019Z")),
        );
        assert_eq!(from, Some(at("2026-01-01T00:00:00.000002Z")));
        assert_eq!(to, Some(at("2026-01-01T00:00:01.000002Z")));
        assert_eq!(stored_bounds(None, None), (None, None));
    }
}
