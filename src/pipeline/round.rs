//! One round over one shard: finish what a crash left sealed, read, let the taps consume, move
//! every covering trail forward (skip what it does not take, wait, or seal → put → commit a file),
//! then release from staging what every trail and tap has passed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::backoff::Backoff;
use super::batch::{self, Candidate, Cut, Limits};
use super::buffer::{Buffered, ShardBuffer};
use super::checkpoint::{self, CommitHook, Delivered, DeliveryTimes, SealedBatch};
use super::route::{Snapshot, routes};
use super::shards::Lease;
use super::sink::{LogSink, SinkError};
use super::staging::Staging;
use super::tap_runner::{self, TapProgress, TapRound};
use super::taps::Tap;
use crate::model::layout::{Folder, Root, unique_part};
use crate::model::record::Category;
use crate::model::shard::{ShardId, ShardInfo};
use crate::model::trail::Trail;
use crate::store::StoreError;

/// What a worker keeps per owned shard; read again from Postgres whenever it may be out of date.
pub struct ShardState {
    pub lease: Lease,
    pub info: ShardInfo,
    /// Per trail: the last seq delivered (or skipped).
    pub(super) cursors: HashMap<i64, i64>,
    pub(super) buffer: ShardBuffer,
    /// Released from staging up to here (no need to ask again).
    pub(super) released_through: i64,
    /// Whether batches of deleted trails were looked for since the state was read.
    pub(super) orphans_checked: bool,
    /// Trails whose outstanding sealed batch was looked for since the state was read.
    pub(super) checked_sealed: HashSet<i64>,
    /// No sealed batch was outstanding when the state was read: none to look for, for any trail
    /// (only the shard's owner seals, so none appears unseen).
    pub(super) none_sealed: bool,
    /// Per trail: no attempt before the backoff ends.
    pub(super) retry: HashMap<i64, Backoff>,
    pub(super) taps: TapProgress,
    /// A Postgres call failed without saying whether it took effect (a commit whose answer was
    /// lost, a connection that died): cursors and buffer are read again before anything else.
    pub(super) stale: bool,
    /// When the buffer only waits for trails' delivery intervals: no file is due before this, so
    /// a shard without news needs no round (at organization scale most shards are waiting).
    pub(super) not_before: Option<DateTime<Utc>>,
    /// Its next round cuts files as of this time instead of now: a worker with room works ahead
    /// (files due by then are cut early). Cleared by the round.
    pub(super) cut_at: Option<DateTime<Utc>>,
}

impl ShardState {
    pub fn new(lease: Lease, info: ShardInfo) -> Self {
        Self {
            lease,
            info,
            cursors: HashMap::new(),
            buffer: ShardBuffer::new(),
            released_through: 0,
            orphans_checked: false,
            checked_sealed: HashSet::new(),
            none_sealed: false,
            retry: HashMap::new(),
            taps: TapProgress::default(),
            // Its progress is read on its first round.
            stale: true,
            not_before: None,
            cut_at: None,
        }
    }

    /// Whether a round has anything to do, given the last seq staging handed out (`head`).
    pub fn has_work(&self, head: Option<i64>, snapshot: &Snapshot) -> bool {
        self.stale
            || head.is_none_or(|head| head > self.buffer.loaded_through())
            || (!self.buffer.is_empty() && self.not_before.is_none_or(|due| Utc::now() >= due))
            || self.taps.behind
            || (!self.none_sealed
                && snapshot.trails_covering(&self.info.account).any(|t| !self.checked_sealed.contains(&t.id)))
    }

    /// Takes `progress` (read from Postgres) as the shard's durable state.
    pub fn load(&mut self, progress: Progress) {
        self.cursors = progress.cursors;
        self.taps.cursors = progress.tap_cursors;
        self.buffer.clear();
        self.released_through = 0;
        self.none_sealed = !progress.sealed;
        self.orphans_checked = !progress.sealed;
        self.checked_sealed.clear();
        self.stale = false;
    }

