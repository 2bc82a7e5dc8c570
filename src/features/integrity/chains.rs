//! Digest chains: the head of each (trail, account, region) chain, the delivered files a digest
//! takes, and sealed digests awaiting their PUT.
//!
//! Exactly once, like log files: one transaction locks the chain head, takes the files, and
//! seals the digest's bytes and signature while advancing the head; the PUT (only if absent, or
//! already identical) and its confirmation follow. A crash repeats the same object.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use crate::store::StoreError;

/// Where a chain is and where its digests go.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ChainHead {
    pub trail_arn: String,
    pub account_id: String,
    pub region: String,
    pub trail_id: Option<i64>,
    pub bucket: String,
    pub key_prefix: String,
    pub organization_id: Option<String>,
    pub trail_name: String,
    pub home_region: String,
    pub chain_started_at: DateTime<Utc>,
    pub last_end: Option<DateTime<Utc>>,
    pub last_bucket: Option<String>,
    pub last_key: Option<String>,
    pub last_sha256_hex: Option<String>,
    pub last_signature_hex: Option<String>,
    pub closed: bool,
}

const HEAD_COLUMNS: &str = "trail_arn, account_id, region, trail_id, bucket, key_prefix, organization_id,
    trail_name, home_region, chain_started_at, last_end, last_bucket, last_key, last_sha256_hex,
    last_signature_hex, closed";

/// Chains still open (a final digest may be due).
pub async fn open_chains(pool: &PgPool) -> Result<Vec<ChainHead>, StoreError> {
    Ok(sqlx::query_as::<_, ChainHead>(&format!("SELECT {HEAD_COLUMNS} FROM digest_chains WHERE NOT closed"))
        .fetch_all(pool)
        .await?)
}

/// (account, region) pairs events were ever staged for: the regions a chain may cover.
pub async fn shard_pairs(pool: &PgPool) -> Result<Vec<(String, String)>, StoreError> {
    Ok(sqlx::query_as::<_, (String, String)>("SELECT DISTINCT account_id, region FROM shards")
        .fetch_all(pool)
        .await?)
}

/// Creates the chain row if missing (a fresh chain), then locks it. None: another worker holds it.
pub async fn lock_head(
    conn: &mut PgConnection,
    fresh: Option<&ChainHead>,
    key: (&str, &str, &str),
) -> Result<Option<ChainHead>, StoreError> {
    if let Some(head) = fresh {
        sqlx::query(
            "INSERT INTO digest_chains (trail_arn, account_id, region, trail_id, bucket, key_prefix, organization_id,
                                        trail_name, home_region, chain_started_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
        )
        .bind(&head.trail_arn)
        .bind(&head.account_id)
        .bind(&head.region)
        .bind(head.trail_id)
        .bind(&head.bucket)
        .bind(&head.key_prefix)
        .bind(&head.organization_id)
        .bind(&head.trail_name)
        .bind(&head.home_region)
        .bind(head.chain_started_at)
        .execute(&mut *conn)
        .await?;
    }
    Ok(sqlx::query_as::<_, ChainHead>(&format!(
        "SELECT {HEAD_COLUMNS} FROM digest_chains
         WHERE trail_arn = $1 AND account_id = $2 AND region = $3 FOR UPDATE SKIP LOCKED"
    ))
    .bind(key.0)
    .bind(key.1)
    .bind(key.2)
    .fetch_optional(&mut *conn)
    .await?)
}

/// A delivered log file not yet listed in a digest.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UndigestedFile {
    pub id: i64,
    pub bucket: String,
    pub object_key: String,
    pub content_sha256: Vec<u8>,
    pub oldest_event_time: DateTime<Utc>,
    pub newest_event_time: DateTime<Utc>,
}

/// Files of the chain delivered in [since, before) that no digest took yet, locked. Files
/// delivered before `since` (validation off, or an earlier chain) are never listed.
pub async fn take_files(
    conn: &mut PgConnection,
    head: &ChainHead,
    since: DateTime<Utc>,
    before: DateTime<Utc>,
) -> Result<Vec<UndigestedFile>, StoreError> {
    Ok(sqlx::query_as::<_, UndigestedFile>(
        "SELECT id, bucket, object_key, content_sha256, oldest_event_time, newest_event_time
         FROM delivered_files
         WHERE trail_arn = $1 AND account_id = $2 AND region = $3 AND digest_key IS NULL
           AND content_sha256 IS NOT NULL AND delivered_at >= $4 AND delivered_at < $5
         ORDER BY id FOR UPDATE",
    )
    .bind(&head.trail_arn)
    .bind(&head.account_id)
    .bind(&head.region)
    .bind(since)
    .bind(before)
    .fetch_all(&mut *conn)
    .await?)
}

