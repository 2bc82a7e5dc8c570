//! Staging on NATS JetStream, for organizations whose write rate one Postgres cannot take: the
//! events themselves (the bytes, the bulk of the per-event work) live in JetStream streams;
//! Postgres keeps only what is small per event (the dedupe identity, 16 bytes and an index entry)
//! and what is per shard (ids, leases, heads).
//!
//! Shards map onto a bounded set of streams, the partitions: shard `id` is subject
//! `<prefix>.<p>.<id>` of stream `<prefix>_<p>`, `p = id mod partitions`. A shard's sequence numbers
//! are its stream's: increasing, with gaps (other shards' events between).
//!
//! A group is acked once JetStream acked every event of it and the group's Postgres transaction
//! (identities, heads, counters) committed. JetStream fsyncs before acking only when the server
//! runs with `jetstream { sync_interval: always }` (docs/operations.md). A crash between the two
//! leaves events in a stream that no identity records and no caller was acked for: the caller
//! retries, and JetStream's duplicate window (`Nats-Msg-Id`, the event's identity) keeps the retry
//! from being written twice.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage, stream};
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt;
use jetstream_extra::batch_fetch::{BatchFetchErrorKind, BatchFetchExt};
use sqlx::PgPool;

use super::group::{Call, GroupCommit};
use super::postgres::{Append, ByShard, create_shards, notify_staged, shard_ids, start_group};
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

/// The header holding when staging accepted an event (the group transaction's time, as the
/// Postgres backend's `received_at`): release and Insights compare it with Postgres's clock.
const RECEIVED_AT: &str = "Orgtrail-Received-At";

/// Publishes in flight at once within one group.
const IN_FLIGHT: usize = 1024;

/// Messages one batched read returns at most (the server's limit).
const READ_BATCH: usize = 1000;

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

    /// The event at `seq` of `shard`'s stream, if it is still there.
    async fn message(
        &self,
        shard: ShardId,
        seq: u64,
    ) -> Result<Option<jetstream::message::StreamMessage>, StoreError> {
        match self.log.stream(shard).direct_get(seq).await {
            Ok(message) => Ok(Some(message)),
            Err(error) if error.kind() == stream::DirectGetErrorKind::NotFound => Ok(None),
            Err(error) => Err(log_error("reading")(&error)),
        }
    }

    /// The first event of `shard` at or after `from`, if any.
    async fn first_from(
        &self,
        shard: ShardId,
        from: u64,
    ) -> Result<Option<jetstream::message::StreamMessage>, StoreError> {
        match self.log.stream(shard).direct_get_next_for_subject(self.log.subject(shard), Some(from)).await {
            Ok(message) => Ok(Some(message)),
            Err(error) if error.kind() == stream::DirectGetErrorKind::NotFound => Ok(None),
            Err(error) => Err(log_error("reading")(&error)),
        }
    }
}

/// When staging accepted `message` (its header; the server's stamp if it has none).
fn received_at(message: &jetstream::message::StreamMessage) -> DateTime<Utc> {
    message
        .headers
        .get(RECEIVED_AT)
        .and_then(|value| DateTime::parse_from_rfc3339(value.as_str()).ok())
        .map(|at| at.with_timezone(&Utc))
        .unwrap_or_else(|| {
            DateTime::from_timestamp(message.time.unix_timestamp(), message.time.nanosecond())
                .unwrap_or_default()
        })
}

/// Writes a group's fresh events to their shards' streams, then moves the heads in Postgres.
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
        let mut last = vec![0u64; ids.len()];
        let mut in_flight: Vec<(usize, PublishAckFuture)> = Vec::with_capacity(IN_FLIGHT);
        for (i, (events, id)) in by_shard.values().zip(&ids).enumerate() {
            let subject = self.log.subject(*id);
            for (event, key) in events {
                let message = PublishMessage::build()
                    .message_id(message_id(event, *key))
                    .header(RECEIVED_AT, stamp.as_str())
                    .payload(Bytes::from(event.record.clone()));
                let ack = self
                    .log
                    .js
                    .send_publish(subject.clone(), message)
                    .await
                    .map_err(|e| log_error("publishing")(&e))?;
                in_flight.push((i, ack));
                if in_flight.len() >= IN_FLIGHT {
                    settle(&mut in_flight, &mut last).await?;
                }
            }
        }
        settle(&mut in_flight, &mut last).await?;
        crate::pipeline::failpoints::abort_at("after-log-append");
        let heads: Vec<i64> = last.iter().map(|&seq| seq as i64).collect();
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

