//! Staging on NATS JetStream, for organizations whose write rate one Postgres cannot take: the
//! events themselves (the bytes, the bulk of the per-event work) live in JetStream streams;
//! Postgres keeps only what is small per event (the dedupe identity, 16 bytes and an index entry)
//! and what is per shard or per group (ids, leases, heads, the committed groups).
//!
//! Shards map onto a bounded set of streams, the partitions: shard `id` is subject
//! `<prefix>.<p>.<id>` of stream `<prefix>_<p>`, `p = id mod partitions`. Each group of calls
//! writes one chunk per shard it touches (the records, lz4-packed, like the Postgres backend's
//! chunks), so JetStream stores and syncs one message per shard and group, not one per event. An
//! event's sequence number is its chunk's stream sequence number times 2^16 plus its place in the
//! chunk: increasing per shard, with gaps.
//!
//! A group is acked once JetStream acked its chunks and the group's Postgres transaction
//! (identities, heads, the group's id, counters) committed. JetStream syncs before acking only
//! when the server runs with `jetstream { sync_interval: always }`. A crash between the two
//! leaves chunks that no caller was acked for and whose group is not in `staged_groups`: readers
//! skip them (the caller's retry stages the events again, once) and they leave with the next
//! release of their shard. Readers read only up to the shard's head in Postgres, so a chunk whose
//! group is still committing is neither read nor skipped.

use std::collections::HashSet;
use std::time::Duration;

use async_nats::jetstream::{
    self, context::PublishAckFuture, message::PublishMessage, message::StreamMessage, stream,
};
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt;
use jetstream_extra::batch_fetch::{BatchFetchErrorKind, BatchFetchExt};
use sqlx::PgPool;

use super::group::{Call, GroupCommit};
use super::postgres::{Append, ByShard, create_shards, notify_staged, pack, shard_ids, start_group, unpack};
use super::{
    Incoming, OVERDUE_SHARDS_LISTED, ShardBacklog, StageOutcome, StagedBacklog, StagedEvent, Staging,
};
use crate::model::AccountId;
use crate::model::shard::ShardId;
use crate::store::StoreError;

/// How the JetStream backend is reached and laid out (see `node::config` for the documentation).
#[derive(Debug, Clone)]
pub struct JetStreamSettings {
    pub url: String,
    pub partitions: u32,
    /// Stream names are `<prefix>_<p>`, subjects `<prefix>.<p>.<shard>`.
    pub prefix: String,
    pub duplicate_window: Duration,
    /// Events older than this leave the streams, delivered or not (`staged_retention_days`).
    pub max_age: Duration,
    pub replicas: usize,
}

/// When staging accepted a chunk's events (the group transaction's time, as the Postgres
/// backend's `received_at`): release and Insights compare it with Postgres's clock.
const RECEIVED_AT: &str = "Orgtrail-Received-At";
/// The group a chunk belongs to (`staged_groups`).
const GROUP: &str = "Orgtrail-Group";

/// Bits of an event's sequence number that number it within its chunk.
const PLACE_BITS: u32 = 16;
/// Events in one chunk at most.
const CHUNK_EVENTS: usize = 1 << PLACE_BITS;
/// Uncompressed record bytes in one chunk at most (NATS refuses messages over 1 MiB by default;
/// packed JSON is several times smaller than this).
const CHUNK_BYTES: usize = 512 * 1024;

/// Chunks read in one batched request at most.
const READ_BATCH: usize = 64;

/// An event's sequence number: its chunk's stream sequence and its place in the chunk.
fn event_seq(chunk: u64, place: usize) -> i64 {
    ((chunk as i64) << PLACE_BITS) | place as i64
}

/// The chunk of an event's sequence number and its place in it.
fn chunk_of(seq: i64) -> (u64, usize) {
    let seq = seq.max(0);
    ((seq >> PLACE_BITS) as u64, (seq & ((1 << PLACE_BITS) - 1)) as usize)
}