    /// When its next file falls due by the trails' intervals, if it only waits for that.
    pub fn due(&self) -> Option<DateTime<Utc>> {
        self.not_before.filter(|_| !self.buffer.is_empty() && !self.stale)
    }

    /// Events read and not yet delivered everywhere (maybe waiting for an interval).
    pub fn has_buffered(&self) -> bool {
        !self.buffer.is_empty()
    }

    /// When the oldest event read and not yet delivered everywhere was staged.
    pub fn oldest_buffered(&self) -> Option<DateTime<Utc>> {
        self.buffer.iter().next().map(|e| e.received_at)
    }

    /// Nothing buffered or behind: giving the shard up costs its next owner no more than a reload.
    pub fn is_idle(&self) -> bool {
        self.buffer.is_empty() && !self.taps.behind && !self.stale
    }

    pub(super) fn cursor(&self, trail_id: i64) -> i64 {
        self.cursors.get(&trail_id).copied().unwrap_or(0)
    }

    fn in_backoff(&self, trail_id: i64) -> bool {
        self.retry.get(&trail_id).is_some_and(Backoff::waiting)
    }

    /// Whether its next round needs nothing but reading, the taps, cutting files and delivering
    /// them, so that it can go with other shards' rounds ([`super::group`]): its progress is
    /// current, no batch may be left sealed, and no trail or tap key is backing off.
    pub(super) fn groupable(&self, snapshot: &Snapshot) -> bool {
        let covering: Vec<&Trail> = snapshot.trails_covering(&self.info.account).collect();
        !self.stale
            && !covering.is_empty()
            && !self.cursors.keys().any(|id| !snapshot.has_trail(*id))
            && (self.none_sealed
                || (self.orphans_checked && covering.iter().all(|t| self.checked_sealed.contains(&t.id))))
            && !covering.iter().any(|t| self.in_backoff(t.id))
            && !self.taps.retry.values().any(Backoff::waiting)
    }

    /// A sealed batch's file is delivered and recorded: the trail's cursor moves to its end.
    pub(super) fn committed(&mut self, batch: &SealedBatch) {
        self.retry.remove(&batch.trail_id);
        self.cursors.insert(batch.trail_id, batch.to_seq);
        let kind = if self.info.source.is_insights() { "insight" } else { "log" };
        let metrics = crate::metrics::pipeline();
        metrics.delivered_files.with_label_values(&[kind]).inc();
        metrics.delivered_bytes.with_label_values(&[kind]).inc_by(batch.body.len() as u64);
        metrics.delivered_events.with_label_values(&[kind]).inc_by(batch.record_count.max(0) as u64);
        tracing::debug!(trail = %batch.trail_arn, key = %batch.object_key, records = batch.record_count, "log file delivered");
    }

    /// A sealed batch's put failed: it stays sealed (a retry re-sends the same key and bytes)
    /// and its trail backs off over this shard.
    pub(super) fn put_failed(&mut self, batch: &SealedBatch, error: &SinkError) {
        if matches!(error, SinkError::Conflict { .. }) {
            tracing::error!(trail = %batch.trail_arn, %error, "delivery conflict");
        }
        let retry = self.retry.entry(batch.trail_id).or_default();
        retry.failed(Instant::now());
        self.checked_sealed.remove(&batch.trail_id);
        self.orphans_checked = false;
        self.none_sealed = false;
        tracing::warn!(trail = %batch.trail_arn, %error, retry_in = ?retry.last(), "delivery failed");
    }

    /// The trails' and taps' floor, released from staging when it moved: what to release.
    pub(super) fn releasable(&self, covering: &[&Trail], tap_keys: &[(usize, String)]) -> Option<i64> {
        let released = covering.iter().map(|t| self.cursor(t.id)).min().unwrap_or(0);
        let released = self.taps.floor(tap_keys).map_or(released, |taps| taps.min(released));
        (released > self.released_through).then_some(released)
    }
}

