//! The outbox: what a worker sends after a transaction commits (alerts, SNS notifications), one
//! table keyed by kind. A row is written in the transaction that decides it must be sent (a repeat
//! of the same decision is one row), claimed by the kind's sender on any worker (SKIP LOCKED), and
//! deleted once sent or rescheduled after a failure. [`drain`] is the loop every sender runs.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use crate::store::StoreError;

/// What an outbox row is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Alert,
    Notification,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alert => "alert",
            Self::Notification => "notification",
        }
    }
}

/// One row to write.
#[derive(Debug, Clone)]
pub struct NewRow {
    /// Makes a repeated decision one row.
    pub dedupe_key: String,
    pub payload: serde_json::Value,
    pub secret: Option<Vec<u8>>,
}

/// Writes rows of `kind` in the caller's transaction; a repeat of a (kind, dedupe key) is ignored.
pub async fn enqueue(conn: &mut PgConnection, kind: Kind, rows: &[NewRow]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let keys: Vec<&str> = rows.iter().map(|r| r.dedupe_key.as_str()).collect();
    let payloads: Vec<&serde_json::Value> = rows.iter().map(|r| &r.payload).collect();
    // bytea through unnest as hex text, decoded in SQL.
    let secrets: Vec<Option<String>> = rows.iter().map(|r| r.secret.as_ref().map(hex::encode)).collect();
    sqlx::query(
        "INSERT INTO outbox (kind, dedupe_key, payload, secret)
         SELECT $1, k, p, decode(s, 'hex') FROM unnest($2::text[], $3::jsonb[], $4::text[]) AS r(k, p, s)
         ON CONFLICT (kind, dedupe_key) DO NOTHING",
    )
    .bind(kind.as_str())
    .bind(&keys)
    .bind(&payloads)
    .bind(&secrets)
    .execute(conn)
    .await?;
    Ok(())
}

/// A row due for sending.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Due {
    pub id: i64,
    pub payload: serde_json::Value,
    pub secret: Option<Vec<u8>>,
    /// Failed attempts so far.
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
}

/// Locks up to `limit` due rows of `kind` until the transaction ends; other senders skip them.
pub async fn claim_due(conn: &mut PgConnection, kind: Kind, limit: i64) -> Result<Vec<Due>, StoreError> {
    Ok(sqlx::query_as::<_, Due>(
        "SELECT id, payload, secret, attempts, created_at FROM outbox
         WHERE kind = $1 AND next_attempt_at <= now() ORDER BY next_attempt_at, id LIMIT $2
         FOR UPDATE SKIP LOCKED",
    )
    .bind(kind.as_str())
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// Removes a row: sent, or no longer to be sent.
pub async fn done(conn: &mut PgConnection, id: i64) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM outbox WHERE id = $1").bind(id).execute(conn).await?;
    Ok(())
}

/// Records a failed attempt and when to try again.
pub async fn retry_later(
    conn: &mut PgConnection,
    id: i64,
    next_attempt_at: DateTime<Utc>,
    error: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $2, last_error = $3 WHERE id = $1",
    )
    .bind(id)
    .bind(next_attempt_at)
    .bind(error)
    .execute(conn)
    .await?;
    Ok(())
}

/// Rows of `kind` waiting (for status and benchmarks).
pub async fn count(pool: &PgPool, kind: Kind) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM outbox WHERE kind = $1")
        .bind(kind.as_str())
        .fetch_one(pool)
        .await?)
}

/// Runs `pass` (which returns how many rows it handled) until `shutdown` resolves. A failed pass
/// is logged as `what` and retried after the pause.
pub async fn drain<F, Fut>(
    what: &'static str,
    poll_interval: Duration,
    shutdown: impl Future<Output = ()>,
    mut pass: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<usize, StoreError>>,
{
    tokio::pin!(shutdown);
    loop {
        let handled = match pass().await {
            Ok(handled) => handled,
            Err(error) => {
                tracing::warn!(%error, outbox = what, "outbox pass failed");
                0
            }
        };
        if handled > 0 {
            // More may be due right away; still stop promptly when asked.
            if futures::FutureExt::now_or_never(&mut shutdown).is_some() {
                break;
            }
            continue;
        }
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(poll_interval) => {}
        }
    }
}
