//! Delivery notifications in the outbox: a row per delivered log file of a trail with an SNS
//! topic, written with the file's record (the commit hook), claimed by notifiers on every worker
//! (SKIP LOCKED), deleted once published; and the notification outcome shown by GetTrailStatus.

use sqlx::PgConnection;

use crate::features::outbox::{self, Kind, NewRow};
use crate::pipeline::checkpoint::RecordedFile;
use crate::store::StoreError;

/// Queues the notification of each delivered file whose trail has a topic. Called in the
/// transaction that records the files, only with files whose rows are new: a retried delivery
/// never queues a second one.
pub async fn enqueue(conn: &mut PgConnection, files: &[RecordedFile<'_>]) -> Result<(), StoreError> {
    let mut trails: Vec<i64> = files.iter().map(|f| f.trail_id).collect();
    trails.sort_unstable();
    trails.dedup();
    let with_topic: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM trails WHERE id = ANY($1) AND sns_topic_name <> ''")
            .bind(&trails)
            .fetch_all(&mut *conn)
            .await?;
    let rows: Vec<NewRow> = files
        .iter()
        .filter(|f| with_topic.contains(&f.trail_id))
        .map(|f| NewRow {
            dedupe_key: format!("{}:{}:{}", f.trail_id, f.bucket, f.object_key),
            payload: serde_json::json!({"trail_id": f.trail_id, "bucket": f.bucket, "object_key": f.object_key}),
            secret: None,
        })
        .collect();
    outbox::enqueue(conn, Kind::Notification, &rows).await
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
