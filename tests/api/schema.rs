//! The committed SDL equals the served schema; the partitioning works as designed.

use crate::helpers::TestApp;

#[test]
fn schema_graphql_is_the_served_schema() {
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql"))
        .expect("schema.graphql at the repository's top level");
    let served = coursetrail::graphql::sdl();
    assert!(
        committed == served,
        "schema.graphql is stale: run `cargo run -- schema > schema.graphql` and commit it"
    );
}

#[tokio::test]
async fn a_tenant_scoped_events_query_scans_one_partition() {
    let app = TestApp::spawn().await;
    let plan: Vec<String> = sqlx::query_scalar(&format!(
        "EXPLAIN SELECT * FROM events WHERE tenant_id = '{}' AND position > 0 ORDER BY position LIMIT 100",
        app.tenant
    ))
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let plan = plan.join("\n");
    let partitions = plan.matches("on events_p").count();
    assert_eq!(partitions, 1, "expected one partition in the plan:\n{plan}");
    // Every hash partition exists, so any tenant has a home.
    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_inherits WHERE inhparent = 'events'::regclass")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(count, 16);
}
