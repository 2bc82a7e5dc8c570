//! The delivery worker: holds shards (leases), and for each with work runs a [`Round`] — read,
//! taps, route, batch, seal → put → commit, release. It knows no feature: taps and commit hooks
//! are handed to it by the process root.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;

use super::buffer::MIN_PER_SHARD;
use super::changes::{Changed, Changes};
use super::checkpoint::{CommitHook, DeliveryTimes};
use super::heartbeat::{Fleet, Heartbeat, Pulse};
use super::round::{Progress, Round, ShardState};
use super::route::{Snapshot, config_clock};
use super::shards::{self, Claim, Lease};
use super::sink::LogSink;
use super::staging::Staging;
use super::taps::Tap;
use crate::model::shard::ShardId;
use crate::store::StoreError;

/// Delivery settings (see `node::config` for their documentation and defaults).
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    pub lease_ttl: Duration,
    pub poll_interval: Duration,
    pub max_batch_bytes: usize,
    /// Events buffered across all shards a worker holds.
    pub read_limit: i64,
    pub gzip_level: u32,
    /// The smallest step of a claim round (rounds move half the way to the fair share).
    pub claim_limit: i64,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        Self {
            lease_ttl: Duration::from_secs(15),
            poll_interval: Duration::from_millis(200),
            max_batch_bytes: 10 * 1024 * 1024,
            read_limit: 50_000,
            gzip_level: 6,
            // Per claim round (one a second), when half the way to the share is less. The heartbeat
            // runs in its own task, so a pass busy with thousands of just-claimed shards no longer
            // lets leases lapse (it did, when claims were capped at this and renewed in the loop).
            claim_limit: 500,
        }
    }
}

/// Shards whose rounds go together (see [`super::group`]); a group's outcome is taken (the heartbeat
/// told the loop is alive, delivery times written) before the next one starts.
const GROUP_SHARDS: usize = 512;

/// Groups whose rounds run at once.
const GROUPS_IN_PARALLEL: usize = 2;

/// Busy shards are split in two groups from twice this many.
const MIN_GROUP_SHARDS: usize = 32;

/// How often a worker looks for shards nobody holds (new shards, dead workers' shards).
const CLAIM_EVERY: Duration = Duration::from_secs(1);

/// Passes start at least this far apart, however often changes are heard.
const MIN_PASS_GAP: Duration = Duration::from_millis(50);

pub struct Worker {
    pool: PgPool,
    staging: Arc<dyn Staging>,
    sink: Arc<dyn LogSink>,
    taps: Vec<Arc<dyn Tap>>,
    hooks: Vec<Arc<dyn CommitHook>>,
    id: String,
    settings: PipelineSettings,
    delivery_times: DeliveryTimes,
}

