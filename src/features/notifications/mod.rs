//! SNS delivery notifications: an outbox row per delivered log file of a trail with a topic,
//! queued in the transaction that records the file, published by the notifier every worker runs.

pub mod notifier;
pub mod store;

use crate::pipeline::checkpoint::{CommitHook, RecordedFile};
use crate::store::StoreError;

/// Queues the notification of each delivered file of a trail with an SNS topic, once.
pub struct NotificationHook;

#[async_trait::async_trait]
impl CommitHook for NotificationHook {
    async fn file_recorded(
        &self,
        tx: &mut sqlx::PgConnection,
        file: RecordedFile<'_>,
    ) -> Result<(), StoreError> {
        store::enqueue(tx, file.trail_id, file.bucket, file.object_key).await
    }
}