#[derive(Clone)]
struct Log {
    js: jetstream::Context,
    streams: Vec<stream::Stream>,
    prefix: String,
}

impl Log {
    fn partition(&self, shard: ShardId) -> usize {
        shard.0.rem_euclid(self.streams.len() as i64) as usize
    }

    fn stream_name(&self, shard: ShardId) -> String {
        format!("{}_{}", self.prefix, self.partition(shard))
    }

    fn subject(&self, shard: ShardId) -> String {
        format!("{}.{}.{}", self.prefix, self.partition(shard), shard)
    }

    fn stream(&self, shard: ShardId) -> &stream::Stream {
        &self.streams[self.partition(shard)]
    }
}

fn log_error(what: &str) -> impl Fn(&dyn std::fmt::Display) -> StoreError + '_ {
    move |error| StoreError::Log(format!("{what}: {error}"))
}

/// One chunk as read: its events in order, or none when its group never committed.
struct Chunk {
    seq: u64,
    received_at: DateTime<Utc>,
    group: Option<uuid::Uuid>,
    records: Vec<String>,
}

impl Chunk {
    fn from_message(message: &StreamMessage) -> Result<Self, StoreError> {
        let header = |name: &str| message.headers.get(name).map(|v| v.as_str().to_owned());
        let received_at = header(RECEIVED_AT)
            .and_then(|at| DateTime::parse_from_rfc3339(&at).ok())
            .map(|at| at.with_timezone(&Utc))
            .unwrap_or_else(|| {
                DateTime::from_timestamp(message.time.unix_timestamp(), message.time.nanosecond())
                    .unwrap_or_default()
            });
        Ok(Self {
            seq: message.sequence,
            received_at,
            group: header(GROUP).and_then(|g| uuid::Uuid::parse_str(&g).ok()),
            records: unpack(&message.payload)?,
        })
    }

    fn last_seq(&self) -> i64 {
        event_seq(self.seq, self.records.len().saturating_sub(1))
    }
}

pub struct JetStreamStaging {
    pool: PgPool,
    group: GroupCommit,
    log: Log,
}

impl JetStreamStaging {
    /// Connects to the server of `settings` and creates the partition streams that are missing
    /// (existing ones are left as they are: their layout was fixed when they were made).
    pub async fn connect(pool: PgPool, settings: &JetStreamSettings) -> Result<Self, StoreError> {
        if settings.partitions == 0 {
            return Err(StoreError::Log("jetstream_partitions must be at least 1".into()));
        }
        let client = async_nats::ConnectOptions::new()
            .name("orgtrail")
            .connect(settings.url.as_str())
            .await
            .map_err(|e| log_error("connecting")(&e))?;
        let js = jetstream::new(client);
        let mut streams = Vec::with_capacity(settings.partitions as usize);
        for p in 0..settings.partitions {
            let config = stream::Config {
                name: format!("{}_{p}", settings.prefix),
                subjects: vec![format!("{}.{p}.*", settings.prefix)],
                storage: stream::StorageType::File,
                retention: stream::RetentionPolicy::Limits,
                max_age: settings.max_age,
                duplicate_window: settings.duplicate_window,
                allow_direct: true,
                num_replicas: settings.replicas.max(1),
                ..Default::default()
            };
            let stream =
                js.get_or_create_stream(config).await.map_err(|e| log_error("creating streams")(&e))?;
            streams.push(stream);
        }
        let log = Log { js, streams, prefix: settings.prefix.clone() };
        let group = start_group(pool.clone(), Publisher { log: log.clone() });
        Ok(Self { pool, group, log })
    }

    /// The last event sequence number committed in `shard` (0: none).
    async fn head(&self, shard: ShardId) -> Result<i64, StoreError> {
        let head: Option<i64> = sqlx::query_scalar("SELECT next_seq - 1 FROM shards WHERE id = $1")
            .bind(shard)
            .fetch_optional(&self.pool)
            .await?;
        Ok(head.unwrap_or(0))
    }