impl Worker {
    pub fn new(
        pool: PgPool,
        staging: Arc<dyn Staging>,
        sink: Arc<dyn LogSink>,
        taps: Vec<Arc<dyn Tap>>,
        hooks: Vec<Arc<dyn CommitHook>>,
        settings: PipelineSettings,
    ) -> Self {
        let id = format!(
            "{}-{}-{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into()),
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        );
        Self { pool, staging, sink, taps, hooks, id, settings, delivery_times: DeliveryTimes::default() }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Runs until `shutdown` resolves, then gives its leases up.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        tracing::info!(worker = %self.id, "worker started");
        tokio::pin!(shutdown);
        let mut heartbeat = loop {
            match Heartbeat::start(&self.pool, &self.id, self.settings.lease_ttl).await {
                Ok(heartbeat) => break heartbeat,
                Err(error) => tracing::warn!(%error, "cannot start the heartbeat; trying again"),
            }
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                _ = tokio::time::sleep(CLAIM_EVERY) => {}
            }
        };
        let mut shards: HashMap<ShardId, ShardState> = HashMap::new();
        let mut lag = super::lag::LagSeries::default();
        let mut last_claim = Instant::now() - CLAIM_EVERY;
        let mut changes = Changes::listen(&self.pool).await;
        let mut snapshot: Option<Snapshot> = None;
        let mut config_version: Option<i64> = None;
        let mut look = Look::default();
        loop {
            let pass_started = Instant::now();
            heartbeat.pulse.beat();
            while let Ok(held) = heartbeat.lapsed.try_recv() {
                if let Err(error) = self.keep_held(&mut shards, &mut look, held).await {
                    tracing::warn!(%error, "cannot take back the leases still held");
                }
            }
            if last_claim.elapsed() >= CLAIM_EVERY {
                let fleet = *heartbeat.fleet.borrow();
                if let Err(error) = self.lease_round(&mut shards, &mut look, fleet).await {
                    tracing::warn!(%error, "lease round failed");
                }
                last_claim = Instant::now();
                lag.refresh(&shards);
            }
            let mut changed = changes.take();
            if self.refresh(&mut snapshot, &mut config_version).await {
                // Routing changed: shards it now sends elsewhere are looked at again.
                changed.all_shards = true;
            }
            if let Some(snapshot) = &snapshot {
                self.pass(&mut shards, snapshot, &changed, &mut look, &heartbeat.pulse).await;
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = async {
                    tokio::time::sleep(MIN_PASS_GAP.saturating_sub(pass_started.elapsed())).await;
                    changes.wait(self.settings.poll_interval).await;
                } => {}
            }
        }
        heartbeat.stop();
        if let Err(error) = shards::release_all(&self.pool, &self.id).await {
            tracing::warn!(%error, "could not give leases up; they expire on their own");
        }
        tracing::info!(worker = %self.id, "worker stopped");
        Ok(())
    }

    /// Makes `snapshot` current as of now: loaded again when the configuration version moved,
    /// else only its `loaded_at` moves on. True when it was loaded again.
    async fn refresh(&self, snapshot: &mut Option<Snapshot>, version: &mut Option<i64>) -> bool {
        let (current, now) = match config_clock(&self.pool).await {
            Ok(clock) => clock,
            Err(error) => {
                tracing::warn!(%error, "cannot read the configuration version");
                return false;
            }
        };
        if *version == Some(current) {
            if let Some(snapshot) = snapshot.as_mut() {
                snapshot.loaded_at = now;
            }
            return false;
        }
        match Snapshot::load(&self.pool).await {
            Ok(mut loaded) => {
                loaded.loaded_at = now;
                *snapshot = Some(loaded);
                *version = Some(current);
                true
            }
            Err(error) => {
                tracing::warn!(%error, "cannot load trails");
                false
            }
        }
    }

    /// One pass over the shards that may have work: those `changed` names, those whose last
    /// round left something (`look.active`) and those just claimed. A pass costs the shards with
    /// news or with events buffered, not every shard held.
    async fn pass(
        &self,
        shards: &mut HashMap<ShardId, ShardState>,
        snapshot: &Snapshot,
        changed: &Changed,
        look: &mut Look,
        pulse: &Pulse,
    ) {
        let claimed = std::mem::take(&mut look.claimed);
        let asked: Vec<ShardId> = if changed.all_shards {
            shards.keys().copied().collect()
        } else {
            // Dropped shards are forgotten by `Look::forget`: everything named here is held.
            let mut asked: HashSet<ShardId> =
                changed.shards.iter().copied().filter(|id| shards.contains_key(id)).collect();
            asked.extend(claimed);
            asked.into_iter().collect()
        };
        if !asked.is_empty() {
            match shards::heads(&self.pool, &asked).await {
                Ok(read) => look.heads.extend(read),
                Err(error) => {
                    tracing::warn!(%error, "cannot read shard heads");
                    // Unknown heads count as news.
                    for id in &asked {
                        look.heads.remove(id);
                    }
                }
            }
        }
        let mut candidates: HashSet<ShardId> = std::mem::take(&mut look.active);
        candidates.extend(asked);
        // Buffered events across all shards stay near `read_limit`: memory is bounded however
        // many shards a worker holds.
        let capacity = (self.settings.read_limit / (shards.len() as i64).max(1))
            .clamp(MIN_PER_SHARD.min(self.settings.read_limit), self.settings.read_limit);
        let round = Round {
            pool: &self.pool,
            staging: self.staging.as_ref(),
            sink: self.sink.as_ref(),
            taps: &self.taps,
            hooks: &self.hooks,
            owner: &self.id,
            snapshot,
            delivery_times: &self.delivery_times,
            capacity,
            max_batch_bytes: self.settings.max_batch_bytes,
            gzip_level: self.settings.gzip_level,
        };
        let heads = &look.heads;
        let mut busy: Vec<&mut ShardState> = Vec::new();
        let mut waiting: Vec<&mut ShardState> = Vec::new();
        for (id, state) in shards.iter_mut().filter(|(id, _)| candidates.contains(*id)) {
            if state.has_work(heads.get(id).copied(), snapshot) {
                busy.push(state);
            } else if state.due().is_some() {
                waiting.push(state);
            }
        }
        work_ahead(&mut busy, waiting, snapshot);
        let mut lost = Vec::new();
        let started = Instant::now();
        let busy_shards = busy.len();
        // Two groups at a time: while one waits for Postgres or S3, the other has work for a core.
        let groups =
            busy.len().div_ceil(GROUP_SHARDS).max(if busy.len() >= 2 * MIN_GROUP_SHARDS { 2 } else { 1 });
        let group_size = busy.len().div_ceil(groups).max(1);
        while !busy.is_empty() {
            let mut some = Vec::with_capacity(GROUPS_IN_PARALLEL);
            for _ in 0..GROUPS_IN_PARALLEL {
                if !busy.is_empty() {
                    some.push(busy.drain(..busy.len().min(group_size)).collect::<Vec<&mut ShardState>>());
                }
            }
            let round = &round;
            let outcomes: Vec<_> =
                futures::future::join_all(some.into_iter().map(|group| super::group::run(round, group)))
                    .await
                    .into_iter()
                    .flatten()
                    .collect();
            pulse.beat();
            if let Err(error) = self.delivery_times.flush(&self.pool).await {
                tracing::warn!(%error, "cannot write the trails' latest delivery times");
            }
            for (shard, outcome) in outcomes {
                match outcome {
                    Ok(()) => {}
                    Err(StoreError::Fenced(why)) => {
                        tracing::warn!(%shard, %why, "lease lost; shard dropped");
                        lost.push(shard);
                    }
                    Err(error) => tracing::warn!(%shard, %error, "shard processing failed"),
                }
            }
        }
        if busy_shards > 0 {
            tracing::debug!(busy = busy_shards, candidates = candidates.len(), took = ?started.elapsed(), "pass");
        }
        for shard in &lost {
            shards.remove(shard);
            look.forget(*shard);
        }
        // What is left for later passes: shards with events buffered (waiting for an interval),
        // news not read yet, or a round that failed.
        for id in candidates {
            if let Some(state) = shards.get(&id)
                && (state.has_work(look.heads.get(&id).copied(), snapshot) || state.has_buffered())
            {
                look.active.insert(id);
            }
        }
        // A lease found lost while its row still names this worker (its heartbeat lapsed, nobody
        // took over): handed back, so that someone (this worker too) claims it again.
        if !lost.is_empty()
            && let Err(error) = shards::give_up(&self.pool, &self.id, &lost).await
        {
            tracing::warn!(%error, "could not hand lost leases back; they are claimed once this worker's heartbeat lapses");
        }
    }

    /// After a lapse of the heartbeat (others may have taken shards over): keeps only the
    /// leases still held, and takes back those still its own that it had dropped.
    async fn keep_held(
        &self,
        shards: &mut HashMap<ShardId, ShardState>,
        look: &mut Look,
        held: Vec<Lease>,
    ) -> Result<(), StoreError> {
        let held: HashMap<ShardId, i64> = held.into_iter().map(|l| (l.shard_id, l.generation)).collect();
        let dropped: Vec<ShardId> = shards
            .iter()
            .filter(|(id, state)| held.get(*id) != Some(&state.lease.generation))
            .map(|(id, _)| *id)
            .collect();
        for id in dropped {
            shards.remove(&id);
            look.forget(id);
        }
        let adopted: Vec<Claim> = held
            .iter()
            .filter(|(id, _)| !shards.contains_key(id))
            .map(|(id, generation)| Claim {
                lease: Lease { shard_id: *id, generation: *generation },
                taken_over: false,
            })
            .collect();
        self.take(shards, look, adopted).await
    }

    /// Claims shards nobody holds or gives idle ones up, toward its fair share of `fleet`.
    async fn lease_round(
        &self,
        shards: &mut HashMap<ShardId, ShardState>,
        look: &mut Look,
        fleet: Fleet,
    ) -> Result<(), StoreError> {
        let delta = shards::rebalance(
            shards.len() as i64,
            fleet.live_workers,
            fleet.shards,
            self.settings.claim_limit,
        );
        if delta < 0 {
            let idle: Vec<ShardId> = shards
                .iter()
                .filter(|(_, s)| s.is_idle())
                .map(|(id, _)| *id)
                .take(delta.unsigned_abs() as usize)
                .collect();
            if !idle.is_empty() {
                shards::give_up(&self.pool, &self.id, &idle).await?;
                for id in &idle {
                    shards.remove(id);
                    look.forget(*id);
                }
                tracing::info!(worker = %self.id, shards = idle.len(), "gave shards up to balance the fleet");
            }
            return Ok(());
        }
        let claimed = shards::claim(&self.pool, &self.id, delta).await?;
        self.take(shards, look, claimed).await
    }

    /// Starts holding the shards of `claimed`.
    async fn take(
        &self,
        shards: &mut HashMap<ShardId, ShardState>,
        look: &mut Look,
        claimed: Vec<Claim>,
    ) -> Result<(), StoreError> {
        if claimed.is_empty() {
            return Ok(());
        }
        let ids: Vec<ShardId> = claimed.iter().map(|c| c.lease.shard_id).collect();
        let infos: HashMap<ShardId, _> =
            shards::infos(&self.pool, &ids).await?.into_iter().map(|i| (i.id, i)).collect();
        // Read for all at once: a claim of thousands costs a few queries, not a few per shard.
        let mut progress = Progress::read(&self.pool, &ids).await?;
        let metrics = crate::metrics::pipeline();
        metrics.lease_takeovers.inc_by(claimed.iter().filter(|c| c.taken_over).count() as u64);
        for Claim { lease, taken_over } in claimed {
            let Some(info) = infos.get(&lease.shard_id).cloned() else { continue };
            tracing::info!(shard = %lease.shard_id, generation = lease.generation, account = %info.account,
                region = %info.region, taken_over, "shard claimed");
            let mut state = ShardState::new(lease, info);
            state.load(progress.remove(&lease.shard_id).unwrap_or_default());
            shards.insert(lease.shard_id, state);
            look.claimed.insert(lease.shard_id);
        }
        Ok(())
    }
}

