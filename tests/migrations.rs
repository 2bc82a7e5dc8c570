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
