//! What workers record: shard leases (with fencing generations), per-(trail, shard) cursors,
//! sealed batches, delivered files and delivery outcomes.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::features::notifications::store as notifications;
use crate::features::usage::store::{self as usage, CategoryTally};
use crate::store::StoreError;

/// A lease a worker holds on a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct Lease {
    pub shard_id: i64,
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
pub async fn claim_shards(
    pool: &PgPool,
    owner: &str,
    ttl_ms: i64,
    limit: i64,
) -> Result<Vec<Claim>, StoreError> {
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

/// Per shard of `ids` holding staged events: seconds since the oldest of them arrived.
pub async fn staged_lag(
    pool: &PgPool,
    ids: &[i64],
) -> Result<std::collections::HashMap<i64, f64>, StoreError> {
    let rows: Vec<(i64, f64)> = sqlx::query_as(
        "SELECT shard_id, EXTRACT(EPOCH FROM now() - min(received_at))::float8 FROM staged_chunks
         WHERE shard_id = ANY($1) GROUP BY shard_id",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Extends every unexpired lease of `owner`; returns the leases still held.
pub async fn renew_leases(pool: &PgPool, owner: &str, ttl_ms: i64) -> Result<Vec<Lease>, StoreError> {
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
pub async fn release_leases(pool: &PgPool, owner: &str) -> Result<(), StoreError> {
    sqlx::query("UPDATE shard_leases SET owner = NULL, expires_at = '-infinity' WHERE owner = $1")
        .bind(owner)
        .execute(pool)
        .await?;
    Ok(())
}

/// Fails unless `lease` is still current; holds a share lock on the lease row until the
/// transaction ends, so no takeover can slip in before the commit.
pub(super) async fn check_fence(
    conn: &mut sqlx::PgConnection,
    owner: &str,
    lease: Lease,
) -> Result<(), StoreError> {
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

/// The shard row, for routing.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ShardInfo {
    pub id: i64,
    pub account_id: String,
    pub region: String,
    pub source: String,
}

pub async fn shard_infos(pool: &PgPool, ids: &[i64]) -> Result<Vec<ShardInfo>, StoreError> {
    Ok(sqlx::query_as::<_, ShardInfo>("SELECT id, account_id, region, source FROM shards WHERE id = ANY($1)")
        .bind(ids)
        .fetch_all(pool)
        .await?)
}

/// The last sequence number handed out in each shard (0: none yet).
pub async fn shard_heads(
    pool: &PgPool,
    ids: &[i64],
) -> Result<std::collections::HashMap<i64, i64>, StoreError> {
    let rows: Vec<(i64, i64)> = sqlx::query_as("SELECT id, next_seq - 1 FROM shards WHERE id = ANY($1)")
        .bind(ids)
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().collect())
}

/// Cursors of every trail over one shard: (trail id, delivered seq).
pub async fn cursors(pool: &PgPool, shard_id: i64) -> Result<Vec<(i64, i64)>, StoreError> {
    Ok(sqlx::query_as("SELECT trail_id, delivered_seq FROM trail_cursors WHERE shard_id = $1")
        .bind(shard_id)
        .fetch_all(pool)
        .await?)
}

/// Moves a trail's cursor over events none of which it selects (no object to write).
pub async fn skip(
    pool: &PgPool,
    owner: &str,
    lease: Lease,
    trail_id: i64,
    through_seq: i64,
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    check_fence(&mut tx, owner, lease).await?;
    upsert_cursor(&mut tx, trail_id, lease.shard_id, through_seq).await?;
    tx.commit().await?;
    Ok(())
}

async fn upsert_cursor(
    conn: &mut sqlx::PgConnection,
    trail_id: i64,
    shard_id: i64,
    seq: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO trail_cursors (trail_id, shard_id, delivered_seq)
         SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM trails WHERE id = $1)
         ON CONFLICT (trail_id, shard_id) DO UPDATE SET delivered_seq = GREATEST(trail_cursors.delivered_seq, $3)",
    )
    .bind(trail_id)
    .bind(shard_id)
    .bind(seq)
    .execute(conn)
    .await?;
    Ok(())
}

/// A batch whose key and bytes are fixed before its PUT.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SealedBatch {
    pub trail_id: i64,
    pub trail_arn: String,
    pub shard_id: i64,
    pub from_seq: i64,
    pub to_seq: i64,
    pub bucket: String,
    pub object_key: String,
    pub kms_key_id: String,
    pub sha256: Vec<u8>,
    /// SHA-256 of the uncompressed file; None only for batches sealed before digests existed.
    pub content_sha256: Option<Vec<u8>>,
    pub body: Vec<u8>,
    pub record_count: i32,
    pub oldest_event_time: DateTime<Utc>,
    pub newest_event_time: DateTime<Utc>,
    /// Per-category usage of the file (parallel arrays); None for batches sealed before usage existed.
    pub usage_categories: Option<Vec<String>>,
    pub usage_events: Option<Vec<i64>>,
    pub usage_bytes: Option<Vec<i64>>,
}