/// A pass with fewer shards due than this takes shards due soon, earliest first, up to it.
const WORK_AHEAD_ROOM: usize = 256;

/// When a pass has room (fewer than [`WORK_AHEAD_ROOM`] shards due), it fills it with the shards
/// whose files are due soonest, at most half the shortest delivery interval ahead, and cuts their
/// files early. Files fall due in waves (every shard that got events in the same seconds is due
/// an interval later: after a start, a backlog, a takeover); a worker that waited for each file's
/// due time met a wave with all of it at once and delivered its tail late.
fn work_ahead<'s>(
    busy: &mut Vec<&'s mut ShardState>,
    mut waiting: Vec<&'s mut ShardState>,
    snapshot: &Snapshot,
) {
    let room = WORK_AHEAD_ROOM.saturating_sub(busy.len());
    let shortest = snapshot.trails.iter().map(|t| t.settings.delivery_interval_seconds.max(1)).min();
    let (Some(shortest), true) = (shortest, room > 0 && !waiting.is_empty()) else { return };
    let horizon = chrono::Utc::now() + chrono::Duration::milliseconds(i64::from(shortest) * 500);
    waiting.retain(|state| state.due().is_some_and(|due| due <= horizon));
    if waiting.len() > room {
        waiting.select_nth_unstable_by_key(room, |state| state.due());
        waiting.truncate(room);
    }
    for state in waiting {
        state.cut_at = state.due();
        busy.push(state);
    }
}

/// What a worker knows between passes about which shards to look at.
#[derive(Default)]
struct Look {
    /// The last sequence number staging handed out, per held shard, as last read.
    heads: HashMap<ShardId, i64>,
    /// Shards the next pass looks at whatever it hears: their last round left work.
    active: HashSet<ShardId>,
    /// Shards claimed since the last pass: their heads are read in the next one.
    claimed: HashSet<ShardId>,
}

impl Look {
    /// A shard is no longer held. (Forgotten where it is dropped, not by a walk over every held
    /// shard on each pass: at idle that walk was a third of a worker's CPU.)
    fn forget(&mut self, shard: ShardId) {
        self.heads.remove(&shard);
        self.active.remove(&shard);
        self.claimed.remove(&shard);
    }
}