    /// Committed chunks of `shard` from stream sequence `from` on, up to the head, in order; at
    /// most about `events` events (whole chunks).
    async fn chunks(&self, shard: ShardId, from: u64, events: usize) -> Result<Vec<Chunk>, StoreError> {
        let head = self.head(shard).await?;
        let (head_chunk, _) = chunk_of(head);
        let stream = self.log.stream_name(shard);
        let subject = self.log.subject(shard);
        let mut chunks = Vec::new();
        let mut held = 0;
        let mut next = from.max(1);
        'reading: while held < events && next <= head_chunk {
            let mut batch = match self
                .log
                .js
                .get_batch(&stream, READ_BATCH)
                .subject(subject.clone())
                .sequence(next)
                .send()
                .await
            {
                Ok(batch) => batch,
                Err(error) if error.kind() == BatchFetchErrorKind::NoMessages => break,
                Err(error) => return Err(log_error("reading")(&error)),
            };
            let mut got = 0;
            while let Some(message) = batch.next().await {
                let message = match message {
                    Ok(message) => message,
                    Err(error) if error.kind() == BatchFetchErrorKind::NoMessages => break,
                    Err(error) => return Err(log_error("reading")(&error)),
                };
                got += 1;
                next = message.sequence + 1;
                if message.sequence > head_chunk {
                    // Its group is still committing (or never will): not ours to judge yet.
                    break 'reading;
                }
                let chunk = Chunk::from_message(&message)?;
                held += chunk.records.len();
                chunks.push(chunk);
            }
            if got < READ_BATCH {
                break;
            }
        }
        self.keep_committed(&mut chunks).await?;
        Ok(chunks)
    }

    /// Drops the records of chunks whose group never committed (they stay as empty chunks, so
    /// that their place is known).
    async fn keep_committed(&self, chunks: &mut [Chunk]) -> Result<(), StoreError> {
        if chunks.is_empty() {
            return Ok(());
        }
        let groups: Vec<uuid::Uuid> =
            chunks.iter().filter_map(|c| c.group).collect::<HashSet<_>>().into_iter().collect();
        let committed: HashSet<uuid::Uuid> =
            sqlx::query_scalar("SELECT id FROM staged_groups WHERE id = ANY($1)")
                .bind(&groups)
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .collect();
        for chunk in chunks.iter_mut() {
            if !chunk.group.is_some_and(|g| committed.contains(&g)) {
                tracing::warn!(
                    seq = chunk.seq,
                    events = chunk.records.len(),
                    "staged chunk of a group that never committed: skipped"
                );
                chunk.group = None;
                chunk.records.clear();
            }
        }
        Ok(())
    }

    /// The chunk at stream sequence `seq` of `shard`, if it is still there.
    async fn chunk_at(&self, shard: ShardId, seq: u64) -> Result<Option<Chunk>, StoreError> {
        match self.log.stream(shard).direct_get(seq).await {
            Ok(message) => Ok(Some(Chunk::from_message(&message)?)),
            Err(error) if error.kind() == stream::DirectGetErrorKind::NotFound => Ok(None),
            Err(error) => Err(log_error("reading")(&error)),
        }
    }
}

/// Writes a group's fresh events to their shards' streams (a chunk per shard), then records the
/// group and moves the heads in Postgres.
struct Publisher {
    log: Log,
}

