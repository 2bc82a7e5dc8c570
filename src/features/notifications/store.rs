//! Delivery notifications in the outbox: a row per delivered log file of a trail with an SNS
//! topic, written with the file's record (the commit hook), claimed by notifiers on every worker
//! (SKIP LOCKED), deleted once published; and the notification outcome shown by GetTrailStatus.

use sqlx::PgConnection;

use crate::features::outbox::{self, Kind, NewRow};
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
    let has_topic: Option<bool> = sqlx::query_scalar("SELECT sns_topic_name <> '' FROM trails WHERE id = $1")
        .bind(trail_id)
        .fetch_optional(&mut *conn)
        .await?;
    if has_topic != Some(true) {
        return Ok(());
    }
    let row = NewRow {
        dedupe_key: format!("{trail_id}:{bucket}:{object_key}"),
        payload: serde_json::json!({"trail_id": trail_id, "bucket": bucket, "object_key": object_key}),
        secret: None,
    };
    outbox::enqueue(conn, Kind::Notification, &[row]).await
}

/// A notification due, with its trail's topic setting as it is now (None: the trail is gone).
#[derive(Debug, Clone)]
pub struct PendingNotification {
    pub id: i64,
    pub trail_id: i64,
    pub bucket: String,
    pub object_key: String,
    /// Failed attempts so far.
    pub attempts: i32,
    pub trail: Option<TrailTopic>,
}

/// Where a trail's notifications go.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TrailTopic {
    pub sns_topic_name: String,
    pub home_region: String,
    pub owner_account_id: String,
}

#[derive(serde::Deserialize)]
struct Payload {
    trail_id: i64,
    bucket: String,
    object_key: String,
}

/// Locks up to `limit` due notifications until the transaction ends; other notifiers skip them.
pub async fn claim_due(conn: &mut PgConnection, limit: i64) -> Result<Vec<PendingNotification>, StoreError> {
    let mut pending = Vec::new();
    for due in outbox::claim_due(conn, Kind::Notification, limit).await? {
        let payload: Payload = serde_json::from_value(due.payload)
            .map_err(|e| StoreError::Corrupt(format!("notification {} in the outbox: {e}", due.id)))?;
        let trail = sqlx::query_as::<_, TrailTopic>(
            "SELECT sns_topic_name, home_region, owner_account_id FROM trails WHERE id = $1",
        )
        .bind(payload.trail_id)
        .fetch_optional(&mut *conn)
        .await?;
        pending.push(PendingNotification {
            id: due.id,
            trail_id: payload.trail_id,
            bucket: payload.bucket,
            object_key: payload.object_key,
            attempts: due.attempts,
            trail,
        });
    }
    Ok(pending)
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
