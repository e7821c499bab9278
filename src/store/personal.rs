//! Personal data at rest (crypto-shredding). A trainee's personal fields (e-mail, name, test
//! answers) are stored in their events sealed with the trainee's data key, which lives in
//! `trainee_keys` and nowhere else; forgetting the trainee deletes the key, and from then on
//! every read opens the envelope as the domain's placeholders ([`schema::forgotten_personal`]).
//!
//! - Writing: [`seal`] turns an event into its stored data (current version, envelope sealed).
//! - Reading: the log's reads fetch the key alongside each personal event (a co-located join on
//!   `(tenant_id, trainee_id)`), [`schema::upcast`] brings the data to the current shape, and
//!   [`open`] opens the envelope.
//! - Forgetting: [`erase`] deletes the key, rewrites the trainee's v1 events (written in
//!   plaintext, before the envelope existed) to an erased envelope — the one rewrite the log
//!   ever sees — and drops the request digests from the command records of its streams.
//!
//! What stays in plaintext (ids, times, scores, course data) is listed in ARCHITECTURE.md.

use super::StoreError;
use crate::crypto::{self, DataKey, Keyring};
use crate::domain::schema::{self, PERSONAL};
use crate::domain::{Event, EventType, TenantId};
use serde_json::Value;
use sqlx::PgConnection;
use std::sync::Arc;
use uuid::Uuid;

/// The personal event types as an SQL list (`'TraineeRegistered', …`), for the reads that
/// fetch a trainee's key with each personal event.
pub fn personal_types_sql() -> &'static str {
    static LIST: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        schema::PERSONAL_TYPES
            .iter()
            .map(|kind| format!("'{}'", kind.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    });
    &LIST
}

/// An event as stored: its schema version and data.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredData {
    pub schema_version: i16,
    pub data: Value,
}

/// Where an event is stored: bound into its envelope's associated data, so that an envelope
/// copied onto another event (even of the same trainee and type) does not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub tenant: TenantId,
    pub stream_id: Uuid,
    pub version: i32,
}

/// The text that marks an envelope sealed to its place; envelopes without it were sealed with
/// the event type alone as associated data, and still open so.
const PLACED: &str = "v2.";

/// The associated data of an envelope sealed to `place`.
fn context(kind: EventType, place: Place) -> Vec<u8> {
    format!(
        "{}|{}|{}|{}",
        kind.as_str(),
        place.tenant,
        place.stream_id,
        place.version
    )
    .into_bytes()
}

/// The stored form of a new event at `place`: the current version, with its personal fields
/// sealed with `key` (which every event with personal fields needs).
pub fn seal(event: &Event, key: Option<&DataKey>, place: Place) -> Result<StoredData, StoreError> {
    let kind = event.event_type();
    let mut data = schema::with_personal_envelope(kind, event.data());
    if schema::is_personal(kind) {
        let key = key.ok_or(StoreError::NoDataKey)?;
        let envelope = data.get_mut(PERSONAL).ok_or(StoreError::NoDataKey)?;
        let plaintext = serde_json::to_vec(envelope)
            .map_err(|e| StoreError::Database(sqlx::Error::Encode(Box::new(e))))?;
        let sealed = key.seal(&plaintext, &context(kind, place));
        *envelope = Value::String(format!("{PLACED}{}", crypto::to_text(&sealed)));
    }
    Ok(StoredData {
        schema_version: schema::current_version(kind),
        data,
    })
}

/// Stored data of the event at `place` brought to the current shape with its envelope opened:
/// decrypted with the trainee's stored key, or the placeholders when the key is gone (or the
/// envelope was erased). An envelope sealed for another place does not open (an error).
pub fn open(
    keys: &Keyring,
    kind: EventType,
    schema_version: i16,
    data: Value,
    trainee_id: Option<Uuid>,
    stored_key: Option<&[u8]>,
    place: Place,
) -> Result<Value, StoreError> {
    let mut data = schema::upcast(kind, schema_version, data)?;
    if !schema::is_personal(kind) {
        return Ok(data);
    }
    let Some(envelope) = data.get_mut(PERSONAL) else {
        return Ok(data);
    };
    let opened = match (&*envelope, stored_key) {
        // Plaintext from before the envelope was sealed (v1, upcast).
        (Value::Object(_), _) => return Ok(data),
        (Value::String(sealed), Some(stored_key)) => {
            let key = keys.data_key(stored_key)?;
            let plaintext = match sealed.strip_prefix(PLACED) {
                Some(placed) => key.open(&crypto::from_text(placed)?, &context(kind, place))?,
                None => key.open(&crypto::from_text(sealed)?, kind.as_str().as_bytes())?,
            };
            serde_json::from_slice(&plaintext).map_err(|source| {
                crate::domain::events::DecodeError::Malformed {
                    event_type: kind.as_str(),
                    source,
                }
            })?
        }
        _ => schema::forgotten_personal(kind, trainee_id.unwrap_or_default()),
    };
    *envelope = opened;
    Ok(data)
}

