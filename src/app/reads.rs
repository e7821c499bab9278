//! The reads: queries of the projections ([`queries`](super::queries)), audit trails, exports
//! and live follows ([`audit`](super::audit)), reports and rebuilds
//! ([`reports`](super::reports)). Each applies the same role rules as the commands, so no
//! interface can forget one.

use super::runtime::Runtime;
use std::sync::Arc;

/// The application's reads. Cheap to clone.
#[derive(Clone)]
pub struct Reads {
    pub(super) rt: Arc<Runtime>,
}
