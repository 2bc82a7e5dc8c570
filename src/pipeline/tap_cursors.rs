//! Tap cursors: per (shard, tap key), the last staged event the tap consumed.

use std::collections::HashMap;

use sqlx::PgPool;

use crate::pipeline::delivery::{Lease, check_fence};
use crate::store::StoreError;

pub async fn cursors(pool: &PgPool, shard_id: i64) -> Result<HashMap<String, i64>, StoreError> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT tap_key, through_seq FROM tap_cursors WHERE shard_id = $1")
            .bind(shard_id)
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().collect())
}

/// A transaction that fails to commit anything once the lease is lost: the lease row stays
/// share-locked until it ends.
pub async fn begin_fenced(
    pool: &PgPool,
    owner: &str,
    lease: Lease,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
    let mut tx = pool.begin().await?;
    check_fence(&mut tx, owner, lease).await?;
    Ok(tx)
}

pub async fn advance(
    conn: &mut sqlx::PgConnection,
    shard_id: i64,
    key: &str,
    through_seq: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO tap_cursors (shard_id, tap_key, through_seq) VALUES ($1, $2, $3)
         ON CONFLICT (shard_id, tap_key) DO UPDATE
         SET through_seq = GREATEST(tap_cursors.through_seq, $3), updated_at = now()",
    )
    .bind(shard_id)
    .bind(key)
    .bind(through_seq)
    .execute(conn)
    .await?;
    Ok(())
}
