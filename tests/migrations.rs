//! Migrations: applied on start by every process, so they must be safe when several processes
//! start at once, and reversible.

mod common;

use orgtrail::store;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

async fn table_count(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables
         WHERE table_schema = 'public' AND table_name IN ('organizations', 'accounts', 'trails', 'api_tokens')",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// A database with nothing applied (sqlx::test without migrations), reached by two pools as two
/// processes would.
#[sqlx::test(migrations = false)]
async fn migrations_applied_twice_concurrently_succeed(pool: PgPool) {
    let options = pool.connect_options();
    let first = PgPoolOptions::new().max_connections(2).connect_with((*options).clone()).await.unwrap();
    let second = PgPoolOptions::new().max_connections(2).connect_with((*options).clone()).await.unwrap();
    let (a, b) = tokio::join!(store::migrate(&first), store::migrate(&second));
    a.unwrap();
    b.unwrap();
    assert_eq!(table_count(&pool).await, 4);
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        applied as usize,
        store::MIGRATOR.iter().filter(|m| m.migration_type.is_up_migration()).count()
    );
    // And once more, serially: nothing to do.
    store::migrate(&first).await.unwrap();
}

#[sqlx::test(migrations = false)]
async fn migrations_are_reversible(pool: PgPool) {
    store::migrate(&pool).await.unwrap();
    store::MIGRATOR.undo(&pool, 0).await.unwrap();
    assert_eq!(table_count(&pool).await, 0);
    store::migrate(&pool).await.unwrap();
    assert_eq!(table_count(&pool).await, 4);
}

async fn dedupe_partitions(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'event_identities' ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrations = "./migrations")]
async fn dedupe_partitions_are_made_ahead_and_dropped_after_the_horizon(pool: PgPool) {
    let day = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    orgtrail::pipeline::staging::postgres::maintain_identity_partitions(&pool, day("2026-01-07"), 90)
        .await
        .unwrap();
    assert_eq!(
        dedupe_partitions(&pool).await,
        vec![
            "event_identities_default",
            "event_identities_w20260105",
            "event_identities_w20260112",
            "event_identities_w20260119"
        ]
    );
    // 100 days later, with a 90-day horizon, January's weeks are gone; the coming weeks exist.
    orgtrail::pipeline::staging::postgres::maintain_identity_partitions(&pool, day("2026-04-17"), 90)
        .await
        .unwrap();
    let partitions = dedupe_partitions(&pool).await;
    assert!(!partitions.contains(&"event_identities_w20260105".to_owned()), "{partitions:?}");
    assert!(partitions.contains(&"event_identities_w20260413".to_owned()), "{partitions:?}");
    assert!(partitions.contains(&"event_identities_w20260427".to_owned()), "{partitions:?}");
}
