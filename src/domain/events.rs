//! The events: immutable, past-tense facts with a schema version. Stored as `event_type` +
//! `schema_version` + JSON `data` (camelCase); never edited once written (erasing a forgotten
//! trainee's v1 plaintext is the one exception, see `store::personal`). A change of shape gets
//! a new schema version and an upcast step in [`super::schema`].

use super::ids::{CourseId, SubmissionId, TraineeId};
use super::schema;
use super::values::{Answers, CourseCode, CourseTitle, Email, PersonName, Score, WithdrawalReason};
use serde::{Deserialize, Serialize};

/// The kinds of stream; each stream holds the events of one course, trainee or enrollment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamType {
    Course,
    Trainee,
    Enrollment,
}

impl StreamType {
    pub const fn as_str(self) -> &'static str {
        match self {
            StreamType::Course => "course",
            StreamType::Trainee => "trainee",
            StreamType::Enrollment => "enrollment",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "course" => Some(StreamType::Course),
            "trainee" => Some(StreamType::Trainee),
            "enrollment" => Some(StreamType::Enrollment),
            _ => None,
        }
    }
}

/// The name of an event as stored in `events.event_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    CourseCreated,
    CourseRetired,
    TraineeRegistered,
    TraineeForgotten,
    CourseRegistered,
    CourseStarted,
    TestSubmitted,
    TestGraded,
    CourseCompleted,
    RegistrationWithdrawn,
}

