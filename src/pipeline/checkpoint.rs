//! Checkpoint, in three steps per log file: (a) *seal* key, bytes and event range in Postgres;
//! (b) *put* the object only if absent (or already identical); (c) *commit*: record the file and
//! advance the trail's cursor over the shard in one transaction that checks the lease's fencing
//! generation. A crash anywhere repeats the same key and bytes; a worker that lost its lease can
//! neither commit nor overwrite. Features add their rows to the commit through [`CommitHook`].

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use super::batch::CategoryTally;
use super::shards::{Lease, check_fence};
use super::sink::{LogObject, LogSink, PutOutcome, SinkError};
use crate::model::AccountId;
use crate::model::shard::{ShardId, ShardInfo};
use crate::store::StoreError;

/// A batch whose key and bytes are fixed before its PUT.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SealedBatch {
    pub trail_id: i64,
    pub trail_arn: String,
    pub shard_id: ShardId,
    pub from_seq: i64,
    pub to_seq: i64,
    pub bucket: String,
    pub object_key: String,
    pub kms_key_id: String,
    pub sha256: Vec<u8>,
    /// SHA-256 of the uncompressed file; None only for batches sealed before digests existed.
    pub content_sha256: Option<Vec<u8>>,
    pub body: Vec<u8>,
    pub record_count: i32,
    pub oldest_event_time: DateTime<Utc>,
    pub newest_event_time: DateTime<Utc>,
    /// Per-category counts of the file (parallel arrays); None for batches sealed before them.
    pub category_names: Option<Vec<String>>,
    pub category_events: Option<Vec<i64>>,
    pub category_bytes: Option<Vec<i64>>,
}

impl SealedBatch {
    /// The batch's per-category tallies; `fallback_category` takes every record of a batch sealed
    /// before tallies were recorded.
    pub fn tallies(&self, fallback_category: &str) -> Vec<CategoryTally> {
        match (&self.category_names, &self.category_events, &self.category_bytes) {
            (Some(categories), Some(events), Some(bytes))
                if categories.len() == events.len() && events.len() == bytes.len() =>
            {
                categories
                    .iter()
                    .zip(events)
                    .zip(bytes)
                    .map(|((category, &events), &bytes)| CategoryTally {
                        category: category.clone(),
                        events,
                        bytes,
                    })
                    .collect()
            }
            _ => vec![CategoryTally {
                category: fallback_category.to_owned(),
                events: i64::from(self.record_count),
                bytes: self.body.len() as i64,
            }],
        }
    }

    /// Stores `tallies` in the batch's per-category columns.
    pub fn set_tallies(&mut self, tallies: &[CategoryTally]) {
        self.category_names = Some(tallies.iter().map(|t| t.category.clone()).collect());
        self.category_events = Some(tallies.iter().map(|t| t.events).collect());
        self.category_bytes = Some(tallies.iter().map(|t| t.bytes).collect());
    }

    fn object(&self) -> LogObject<'_> {
        LogObject {
            bucket: &self.bucket,
            key: &self.object_key,
            body: &self.body,
            sha256: &self.sha256,
            kms_key_id: &self.kms_key_id,
        }
    }
}

/// A delivered file as features see it in the commit's transaction.
#[derive(Debug, Clone, Copy)]
pub struct RecordedFile<'a> {
    pub trail_id: i64,
    pub trail_arn: &'a str,
    pub account: &'a AccountId,
    pub bucket: &'a str,
    pub object_key: &'a str,
    pub tallies: &'a [CategoryTally],
}

