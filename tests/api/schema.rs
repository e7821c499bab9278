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

/// The schema as the catalog describes it: every column and every index of the public tables
/// (partitions' and shards' own objects excluded), and the functions.
async fn schema_of(pool: &sqlx::PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT format('%s.%s %s %s', c.table_name, c.column_name, c.data_type, c.is_nullable) \
         FROM information_schema.columns c JOIN pg_class k ON k.relname = c.table_name \
         WHERE c.table_schema = 'public' AND NOT k.relispartition \
         UNION ALL \
         SELECT indexdef FROM pg_indexes i JOIN pg_class k ON k.relname = i.tablename \
         WHERE i.schemaname = 'public' AND NOT k.relispartition \
         UNION ALL \
         SELECT pg_get_functiondef(p.oid) FROM pg_proc p \
         WHERE p.pronamespace = 'public'::regnamespace AND p.proname LIKE 'coursetrail%' \
         ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// A database migrated by an earlier version of the migrations: the first three, and the
/// earlier text of `…0004` where that version could apply it (plain PostgreSQL; on Citus it
/// failed, so such a database stopped after the third).
#[tokio::test]
async fn a_database_migrated_by_the_earlier_migrations_migrates_to_the_current_schema() {
    use sqlx::migrate::{Migration, MigrationType, Migrator};
    use std::borrow::Cow;
    let (earlier, _) = crate::helpers::empty_database().await;
    let mut migrations: Vec<Migration> = coursetrail::db::MIGRATOR
        .iter()
        .filter(|m| m.version < 20261126000004)
        .cloned()
        .collect();
    let citus = crate::helpers::on_citus();
    if !citus {
        migrations.push(Migration::new(
            20261126000004,
            Cow::Borrowed("replay index"),
            MigrationType::Simple,
            Cow::Borrowed(include_str!(
                "../fixtures/20261126000004_replay_index.original.sql"
            )),
            false,
        ));
    }
    let applied = migrations.len();
    let migrator = Migrator {
        migrations: Cow::Owned(migrations),
        ..Migrator::DEFAULT
    };
    migrator
        .run(&earlier)
        .await
        .expect("the earlier migrations");
    coursetrail::db::migrate(&earlier)
        .await
        .expect("the current migrations on top");
    let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&earlier)
        .await
        .unwrap();
    assert_eq!(recorded as usize, coursetrail::db::MIGRATOR.iter().count());
    assert!(applied >= 3);

    let (fresh, _) = crate::helpers::fresh_database().await;
    assert_eq!(schema_of(&earlier).await, schema_of(&fresh).await);
    // Migrating again is a no-op, also for the rewritten migration.
    coursetrail::db::migrate(&earlier).await.expect("again");
}

/// The parameters of a function in `pg_proc`, in its signature's order (its `IN` parameters).
async fn declared_parameters(pool: &sqlx::PgPool, function: &str) -> Vec<String> {
    let overloads: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_proc WHERE proname = $1")
        .bind(function)
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(overloads, 1, "one {function} in the database");
    sqlx::query_scalar(
        "SELECT name FROM pg_proc p, \
         unnest(p.proargnames, p.proargmodes::text[]) WITH ORDINALITY AS a(name, mode, n) \
         WHERE p.proname = $1 AND coalesce(a.mode, 'i') = 'i' ORDER BY a.n",
    )
    .bind(function)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn the_write_function_gets_its_arguments_in_its_signatures_order() {
    let app = TestApp::spawn().await;
    let bound = coursetrail::store::append_parameter_names::<
        coursetrail::projections::ProjectionWrite<'_>,
    >();
    let declared = declared_parameters(&app.pool, "coursetrail_append").await;
    assert_eq!(
        bound, declared,
        "coursetrail_append: the arguments bound in Rust (left) must be its parameters in order"
    );
}