#[async_trait::async_trait]
impl Append for Publisher {
    async fn append(&self, tx: &mut sqlx::PgConnection, by_shard: ByShard<'_>) -> Result<(), StoreError> {
        let keys: Vec<(&str, &str, &str)> = by_shard.keys().copied().collect();
        create_shards(tx, &keys).await?;
        let ids = shard_ids(tx, &keys).await?;
        let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()").fetch_one(&mut *tx).await?;
        let stamp = now.to_rfc3339_opts(SecondsFormat::Micros, true);
        let group = uuid::Uuid::new_v4();
        let group_header = group.to_string();
        // All chunks in flight at once; then each shard's head is its last chunk's last event.
        let mut in_flight: Vec<(usize, usize, PublishAckFuture)> = Vec::new();
        for (i, (events, id)) in by_shard.values().zip(&ids).enumerate() {
            let subject = self.log.subject(*id);
            for records in split(events.iter().map(|(event, _)| event.record.as_str())) {
                let message = PublishMessage::build()
                    .header(RECEIVED_AT, stamp.as_str())
                    .header(GROUP, group_header.as_str())
                    .payload(Bytes::from(pack(&records)));
                let ack = self
                    .log
                    .js
                    .send_publish(subject.clone(), message)
                    .await
                    .map_err(|e| log_error("publishing")(&e))?;
                in_flight.push((i, records.len(), ack));
            }
        }
        let mut heads = vec![0i64; ids.len()];
        for (i, events, ack) in in_flight {
            let ack = ack.await.map_err(|e| log_error("publishing")(&e))?;
            heads[i] = heads[i].max(event_seq(ack.sequence, events - 1));
        }
        crate::pipeline::failpoints::abort_at("after-log-append");
        sqlx::query("INSERT INTO staged_groups (id) VALUES ($1)").bind(group).execute(&mut *tx).await?;
        sqlx::query(
            "UPDATE shards s SET next_seq = GREATEST(s.next_seq, w.last + 1)
             FROM unnest($1::int8[], $2::int8[]) AS w(id, last) WHERE s.id = w.id",
        )
        .bind(&ids)
        .bind(&heads)
        .execute(&mut *tx)
        .await?;
        notify_staged(tx, &ids).await
    }
}

/// A shard's records of one group, cut into chunks of at most [`CHUNK_EVENTS`] events and about
/// [`CHUNK_BYTES`] (a record is never split).
fn split<'a>(records: impl Iterator<Item = &'a str>) -> Vec<Vec<&'a str>> {
    let mut chunks: Vec<Vec<&str>> = vec![Vec::new()];
    let mut bytes = 0;
    for record in records {
        let current = chunks.last().map_or(0, Vec::len);
        if current > 0 && (current >= CHUNK_EVENTS || bytes + record.len() > CHUNK_BYTES) {
            chunks.push(Vec::new());
            bytes = 0;
        }
        bytes += record.len();
        if let Some(chunk) = chunks.last_mut() {
            chunk.push(record);
        }
    }
    chunks.retain(|c| !c.is_empty());
    chunks
}

#[async_trait::async_trait]
impl Staging for JetStreamStaging {
    async fn stage(
        &self,
        events: Vec<Incoming>,
        rejected: &[AccountId],
    ) -> Result<Vec<StageOutcome>, StoreError> {
        self.group.stage(Call { events, rejected: rejected.to_vec() }).await
    }