/// A trainee's data key as a write uses it: the key that seals the write's personal data, its
/// stored form (which the write function checks against `trainee_keys`, or inserts), and
/// whether the write makes it. Cheap to clone: a remembered key is shared.
#[derive(Clone)]
pub struct TraineeKey {
    pub key: Arc<DataKey>,
    pub stored: Arc<[u8]>,
    /// The trainee has no key yet: the write stores this one (and is refused if another was
    /// stored first).
    pub new: bool,
}

impl std::fmt::Debug for TraineeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraineeKey")
            .field("new", &self.new)
            .finish()
    }
}

impl TraineeKey {
    /// A new key, for a trainee that has none yet; stored by the write that uses it.
    pub fn make(keys: &Keyring) -> Self {
        let (key, stored) = keys.new_data_key();
        Self {
            key: Arc::new(key),
            stored: stored.into(),
            new: true,
        }
    }

    /// The key as stored (after the write that made it committed).
    pub fn as_stored(&self) -> Self {
        Self {
            new: false,
            ..self.clone()
        }
    }
}

/// The trainee's data key for a write: the stored one, or a new one when the trainee has none
/// yet (a registration, or the first submission of a trainee registered before keys existed),
/// which the write itself stores; `None` once the trainee was forgotten. One read, no write.
#[tracing::instrument(level = "debug", name = "db.trainee_key", skip_all, fields(db.system = "postgresql"))]
pub async fn trainee_key(
    conn: &mut PgConnection,
    keys: &Keyring,
    tenant: TenantId,
    trainee_id: Uuid,
) -> Result<Option<TraineeKey>, StoreError> {
    match stored_key(conn, tenant, trainee_id).await? {
        None => Ok(Some(TraineeKey::make(keys))),
        Some(None) => Ok(None),
        Some(Some(stored)) => Ok(Some(TraineeKey {
            key: Arc::new(keys.data_key(&stored)?),
            stored: stored.into(),
            new: false,
        })),
    }
}

/// The trainee's stored key row: `Some(None)` when it was forgotten, `None` without a row.
async fn stored_key(
    conn: &mut PgConnection,
    tenant: TenantId,
    trainee_id: Uuid,
) -> Result<Option<Option<Vec<u8>>>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT data_key FROM trainee_keys WHERE tenant_id = $1 AND trainee_id = $2",
    )
    .bind(tenant.as_uuid())
    .bind(trainee_id)
    .fetch_optional(&mut *conn)
    .await?)
}

