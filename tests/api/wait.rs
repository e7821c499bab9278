//! Waiting for a state, not for time: a condition checked every few milliseconds until it
//! holds, failing the test with what it waited for when a deadline passes.

use std::time::{Duration, Instant};

/// How often a condition is checked.
const CHECK_EVERY: Duration = Duration::from_millis(2);

/// Waits until `condition` holds, failing with `what` after `within`.
pub async fn until(within: Duration, what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(CHECK_EVERY).await;
    }
}

/// [`until`] for a condition that has to ask (the database, the server).
pub async fn eventually(within: Duration, what: &str, condition: impl AsyncFn() -> bool) {
    let deadline = Instant::now() + within;
    while !condition().await {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(CHECK_EVERY).await;
    }
}
