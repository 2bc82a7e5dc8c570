//! Usage and cost: events and bytes delivered per trail, account, period and event category,
//! added in the transaction that records each delivered file.

pub mod store;

use crate::pipeline::checkpoint::{CommitHook, RecordedFile};
use crate::store::StoreError;

/// Counts each delivered file into its trail's usage, once.
pub struct UsageHook;

#[async_trait::async_trait]
impl CommitHook for UsageHook {
    async fn files_recorded(
        &self,
        tx: &mut sqlx::PgConnection,
        files: &[RecordedFile<'_>],
    ) -> Result<(), StoreError> {
        store::add(tx, files).await
    }
}
