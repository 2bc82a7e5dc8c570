//! Digest signing keys.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::model::Region;
use crate::store::{StoreError, is_unique_violation};

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

/// When a new key replaces the current one.
#[derive(Debug, Clone, Copy)]
pub enum Replace {
    /// Always (rotation on demand).
    Always,
    /// Only when the region has no current key (first use racing with another process).
    IfNone,
    /// Only when the current key became valid before this instant (scheduled rotation racing with
    /// other processes: the first one rotates, the others keep its key).
    IfOlderThan(DateTime<Utc>),
}

/// Makes a new key current for the region, ending the previous one now, unless `replace` says to
/// keep the current one (which is then returned).
pub async fn install(
    pool: &PgPool,
    region: &Region,
    public_key: &[u8],
    fingerprint: &str,
    private_key_ciphertext: &[u8],
    replace: Replace,
) -> Result<StoredKey, StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('signing_keys:' || $1))")
        .bind(region.as_str())
        .execute(&mut *tx)
        .await?;
    let existing = sqlx::query_as::<_, StoredKey>(&format!(
        "SELECT {COLUMNS} FROM signing_keys WHERE region = $1 AND valid_to IS NULL"
    ))
    .bind(region.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(existing) = existing {
        let keep = match replace {
            Replace::Always => false,
            Replace::IfNone => true,
            Replace::IfOlderThan(at) => existing.valid_from >= at,
        };
        if keep {
            return Ok(existing);
        }
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
