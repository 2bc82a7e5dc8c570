//! Staging: events accepted and not yet released, per shard, with dedupe on (recipientAccountId,
//! eventID). The narrow seam between ingest and delivery: Postgres by default ([`postgres`]); a
//! distributed log when one database cannot take the write rate ([`jetstream`]). [`admit`] is the one way in.

pub mod admit;
pub mod group;
pub mod jetstream;
pub mod postgres;

pub use postgres::PgStaging;

use chrono::{DateTime, Utc};

use crate::model::shard::{ShardId, Source};
use crate::model::{AccountId, Region};
use crate::store::StoreError;

/// An event accepted for staging.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub account_id: AccountId,
    pub region: Region,
    pub source: Source,
    pub event_id: String,
    /// The record JSON, exactly as it will be delivered.
    pub record: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageOutcome {
    Accepted,
    /// Its identity was seen within the dedupe horizon: dropped, the first copy wins.
    Duplicate,
}

/// A staged event as the worker reads it.
#[derive(Debug, Clone)]
pub struct StagedEvent {
    pub seq: i64,
    pub received_at: DateTime<Utc>,
    pub record: String,
}

/// Staged events of one shard, for the backlog.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ShardBacklog {
    pub account_id: String,
    pub region: String,
    pub source: String,
    pub events: i64,
    pub oldest: DateTime<Utc>,
}

/// What is staged (acknowledged, not yet released by every trail and tap).
#[derive(Debug, Clone, Default)]
pub struct StagedBacklog {
    pub events: i64,
    pub oldest: Option<DateTime<Utc>>,
    /// Events received before the overdue threshold.
    pub overdue_events: i64,
    /// The shards holding them, most overdue first (at most [`OVERDUE_SHARDS_LISTED`]).
    pub overdue_shards: Vec<ShardBacklog>,
}

/// Shards a backlog lists at most.
pub const OVERDUE_SHARDS_LISTED: i64 = 20;

/// The narrow seam between ingest and delivery.
#[async_trait::async_trait]
pub trait Staging: Send + Sync {
    /// Durably stages `events` (in one transaction: all or nothing) and tells, for each, whether it
    /// was accepted or a duplicate. Rejected counts are recorded with the accepted ones.
    async fn stage(
        &self,
        events: Vec<Incoming>,
        rejected: &[AccountId],
    ) -> Result<Vec<StageOutcome>, StoreError>;
    /// Staged events of a shard with `seq > after_seq`, in order, at most `limit`.
    async fn read(
        &self,
        shard_id: ShardId,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<StagedEvent>, StoreError>;
    /// [`Staging::read`] for many shards at once: (shard, after seq, limit) each; the events of
    /// each, in the same order.
    async fn read_many(&self, reads: &[(ShardId, i64, i64)]) -> Result<Vec<Vec<StagedEvent>>, StoreError> {
        let mut read = Vec::with_capacity(reads.len());
        for (shard, after, limit) in reads {
            read.push(self.read(*shard, *after, *limit).await?);
        }
        Ok(read)
    }
    /// Forgets events with `seq <= through_seq` received before `before`.
    async fn release(
        &self,
        shard_id: ShardId,
        through_seq: i64,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
    /// [`Staging::release`] for many shards: (shard, through seq) each.
    async fn release_many(
        &self,
        shards: &[(ShardId, i64)],
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut released = 0;
        for (shard, through) in shards {
            released += self.release(*shard, *through, before).await?;
        }
        Ok(released)
    }
    /// When the first staged event of a shard with `seq > after_seq` was received (None: none is).
    async fn first_after(
        &self,
        shard_id: ShardId,
        after_seq: i64,
    ) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// What is staged, of one account or all; events received before `overdue_before` are overdue.
    async fn backlog(
        &self,
        account: Option<&AccountId>,
        overdue_before: DateTime<Utc>,
    ) -> Result<StagedBacklog, StoreError>;
}
