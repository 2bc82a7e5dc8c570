//! The delivery notification outbox: a row per delivered log file of a trail with an SNS topic,
//! written with the file's record (`delivery::commit`), claimed by notifiers on every worker
//! (SKIP LOCKED), deleted once published; and the notification outcome shown by GetTrailStatus.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::store::StoreError;

/// Queues the notification of a delivered file when its trail has a topic. Called in the
/// transaction that records the file, only when the file's row is new: a retried delivery never
/// queues a second one.
pub async fn enqueue(
    conn: &mut PgConnection,
    trail_id: i64,
    bucket: &str,
    object_key: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO notification_outbox (trail_id, bucket, object_key)
         SELECT id, $2, $3 FROM trails WHERE id = $1 AND sns_topic_name <> ''
         ON CONFLICT (trail_id, bucket, object_key) DO NOTHING",
    )
    .bind(trail_id)
    .bind(bucket)
    .bind(object_key)
    .execute(conn)
    .await?;
    Ok(())
}

/// A notification due, with its trail's topic setting as it is now.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PendingNotification {
    pub id: i64,
    pub trail_id: i64,
    pub bucket: String,
    pub object_key: String,
    /// Failed attempts so far.
    pub attempts: i32,
    pub sns_topic_name: String,
    pub home_region: String,
    pub owner_account_id: String,
}

/// Locks up to `limit` due notifications until the transaction ends; other notifiers skip them.
pub async fn claim_due(conn: &mut PgConnection, limit: i64) -> Result<Vec<PendingNotification>, StoreError> {
    Ok(sqlx::query_as::<_, PendingNotification>(
        "SELECT o.id, o.trail_id, o.bucket, o.object_key, o.attempts, t.sns_topic_name, t.home_region,
                t.owner_account_id
         FROM notification_outbox o JOIN trails t ON t.id = o.trail_id
         WHERE o.next_attempt_at <= now() ORDER BY o.next_attempt_at, o.id LIMIT $1
         FOR UPDATE OF o SKIP LOCKED",
    )
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// Removes a notification: published, or its trail no longer has a topic.
pub async fn done(conn: &mut PgConnection, id: i64) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM notification_outbox WHERE id = $1").bind(id).execute(conn).await?;
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
        "UPDATE notification_outbox SET attempts = attempts + 1, next_attempt_at = $2, last_error = $3
         WHERE id = $1",
    )
    .bind(id)
    .bind(next_attempt_at)
    .bind(error)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records a notification outcome in the trail's status: `None` a success (now; clears the
/// error), `Some` a failure (kept until the next success).
pub async fn record_outcome(
    conn: &mut PgConnection,
    trail_id: i64,
    error: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO trail_delivery_status (trail_id, latest_notification_time, latest_notification_error)
         SELECT $1, CASE WHEN $2::text IS NULL THEN now() END, COALESCE($2, '')
         WHERE EXISTS (SELECT 1 FROM trails WHERE id = $1)
         ON CONFLICT (trail_id) DO UPDATE SET
             latest_notification_time = CASE WHEN $2::text IS NULL THEN now()
                 ELSE trail_delivery_status.latest_notification_time END,
             latest_notification_error = COALESCE($2, '')",
    )
    .bind(trail_id)
    .bind(error)
    .execute(conn)
    .await?;
    Ok(())
}
