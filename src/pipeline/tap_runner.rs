//! Runs the taps over one shard: each (tap, key) gets the events after its durable cursor, in
//! order, in a fenced transaction that also moves the cursor. A failing key backs off alone; a key
//! that fell behind the buffer catches up from staging; an event the tap's store refuses is found
//! by halving in savepoints and left out of that tap only.

use std::collections::HashMap;
use std::time::Instant;

use sqlx::PgPool;

use super::backoff::Backoff;
use super::buffer::{self, Buffered, ShardBuffer};
use super::route::Snapshot;
use super::shards::{self, Lease};
use super::staging::Staging;
use super::taps::{Tap, TapContext, TapError, TapEvent};
use crate::model::shard::{ShardId, ShardInfo};
use crate::store::StoreError;

/// Events handed to one tap call at most (one transaction).
pub const TAP_BATCH: usize = 5_000;

/// The durable cursor of every tap key over the shards of `ids`: (shard, key, through seq).
pub async fn cursors(pool: &PgPool, ids: &[ShardId]) -> Result<Vec<(ShardId, String, i64)>, StoreError> {
    Ok(sqlx::query_as("SELECT shard_id, tap_key, through_seq FROM tap_cursors WHERE shard_id = ANY($1)")
        .bind(ids)
        .fetch_all(pool)
        .await?)
}

/// Moves tap cursors forward (never back): (shard, key, through seq), each pair at most once.
pub async fn advance(
    conn: &mut sqlx::PgConnection,
    moves: &[(ShardId, &str, i64)],
) -> Result<(), StoreError> {
    if moves.is_empty() {
        return Ok(());
    }
    let shards: Vec<i64> = moves.iter().map(|m| m.0.0).collect();
    let keys: Vec<&str> = moves.iter().map(|m| m.1).collect();
    let seqs: Vec<i64> = moves.iter().map(|m| m.2).collect();
    sqlx::query(
        "INSERT INTO tap_cursors (shard_id, tap_key, through_seq)
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[])
         ON CONFLICT (shard_id, tap_key) DO UPDATE
         SET through_seq = GREATEST(tap_cursors.through_seq, EXCLUDED.through_seq), updated_at = now()",
    )
    .bind(&shards)
    .bind(&keys)
    .bind(&seqs)
    .execute(conn)
    .await?;
    Ok(())
}

/// The taps' progress over one shard, as the worker keeps it.
#[derive(Debug, Default)]
pub struct TapProgress {
    /// Per tap key: the last seq it consumed (missing: nothing yet).
    pub cursors: HashMap<String, i64>,
    /// Per tap key: no attempt before this instant.
    pub retry: HashMap<String, Backoff>,
    /// Some key has not consumed everything read (it failed, or fell behind the buffer).
    pub behind: bool,
}

impl TapProgress {
    pub fn cursor(&self, key: &str) -> i64 {
        self.cursors.get(key).copied().unwrap_or(0)
    }

    /// The lowest cursor of `keys` (None without keys).
    pub fn floor(&self, keys: &[(usize, String)]) -> Option<i64> {
        keys.iter().map(|(_, key)| self.cursor(key)).min()
    }

    /// The lowest cursor of the keys that are not failing (not waiting out a backoff).
    pub fn healthy_floor(&self, keys: &[(usize, String)]) -> Option<i64> {
        keys.iter()
            .filter(|(_, key)| !self.retry.get(key).is_some_and(Backoff::waiting))
            .map(|(_, key)| self.cursor(key))
            .min()
    }

    fn sum(&self, keys: &[(usize, String)]) -> i64 {
        keys.iter().map(|(_, key)| self.cursor(key)).sum()
    }
}

/// Whether a key at `cursor` fell behind the buffer (it failed while the trails went on): it must
/// catch up from staging.
pub fn fell_behind(buffer: &ShardBuffer, cursor: i64) -> bool {
    match buffer.first_seq() {
        Some(first) => first > cursor + 1,
        None => cursor < buffer.loaded_through(),
    }
}

/// The events a key at `cursor` takes next (at most [`TAP_BATCH`]): an event is judged only with
/// control-plane state loaded after it arrived.
pub fn pending<'b>(
    events: impl Iterator<Item = &'b Buffered>,
    cursor: i64,
    snapshot: &Snapshot,
) -> Vec<&'b Buffered> {
    events
        .filter(|e| e.seq > cursor)
        .take_while(|e| e.received_at < snapshot.loaded_at)
        .take(TAP_BATCH)
        .collect()
}

/// The pending events as a tap sees them (records that no longer parse are left out).
pub fn tap_events<'b>(pending: &[&'b Buffered]) -> Vec<TapEvent<'b>> {
    pending
        .iter()
        .filter_map(|e| {
            e.view.as_ref().map(|view| TapEvent {
                seq: e.seq,
                received_at: e.received_at,
                record: &e.record,
                view,
            })
        })
        .collect()
}

/// Every (tap, key) that consumes `shard` now.
pub fn keys(
    taps: &[std::sync::Arc<dyn Tap>],
    shard: &ShardInfo,
    snapshot: &Snapshot,
) -> Vec<(usize, String)> {
    taps.iter()
        .enumerate()
        .flat_map(|(index, tap)| tap.keys(shard, snapshot).into_iter().map(move |key| (index, key)))
        .collect()
}