/// A shard's durable progress, as a new owner (or a reload) reads it.
#[derive(Debug, Default)]
pub struct Progress {
    /// Per trail: the last seq delivered (or skipped).
    cursors: HashMap<i64, i64>,
    tap_cursors: HashMap<String, i64>,
    /// Some sealed batch is outstanding.
    sealed: bool,
}

impl Progress {
    /// The progress of every shard of `ids`, in three queries however many.
    pub async fn read(pool: &PgPool, ids: &[ShardId]) -> Result<HashMap<ShardId, Progress>, StoreError> {
        let mut read: HashMap<ShardId, Progress> = ids.iter().map(|id| (*id, Progress::default())).collect();
        for (shard, trail, seq) in checkpoint::cursors(pool, ids).await? {
            read.entry(shard).or_default().cursors.insert(trail, seq);
        }
        for (shard, key, seq) in tap_runner::cursors(pool, ids).await? {
            read.entry(shard).or_default().tap_cursors.insert(key, seq);
        }
        for shard in checkpoint::shards_with_sealed(pool, ids).await? {
            read.entry(shard).or_default().sealed = true;
        }
        Ok(read)
    }
}

/// What a file's records are, as its sealed batch records them: (category, JSON length) and the
/// event time of each record that parses.
pub(super) struct FileContents {
    pub categories: Vec<(Category, usize)>,
    pub times: Vec<DateTime<Utc>>,
}

impl FileContents {
    pub fn of<'e>(picked: impl Iterator<Item = &'e Buffered>) -> Self {
        let mut contents = Self { categories: Vec::new(), times: Vec::new() };
        for event in picked {
            let view = event.view.as_ref();
            contents.categories.push((view.map_or(Category::Management, |v| v.category), event.record.len()));
            contents.times.extend(view.map(|v| v.event_time));
        }
        contents
    }
}

/// The earliest moment a covering trail's next file can be due by its interval: its oldest
/// buffered event after its cursor, plus the interval. None when some trail has nothing buffered
/// to wait for (then nothing is assumed) or a trail is backing off.
pub(super) fn next_due(state: &ShardState, covering: &[&Trail]) -> Option<DateTime<Utc>> {
    let mut due: Option<DateTime<Utc>> = None;
    for trail in covering {
        if state.in_backoff(trail.id) {
            return None;
        }
        let cursor = state.cursor(trail.id);
        let oldest = state.buffer.iter().find(|e| e.seq > cursor)?;
        let interval = chrono::Duration::seconds(i64::from(trail.settings.delivery_interval_seconds.max(1)));
        let at = oldest.received_at + interval;
        due = Some(due.map_or(at, |d| d.min(at)));
    }
    due
}

/// What a round needs of the worker.
pub struct Round<'a> {
    pub pool: &'a PgPool,
    pub staging: &'a dyn Staging,
    pub sink: &'a dyn LogSink,
    pub taps: &'a [Arc<dyn Tap>],
    pub hooks: &'a [Arc<dyn CommitHook>],
    pub owner: &'a str,
    pub snapshot: &'a Snapshot,
    pub delivery_times: &'a DeliveryTimes,
    /// Events the shard may buffer this round.
    pub capacity: i64,
    pub max_batch_bytes: usize,
    pub gzip_level: u32,
}

