//! Read: a shard's staged events, parsed once, held in order until every trail covering the shard
//! has judged them. Memory stays bounded however many shards a worker holds: the worker splits
//! its read limit over them (at least [`MIN_PER_SHARD`] each).

use std::collections::VecDeque;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::staging::{StagedEvent, Staging};
use crate::model::record::RecordView;
use crate::model::shard::ShardId;
use crate::store::StoreError;

/// Events a shard may buffer however many shards the worker holds.
pub const MIN_PER_SHARD: i64 = 2_000;

/// One staged event, parsed.
#[derive(Debug, Clone)]
pub struct Buffered {
    pub seq: i64,
    pub received_at: DateTime<Utc>,
    /// The record exactly as staged (and delivered).
    pub record: Arc<str>,
    /// None: the staged record no longer parses (cannot happen for records ingest accepted).
    pub view: Option<RecordView>,
}

/// Staged events of `shard` after `after_seq`, in order, parsed off the async runtime.
pub async fn read(
    staging: &dyn Staging,
    shard: ShardId,
    after_seq: i64,
    limit: i64,
) -> Result<Vec<Buffered>, StoreError> {
    let fresh = staging.read(shard, after_seq, limit).await?;
    let mut parsed = parse(vec![(shard, fresh)]).await?;
    Ok(parsed.pop().unwrap_or_default())
}

/// [`read`] for many shards: (shard, after seq, limit) each, in one call to staging.
pub async fn read_many(
    staging: &dyn Staging,
    reads: &[(ShardId, i64, i64)],
) -> Result<Vec<Vec<Buffered>>, StoreError> {
    let fresh = staging.read_many(reads).await?;
    parse(reads.iter().map(|r| r.0).zip(fresh).collect()).await
}

/// Parses staged events, off the async runtime.
async fn parse(read: Vec<(ShardId, Vec<StagedEvent>)>) -> Result<Vec<Vec<Buffered>>, StoreError> {
    tokio::task::spawn_blocking(move || {
        read.into_iter()
            .map(|(shard, events)| {
                events
                    .into_iter()
                    .map(|e| {
                        let view = RecordView::parse(&e.record).ok();
                        if view.is_none() {
                            tracing::error!(shard = %shard, seq = e.seq, "staged record does not parse; skipped");
                        }
                        Buffered { seq: e.seq, received_at: e.received_at, record: Arc::from(e.record), view }
                    })
                    .collect()
            })
            .collect()
    })
    .await
    .map_err(|e| StoreError::Corrupt(format!("parsing panicked: {e}")))
}

/// A shard's buffer.
#[derive(Debug, Default)]
pub struct ShardBuffer {
    events: VecDeque<Buffered>,
    /// Highest seq read so far.
    loaded_through: i64,
    /// Events it may hold; a full buffer cuts files early so a busy shard keeps moving.
    capacity: i64,
}

impl ShardBuffer {
    pub fn new() -> Self {
        Self { events: VecDeque::new(), loaded_through: 0, capacity: MIN_PER_SHARD }
    }

    pub fn loaded_through(&self) -> i64 {
        self.loaded_through
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.events.len() as i64 >= self.capacity
    }

    pub fn first_seq(&self) -> Option<i64> {
        self.events.front().map(|e| e.seq)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Buffered> {
        self.events.iter()
    }

    /// Takes out the events every consumer holding the buffer has passed.
    pub fn pop_through(&mut self, floor: i64) -> Vec<Buffered> {
        let mut popped = Vec::new();
        while self.events.front().is_some_and(|e| e.seq <= floor) {
            popped.extend(self.events.pop_front());
        }
        popped
    }

    /// Takes out the events up to `through`, wherever they stand.
    pub fn drop_through(&mut self, through: i64) -> Vec<Buffered> {
        let (gone, kept): (Vec<Buffered>, Vec<Buffered>) =
            self.events.drain(..).partition(|e| e.seq <= through);
        self.events = kept.into();
        gone
    }

    /// Reads more once there is room: events after what was read (and after `floor`, what every
    /// consumer holding the buffer has passed), up to `capacity`. With `keep_all`, events at or
    /// below the floor are kept too (nothing holds them but the taps).
    pub async fn fill(
        &mut self,
        staging: &dyn Staging,
        shard: ShardId,
        floor: Option<i64>,
        capacity: i64,
        keep_all: bool,
    ) -> Result<(), StoreError> {
        if let Some((after, limit)) = self.wants(floor, capacity) {
            let events = read(staging, shard, after, limit).await?;
            self.take(events, floor, keep_all);
        }
        Ok(())
    }

    /// What [`ShardBuffer::fill`] reads: (after seq, limit), None when the buffer is full. The
    /// caller reads it (maybe with other shards' reads) and hands the events to [`ShardBuffer::take`].
    pub fn wants(&mut self, floor: Option<i64>, capacity: i64) -> Option<(i64, i64)> {
        self.capacity = capacity;
        if self.events.len() as i64 >= capacity {
            return None;
        }
        let read_from = self.loaded_through.max(floor.unwrap_or(self.loaded_through));
        // Everything through `read_from` is read or passed by every consumer: a shard whose
        // events were all delivered before it was claimed needs no read again until its head moves.
        self.loaded_through = read_from;
        Some((read_from, capacity))
    }

    /// Takes in what was read for [`ShardBuffer::wants`].
    pub fn take(&mut self, events: Vec<Buffered>, floor: Option<i64>, keep_all: bool) {
        let floor = floor.unwrap_or(i64::MAX);
        for event in events {
            self.loaded_through = self.loaded_through.max(event.seq);
            if event.seq > floor || keep_all {
                self.events.push_back(event);
            }
        }
    }

    /// Forgets everything (the durable progress is read again).
    pub fn clear(&mut self) {
        self.events.clear();
        self.loaded_through = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: i64) -> Buffered {
        Buffered { seq, received_at: Utc::now(), record: Arc::from("{}"), view: None }
    }

    #[test]
    fn popping_and_dropping_keep_order() {
        let mut buffer = ShardBuffer::new();
        buffer.events.extend([event(1), event(2), event(3), event(5)]);
        let popped: Vec<i64> = buffer.pop_through(2).iter().map(|e| e.seq).collect();
        assert_eq!(popped, vec![1, 2]);
        assert_eq!(buffer.first_seq(), Some(3));
        let dropped: Vec<i64> = buffer.drop_through(4).iter().map(|e| e.seq).collect();
        assert_eq!(dropped, vec![3]);
        assert_eq!(buffer.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![5]);
    }
}
