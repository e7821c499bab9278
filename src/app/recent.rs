//! What a command decides on, as this server last wrote or read it: whole streams, and the
//! passing score of courses. It lets the common command skip the read of its stream (and of its
//! dedupe record), so it is one call of the write function instead of two or three statements.
//!
//! Why a stale entry cannot cause a wrong write: a decision made on a stream is only written
//! at the version it was made on; the write function updates the stream's projection row only
//! at that version (and `events_pkey (tenant_id, stream_id, version)` backs it up), so it
//! refuses the write if the stream has grown since, and then writes nothing of it. A decision on a cached stream is therefore tried once; if it is refused by the
//! domain or by the database (any outcome that guarantees nothing was written, see
//! [`AppError::may_be_stale`](super::AppError)), the command runs again on the stored stream,
//! exactly as it would without the cache. Entries are only ever committed data: a stream is
//! stored after its append committed or after it was read, never before.
//!
//! Keys start with the tenant taken from the verified token, so one tenant's entries are never
//! another's. The cache is bounded by entry count (a stream is a handful of events: about
//! 1.5 KiB); a capacity of 0 turns it off.

use crate::domain::values::Score;
use crate::domain::{CourseId, TenantId};
use crate::store::StreamEvent;
use crate::store::personal::TraineeKey;
use quick_cache::sync::Cache;
use std::sync::Arc;
use uuid::Uuid;

/// Streams kept by default: enough for every enrollment in progress on a busy server, about
/// 15 MiB when full.
pub const DEFAULT_CAPACITY: usize = 10_000;

/// A stream as stored: its events in version order.
pub type Stream = Arc<[StreamEvent]>;

pub struct Recent {
    streams: Option<Cache<(TenantId, Uuid), Stream>>,
    /// A course's passing score never changes once created, so an entry is never stale.
    passing_scores: Option<Cache<(TenantId, CourseId), Score>>,
    /// Trainees' data keys as stored. A stored key never changes; forgetting deletes it, and
    /// drops it here. An entry left stale by another server's erasure is refused by the write
    /// (it checks the key against the stored one), like a stale stream.
    trainee_keys: Option<Cache<(TenantId, Uuid), TraineeKey>>,
}

impl Recent {
    /// Keeps up to `capacity` streams (and as many passing scores); 0 keeps nothing.
    pub fn new(capacity: usize) -> Self {
        let enabled = capacity > 0;
        Self {
            streams: enabled.then(|| Cache::new(capacity)),
            passing_scores: enabled.then(|| Cache::new(capacity)),
            trainee_keys: enabled.then(|| Cache::new(capacity)),
        }
    }

    pub fn enabled(&self) -> bool {
        self.streams.is_some()
    }

    pub fn stream(&self, tenant: TenantId, stream_id: Uuid) -> Option<Stream> {
        self.streams.as_ref()?.get(&(tenant, stream_id))
    }

    /// Records a stream as it is stored now (read, or just appended to and committed).
    pub fn store_stream(&self, tenant: TenantId, stream_id: Uuid, stream: Stream) {
        if let Some(streams) = &self.streams {
            streams.insert((tenant, stream_id), stream);
        }
    }

    /// Drops streams (a forgotten trainee's streams hold its data in the clear), and the data
    /// key of any trainee among them.
    pub fn drop_streams(&self, tenant: TenantId, stream_ids: &[Uuid]) {
        if let (Some(streams), Some(keys)) = (&self.streams, &self.trainee_keys) {
            for stream_id in stream_ids {
                streams.remove(&(tenant, *stream_id));
                keys.remove(&(tenant, *stream_id));
            }
        }
    }

    pub fn trainee_key(&self, tenant: TenantId, trainee: Uuid) -> Option<TraineeKey> {
        self.trainee_keys.as_ref()?.get(&(tenant, trainee))
    }

    /// Records a trainee's key as stored (read, or stored by a write that committed).
    pub fn store_trainee_key(&self, tenant: TenantId, trainee: Uuid, key: TraineeKey) {
        if let Some(keys) = &self.trainee_keys {
            keys.insert((tenant, trainee), key);
        }
    }

    pub fn passing_score(&self, tenant: TenantId, course: CourseId) -> Option<Score> {
        self.passing_scores.as_ref()?.get(&(tenant, course))
    }

    pub fn store_passing_score(&self, tenant: TenantId, course: CourseId, score: Score) {
        if let Some(scores) = &self.passing_scores {
            scores.insert((tenant, course), score);
        }
    }
}