impl Round<'_> {
    /// One round; true when the buffer was full and something moved (more is waiting).
    pub async fn run(&self, state: &mut ShardState) -> Result<bool, StoreError> {
        state.not_before = None;
        let result = self.run_fresh(state).await;
        state.cut_at = None;
        if matches!(&result, Err(error) if !matches!(error, StoreError::Fenced(_))) {
            state.stale = true;
        }
        result
    }

    /// Reads the shard's durable progress again and forgets everything derived from the old one.
    async fn reload(&self, state: &mut ShardState) -> Result<(), StoreError> {
        let mut read = Progress::read(self.pool, &[state.info.id]).await?;
        state.load(read.remove(&state.info.id).unwrap_or_default());
        Ok(())
    }

    async fn run_fresh(&self, state: &mut ShardState) -> Result<bool, StoreError> {
        if state.stale {
            self.reload(state).await?;
        }
        let snapshot = self.snapshot;
        let account = state.info.account.clone();
        let covering: Vec<&Trail> = snapshot.trails_covering(&account).collect();
        self.finish_leftovers(state, &covering).await?;
        self.refill(state).await?;
        let tap_keys = tap_runner::keys(self.taps, &state.info, snapshot);

        let was_full = state.buffer.is_full();
        let tap_round = TapRound {
            pool: self.pool,
            staging: self.staging,
            taps: self.taps,
            owner: self.owner,
            lease: state.lease,
            shard: &state.info,
            snapshot,
        };
        let taps_moved = tap_round.run(&mut state.taps, &state.buffer, &tap_keys).await?;
        let tap_floor = state.taps.floor(&tap_keys);

        if covering.is_empty() {
            // No trail takes this account's events: nothing to deliver; kept only until the taps
            // consumed them.
            if let Some(last) = state
                .buffer
                .iter()
                .filter(|e| e.received_at < snapshot.loaded_at)
                .map(|e| e.seq)
                .max()
                .map(|last| tap_floor.map_or(last, |taps| taps.min(last)))
                .filter(|last| *last > state.released_through)
            {
                self.staging.release(state.info.id, last, snapshot.loaded_at).await?;
                state.released_through = last;
                let gone = state.buffer.drop_through(last);
                self.count_untaken(state, &gone, &covering).await;
            }
            return Ok(was_full && taps_moved);
        }

        let cursors_before: i64 = covering.iter().map(|t| state.cursor(t.id)).sum();
        for trail in &covering {
            if state.in_backoff(trail.id) {
                continue;
            }
            if let Err(error) = self.advance_trail(state, trail).await {
                if matches!(error, StoreError::Fenced(_)) {
                    return Err(error);
                }
                tracing::warn!(trail = %trail.arn, shard = %state.info.id, %error, "delivery step failed");
                // Whether the failed step took effect is unknown: read the progress again.
                state.stale = true;
                return Ok(false);
            }
        }
        if let Some(released) = state.releasable(&covering, &tap_keys) {
            self.staging.release(state.info.id, released, snapshot.loaded_at).await?;
            state.released_through = released;
        }
        let cursors_after: i64 = covering.iter().map(|t| state.cursor(t.id)).sum();
        state.not_before = next_due(state, &covering);
        Ok(was_full && (cursors_after > cursors_before || taps_moved))
    }

    /// Takes out of the buffer what every covering trail and working tap has passed (counting what
    /// no trail took), and reads more from staging when there is room.
    pub(super) async fn refill(&self, state: &mut ShardState) -> Result<(), StoreError> {
        let floor = self.pop_passed(state).await;
        let keep_all = self.snapshot.trails_covering(&state.info.account).next().is_none();
        state.buffer.fill(self.staging, state.info.id, floor, self.capacity, keep_all).await
    }

    /// Takes out of the buffer what every covering trail and working tap has passed (counting what
    /// no trail took); the floor the buffer is read from.
    pub(super) async fn pop_passed(&self, state: &mut ShardState) -> Option<i64> {
        let covering: Vec<&Trail> = self.snapshot.trails_covering(&state.info.account).collect();
        let tap_keys = tap_runner::keys(self.taps, &state.info, self.snapshot);
        let trail_floor = covering.iter().map(|t| state.cursor(t.id)).min();
        // The trails and the taps that work hold the buffer; a failing tap does not (it reads
        // staging itself when it recovers), so it never stalls delivery. Without trails, every tap
        // holds it.
        let floor = match (trail_floor, state.taps.healthy_floor(&tap_keys)) {
            (Some(trails), Some(taps)) => Some(trails.min(taps)),
            (Some(trails), None) => Some(trails),
            (None, _) => state.taps.floor(&tap_keys),
        };
        // Every covering trail has judged what leaves the buffer: count what none of them took.
        let popped = state.buffer.pop_through(floor.unwrap_or(i64::MAX));
        self.count_untaken(state, &popped, &covering).await;
        floor
    }

    /// Finishes batches a previous owner (or a crash) left sealed, before anything else, including
    /// those of trails deleted since: every object in a bucket must end up recorded.
    async fn finish_leftovers(&self, state: &mut ShardState, covering: &[&Trail]) -> Result<(), StoreError> {
        let snapshot = self.snapshot;
        if state.cursors.keys().any(|id| !snapshot.has_trail(*id)) {
            state.cursors.retain(|id, _| snapshot.has_trail(*id));
            state.orphans_checked = false;
        }
        if state.none_sealed {
            return Ok(());
        }
        if !state.orphans_checked {
            state.orphans_checked = true;
            for batch in checkpoint::orphaned_sealed(self.pool, state.info.id).await? {
                tracing::info!(trail = %batch.trail_arn, key = %batch.object_key, "finishing a batch of a deleted trail");
                self.deliver(state, batch).await?;
            }
        }
        for trail in covering {
            if state.in_backoff(trail.id) {
                continue;
            }
            if state.checked_sealed.insert(trail.id)
                && let Some(batch) = checkpoint::sealed(self.pool, trail.id, state.info.id).await?
            {
                self.deliver(state, batch).await?;
            }
        }
        Ok(())
    }

    /// Judges the buffered events after the trail's cursor: what to do for the trail now.
    pub(super) fn cut<'s>(&self, state: &'s ShardState, trail: &Trail) -> Cut<&'s Buffered> {
        let cursor = state.cursor(trail.id);
        let limits = Limits {
            max_bytes: self.max_batch_bytes,
            interval: Duration::from_secs(trail.settings.delivery_interval_seconds.max(1) as u64),
        };
        let candidates = state.buffer.iter().map(|event| Candidate {
            seq: event.seq,
            received_at: event.received_at,
            len: event.record.len(),
            takes: event.view.as_ref().is_some_and(|view| routes(trail, view, event.received_at)),
            item: event,
        });
        let now = state.cut_at.map_or_else(Utc::now, |at| at.max(Utc::now()));
        batch::cut(candidates, cursor, limits, self.snapshot.loaded_at, now, state.buffer.is_full())
    }

    /// Acts on the trail's cut.
    async fn advance_trail(&self, state: &mut ShardState, trail: &Trail) -> Result<(), StoreError> {
        let cursor = state.cursor(trail.id);
        match self.cut(state, trail) {
            Cut::Nothing | Cut::Wait => Ok(()),
            Cut::Skip { through } => {
                checkpoint::skip(self.pool, self.owner, state.lease, trail.id, through).await?;
                state.cursors.insert(trail.id, through);
                Ok(())
            }
            Cut::File { picked, through, .. } => {
                let picked: Vec<Buffered> = picked.into_iter().cloned().collect();
                let arrivals: Vec<DateTime<Utc>> = picked.iter().map(|e| e.received_at).collect();
                let batch = self.seal(state, trail, cursor, through, picked).await?;
                self.deliver(state, batch).await?;
                if state.cursor(trail.id) == through {
                    let latency = &crate::metrics::pipeline().delivery_latency;
                    let now = Utc::now();
                    for arrival in arrivals {
                        latency.observe((now - arrival).num_milliseconds().max(0) as f64 / 1000.0);
                    }
                }
                Ok(())
            }
        }
    }

    /// Step (a): builds the file (off the runtime), names it and seals it.
    async fn seal(
        &self,
        state: &ShardState,
        trail: &Trail,
        from: i64,
        through: i64,
        picked: Vec<Buffered>,
    ) -> Result<SealedBatch, StoreError> {
        let contents = FileContents::of(picked.iter());
        let level = self.gzip_level;
        let file =
            tokio::task::spawn_blocking(move || batch::build(picked.iter().map(|e| &*e.record), level))
                .await
                .map_err(|e| StoreError::Corrupt(format!("batch builder panicked: {e}")))?;
        let sealed = self.sealed_batch(&state.info, trail, from, through, file, &contents);
        checkpoint::seal(self.pool, self.owner, state.lease, &sealed).await?;
        super::failpoints::abort_at("after-seal");
        super::failpoints::pause("delivery-pause").await;
        Ok(sealed)
    }

    /// Names a built file of `trail` over the events `from..=through` of `shard`: the batch to seal.
    pub(super) fn sealed_batch(
        &self,
        shard: &ShardInfo,
        trail: &Trail,
        from: i64,
        through: i64,
        file: batch::LogFile,
        contents: &FileContents,
    ) -> SealedBatch {
        let delivered_at = Utc::now();
        // The whole range names the file: a batch with other contents never gets this key.
        let unique = unique_part(&format!("{}:{}:{from}-{through}", trail.id, shard.id));
        let root = Root {
            prefix: &trail.settings.s3_key_prefix,
            organization: if trail.settings.is_organization_trail {
                self.snapshot.organization_id.as_ref()
            } else {
                None
            },
        };
        let folder = if shard.source.is_insights() { Folder::Insights } else { Folder::Logs };
        let key = root.file_key(&shard.account, folder, &shard.region, delivered_at, &unique);
        let tallies = batch::tally(contents.categories.iter().copied(), file.body.len());
        let mut sealed = SealedBatch {
            trail_id: trail.id,
            trail_arn: trail.arn.to_string(),
            shard_id: shard.id,
            from_seq: from,
            to_seq: through,
            bucket: trail.settings.s3_bucket_name.to_string(),
            object_key: key,
            kms_key_id: trail.settings.kms_key_id.clone(),
            sha256: file.sha256,
            content_sha256: Some(file.content_sha256),
            body: file.body,
            record_count: contents.categories.len() as i32,
            oldest_event_time: contents.times.iter().min().copied().unwrap_or(delivered_at),
            newest_event_time: contents.times.iter().max().copied().unwrap_or(delivered_at),
            category_names: None,
            category_events: None,
            category_bytes: None,
        };
        sealed.set_tallies(&tallies);
        sealed
    }

    /// Steps (b) and (c) for a sealed batch (its trail may have been deleted since).
    async fn deliver(&self, state: &mut ShardState, batch: SealedBatch) -> Result<(), StoreError> {
        let checkpoint = checkpoint::Checkpoint {
            pool: self.pool,
            sink: self.sink,
            hooks: self.hooks,
            owner: self.owner,
            times: self.delivery_times,
        };
        match checkpoint.deliver(state.lease, &state.info, &batch).await? {
            Delivered::Committed => state.committed(&batch),
            Delivered::PutFailed(error) => state.put_failed(&batch, &error),
        }
        Ok(())
    }

    /// Adds to the account's counts of acknowledged events no covering trail took (best effort: a
    /// count, not a record of which events).
    pub(super) async fn count_untaken(&self, state: &ShardState, events: &[Buffered], covering: &[&Trail]) {
        let mut untaken: BTreeMap<&'static str, i64> = BTreeMap::new();
        for event in events {
            let Some(view) = &event.view else { continue };
            if !covering.iter().any(|trail| routes(trail, view, event.received_at)) {
                *untaken.entry(view.category.as_str()).or_default() += 1;
            }
        }
        if untaken.is_empty() {
            return;
        }
        if let Err(error) =
            super::staging::postgres::add_untaken(self.pool, &state.info.account, &untaken).await
        {
            tracing::warn!(shard = %state.info.id, %error, "cannot count events no trail took");
        }
    }
}