/// Erases what the log holds of the trainee's personal data: its key (the row stays, keyless,
/// as the mark that none may be made again) and its v1 plaintext events. Part of the erasure's
/// transaction (`app`'s `forget_trainee`); run again, it changes nothing more.
#[tracing::instrument(level = "debug", name = "db.erase_trainee", skip_all, fields(db.system = "postgresql"))]
pub async fn erase_key_and_plaintext(
    conn: &mut PgConnection,
    tenant: TenantId,
    trainee_id: Uuid,
) -> Result<(), StoreError> {
    // The time is bound, not `now()`: Citus refuses non-immutable functions in an upsert's
    // DO UPDATE.
    sqlx::query(
        "INSERT INTO trainee_keys (tenant_id, trainee_id, data_key, created_at, forgotten_at) \
         VALUES ($1, $2, NULL, $3, $3) ON CONFLICT (tenant_id, trainee_id) \
         DO UPDATE SET data_key = NULL, forgotten_at = coalesce(trainee_keys.forgotten_at, $3)",
    )
    .bind(tenant.as_uuid())
    .bind(trainee_id)
    .bind(chrono::Utc::now())
    .execute(&mut *conn)
    .await?;
    for (event_type, fields) in LEGACY_PERSONAL {
        sqlx::query(&format!(
            "UPDATE events SET schema_version = 2, \
             data = (data {fields}) || '{{\"personal\": null}}' \
             WHERE tenant_id = $1 AND trainee_id = $2 \
             AND event_type = '{event_type}' AND schema_version = 1"
        ))
        .bind(tenant.as_uuid())
        .bind(trainee_id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Removes the request digests (under `digest_key` in their results) of the commands on
/// `streams`: a digest is derived from a command's input, which may have held personal data.
pub async fn erase_digests(
    conn: &mut PgConnection,
    tenant: TenantId,
    streams: &[Uuid],
    digest_key: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE commands SET result = result - $3 \
         WHERE tenant_id = $1 AND result ? $3 AND stream_id = ANY($2)",
    )
    .bind(tenant.as_uuid())
    .bind(streams)
    .bind(digest_key)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The v1 events with personal fields, and how erasing removes them (fixed SQL, no input).
const LEGACY_PERSONAL: [(&str, &str); 3] = [
    ("TraineeRegistered", "- 'email' - 'name'"),
    ("TestSubmitted", "- 'answers'"),
    ("RegistrationWithdrawn", "- 'reason'"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::events::{TestSubmitted, TraineeRegistered};
    use crate::domain::values::{Answers, Email, PersonName};
    use crate::domain::{SubmissionId, schema::current_version};
    use serde_json::json;

    fn registered() -> Event {
        Event::TraineeRegistered(TraineeRegistered {
            email: Email::parse("ada@example.com").unwrap(),
            name: PersonName::parse("Ada Lovelace").unwrap(),
        })
    }

    const PLACE: Place = Place {
        tenant: TenantId::from_uuid(Uuid::from_u128(1)),
        stream_id: Uuid::from_u128(2),
        version: 1,
    };

    fn open_at(
        keys: &Keyring,
        stored: &StoredData,
        key: Option<&[u8]>,
        trainee: Uuid,
        place: Place,
    ) -> Result<Value, StoreError> {
        let kind = EventType::TraineeRegistered;
        let data = stored.data.clone();
        open(
            keys,
            kind,
            stored.schema_version,
            data,
            Some(trainee),
            key,
            place,
        )
    }

    fn read(keys: &Keyring, stored: &StoredData, key: Option<&[u8]>, trainee: Uuid) -> Event {
        let kind = EventType::TraineeRegistered;
        let opened = open_at(keys, stored, key, trainee, PLACE).unwrap();
        Event::from_stored(kind.as_str(), current_version(kind), opened).unwrap()
    }

    #[test]
    fn sealed_personal_fields_are_unreadable_without_the_key() {
        let keys = Keyring::unwrapped();
        let (key, stored_key) = keys.new_data_key();
        let stored = seal(&registered(), Some(&key), PLACE).unwrap();
        let text = stored.data.to_string();
        assert!(
            !text.contains("ada") && !text.contains("Lovelace"),
            "{text}"
        );
        assert_eq!(stored.schema_version, 2);

        let trainee = Uuid::now_v7();
        assert_eq!(
            read(&keys, &stored, Some(&stored_key), trainee),
            registered()
        );
        let Event::TraineeRegistered(forgotten) = read(&keys, &stored, None, trainee) else {
            panic!("not a registration");
        };
        assert_eq!(forgotten.email.as_str(), schema::forgotten_email(trainee));
        assert_eq!(forgotten.name.as_str(), schema::FORGOTTEN_NAME);
    }

    #[test]
    fn personal_events_need_a_key_and_others_do_not() {
        let submitted = Event::TestSubmitted(TestSubmitted {
            submission_id: SubmissionId::generate(),
            answers: Answers::parse(json!({"q1": "secret answer"})).unwrap(),
        });
        assert!(matches!(
            seal(&submitted, None, PLACE),
            Err(StoreError::NoDataKey)
        ));
        let retired = Event::CourseRetired(crate::domain::events::CourseRetired {});
        assert_eq!(seal(&retired, None, PLACE).unwrap().data, json!({}));
    }

    #[test]
    fn an_envelope_moved_to_another_place_does_not_open() {
        let keys = Keyring::unwrapped();
        let (key, stored_key) = keys.new_data_key();
        let trainee = Uuid::now_v7();
        let stored = seal(&registered(), Some(&key), PLACE).unwrap();
        assert!(open_at(&keys, &stored, Some(&stored_key), trainee, PLACE).is_ok());
        let elsewhere = [
            Place {
                version: 2,
                ..PLACE
            },
            Place {
                stream_id: Uuid::from_u128(3),
                ..PLACE
            },
            Place {
                tenant: TenantId::from_uuid(Uuid::from_u128(4)),
                ..PLACE
            },
        ];
        for place in elsewhere {
            assert!(
                matches!(
                    open_at(&keys, &stored, Some(&stored_key), trainee, place),
                    Err(StoreError::Crypto(_))
                ),
                "opened at {place:?}"
            );
        }
    }

    #[test]
    fn an_envelope_sealed_before_places_were_bound_still_opens() {
        let keys = Keyring::unwrapped();
        let (key, stored_key) = keys.new_data_key();
        let kind = EventType::TraineeRegistered;
        let personal = json!({"email": "ada@example.com", "name": "Ada Lovelace"});
        let sealed = key.seal(
            &serde_json::to_vec(&personal).unwrap(),
            kind.as_str().as_bytes(),
        );
        let stored = StoredData {
            schema_version: 2,
            data: json!({ PERSONAL: crypto::to_text(&sealed) }),
        };
        let trainee = Uuid::now_v7();
        assert_eq!(
            read(&keys, &stored, Some(&stored_key), trainee),
            registered()
        );
    }

    #[test]
    fn erased_and_legacy_envelopes_open() {
        let keys = Keyring::unwrapped();
        let trainee = Uuid::now_v7();
        let legacy = StoredData {
            schema_version: 1,
            data: json!({"email": "ada@example.com", "name": "Ada Lovelace"}),
        };
        assert_eq!(read(&keys, &legacy, None, trainee), registered());
        let erased = StoredData {
            schema_version: 2,
            data: json!({"personal": null}),
        };
        let Event::TraineeRegistered(read_back) = read(&keys, &erased, None, trainee) else {
            panic!("not a registration");
        };
        assert_eq!(read_back.name.as_str(), schema::FORGOTTEN_NAME);
    }
}