impl EventType {
    pub const ALL: [EventType; 10] = [
        EventType::CourseCreated,
        EventType::CourseRetired,
        EventType::TraineeRegistered,
        EventType::TraineeForgotten,
        EventType::CourseRegistered,
        EventType::CourseStarted,
        EventType::TestSubmitted,
        EventType::TestGraded,
        EventType::CourseCompleted,
        EventType::RegistrationWithdrawn,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            EventType::CourseCreated => "CourseCreated",
            EventType::CourseRetired => "CourseRetired",
            EventType::TraineeRegistered => "TraineeRegistered",
            EventType::TraineeForgotten => "TraineeForgotten",
            EventType::CourseRegistered => "CourseRegistered",
            EventType::CourseStarted => "CourseStarted",
            EventType::TestSubmitted => "TestSubmitted",
            EventType::TestGraded => "TestGraded",
            EventType::CourseCompleted => "CourseCompleted",
            EventType::RegistrationWithdrawn => "RegistrationWithdrawn",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == raw)
    }

    pub const fn stream_type(self) -> StreamType {
        match self {
            EventType::CourseCreated | EventType::CourseRetired => StreamType::Course,
            EventType::TraineeRegistered | EventType::TraineeForgotten => StreamType::Trainee,
            _ => StreamType::Enrollment,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CourseCreated {
    pub code: CourseCode,
    pub title: CourseTitle,
    pub passing_score: Score,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CourseRetired {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TraineeRegistered {
    pub email: Email,
    pub name: PersonName,
}

/// The trainee's personal data was erased (its data key deleted); carries none itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraineeForgotten {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CourseRegistered {
    pub course_id: CourseId,
    pub trainee_id: TraineeId,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CourseStarted {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestSubmitted {
    pub submission_id: SubmissionId,
    pub answers: Answers,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestGraded {
    pub submission_id: SubmissionId,
    pub score: Score,
    pub passed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CourseCompleted {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationWithdrawn {
    pub reason: Option<WithdrawalReason>,
}

/// Every event of every stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    CourseCreated(CourseCreated),
    CourseRetired(CourseRetired),
    TraineeRegistered(TraineeRegistered),
    TraineeForgotten(TraineeForgotten),
    CourseRegistered(CourseRegistered),
    CourseStarted(CourseStarted),
    TestSubmitted(TestSubmitted),
    TestGraded(TestGraded),
    CourseCompleted(CourseCompleted),
    RegistrationWithdrawn(RegistrationWithdrawn),
}

/// Stored events this build cannot read: defined beside the stored shapes.
pub use super::schema::DecodeError;

impl Event {
    pub fn event_type(&self) -> EventType {
        match self {
            Event::CourseCreated(_) => EventType::CourseCreated,
            Event::CourseRetired(_) => EventType::CourseRetired,
            Event::TraineeRegistered(_) => EventType::TraineeRegistered,
            Event::TraineeForgotten(_) => EventType::TraineeForgotten,
            Event::CourseRegistered(_) => EventType::CourseRegistered,
            Event::CourseStarted(_) => EventType::CourseStarted,
            Event::TestSubmitted(_) => EventType::TestSubmitted,
            Event::TestGraded(_) => EventType::TestGraded,
            Event::CourseCompleted(_) => EventType::CourseCompleted,
            Event::RegistrationWithdrawn(_) => EventType::RegistrationWithdrawn,
        }
    }

    /// The event's data in the domain's flat shape; [`super::schema::with_personal_envelope`]
    /// gives its stored shape.
    pub fn data(&self) -> serde_json::Value {
        let encoded = match self {
            Event::CourseCreated(e) => serde_json::to_value(e),
            Event::CourseRetired(e) => serde_json::to_value(e),
            Event::TraineeRegistered(e) => serde_json::to_value(e),
            Event::TraineeForgotten(e) => serde_json::to_value(e),
            Event::CourseRegistered(e) => serde_json::to_value(e),
            Event::CourseStarted(e) => serde_json::to_value(e),
            Event::TestSubmitted(e) => serde_json::to_value(e),
            Event::TestGraded(e) => serde_json::to_value(e),
            Event::CourseCompleted(e) => serde_json::to_value(e),
            Event::RegistrationWithdrawn(e) => serde_json::to_value(e),
        };
        // Plain structs of strings, numbers and UUIDs always serialise.
        encoded.unwrap_or(serde_json::Value::Null)
    }

    /// Reads a stored event: upcasts older schema versions to the current shape, whose
    /// personal envelope must have been opened (see `store::personal`).
    pub fn from_stored(
        event_type: &str,
        schema_version: i16,
        data: serde_json::Value,
    ) -> Result<Event, DecodeError> {
        let kind = EventType::parse(event_type)
            .ok_or_else(|| DecodeError::UnknownType(event_type.into()))?;
        let current = schema::upcast(kind, schema_version, data)?;
        let flat = schema::flatten_personal(kind, current)?;
        Self::decode(kind, StoredData::Value(flat))
    }

    /// Like [`Event::from_stored`], from the JSON text (the replay engine's cheaper path: one
    /// parse straight into the event's struct, no intermediate `Value`, for the types whose
    /// data has neither changed shape nor holds personal data).
    pub fn from_stored_json(
        event_type: &str,
        schema_version: i16,
        data: &str,
    ) -> Result<Event, DecodeError> {
        let kind = EventType::parse(event_type)
            .ok_or_else(|| DecodeError::UnknownType(event_type.into()))?;
        if schema_version == 1 && schema::current_version(kind) == 1 {
            return Self::decode(kind, StoredData::Text(data));
        }
        let value = serde_json::from_str(data).map_err(|source| DecodeError::Malformed {
            event_type: kind.as_str(),
            source,
        })?;
        Self::from_stored(event_type, schema_version, value)
    }

    fn decode(kind: EventType, data: StoredData<'_>) -> Result<Event, DecodeError> {
        Ok(match kind {
            EventType::CourseCreated => Event::CourseCreated(data.read(kind)?),
            EventType::CourseRetired => Event::CourseRetired(data.read(kind)?),
            EventType::TraineeRegistered => Event::TraineeRegistered(data.read(kind)?),
            EventType::TraineeForgotten => Event::TraineeForgotten(data.read(kind)?),
            EventType::CourseRegistered => Event::CourseRegistered(data.read(kind)?),
            EventType::CourseStarted => Event::CourseStarted(data.read(kind)?),
            EventType::TestSubmitted => Event::TestSubmitted(data.read(kind)?),
            EventType::TestGraded => Event::TestGraded(data.read(kind)?),
            EventType::CourseCompleted => Event::CourseCompleted(data.read(kind)?),
            EventType::RegistrationWithdrawn => Event::RegistrationWithdrawn(data.read(kind)?),
        })
    }
}

/// Stored event data, as a parsed JSON value or as JSON text.
enum StoredData<'a> {
    Value(serde_json::Value),
    Text(&'a str),
}

impl StoredData<'_> {
    fn read<T: serde::de::DeserializeOwned>(self, kind: EventType) -> Result<T, DecodeError> {
        let decoded = match self {
            StoredData::Value(value) => serde_json::from_value(value),
            StoredData::Text(text) => serde_json::from_str(text),
        };
        decoded.map_err(|source| DecodeError::Malformed {
            event_type: kind.as_str(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::CourseId;

    #[test]
    fn every_event_round_trips_through_its_stored_form() {
        let events = vec![
            Event::CourseCreated(CourseCreated {
                code: CourseCode::parse("SAFE-1").unwrap(),
                title: CourseTitle::parse("Safety").unwrap(),
                passing_score: Score::parse("p", 70).unwrap(),
            }),
            Event::CourseRegistered(CourseRegistered {
                course_id: CourseId::generate(),
                trainee_id: TraineeId::generate(),
            }),
            Event::RegistrationWithdrawn(RegistrationWithdrawn { reason: None }),
            Event::CourseStarted(CourseStarted {}),
            Event::TraineeRegistered(TraineeRegistered {
                email: Email::parse("ada@example.com").unwrap(),
                name: PersonName::parse("Ada").unwrap(),
            }),
            Event::TestSubmitted(TestSubmitted {
                submission_id: SubmissionId::generate(),
                answers: Answers::parse(serde_json::json!({"q1": "a"})).unwrap(),
            }),
            Event::TraineeForgotten(TraineeForgotten {}),
        ];
        for event in events {
            let kind = event.event_type();
            let stored = schema::with_personal_envelope(kind, event.data());
            let version = schema::current_version(kind);
            let back = Event::from_stored(kind.as_str(), version, stored).unwrap();
            assert_eq!(back, event);
        }
    }

    #[test]
    fn data_is_camel_case() {
        let event = Event::TestGraded(TestGraded {
            submission_id: SubmissionId::generate(),
            score: Score::parse("s", 80).unwrap(),
            passed: true,
        });
        let data = event.data();
        assert!(data.get("submissionId").is_some(), "{data}");
        assert_eq!(data["score"], 80);
    }

    #[test]
    fn unknown_types_and_versions_are_refused() {
        assert!(matches!(
            Event::from_stored("Nope", 1, serde_json::json!({})),
            Err(DecodeError::UnknownType(_))
        ));
        assert!(matches!(
            Event::from_stored("CourseRetired", 9, serde_json::json!({})),
            Err(DecodeError::UnsupportedVersion { .. })
        ));
    }

    #[test]
    fn event_type_names_parse_back() {
        for kind in EventType::ALL {
            assert_eq!(EventType::parse(kind.as_str()), Some(kind));
        }
    }
}