impl SealedBatch {
    /// The batch's per-category tallies; `fallback_category` takes every record of a batch sealed
    /// before tallies were recorded.
    pub fn tallies(&self, fallback_category: &str) -> Vec<CategoryTally> {
        match (&self.usage_categories, &self.usage_events, &self.usage_bytes) {
            (Some(categories), Some(events), Some(bytes))
                if categories.len() == events.len() && events.len() == bytes.len() =>
            {
                categories
                    .iter()
                    .zip(events)
                    .zip(bytes)
                    .map(|((category, &events), &bytes)| CategoryTally {
                        category: category.clone(),
                        events,
                        bytes,
                    })
                    .collect()
            }
            _ => vec![CategoryTally {
                category: fallback_category.to_owned(),
                events: i64::from(self.record_count),
                bytes: self.body.len() as i64,
            }],
        }
    }

    /// Stores `tallies` in the batch's usage columns.
    pub fn set_tallies(&mut self, tallies: &[CategoryTally]) {
        self.usage_categories = Some(tallies.iter().map(|t| t.category.clone()).collect());
        self.usage_events = Some(tallies.iter().map(|t| t.events).collect());
        self.usage_bytes = Some(tallies.iter().map(|t| t.bytes).collect());
    }
}

/// Step (a): records the batch. Fails if the lease is lost or another batch is outstanding.
pub async fn seal(pool: &PgPool, owner: &str, lease: Lease, batch: &SealedBatch) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    check_fence(&mut tx, owner, lease).await?;
    sqlx::query(
        "INSERT INTO sealed_batches (trail_id, trail_arn, shard_id, from_seq, to_seq, bucket, object_key, kms_key_id,
                                     sha256, body, record_count, oldest_event_time, newest_event_time, content_sha256,
                                     usage_categories, usage_events, usage_bytes)
         VALUES ($1, $13, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $14, $15, $16, $17)",
    )
    .bind(batch.trail_id)
    .bind(batch.shard_id)
    .bind(batch.from_seq)
    .bind(batch.to_seq)
    .bind(&batch.bucket)
    .bind(&batch.object_key)
    .bind(&batch.kms_key_id)
    .bind(&batch.sha256)
    .bind(&batch.body)
    .bind(batch.record_count)
    .bind(batch.oldest_event_time)
    .bind(batch.newest_event_time)
    .bind(&batch.trail_arn)
    .bind(&batch.content_sha256)
    .bind(&batch.usage_categories)
    .bind(&batch.usage_events)
    .bind(&batch.usage_bytes)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

const SEALED_COLUMNS: &str =
    "trail_id, trail_arn, shard_id, from_seq, to_seq, bucket, object_key, kms_key_id,
    sha256, content_sha256, body, record_count, oldest_event_time, newest_event_time,
    usage_categories, usage_events, usage_bytes";

/// Sealed batches of a shard whose trail was deleted since: still to be finished.
pub async fn orphaned_sealed(pool: &PgPool, shard_id: i64) -> Result<Vec<SealedBatch>, StoreError> {
    Ok(sqlx::query_as::<_, SealedBatch>(&format!(
        "SELECT {SEALED_COLUMNS} FROM sealed_batches s
         WHERE shard_id = $1 AND NOT EXISTS (SELECT 1 FROM trails t WHERE t.id = s.trail_id)"
    ))
    .bind(shard_id)
    .fetch_all(pool)
    .await?)
}