    async fn read(
        &self,
        shard_id: ShardId,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<StagedEvent>, StoreError> {
        let (from, _) = chunk_of(after_seq);
        let chunks = self.chunks(shard_id, from, limit.max(1) as usize).await?;
        Ok(chunks
            .into_iter()
            .flat_map(|chunk| {
                let (seq, received_at) = (chunk.seq, chunk.received_at);
                chunk.records.into_iter().enumerate().map(move |(place, record)| StagedEvent {
                    seq: event_seq(seq, place),
                    received_at,
                    record,
                })
            })
            .filter(|event| event.seq > after_seq)
            .take(limit.max(0) as usize)
            .collect())
    }

    async fn release(
        &self,
        shard_id: ShardId,
        through_seq: i64,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        // A chunk goes once every event in it is released, and only if it was received before
        // `before` (what the caller's routing knew of); otherwise a later release takes it.
        let (chunk, place) = chunk_of(through_seq);
        let keep_from = match self.chunk_at(shard_id, chunk).await? {
            Some(found) if found.received_at < before && place + 1 >= found.records.len() => chunk + 1,
            Some(found) if found.received_at < before => chunk,
            // Already gone (released before), or too new: only the chunks before it.
            _ => chunk,
        };
        if keep_from <= 1 {
            return Ok(0);
        }
        let purged = self
            .log
            .stream(shard_id)
            .purge()
            .filter(self.log.subject(shard_id))
            .sequence(keep_from)
            .await
            .map_err(|e| log_error("releasing")(&e))?;
        Ok(purged.purged)
    }

    async fn first_after(
        &self,
        shard_id: ShardId,
        after_seq: i64,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let (from, _) = chunk_of(after_seq);
        let mut next = from;
        loop {
            let chunks = self.chunks(shard_id, next, 1).await?;
            let Some(last) = chunks.last() else { return Ok(None) };
            next = last.seq + 1;
            if let Some(chunk) = chunks.iter().find(|c| !c.records.is_empty() && c.last_seq() > after_seq) {
                return Ok(Some(chunk.received_at));
            }
        }
    }

    async fn backlog(
        &self,
        account: Option<&AccountId>,
        overdue_before: DateTime<Utc>,
    ) -> Result<StagedBacklog, StoreError> {
        let shards: Vec<(ShardId, String, String, String)> = sqlx::query_as(
            "SELECT id, account_id, region, source FROM shards WHERE $1::text IS NULL OR account_id = $1",
        )
        .bind(account.map(AccountId::as_str))
        .fetch_all(&self.pool)
        .await?;
        let mut backlog = StagedBacklog::default();
        let mut overdue = Vec::new();
        for (id, account_id, region, source) in shards {
            let mut next = 1;
            let mut late = 0i64;
            let mut oldest: Option<DateTime<Utc>> = None;
            loop {
                let chunks = self.chunks(id, next, 10_000).await?;
                let Some(last) = chunks.last() else { break };
                next = last.seq + 1;
                for chunk in chunks.iter().filter(|c| !c.records.is_empty()) {
                    let events = chunk.records.len() as i64;
                    backlog.events += events;
                    oldest = Some(oldest.map_or(chunk.received_at, |o| o.min(chunk.received_at)));
                    if chunk.received_at < overdue_before {
                        late += events;
                    }
                }
            }
            if let Some(oldest) = oldest {
                backlog.oldest = Some(backlog.oldest.map_or(oldest, |o| o.min(oldest)));
                if late > 0 {
                    backlog.overdue_events += late;
                    overdue.push(ShardBacklog { account_id, region, source, events: late, oldest });
                }
            }
        }
        overdue.sort_by_key(|s| s.oldest);
        overdue.truncate(OVERDUE_SHARDS_LISTED as usize);
        backlog.overdue_shards = overdue;
        Ok(backlog)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_keep_chunk_order_and_place() {
        assert_eq!(chunk_of(event_seq(7, 0)), (7, 0));
        assert_eq!(chunk_of(event_seq(7, 65_535)), (7, 65_535));
        assert!(event_seq(7, 65_535) < event_seq(8, 0));
        assert_eq!(chunk_of(0), (0, 0));
    }

    #[test]
    fn chunks_are_bounded_and_records_whole() {
        let big = "x".repeat(300 * 1024);
        let records = [big.as_str(), "a", big.as_str(), big.as_str()];
        let chunks = split(records.iter().copied());
        assert_eq!(chunks.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 1, 1]);
        let many: Vec<String> = (0..70_000).map(|i| i.to_string()).collect();
        let chunks = split(many.iter().map(String::as_str));
        assert_eq!(chunks.iter().map(Vec::len).collect::<Vec<_>>(), vec![65_536, 70_000 - 65_536]);
        assert!(split(std::iter::empty()).is_empty());
    }
}