/// What a feature adds to the transaction that records delivered files, once per file: a retried
/// delivery of a file already recorded is not handed over again. One call gets every file the
/// transaction records (a worker records the files of many shards together).
#[async_trait::async_trait]
pub trait CommitHook: Send + Sync {
    async fn files_recorded(
        &self,
        tx: &mut PgConnection,
        files: &[RecordedFile<'_>],
    ) -> Result<(), StoreError>;
}

/// Cursors of every trail over the shards of `ids`: (shard, trail id, delivered seq).
pub async fn cursors(pool: &PgPool, ids: &[ShardId]) -> Result<Vec<(ShardId, i64, i64)>, StoreError> {
    Ok(sqlx::query_as("SELECT shard_id, trail_id, delivered_seq FROM trail_cursors WHERE shard_id = ANY($1)")
        .bind(ids)
        .fetch_all(pool)
        .await?)
}

/// The shards of `ids` that have a sealed batch outstanding (of any trail, deleted ones too).
pub async fn shards_with_sealed(pool: &PgPool, ids: &[ShardId]) -> Result<Vec<ShardId>, StoreError> {
    Ok(sqlx::query_scalar("SELECT DISTINCT shard_id FROM sealed_batches WHERE shard_id = ANY($1)")
        .bind(ids)
        .fetch_all(pool)
        .await?)
}

/// Moves a trail's cursor over events none of which it selects (no object to write).
pub async fn skip(
    pool: &PgPool,
    owner: &str,
    lease: Lease,
    trail_id: i64,
    through_seq: i64,
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    check_fence(&mut tx, owner, lease).await?;
    upsert_cursors(&mut tx, &[(trail_id, lease.shard_id, through_seq)]).await?;
    tx.commit().await?;
    Ok(())
}

/// Moves trail cursors forward (never back): (trail id, shard, seq), each pair at most once.
/// Cursors of trails deleted meanwhile are not written.
pub async fn upsert_cursors(
    conn: &mut PgConnection,
    moves: &[(i64, ShardId, i64)],
) -> Result<(), StoreError> {
    if moves.is_empty() {
        return Ok(());
    }
    let trails: Vec<i64> = moves.iter().map(|m| m.0).collect();
    let shards: Vec<i64> = moves.iter().map(|m| m.1.0).collect();
    let seqs: Vec<i64> = moves.iter().map(|m| m.2).collect();
    sqlx::query(
        "INSERT INTO trail_cursors (trail_id, shard_id, delivered_seq)
         SELECT u.t, u.s, u.q FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS u(t, s, q)
         WHERE EXISTS (SELECT 1 FROM trails WHERE id = u.t)
         ON CONFLICT (trail_id, shard_id) DO UPDATE
         SET delivered_seq = GREATEST(trail_cursors.delivered_seq, EXCLUDED.delivered_seq)",
    )
    .bind(&trails)
    .bind(&shards)
    .bind(&seqs)
    .execute(conn)
    .await?;
    Ok(())
}

/// Step (a): records the batch. Fails if the lease is lost or another batch is outstanding.
pub async fn seal(pool: &PgPool, owner: &str, lease: Lease, batch: &SealedBatch) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    check_fence(&mut tx, owner, lease).await?;
    insert_sealed(&mut tx, &[batch]).await?;
    tx.commit().await?;
    Ok(())
}