/// The outstanding sealed batch of (trail, shard), if a previous attempt did not finish.
pub async fn sealed(pool: &PgPool, trail_id: i64, shard_id: i64) -> Result<Option<SealedBatch>, StoreError> {
    Ok(sqlx::query_as::<_, SealedBatch>(&format!(
        "SELECT {SEALED_COLUMNS} FROM sealed_batches WHERE trail_id = $1 AND shard_id = $2"
    ))
    .bind(trail_id)
    .bind(shard_id)
    .fetch_optional(pool)
    .await?)
}

/// Step (c): records the delivered file, adds its usage, queues its notification and advances the
/// trail's cursor, in one transaction that checks the lease's fencing generation.
pub async fn commit(
    pool: &PgPool,
    owner: &str,
    lease: Lease,
    batch: &SealedBatch,
    account_id: &str,
    region: &str,
    tallies: &[CategoryTally],
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    check_fence(&mut tx, owner, lease).await?;
    let recorded = sqlx::query(
        "INSERT INTO delivered_files (trail_id, trail_arn, shard_id, account_id, region, from_seq, to_seq, bucket,
                                      object_key, sha256, size_bytes, record_count, oldest_event_time, newest_event_time,
                                      content_sha256)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
         ON CONFLICT (bucket, object_key) DO NOTHING",
    )
    .bind(batch.trail_id)
    .bind(&batch.trail_arn)
    .bind(batch.shard_id)
    .bind(account_id)
    .bind(region)
    .bind(batch.from_seq)
    .bind(batch.to_seq)
    .bind(&batch.bucket)
    .bind(&batch.object_key)
    .bind(&batch.sha256)
    .bind(batch.body.len() as i64)
    .bind(batch.record_count)
    .bind(batch.oldest_event_time)
    .bind(batch.newest_event_time)
    .bind(&batch.content_sha256)
    .execute(&mut *tx)
    .await?;
    // A file already recorded was already counted (and its notification queued).
    if recorded.rows_affected() == 1 {
        usage::add(&mut tx, batch.trail_id, &batch.trail_arn, account_id, tallies).await?;
        notifications::enqueue(&mut tx, batch.trail_id, &batch.bucket, &batch.object_key).await?;
    }
    upsert_cursor(&mut tx, batch.trail_id, batch.shard_id, batch.to_seq).await?;
    sqlx::query("DELETE FROM sealed_batches WHERE trail_id = $1 AND shard_id = $2")
        .bind(batch.trail_id)
        .bind(batch.shard_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO trail_delivery_status (trail_id, latest_delivery_time, latest_delivery_attempt_time)
         SELECT $1, now(), now() WHERE EXISTS (SELECT 1 FROM trails WHERE id = $1)
         ON CONFLICT (trail_id) DO UPDATE SET latest_delivery_time = now(), latest_delivery_attempt_time = now(),
                                              latest_delivery_error = ''",
    )
    .bind(batch.trail_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Records a failed delivery attempt, shown by GetTrailStatus until the next success.
pub async fn record_failure(pool: &PgPool, trail_id: i64, error: &str) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO trail_delivery_status (trail_id, latest_delivery_attempt_time, latest_delivery_error)
         SELECT $1, now(), $2 WHERE EXISTS (SELECT 1 FROM trails WHERE id = $1)
         ON CONFLICT (trail_id) DO UPDATE SET latest_delivery_attempt_time = now(), latest_delivery_error = $2",
    )
    .bind(trail_id)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}

/// A delivered file as recorded.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveredFile {
    pub trail_arn: String,
    pub account_id: String,
    pub region: String,
    pub bucket: String,
    pub object_key: String,
    pub sha256: Vec<u8>,
    pub record_count: i32,
}

pub async fn delivered_files(pool: &PgPool) -> Result<Vec<DeliveredFile>, StoreError> {
    Ok(sqlx::query_as::<_, DeliveredFile>(
        "SELECT trail_arn, account_id, region, bucket, object_key, sha256, record_count FROM delivered_files ORDER BY id",
    )
    .fetch_all(pool)
    .await?)
}

/// Drops staged events older than the retention even if some trail never delivered them.
pub async fn expire_staged(pool: &PgPool, older_than: DateTime<Utc>) -> Result<u64, StoreError> {
    let done = sqlx::query("DELETE FROM staged_chunks WHERE received_at < $1")
        .bind(older_than)
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}
