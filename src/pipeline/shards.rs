//! Shard ownership: one owner at a time, through a lease with a fencing generation. A worker claims
//! shards nobody holds, renews what it holds, gives them up when it stops; every write of progress
//! checks the generation it claimed ([`check_fence`]), so a worker that lost a lease can commit
//! nothing.

use std::collections::HashMap;

use sqlx::PgPool;

use crate::model::shard::{ShardId, ShardInfo, Source};
use crate::model::{AccountId, Region};
use crate::store::StoreError;

/// A lease a worker holds on a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct Lease {
    pub shard_id: ShardId,
    pub generation: i64,
}

/// A lease just claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct Claim {
    #[sqlx(flatten)]
    pub lease: Lease,
    /// The lease had expired under another worker (not given up, never held): a takeover.
    pub taken_over: bool,
}

/// Claims up to `limit` shards whose lease expired (or was never taken).
pub async fn claim(pool: &PgPool, owner: &str, ttl_ms: i64, limit: i64) -> Result<Vec<Claim>, StoreError> {
    Ok(sqlx::query_as::<_, Claim>(
        "WITH picked AS (SELECT shard_id, owner FROM shard_leases WHERE expires_at < now()
                         ORDER BY shard_id LIMIT $3 FOR UPDATE SKIP LOCKED)
         UPDATE shard_leases l SET owner = $1, generation = l.generation + 1,
                expires_at = now() + make_interval(secs => $2::double precision / 1000)
         FROM picked WHERE l.shard_id = picked.shard_id
         RETURNING l.shard_id, l.generation, picked.owner IS NOT NULL AS taken_over",
    )
    .bind(owner)
    .bind(ttl_ms)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Extends every unexpired lease of `owner`; returns the leases still held.
pub async fn renew(pool: &PgPool, owner: &str, ttl_ms: i64) -> Result<Vec<Lease>, StoreError> {
    Ok(sqlx::query_as::<_, Lease>(
        "UPDATE shard_leases SET expires_at = now() + make_interval(secs => $2::double precision / 1000)
         WHERE owner = $1 AND expires_at > now() RETURNING shard_id, generation",
    )
    .bind(owner)
    .bind(ttl_ms)
    .fetch_all(pool)
    .await?)
}

/// Gives every lease of `owner` up (graceful shutdown), so others take over at once.
pub async fn release_all(pool: &PgPool, owner: &str) -> Result<(), StoreError> {
    sqlx::query("UPDATE shard_leases SET owner = NULL, expires_at = '-infinity' WHERE owner = $1")
        .bind(owner)
        .execute(pool)
        .await?;
    Ok(())
}

/// Fails unless `lease` is still current; holds a share lock on the lease row until the
/// transaction ends, so no takeover can slip in before the commit.
pub async fn check_fence(conn: &mut sqlx::PgConnection, owner: &str, lease: Lease) -> Result<(), StoreError> {
    let current: Option<i64> = sqlx::query_scalar(
        "SELECT generation FROM shard_leases WHERE shard_id = $1 AND owner = $2 AND generation = $3
         AND expires_at > now() FOR SHARE",
    )
    .bind(lease.shard_id)
    .bind(owner)
    .bind(lease.generation)
    .fetch_optional(conn)
    .await?;
    match current {
        Some(_) => Ok(()),
        None => Err(StoreError::Fenced(format!(
            "lease on shard {} (generation {}) is lost",
            lease.shard_id, lease.generation
        ))),
    }
}

/// A transaction that can commit nothing once the lease is lost: the lease row stays
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

/// The shards of `ids` (unknown ones left out).
pub async fn infos(pool: &PgPool, ids: &[ShardId]) -> Result<Vec<ShardInfo>, StoreError> {
    let rows: Vec<(ShardId, String, String, String)> =
        sqlx::query_as("SELECT id, account_id, region, source FROM shards WHERE id = ANY($1)")
            .bind(ids)
            .fetch_all(pool)
            .await?;
    rows.into_iter()
        .map(|(id, account, region, source)| {
            Ok(ShardInfo {
                id,
                account: AccountId::parse("account_id", &account)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                region: Region::parse("region", &region).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                source: Source::parse("source", &source).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            })
        })
        .collect()
}

/// The last sequence number handed out in each shard of `ids` (0: none yet).
pub async fn heads(pool: &PgPool, ids: &[ShardId]) -> Result<HashMap<ShardId, i64>, StoreError> {
    let rows: Vec<(ShardId, i64)> = sqlx::query_as("SELECT id, next_seq - 1 FROM shards WHERE id = ANY($1)")
        .bind(ids)
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().collect())
}

/// Per shard of `ids` holding staged events: seconds since the oldest of them arrived.
pub async fn staged_lag(pool: &PgPool, ids: &[ShardId]) -> Result<HashMap<ShardId, f64>, StoreError> {
    let rows: Vec<(ShardId, f64)> = sqlx::query_as(
        "SELECT shard_id, EXTRACT(EPOCH FROM now() - min(received_at))::float8 FROM staged_chunks
         WHERE shard_id = ANY($1) GROUP BY shard_id",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}