/// Records sealed batches in the caller's (fenced) transaction, in one statement; fails if a batch
/// of one of their trails and shards is outstanding.
pub async fn insert_sealed(conn: &mut PgConnection, batches: &[&SealedBatch]) -> Result<(), StoreError> {
    if batches.is_empty() {
        return Ok(());
    }
    let column = |f: fn(&SealedBatch) -> i64| batches.iter().map(|b| f(b)).collect::<Vec<i64>>();
    let texts = |f: fn(&SealedBatch) -> &str| batches.iter().map(|b| f(b)).collect::<Vec<&str>>();
    // Per-row arrays travel as comma-joined text (an array of arrays must be rectangular);
    // category names hold no commas.
    let joined = |f: fn(&SealedBatch) -> Option<String>| batches.iter().map(|b| f(b)).collect::<Vec<_>>();
    let join_numbers = |values: &Option<Vec<i64>>| {
        values.as_ref().map(|v| v.iter().map(i64::to_string).collect::<Vec<_>>().join(","))
    };
    sqlx::query(
        "INSERT INTO sealed_batches (trail_id, trail_arn, shard_id, from_seq, to_seq, bucket, object_key, kms_key_id,
                                     sha256, body, record_count, oldest_event_time, newest_event_time, content_sha256,
                                     category_names, category_events, category_bytes)
         SELECT t, arn, sh, f, th, bu, k, kms, sha, body, n, o, nw, c,
                string_to_array(cn, ','), string_to_array(ce, ',')::bigint[], string_to_array(cb, ',')::bigint[]
         FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::text[], $7::text[],
                     $8::text[], $9::bytea[], $10::bytea[], $11::int[], $12::timestamptz[], $13::timestamptz[],
                     $14::bytea[], $15::text[], $16::text[], $17::text[])
              AS u(t, arn, sh, f, th, bu, k, kms, sha, body, n, o, nw, c, cn, ce, cb)",
    )
    .bind(column(|b| b.trail_id))
    .bind(texts(|b| &b.trail_arn))
    .bind(column(|b| b.shard_id.0))
    .bind(column(|b| b.from_seq))
    .bind(column(|b| b.to_seq))
    .bind(texts(|b| &b.bucket))
    .bind(texts(|b| &b.object_key))
    .bind(texts(|b| &b.kms_key_id))
    .bind(batches.iter().map(|b| b.sha256.as_slice()).collect::<Vec<_>>())
    .bind(batches.iter().map(|b| b.body.as_slice()).collect::<Vec<_>>())
    .bind(batches.iter().map(|b| b.record_count).collect::<Vec<i32>>())
    .bind(batches.iter().map(|b| b.oldest_event_time).collect::<Vec<_>>())
    .bind(batches.iter().map(|b| b.newest_event_time).collect::<Vec<_>>())
    .bind(batches.iter().map(|b| b.content_sha256.as_deref()).collect::<Vec<_>>())
    .bind(joined(|b| b.category_names.as_ref().map(|n| n.join(","))))
    .bind(batches.iter().map(|b| join_numbers(&b.category_events)).collect::<Vec<_>>())
    .bind(batches.iter().map(|b| join_numbers(&b.category_bytes)).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

const SEALED_COLUMNS: &str =
    "trail_id, trail_arn, shard_id, from_seq, to_seq, bucket, object_key, kms_key_id,
    sha256, content_sha256, body, record_count, oldest_event_time, newest_event_time,
    category_names, category_events, category_bytes";

/// Sealed batches of a shard whose trail was deleted since: still to be finished.
pub async fn orphaned_sealed(pool: &PgPool, shard_id: ShardId) -> Result<Vec<SealedBatch>, StoreError> {
    Ok(sqlx::query_as::<_, SealedBatch>(&format!(
        "SELECT {SEALED_COLUMNS} FROM sealed_batches s
         WHERE shard_id = $1 AND NOT EXISTS (SELECT 1 FROM trails t WHERE t.id = s.trail_id)"
    ))
    .bind(shard_id)
    .fetch_all(pool)
    .await?)
}

/// The outstanding sealed batch of (trail, shard), if a previous attempt did not finish.
pub async fn sealed(
    pool: &PgPool,
    trail_id: i64,
    shard_id: ShardId,
) -> Result<Option<SealedBatch>, StoreError> {
    Ok(sqlx::query_as::<_, SealedBatch>(&format!(
        "SELECT {SEALED_COLUMNS} FROM sealed_batches WHERE trail_id = $1 AND shard_id = $2"
    ))
    .bind(trail_id)
    .bind(shard_id)
    .fetch_optional(pool)
    .await?)
}

/// What became of an attempt to put and commit a sealed batch.
#[derive(Debug)]
pub enum Delivered {
    /// The file is in the bucket and recorded; the trail's cursor moved to the batch's end.
    Committed,
    /// The put failed (the batch stays sealed; a retry sends the same key and bytes).
    PutFailed(SinkError),
}

/// Where a worker puts and commits its files.
pub struct Checkpoint<'a> {
    pub pool: &'a PgPool,
    pub sink: &'a dyn LogSink,
    /// Run in the commit's transaction when a file is recorded for the first time.
    pub hooks: &'a [std::sync::Arc<dyn CommitHook>],
    /// The worker, for the fencing checks.
    pub owner: &'a str,
    pub times: &'a DeliveryTimes,
}

impl Checkpoint<'_> {
    /// Steps (b) and (c) for a sealed batch of `shard` (its trail may have been deleted since).
    pub async fn deliver(
        &self,
        lease: Lease,
        shard: &ShardInfo,
        batch: &SealedBatch,
    ) -> Result<Delivered, StoreError> {
        let Self { pool, sink, hooks, owner, times } = *self;
        if let Err(error) = put(pool, sink, batch).await? {
            return Ok(Delivered::PutFailed(error));
        }
        super::failpoints::abort_at("after-put");
        super::failpoints::pause("delivery-pause").await;
        let mut tx = pool.begin().await?;
        check_fence(&mut tx, owner, lease).await?;
        record(&mut tx, hooks, &[(shard, batch)]).await?;
        tx.commit().await?;
        times.delivered(batch.trail_id, Utc::now());
        Ok(Delivered::Committed)
    }
}

