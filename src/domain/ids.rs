//! Identifier newtypes, so a course id can never be passed where a trainee id is expected.

use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// Wraps an existing UUID (parsed at the edge or read from the store).
            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }
            /// A fresh, time-ordered (v7) identifier.
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }
            /// The underlying UUID.
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }
    };
}

id_type!(
    /// A tenant (an organisation). Only ever taken from a verified token or from the operator's
    /// command line, never from a client's input.
    TenantId
);
id_type!(
    /// A course; also the id of its event stream.
    CourseId
);
id_type!(
    /// A trainee; also the id of its event stream, and the `sub` of the trainee's tokens.
    TraineeId
);
id_type!(
    /// One registration of a trainee for a course; also the id of its event stream.
    EnrollmentId
);
id_type!(
    /// One submitted test inside an enrollment.
    SubmissionId
);