/// The identity JetStream dedupes on within its window.
fn message_id(event: &Incoming, key: uuid::Uuid) -> String {
    format!("{}:{}", event.account_id, key.simple())
}

/// Waits for the acks in flight; the highest sequence number per shard goes to `last`. A
/// duplicate's ack names the copy JetStream already holds, which is the event's place.
async fn settle(in_flight: &mut Vec<(usize, PublishAckFuture)>, last: &mut [u64]) -> Result<(), StoreError> {
    for (i, ack) in in_flight.drain(..) {
        let ack = ack.await.map_err(|e| log_error("publishing")(&e))?;
        last[i] = last[i].max(ack.sequence);
    }
    Ok(())
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
        let stream = self.log.stream_name(shard_id);
        let subject = self.log.subject(shard_id);
        let mut events = Vec::new();
        let mut from = after_seq.max(0) as u64 + 1;
        while (events.len() as i64) < limit {
            let want = ((limit - events.len() as i64) as usize).min(READ_BATCH);
            let mut batch = match self
                .log
                .js
                .get_batch(&stream, want)
                .subject(subject.clone())
                .sequence(from)
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
                from = message.sequence + 1;
                let record = String::from_utf8(message.payload.to_vec()).map_err(|_| {
                    StoreError::Corrupt(format!(
                        "event {} of shard {shard_id} is not UTF-8",
                        message.sequence
                    ))
                })?;
                events.push(StagedEvent {
                    seq: message.sequence as i64,
                    received_at: received_at(&message),
                    record,
                });
            }
            if got < want {
                break;
            }
        }
        Ok(events)
    }

    async fn release(
        &self,
        shard_id: ShardId,
        through_seq: i64,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        // Only through an event received before `before` (what the caller's routing knew of);
        // otherwise a later release takes it.
        let Ok(through) = u64::try_from(through_seq) else { return Ok(0) };
        match self.message(shard_id, through).await? {
            Some(message) if received_at(&message) < before => {}
            _ => return Ok(0),
        }
        let purged = self
            .log
            .stream(shard_id)
            .purge()
            .filter(self.log.subject(shard_id))
            .sequence(through + 1)
            .await
            .map_err(|e| log_error("releasing")(&e))?;
        Ok(purged.purged)
    }

    async fn first_after(
        &self,
        shard_id: ShardId,
        after_seq: i64,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(self.first_from(shard_id, after_seq.max(0) as u64 + 1).await?.as_ref().map(received_at))
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
        // Per-subject counts come from the streams' subject index, in one request per partition.
        let mut counts: HashMap<String, u64> = HashMap::new();
        for stream in &self.log.streams {
            let filter = format!("{}.>", self.log.prefix);
            let mut info = stream.info_with_subjects(filter).await.map_err(|e| log_error("counting")(&e))?;
            while let Some(subject) = info.next().await {
                let (subject, count) = subject.map_err(|e| log_error("counting")(&e))?;
                counts.insert(subject, count as u64);
            }
        }
        let mut backlog = StagedBacklog::default();
        let mut overdue = Vec::new();
        for (id, account_id, region, source) in shards {
            let Some(&events) = counts.get(&self.log.subject(id)).filter(|n| **n > 0) else { continue };
            let Some(first) = self.first_from(id, 1).await? else { continue };
            let oldest = received_at(&first);
            backlog.events += events as i64;
            backlog.oldest = Some(backlog.oldest.map_or(oldest, |o| o.min(oldest)));
            if oldest < overdue_before {
                let late = self.read_before(id, overdue_before).await?;
                backlog.overdue_events += late;
                overdue.push(ShardBacklog { account_id, region, source, events: late, oldest });
            }
        }
        overdue.sort_by_key(|s| s.oldest);
        overdue.truncate(OVERDUE_SHARDS_LISTED as usize);
        backlog.overdue_shards = overdue;
        Ok(backlog)
    }
}

impl JetStreamStaging {
    /// Events of `shard` received before `before` (read in order until a later one).
    async fn read_before(&self, shard: ShardId, before: DateTime<Utc>) -> Result<i64, StoreError> {
        let mut after = 0;
        let mut late = 0;
        loop {
            let events = self.read(shard, after, READ_BATCH as i64).await?;
            let Some(last) = events.last() else { return Ok(late) };
            after = last.seq;
            let before_count = events.iter().take_while(|e| e.received_at < before).count();
            late += before_count as i64;
            if before_count < events.len() || events.len() < READ_BATCH {
                return Ok(late);
            }
        }
    }
}