/// Step (b): puts a sealed batch's object. A failure is recorded for the trail's status and handed
/// back (the outer error is Postgres failing to record it).
pub async fn put(
    pool: &PgPool,
    sink: &dyn LogSink,
    batch: &SealedBatch,
) -> Result<Result<(), SinkError>, StoreError> {
    match sink.put_log_file(batch.object()).await {
        Ok(PutOutcome::Created) => Ok(Ok(())),
        Ok(PutOutcome::AlreadyPresent) => {
            tracing::info!(key = %batch.object_key, "object already present with the sealed bytes");
            Ok(Ok(()))
        }
        Err(error) => {
            record_failure(pool, batch.trail_id, &error.to_string()).await?;
            Ok(Err(error))
        }
    }
}

/// Step (c), in the caller's fenced transaction, for sealed batches whose objects are in place
/// (each of another trail and shard): records the files, lets the hooks see those recorded for
/// the first time, moves the trails' cursors to the batches' ends and forgets the batches.
pub async fn record(
    conn: &mut PgConnection,
    hooks: &[std::sync::Arc<dyn CommitHook>],
    files: &[(&ShardInfo, &SealedBatch)],
) -> Result<(), StoreError> {
    if files.is_empty() {
        return Ok(());
    }
    let column =
        |f: fn(&ShardInfo, &SealedBatch) -> i64| files.iter().map(|(s, b)| f(s, b)).collect::<Vec<i64>>();
    let trails = column(|_, b| b.trail_id);
    let shards = column(|_, b| b.shard_id.0);
    let froms = column(|_, b| b.from_seq);
    let tos = column(|_, b| b.to_seq);
    let sizes = column(|_, b| b.body.len() as i64);
    let counts: Vec<i32> = files.iter().map(|(_, b)| b.record_count).collect();
    let arns: Vec<&str> = files.iter().map(|(_, b)| b.trail_arn.as_str()).collect();
    let accounts: Vec<&str> = files.iter().map(|(s, _)| s.account.as_str()).collect();
    let regions: Vec<&str> = files.iter().map(|(s, _)| s.region.as_str()).collect();
    let buckets: Vec<&str> = files.iter().map(|(_, b)| b.bucket.as_str()).collect();
    let keys: Vec<&str> = files.iter().map(|(_, b)| b.object_key.as_str()).collect();
    let digests: Vec<&[u8]> = files.iter().map(|(_, b)| b.sha256.as_slice()).collect();
    let oldest: Vec<DateTime<Utc>> = files.iter().map(|(_, b)| b.oldest_event_time).collect();
    let newest: Vec<DateTime<Utc>> = files.iter().map(|(_, b)| b.newest_event_time).collect();
    let contents: Vec<Option<&[u8]>> = files.iter().map(|(_, b)| b.content_sha256.as_deref()).collect();
    let recorded: Vec<(i64, ShardId)> = sqlx::query_as(
        "INSERT INTO delivered_files (trail_id, trail_arn, shard_id, account_id, region, from_seq, to_seq, bucket,
                                      object_key, sha256, size_bytes, record_count, oldest_event_time, newest_event_time,
                                      content_sha256)
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::bigint[],
                              $7::bigint[], $8::text[], $9::text[], $10::bytea[], $11::bigint[], $12::int[],
                              $13::timestamptz[], $14::timestamptz[], $15::bytea[])
         ON CONFLICT (bucket, object_key) DO NOTHING
         RETURNING trail_id, shard_id",
    )
    .bind(&trails)
    .bind(&arns)
    .bind(&shards)
    .bind(&accounts)
    .bind(&regions)
    .bind(&froms)
    .bind(&tos)
    .bind(&buckets)
    .bind(&keys)
    .bind(&digests)
    .bind(&sizes)
    .bind(&counts)
    .bind(&oldest)
    .bind(&newest)
    .bind(&contents)
    .fetch_all(&mut *conn)
    .await?;
    // A file already recorded was already seen by the hooks. (One file per trail and shard here.)
    let recorded: std::collections::HashSet<(i64, ShardId)> = recorded.into_iter().collect();
    let tallies: Vec<(&ShardInfo, &SealedBatch, Vec<CategoryTally>)> = files
        .iter()
        .filter(|(_, b)| recorded.contains(&(b.trail_id, b.shard_id)))
        .map(|(shard, batch)| {
            // Files sealed before per-category counts existed count as one category.
            let fallback = if shard.source.is_insights() { "Insight" } else { "Management" };
            (*shard, *batch, batch.tallies(fallback))
        })
        .collect();
    let first_seen: Vec<RecordedFile<'_>> = tallies
        .iter()
        .map(|(shard, batch, tallies)| RecordedFile {
            trail_id: batch.trail_id,
            trail_arn: &batch.trail_arn,
            account: &shard.account,
            bucket: &batch.bucket,
            object_key: &batch.object_key,
            tallies,
        })
        .collect();
    if !first_seen.is_empty() {
        for hook in hooks {
            hook.files_recorded(conn, &first_seen).await?;
        }
    }
    let moves: Vec<(i64, ShardId, i64)> =
        files.iter().map(|(_, b)| (b.trail_id, b.shard_id, b.to_seq)).collect();
    upsert_cursors(conn, &moves).await?;
    sqlx::query(
        "DELETE FROM sealed_batches s USING unnest($1::bigint[], $2::bigint[]) AS u(t, sh)
         WHERE s.trail_id = u.t AND s.shard_id = u.sh",
    )
    .bind(&trails)
    .bind(&shards)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// When each trail last had a file delivered, gathered by a worker and written to the trail's
