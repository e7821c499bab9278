//! How stored event data changes shape over schema versions, and which of it is personal.
//!
//! Reading a stored event is: [`upcast`] its data, one pure step per version (`vN → vN+1`),
//! to the current version's stored shape; open its personal envelope (the store's job: it
//! holds the keys); decode the result ([`super::Event::from_stored`]). Everything past the
//! store sees only the current shape.
//!
//! Version history:
//! - `TraineeRegistered`, `TestSubmitted` and `RegistrationWithdrawn` v2: the personal fields
//!   (`email`, `name`; `answers`; `reason`, free text a trainee may write) moved into
//!   `personal`, which is stored sealed with the trainee's data key (a base64 string) or `null`
//!   once erased. v1 had them as plain top-level fields; its upcast moves them into an open
//!   `personal` object.
//! - Every other type is at v1.

use super::EventType;
use serde_json::{Map, Value};
use uuid::Uuid;

/// A stored event whose type or data this build cannot read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    #[error("unsupported schema version {version} of {event_type}")]
    UnsupportedVersion {
        event_type: &'static str,
        version: i16,
    },
    #[error("the data of {event_type} events was not loaded")]
    DataNotLoaded { event_type: &'static str },
    #[error("the personal data of a {event_type} event is still sealed")]
    Sealed { event_type: &'static str },
    #[error("malformed {event_type} data: {source}")]
    Malformed {
        event_type: &'static str,
        source: serde_json::Error,
    },
}

/// The object of an event's data that holds its personal fields (v2 on).
pub const PERSONAL: &str = "personal";

/// The version new events of this type are written in.
pub const fn current_version(kind: EventType) -> i16 {
    match kind {
        EventType::TraineeRegistered
        | EventType::TestSubmitted
        | EventType::RegistrationWithdrawn => 2,
        _ => 1,
    }
}

/// The fields of this type's data that are about a person and go into [`PERSONAL`].
pub const fn personal_fields(kind: EventType) -> &'static [&'static str] {
    match kind {
        EventType::TraineeRegistered => &["email", "name"],
        EventType::TestSubmitted => &["answers"],
        EventType::RegistrationWithdrawn => &["reason"],
        _ => &[],
    }
}

/// The types whose events carry personal data.
pub const PERSONAL_TYPES: [EventType; 3] = [
    EventType::TraineeRegistered,
    EventType::TestSubmitted,
    EventType::RegistrationWithdrawn,
];

/// Whether events of this type carry personal data.
pub const fn is_personal(kind: EventType) -> bool {
    !personal_fields(kind).is_empty()
}

/// Stored data at `version`, brought to the current version's stored shape.
pub fn upcast(kind: EventType, version: i16, mut data: Value) -> Result<Value, DecodeError> {
    let current = current_version(kind);
    if version < 1 || version > current {
        return Err(DecodeError::UnsupportedVersion {
            event_type: kind.as_str(),
            version,
        });
    }
    for from in version..current {
        data = step(kind, from, data)?;
    }
    Ok(data)
}

/// One upcast: `from → from + 1`.
fn step(kind: EventType, from: i16, data: Value) -> Result<Value, DecodeError> {
    match (kind, from) {
        (
            EventType::TraineeRegistered
            | EventType::TestSubmitted
            | EventType::RegistrationWithdrawn,
            1,
        ) => Ok(move_into_personal(kind, data)),
        _ => Err(DecodeError::UnsupportedVersion {
            event_type: kind.as_str(),
            version: from,
        }),
    }
}

/// v1 → v2 of the personal types: the personal fields move into an open `personal` object.
fn move_into_personal(kind: EventType, data: Value) -> Value {
    let Value::Object(mut fields) = data else {
        return data;
    };
    let mut personal = Map::new();
    for name in personal_fields(kind) {
        if let Some(value) = fields.remove(*name) {
            personal.insert((*name).to_owned(), value);
        }
    }
    fields.insert(PERSONAL.into(), Value::Object(personal));
    Value::Object(fields)
}

/// The current shape of a new event's data, with its personal fields in an open `personal`
/// object (the store seals it before writing).
pub fn with_personal_envelope(kind: EventType, flat: Value) -> Value {
    if is_personal(kind) {
        move_into_personal(kind, flat)
    } else {
        flat
    }
}