/// What a tap round needs of the worker.
pub struct TapRound<'a> {
    pub pool: &'a PgPool,
    pub staging: &'a dyn Staging,
    pub taps: &'a [std::sync::Arc<dyn Tap>],
    pub owner: &'a str,
    pub lease: Lease,
    pub shard: &'a ShardInfo,
    pub snapshot: &'a Snapshot,
}

impl TapRound<'_> {
    /// One call per key not in backoff; returns whether any cursor moved.
    pub async fn run(
        &self,
        progress: &mut TapProgress,
        buffer: &ShardBuffer,
        keys: &[(usize, String)],
    ) -> Result<bool, StoreError> {
        let before = progress.sum(keys);
        for (index, key) in keys {
            if progress.retry.get(key).is_some_and(|b| b.waiting()) {
                continue;
            }
            let cursor = progress.cursor(key);
            // A key that fell behind the buffer (it failed while the trails went on) catches up
            // from staging.
            let behind = fell_behind(buffer, cursor);
            let caught_up: Vec<Buffered> = if behind {
                buffer::read(self.staging, self.shard.id, cursor, TAP_BATCH as i64).await?
            } else {
                Vec::new()
            };
            let source: Box<dyn Iterator<Item = &Buffered>> =
                if behind { Box::new(caught_up.iter()) } else { Box::new(buffer.iter()) };
            let pending = pending(source, cursor, self.snapshot);
            let Some(through) = pending.last().map(|e| e.seq) else { continue };
            let events = tap_events(&pending);
            let tap = &self.taps[*index];
            if !events.is_empty()
                && let Err(error) = tap.refresh().await
            {
                let retry = progress.retry.entry(key.clone()).or_default();
                retry.failed(Instant::now());
                tracing::warn!(tap = tap.name(), %key, %error, retry_in = ?retry.last(), "tap could not refresh");
                continue;
            }
            match self.consume(tap.as_ref(), key, &events, through).await? {
                Ok(()) => {
                    progress.cursors.insert(key.clone(), through);
                    progress.retry.remove(key);
                }
                Err(error) => {
                    tap.failed(key, &error).await;
                    let retry = progress.retry.entry(key.clone()).or_default();
                    retry.failed(Instant::now());
                    tracing::warn!(tap = tap.name(), %key, shard = %self.shard.id, %error, retry_in = ?retry.last(),
                        "tap failed; its events come again");
                }
            }
        }
        progress.behind = keys.iter().any(|(_, key)| progress.cursor(key) < buffer.loaded_through());
        Ok(progress.sum(keys) > before)
    }

    /// One key's call: its writes and the cursor's move commit together. The outer error is the
    /// worker's (a lost lease, Postgres down); the inner one the tap's.
    async fn consume(
        &self,
        tap: &dyn Tap,
        key: &str,
        events: &[TapEvent<'_>],
        through: i64,
    ) -> Result<Result<(), TapError>, StoreError> {
        let context = TapContext { shard: self.shard, snapshot: self.snapshot };
        let mut tx = shards::begin_fenced(self.pool, self.owner, self.lease).await?;
        let mut consumed =
            if events.is_empty() { Ok(()) } else { tap.consume(key, &context, events, &mut tx).await };
        if matches!(&consumed, Err(error) if error.is_bad_data()) {
            // Postgres refuses some event itself: find it and leave it out, so that one bad record
            // never stalls the tap for its shard.
            drop(tx);
            tx = shards::begin_fenced(self.pool, self.owner, self.lease).await?;
            consumed = consume_leaving_out_bad(tap, key, &context, events, &mut tx).await;
        }
        match consumed {
            Ok(()) => {
                advance(&mut tx, &[(self.shard.id, key, through)]).await?;
                tx.commit().await?;
                Ok(Ok(()))
            }
            Err(error) => Ok(Err(error)),
        }
    }
}

/// Consumes `events` in savepoints, halving any part Postgres refuses, and leaves out (logged and
/// counted) each single event it refuses on its own. Other errors end the attempt as usual.
async fn consume_leaving_out_bad(
    tap: &dyn Tap,
    key: &str,
    context: &TapContext<'_>,
    events: &[TapEvent<'_>],
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
) -> Result<(), TapError> {
    use sqlx::Acquire;
    let mut parts: Vec<&[TapEvent<'_>]> = vec![events];
    while let Some(part) = parts.pop() {
        let mut savepoint = tx.begin().await.map_err(StoreError::from)?;
        match tap.consume(key, context, part, &mut savepoint).await {
            Ok(()) => savepoint.commit().await.map_err(StoreError::from)?,
            Err(error) if error.is_bad_data() => {
                savepoint.rollback().await.map_err(StoreError::from)?;
                if let [event] = part {
                    crate::metrics::pipeline().tap_refused.with_label_values(&[tap.name()]).inc();
                    tracing::error!(tap = tap.name(), %key, shard = %context.shard.id, seq = event.seq,
                        event_id = %event.view.event_id, %error, "event refused by the tap's store; left out");
                } else {
                    let (first, second) = part.split_at(part.len() / 2);
                    // Last pushed, first taken: the earlier half goes first.
                    parts.push(second);
                    parts.push(first);
                }
            }
            Err(error) => return Err(error),
        }
    }
    Ok(())
}