/// status after each group of rounds, in one statement. Written by each file's commit, the one
/// status row of an organization trail was locked by every commit of the organization, each
/// waiting for the one before it to be flushed to disk.
#[derive(Debug, Default)]
pub struct DeliveryTimes(std::sync::Mutex<HashMap<i64, DateTime<Utc>>>);

impl DeliveryTimes {
    pub fn delivered(&self, trail_id: i64, at: DateTime<Utc>) {
        let mut times = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let latest = times.entry(trail_id).or_insert(at);
        *latest = (*latest).max(at);
    }

    fn take(&self) -> HashMap<i64, DateTime<Utc>> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Writes what was gathered; kept for the next try when that fails. A status, not a record:
    /// its commit does not wait for the disk, and a crash may forget the last second of it.
    pub async fn flush(&self, pool: &PgPool) -> Result<(), StoreError> {
        let times = self.take();
        if times.is_empty() {
            return Ok(());
        }
        let (trails, at): (Vec<i64>, Vec<DateTime<Utc>>) = times.iter().map(|(t, at)| (*t, *at)).unzip();
        let written = async {
            let mut tx = pool.begin().await?;
            sqlx::query("SET LOCAL synchronous_commit = off").execute(&mut *tx).await?;
            // A failure noted after the delivery stays shown; an earlier one is cleared.
            sqlx::query(
                "INSERT INTO trail_delivery_status (trail_id, latest_delivery_time, latest_delivery_attempt_time)
                 SELECT u.trail_id, u.at, u.at FROM unnest($1::bigint[], $2::timestamptz[]) AS u(trail_id, at)
                 WHERE EXISTS (SELECT 1 FROM trails WHERE id = u.trail_id)
                 ON CONFLICT (trail_id) DO UPDATE SET
                   latest_delivery_time = GREATEST(trail_delivery_status.latest_delivery_time, EXCLUDED.latest_delivery_time),
                   latest_delivery_error = CASE
                     WHEN trail_delivery_status.latest_delivery_attempt_time > EXCLUDED.latest_delivery_time
                       THEN trail_delivery_status.latest_delivery_error ELSE '' END,
                   latest_delivery_attempt_time =
                     GREATEST(trail_delivery_status.latest_delivery_attempt_time, EXCLUDED.latest_delivery_attempt_time)",
            )
            .bind(&trails)
            .bind(&at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await
        };
        if let Err(error) = written.await {
            for (trail, at) in times {
                self.delivered(trail, at);
            }
            return Err(error.into());
        }
        Ok(())
    }
}

/// Records a failed delivery attempt, shown by GetTrailStatus until the next success.
pub async fn record_failure(pool: &PgPool, trail_id: i64, error: &str) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO trail_delivery_status (trail_id, latest_delivery_attempt_time, latest_delivery_error)
         SELECT $1, now(), $2 WHERE EXISTS (SELECT 1 FROM trails WHERE id = $1)
         ON CONFLICT (trail_id) DO UPDATE SET latest_delivery_attempt_time = now(), latest_delivery_error = $2",
    )
    .bind(trail_id)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}