/// What a forgotten trainee's personal fields read as: stable placeholders, valid values of
/// their kind (so every read path goes on working), marked `forgotten`. The e-mail placeholder
/// is unique per trainee under the reserved `.invalid` domain, which frees the real address.
pub fn forgotten_personal(kind: EventType, trainee_id: Uuid) -> Value {
    let mut personal = Map::new();
    match kind {
        EventType::TraineeRegistered => {
            personal.insert("email".into(), Value::String(forgotten_email(trainee_id)));
            personal.insert("name".into(), Value::String(FORGOTTEN_NAME.into()));
        }
        EventType::TestSubmitted => {
            personal.insert("answers".into(), Value::Null);
        }
        EventType::RegistrationWithdrawn => {
            personal.insert("reason".into(), Value::Null);
        }
        _ => {}
    }
    personal.insert("forgotten".into(), Value::Bool(true));
    Value::Object(personal)
}

/// The name a forgotten trainee reads as.
pub const FORGOTTEN_NAME: &str = "Forgotten trainee";

/// The e-mail address a forgotten trainee reads as.
pub fn forgotten_email(trainee_id: Uuid) -> String {
    format!("forgotten-{}@forgotten.invalid", trainee_id.simple())
}

/// Data in the current shape with its `personal` object opened, as the domain's flat fields.
pub(super) fn flatten_personal(kind: EventType, data: Value) -> Result<Value, DecodeError> {
    if !is_personal(kind) {
        return Ok(data);
    }
    let Value::Object(mut fields) = data else {
        return Ok(data);
    };
    match fields.remove(PERSONAL) {
        Some(Value::Object(personal)) => {
            for (name, value) in personal {
                if personal_fields(kind).contains(&name.as_str()) {
                    fields.insert(name, value);
                }
            }
            Ok(Value::Object(fields))
        }
        _ => Err(DecodeError::Sealed {
            event_type: kind.as_str(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_personal_types_are_those_with_personal_fields() {
        let personal: Vec<EventType> = EventType::ALL
            .into_iter()
            .filter(|kind| is_personal(*kind))
            .collect();
        assert_eq!(personal, PERSONAL_TYPES);
    }

    #[test]
    fn v1_personal_fields_move_into_the_envelope() {
        let v1 = json!({"email": "ada@example.com", "name": "Ada"});
        let v2 = upcast(EventType::TraineeRegistered, 1, v1).unwrap();
        assert_eq!(
            v2,
            json!({"personal": {"email": "ada@example.com", "name": "Ada"}})
        );
        let v1 = json!({"submissionId": "s", "answers": {"q1": "a"}});
        let v2 = upcast(EventType::TestSubmitted, 1, v1).unwrap();
        assert_eq!(
            v2,
            json!({"submissionId": "s", "personal": {"answers": {"q1": "a"}}})
        );
    }

    #[test]
    fn current_data_is_left_alone() {
        let sealed = json!({"personal": "c2VhbGVk"});
        assert_eq!(
            upcast(EventType::TraineeRegistered, 2, sealed.clone()).unwrap(),
            sealed
        );
        let graded = json!({"submissionId": "s", "score": 80, "passed": true});
        assert_eq!(
            upcast(EventType::TestGraded, 1, graded.clone()).unwrap(),
            graded
        );
    }

    #[test]
    fn unknown_versions_are_refused() {
        for (kind, version) in [
            (EventType::TraineeRegistered, 3),
            (EventType::TraineeRegistered, 0),
            (EventType::CourseCreated, 2),
        ] {
            assert!(matches!(
                upcast(kind, version, json!({})),
                Err(DecodeError::UnsupportedVersion { .. })
            ));
        }
    }

    #[test]
    fn placeholders_are_stable_and_mark_themselves() {
        let id = Uuid::now_v7();
        let first = forgotten_personal(EventType::TraineeRegistered, id);
        assert_eq!(first, forgotten_personal(EventType::TraineeRegistered, id));
        assert_eq!(first["forgotten"], true);
        assert!(
            crate::domain::values::Email::parse(first["email"].as_str().unwrap()).is_ok(),
            "the placeholder must be a valid address: {first}"
        );
        assert_eq!(
            forgotten_personal(EventType::TestSubmitted, id)["answers"],
            Value::Null
        );
    }

    #[test]
    fn a_sealed_envelope_does_not_decode() {
        let sealed = json!({"personal": "c2VhbGVk"});
        assert!(matches!(
            flatten_personal(EventType::TraineeRegistered, sealed),
            Err(DecodeError::Sealed { .. })
        ));
    }
}
