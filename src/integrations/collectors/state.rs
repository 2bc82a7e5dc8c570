//! Pull collectors' leases and cursors. A collector of (account, source, region) runs in one
//! worker at a time: the one holding its lease. Its cursor is written only under that lease.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::PgPool;

use crate::store::StoreError;

/// What one collector pulls: a source of an account in a region.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    pub account_id: String,
    pub source: &'static str,
    pub region: String,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.account_id, self.source, self.region)
    }
}

/// Takes or renews the lease of `target` for `holder`; false when another live holder has it.
pub async fn claim(pool: &PgPool, target: &Target, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
    let taken: Option<String> = sqlx::query_scalar(
        "INSERT INTO collector_leases (account_id, source, region, holder, expires_at)
         VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))
         ON CONFLICT (account_id, source, region) DO UPDATE
           SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
           WHERE collector_leases.holder = EXCLUDED.holder OR collector_leases.expires_at < now()
         RETURNING holder",
    )
    .bind(&target.account_id)
    .bind(target.source)
    .bind(&target.region)
    .bind(holder)
    .bind(ttl.as_secs_f64())
    .fetch_optional(pool)
    .await?;
    Ok(taken.is_some())
}

/// Gives every lease of `holder` up (a stopping worker), so another worker takes over at once.
pub async fn release_all(pool: &PgPool, holder: &str) -> Result<u64, StoreError> {
    let done =
        sqlx::query("DELETE FROM collector_leases WHERE holder = $1").bind(holder).execute(pool).await?;
    Ok(done.rows_affected())
}

/// The stored cursor of `target`, if any.
pub async fn load_cursor<T: DeserializeOwned>(
    pool: &PgPool,
    target: &Target,
) -> Result<Option<T>, StoreError> {
    let value: Option<serde_json::Value> = sqlx::query_scalar(
        "SELECT cursor FROM collector_cursors WHERE account_id = $1 AND source = $2 AND region = $3",
    )
    .bind(&target.account_id)
    .bind(target.source)
    .bind(&target.region)
    .fetch_optional(pool)
    .await?;
    value
        .map(|v| {
            serde_json::from_value(v).map_err(|e| StoreError::Corrupt(format!("cursor of {target}: {e}")))
        })
        .transpose()
}

/// Stores the cursor of `target`, only while `holder` holds a live lease on it (else Fenced), and
/// extends that lease by `ttl`: a long pass keeps its lease as long as it makes progress.
pub async fn save_cursor<T: Serialize>(
    pool: &PgPool,
    target: &Target,
    holder: &str,
    ttl: Duration,
    cursor: &T,
) -> Result<(), StoreError> {
    let value =
        serde_json::to_value(cursor).map_err(|e| StoreError::Corrupt(format!("cursor of {target}: {e}")))?;
    let done = sqlx::query(
        "WITH lease AS (
           UPDATE collector_leases SET expires_at = now() + make_interval(secs => $6)
           WHERE account_id = $1 AND source = $2 AND region = $3 AND holder = $5 AND expires_at > now()
           RETURNING 1)
         INSERT INTO collector_cursors (account_id, source, region, cursor, updated_at)
         SELECT $1, $2, $3, $4, now() WHERE EXISTS (SELECT 1 FROM lease)
         ON CONFLICT (account_id, source, region) DO UPDATE SET cursor = EXCLUDED.cursor, updated_at = now()",
    )
    .bind(&target.account_id)
    .bind(target.source)
    .bind(&target.region)
    .bind(value)
    .bind(holder)
    .bind(ttl.as_secs_f64())
    .execute(pool)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::Fenced(format!("collector lease of {target} lost")));
    }
    Ok(())
}
