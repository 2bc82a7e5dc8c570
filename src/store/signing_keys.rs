//! Digest signing keys.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::{StoreError, is_unique_violation};
use crate::model::Region;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredKey {
    pub region: String,
    pub public_key: Vec<u8>,
    pub fingerprint: String,
    pub private_key_ciphertext: Vec<u8>,
    pub valid_from: DateTime<Utc>,
    pub valid_to: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "region, public_key, fingerprint, private_key_ciphertext, valid_from, valid_to";

pub async fn current(pool: &PgPool, region: &Region) -> Result<Option<StoredKey>, StoreError> {
    Ok(sqlx::query_as::<_, StoredKey>(&format!(
        "SELECT {COLUMNS} FROM signing_keys WHERE region = $1 AND valid_to IS NULL"
    ))
    .bind(region.as_str())
    .fetch_optional(pool)
    .await?)
}

/// Makes a new key current for the region, ending the previous one now. With `only_if_none`, does
/// nothing when a current key exists (first use racing with another process).
pub async fn install(
    pool: &PgPool,
    region: &Region,
    public_key: &[u8],
    fingerprint: &str,
    private_key_ciphertext: &[u8],
    only_if_none: bool,
) -> Result<StoredKey, StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('signing_keys:' || $1))")
        .bind(region.as_str())
        .execute(&mut *tx)
        .await?;
    if only_if_none
        && let Some(existing) = sqlx::query_as::<_, StoredKey>(&format!(
            "SELECT {COLUMNS} FROM signing_keys WHERE region = $1 AND valid_to IS NULL"
        ))
        .bind(region.as_str())
        .fetch_optional(&mut *tx)
        .await?
    {
        return Ok(existing);
    }
    sqlx::query("UPDATE signing_keys SET valid_to = now() WHERE region = $1 AND valid_to IS NULL")
        .bind(region.as_str())
        .execute(&mut *tx)
        .await?;
    let inserted = sqlx::query_as::<_, StoredKey>(&format!(
        "INSERT INTO signing_keys (region, public_key, fingerprint, private_key_ciphertext)
         VALUES ($1, $2, $3, $4) RETURNING {COLUMNS}"
    ))
    .bind(region.as_str())
    .bind(public_key)
    .bind(fingerprint)
    .bind(private_key_ciphertext)
    .fetch_one(&mut *tx)
    .await;
    let key = match inserted {
        Ok(key) => key,
        Err(e) if is_unique_violation(&e) => {
            return Err(StoreError::AlreadyExists("a key with this fingerprint".into()));
        }
        Err(e) => return Err(e.into()),
    };
    tx.commit().await?;
    Ok(key)
}

/// Keys of the region whose validity overlaps [start, end], newest first.
pub async fn overlapping(
    pool: &PgPool,
    region: &Region,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<StoredKey>, StoreError> {
    Ok(sqlx::query_as::<_, StoredKey>(&format!(
        "SELECT {COLUMNS} FROM signing_keys
         WHERE region = $1 AND valid_from <= $3 AND (valid_to IS NULL OR valid_to >= $2)
         ORDER BY valid_from DESC, id DESC"
    ))
    .bind(region.as_str())
    .bind(start)
    .bind(end)
    .fetch_all(pool)
    .await?)
}