/// A digest, sealed: the bytes to PUT and what the chain head becomes.
#[derive(Debug, Clone)]
pub struct SealedDigest {
    pub bucket: String,
    pub object_key: String,
    pub trail_id: Option<i64>,
    /// gzip of the digest JSON.
    pub body: Vec<u8>,
    pub body_sha256: Vec<u8>,
    pub signature_hex: String,
    /// SHA-256 hex of the uncompressed JSON (the next digest's previousDigestHashValue).
    pub json_sha256_hex: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub file_ids: Vec<i64>,
}

/// Seals `digest` and moves the chain head (`head` holds the location and chain start to keep).
pub async fn seal(
    conn: &mut PgConnection,
    head: &ChainHead,
    digest: &SealedDigest,
    closed: bool,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE delivered_files SET digest_key = $2 WHERE id = ANY($1)")
        .bind(&digest.file_ids)
        .bind(&digest.object_key)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO pending_digests (bucket, object_key, trail_id, body, body_sha256, signature_hex)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&digest.bucket)
    .bind(&digest.object_key)
    .bind(digest.trail_id)
    .bind(&digest.body)
    .bind(&digest.body_sha256)
    .bind(&digest.signature_hex)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO delivered_digests (trail_arn, account_id, region, bucket, object_key, start_time, end_time, log_files)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&head.trail_arn)
    .bind(&head.account_id)
    .bind(&head.region)
    .bind(&digest.bucket)
    .bind(&digest.object_key)
    .bind(digest.start)
    .bind(digest.end)
    .bind(digest.file_ids.len() as i32)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE digest_chains SET trail_id = $4, bucket = $5, key_prefix = $6, organization_id = $7,
             trail_name = $8, home_region = $9, chain_started_at = $10, last_end = $11, last_bucket = $12,
             last_key = $13, last_sha256_hex = $14, last_signature_hex = $15, closed = $16
         WHERE trail_arn = $1 AND account_id = $2 AND region = $3",
    )
    .bind(&head.trail_arn)
    .bind(&head.account_id)
    .bind(&head.region)
    .bind(head.trail_id)
    .bind(&head.bucket)
    .bind(&head.key_prefix)
    .bind(&head.organization_id)
    .bind(&head.trail_name)
    .bind(&head.home_region)
    .bind(head.chain_started_at)
    .bind(digest.end)
    .bind(&digest.bucket)
    .bind(&digest.object_key)
    .bind(&digest.json_sha256_hex)
    .bind(&digest.signature_hex)
    .bind(closed)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A sealed digest still to be written to S3.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PendingDigest {
    pub bucket: String,
    pub object_key: String,
    pub trail_id: Option<i64>,
    pub body: Vec<u8>,
    pub body_sha256: Vec<u8>,
    pub signature_hex: String,
}

pub async fn pending(pool: &PgPool, limit: i64) -> Result<Vec<PendingDigest>, StoreError> {
    Ok(sqlx::query_as::<_, PendingDigest>(
        "SELECT bucket, object_key, trail_id, body, body_sha256, signature_hex FROM pending_digests
         ORDER BY sealed_at LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// The object is in S3: forget the sealed bytes, report the delivery on the trail.
pub async fn confirm(pool: &PgPool, digest: &PendingDigest) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM pending_digests WHERE bucket = $1 AND object_key = $2")
        .bind(&digest.bucket)
        .bind(&digest.object_key)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE delivered_digests SET delivered_at = now() WHERE bucket = $1 AND object_key = $2")
        .bind(&digest.bucket)
        .bind(&digest.object_key)
        .execute(&mut *tx)
        .await?;
    if let Some(trail_id) = digest.trail_id {
        sqlx::query(
            "INSERT INTO trail_delivery_status (trail_id, latest_digest_delivery_time)
             SELECT $1, now() WHERE EXISTS (SELECT 1 FROM trails WHERE id = $1)
             ON CONFLICT (trail_id) DO UPDATE SET latest_digest_delivery_time = now(),
                                                  latest_digest_delivery_error = ''",
        )
        .bind(trail_id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Shown by GetTrailStatus until the next digest is delivered.
pub async fn record_failure(pool: &PgPool, trail_id: i64, error: &str) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO trail_delivery_status (trail_id, latest_digest_delivery_error)
         SELECT $1, $2 WHERE EXISTS (SELECT 1 FROM trails WHERE id = $1)
         ON CONFLICT (trail_id) DO UPDATE SET latest_digest_delivery_error = $2",
    )
    .bind(trail_id)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}

/// A digest as recorded (tests and status).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveredDigest {
    pub trail_arn: String,
    pub account_id: String,
    pub region: String,
    pub bucket: String,
    pub object_key: String,
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    pub log_files: i32,
    pub delivered_at: Option<DateTime<Utc>>,
}

pub async fn delivered_digests(pool: &PgPool) -> Result<Vec<DeliveredDigest>, StoreError> {
    Ok(sqlx::query_as::<_, DeliveredDigest>(
        "SELECT trail_arn, account_id, region, bucket, object_key, start_time, end_time, log_files, delivered_at
         FROM delivered_digests ORDER BY id",
    )
    .fetch_all(pool)
    .await?)
}
