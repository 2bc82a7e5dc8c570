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
    async fn files_recorded(
        &self,
        tx: &mut sqlx::PgConnection,
        files: &[RecordedFile<'_>],
    ) -> Result<(), StoreError> {
        store::enqueue(tx, files).await
    }
}
