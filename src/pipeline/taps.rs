//! Taps: consumers that see every staged event of a shard once, beside trail delivery — the
//! event-history index, alert rules, Insights counters, the CloudWatch Logs stream.
//!
//! A tap keeps a durable cursor per (shard, key) in `tap_cursors`. The worker hands it the events
//! after that cursor in sequence order, together with an open transaction; the tap's writes and the
//! cursor's advance commit together, after the lease's fencing generation was checked. So a tap
//! that writes only to Postgres sees each event exactly once; a tap that also calls out (a webhook,
//! CloudWatch Logs) repeats the events of a failed call, at least once. Staged events are released
//! only when every trail cursor and every tap cursor passed them.

use chrono::{DateTime, Utc};

use super::route::Snapshot;
use crate::model::record::RecordView;
use crate::model::shard::ShardInfo;
use crate::store::StoreError;

/// A staged event as a tap sees it.
#[derive(Debug, Clone, Copy)]
pub struct TapEvent<'a> {
    pub seq: i64,
    pub received_at: DateTime<Utc>,
    /// The record JSON exactly as staged (and delivered).
    pub record: &'a str,
    pub view: &'a RecordView,
}

/// What a tap is told about the events it gets.
pub struct TapContext<'a> {
    pub shard: &'a ShardInfo,
    /// Control-plane state loaded after every event handed over arrived.
    pub snapshot: &'a Snapshot,
}

/// The events of one key over one shard, in a call that covers many shards.
pub struct TapBatch<'a> {
    pub key: &'a str,
    pub context: TapContext<'a>,
    pub events: &'a [TapEvent<'a>],
}

#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// Postgres failed: the transaction is rolled back and the events come again.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Something outside failed (a network call): the events come again after a backoff.
    #[error("{0}")]
    External(String),
}

impl TapError {
    /// Whether the events themselves are refused (see [`StoreError::is_bad_data`]).
    pub fn is_bad_data(&self) -> bool {
        matches!(self, Self::Store(error) if error.is_bad_data())
    }
}

impl From<sqlx::Error> for TapError {
    fn from(error: sqlx::Error) -> Self {
        Self::Store(StoreError::Database(error))
    }
}

#[async_trait::async_trait]
pub trait Tap: Send + Sync {
    /// Stable name, for logs; also the only cursor key unless [`Tap::keys`] says otherwise.
    fn name(&self) -> &'static str;

    /// The cursor keys this tap keeps for a shard: one per independent consumer (e.g. one per
    /// trail streaming to CloudWatch Logs, so one failing destination does not hold the others).
    /// A key that disappears stops holding events back; a new key starts at the oldest event
    /// still staged. Keys start with the tap's name.
    fn keys(&self, _shard: &ShardInfo, _snapshot: &Snapshot) -> Vec<String> {
        vec![self.name().to_owned()]
    }

    /// Called before each [`Tap::consume`], outside any transaction: the place to read from the pool
    /// what `consume` needs (e.g. a cache of rules). An error skips this round of the key, with backoff.
    async fn refresh(&self) -> Result<(), TapError> {
        Ok(())
    }

    /// Consumes `events` (non-empty, in sequence order, all after the key's cursor). On `Ok` the
    /// cursor moves past the last one in the same transaction; on `Err` nothing is kept.
    ///
    /// Postgres only through `tx`: the worker holds one connection per shard it processes, so a
    /// second connection taken from the pool here can wait for ever on a busy pool.
    async fn consume(
        &self,
        key: &str,
        context: &TapContext<'_>,
        events: &[TapEvent<'_>],
        tx: &mut sqlx::PgConnection,
    ) -> Result<(), TapError>;

    /// Consumes the events of many shards (and keys) in one transaction: the worker's group rounds
    /// hand a tap every shard of the group at once. All or nothing, like [`Tap::consume`]; batches
    /// may be empty (only the cursor moves). The default calls [`Tap::consume`] per batch; a tap
    /// that writes rows does better with one statement for all.
    async fn consume_many(
        &self,
        batches: &[TapBatch<'_>],
        tx: &mut sqlx::PgConnection,
    ) -> Result<(), TapError> {
        for batch in batches.iter().filter(|b| !b.events.is_empty()) {
            self.consume(batch.key, &batch.context, batch.events, tx).await?;
        }
        Ok(())
    }

    /// Called after a failed [`Tap::consume`] once its transaction is rolled back (e.g. to record
    /// the failure where users see it).
    async fn failed(&self, _key: &str, _error: &TapError) {}
}
