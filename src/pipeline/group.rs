//! Group rounds: the shards of a pass whose rounds need nothing unusual go round together. One
//! fenced transaction takes every tap's events and seals every file of the group, the puts run side
//! by side, and one fenced transaction records every file and moves every cursor. At organization
//! scale a shard's file holds a handful of events, and the transactions of each file (seal, commit,
//! one per tap key) were most of what delivering an event cost.
//!
//! A shard that needs anything else takes its own [`Round`], which handles each case: a batch left
//! sealed, a trail or tap key backing off, a tap key behind the buffer, a tap that fails in the
//! group's transaction (its events come again, one shard and key at a time).

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::batch::{self, Cut};
use super::buffer;
use super::checkpoint::{self, SealedBatch};
use super::round::{FileContents, Progress, Round, ShardState, next_due};
use super::shards::{self, Lease};
use super::tap_runner;
use super::taps::{TapBatch, TapContext, TapError};
use crate::model::shard::ShardId;
use crate::model::trail::Trail;
use crate::store::StoreError;

/// Rounds a busy shard may take within one pass.
const BUSY_SHARD_ROUNDS: usize = 16;

/// Shards read (or taking their own rounds) at once.
const SHARDS_IN_PARALLEL: usize = 8;

/// Objects put at once.
const PUTS_IN_PARALLEL: usize = 16;

/// Runs the rounds of `states` (several while a shard's buffer keeps filling up): together where
/// they can, alone where they must. The outcome of each shard, as [`Round::run`] gives it.
pub async fn run(round: &Round<'_>, states: Vec<&mut ShardState>) -> Vec<(ShardId, Result<(), StoreError>)> {
    let mut done = Vec::with_capacity(states.len());
    let mut pending = states;
    reload(round, &mut pending).await;
    for _ in 0..BUSY_SHARD_ROUNDS {
        if pending.is_empty() {
            break;
        }
        let (grouped, mut alone): (Vec<&mut ShardState>, Vec<&mut ShardState>) =
            pending.into_iter().partition(|state| state.groupable(round.snapshot));
        let mut next = Vec::new();
        for (state, step) in step(round, grouped).await {
            match step {
                Step::More => next.push(state),
                Step::Done => done.push((state.info.id, Ok(()))),
                Step::Failed(error) => done.push((state.info.id, Err(error))),
                Step::Alone => alone.push(state),
            }
        }
        let mut outcomes: Vec<(&mut ShardState, Result<bool, StoreError>)> = Vec::new();
        while !alone.is_empty() {
            let some: Vec<&mut ShardState> = alone.drain(..alone.len().min(SHARDS_IN_PARALLEL)).collect();
            outcomes.extend(
                futures::future::join_all(some.into_iter().map(|state| async move {
                    let outcome = round.run(&mut *state).await;
                    (state, outcome)
                }))
                .await,
            );
        }
        for (state, outcome) in outcomes {
            match outcome {
                Ok(true) => next.push(state),
                Ok(false) => done.push((state.info.id, Ok(()))),
                Err(error) => done.push((state.info.id, Err(error))),
            }
        }
        pending = next;
    }
    done.extend(pending.into_iter().map(|state| (state.info.id, Ok(()))));
    done
}

/// Reads the progress of every stale shard of `states` at once (those it cannot read reload in
/// their own rounds).
async fn reload(round: &Round<'_>, states: &mut [&mut ShardState]) {
    let stale: Vec<ShardId> = states.iter().filter(|s| s.stale).map(|s| s.info.id).collect();
    if stale.is_empty() {
        return;
    }
    match Progress::read(round.pool, &stale).await {
        Ok(mut read) => {
            for state in states.iter_mut().filter(|s| s.stale) {
                state.load(read.remove(&state.info.id).unwrap_or_default());
            }
        }
        Err(error) => tracing::warn!(%error, shards = stale.len(), "cannot read the progress of shards"),
    }
}

/// How one shard came out of a group step.
enum Step {
    /// Its buffer was full and something moved: more is waiting.
    More,
    Done,
    Failed(StoreError),
    /// It needs a round of its own.
    Alone,
}

/// One shard's part of a group step.
struct Plan<'t> {
    lease: Lease,
    was_full: bool,
    /// (tap index, key, through seq) of each key with events to take.
    taps: Vec<(usize, String, i64)>,
    /// (trail id, through seq) of each trail that takes none of its next events.
    skips: Vec<(i64, i64)>,
    /// Files to cut.
    files: Vec<FileCut<'t>>,
    sealed: Vec<SealedBatch>,
    /// Decided: the shard takes no further part.
    outcome: Option<Step>,
}

/// A file a trail's cut asks for.
struct FileCut<'t> {
    trail: &'t Trail,
    from: i64,
    through: i64,
    /// Taken out when the file is built.
    records: Vec<Arc<str>>,
    contents: FileContents,
    /// When its events arrived (cleared when its put fails: nothing delivered to time).
    arrivals: Vec<DateTime<Utc>>,
}

impl Plan<'_> {
    fn new(lease: Lease) -> Self {
        Self {
            lease,
            was_full: false,
            taps: Vec::new(),
            skips: Vec::new(),
            files: Vec::new(),
            sealed: Vec::new(),
            outcome: None,
        }
    }

    fn writes(&self) -> bool {
        self.outcome.is_none() && !(self.taps.is_empty() && self.skips.is_empty() && self.sealed.is_empty())
    }
}

/// One round of every shard of `states`, together.
async fn step<'s>(round: &Round<'_>, mut states: Vec<&'s mut ShardState>) -> Vec<(&'s mut ShardState, Step)> {
    if states.is_empty() {
        return Vec::new();
    }
    let snapshot = round.snapshot;
    let started = std::time::Instant::now();
    for state in &mut states {
        state.not_before = None;
    }
    let mut plans: Vec<Plan<'_>> = states.iter().map(|s| Plan::new(s.lease)).collect();
    refill(round, &mut states, &mut plans).await;
    let read = started.elapsed();
    for (state, plan) in states.iter().zip(&mut plans).filter(|(_, p)| p.outcome.is_none()) {
        plan_shard(round, state, plan);
    }
    // A tap that cannot refresh (its rules cannot be read) backs off in the shards' own rounds.
    let mut refreshed = true;
    for (index, tap) in round.taps.iter().enumerate() {
        if plans.iter().any(|p| p.writes() && p.taps.iter().any(|t| t.0 == index))
            && let Err(error) = tap.refresh().await
        {
            tracing::warn!(tap = tap.name(), %error, "tap could not refresh; shards take their own rounds");
            refreshed = false;
        }
    }
    if !refreshed {
        for plan in plans.iter_mut().filter(|p| p.outcome.is_none()) {
            plan.outcome = Some(Step::Alone);
        }
    }
    if let Err(error) = build(round, &states, &mut plans).await {
        tracing::warn!(%error, "cannot build the group's files");
        for plan in plans.iter_mut().filter(|p| p.outcome.is_none()) {
            plan.outcome = Some(Step::Alone);
        }
    }

    let built = started.elapsed();
    let sealed_any = seal(round, &mut states, &mut plans).await;
    let sealed = started.elapsed();
    if sealed_any {
        super::failpoints::abort_at("after-seal");
        super::failpoints::pause("delivery-pause").await;
    }
    let put = put(round, &mut states, &mut plans).await;
    let in_place = started.elapsed();
    if put {
        super::failpoints::abort_at("after-put");
        super::failpoints::pause("delivery-pause").await;
    }
    commit(round, &mut states, &mut plans).await;
    let committed = started.elapsed();
    release(round, &mut states, &mut plans).await;
    tracing::debug!(shards = states.len(), files = plans.iter().map(|p| p.sealed.len()).sum::<usize>(),
        read = ?read, built = ?built, sealed = ?sealed, put = ?in_place, committed = ?committed,
        released = ?started.elapsed(), "group step");

    states
        .into_iter()
        .zip(plans)
        .map(|(state, plan)| {
            state.cut_at = None;
            if let Some(outcome) = plan.outcome {
                return (state, outcome);
            }
            let covering: Vec<&Trail> = snapshot.trails_covering(&state.info.account).collect();
            state.not_before = next_due(state, &covering);
            let keys = tap_runner::keys(round.taps, &state.info, snapshot);
            state.taps.behind =
                keys.iter().any(|(_, key)| state.taps.cursor(key) < state.buffer.loaded_through());
            let moved = !(plan.taps.is_empty() && plan.skips.is_empty() && plan.sealed.is_empty());
            (state, if plan.was_full && moved { Step::More } else { Step::Done })
        })
        .collect()
}

/// Takes out of each buffer what everyone passed and reads what has room, for all shards in one
/// call to staging.
async fn refill(round: &Round<'_>, states: &mut [&mut ShardState], plans: &mut [Plan<'_>]) {
    let mut floors = Vec::with_capacity(states.len());
    for state in states.iter_mut() {
        floors.push(round.pop_passed(state).await);
    }
    let wanted: Vec<(usize, (ShardId, i64, i64))> = states
        .iter_mut()
        .enumerate()
        .filter_map(|(i, state)| {
            let (after, limit) = state.buffer.wants(floors[i], round.capacity)?;
            Some((i, (state.info.id, after, limit)))
        })
        .collect();
    if wanted.is_empty() {
        return;
    }
    let reads: Vec<(ShardId, i64, i64)> = wanted.iter().map(|w| w.1).collect();
    match buffer::read_many(round.staging, &reads).await {
        // Groupable shards have covering trails: what is at or below the floor is not kept.
        Ok(read) => {
            for ((i, _), events) in wanted.into_iter().zip(read) {
                states[i].buffer.take(events, floors[i], false);
            }
        }
        Err(error) => {
            tracing::warn!(%error, shards = reads.len(), "cannot read a group's staged events");
            for (i, _) in wanted {
                states[i].stale = true;
                plans[i].outcome = Some(Step::Done);
            }
        }
    }
}

/// What the shard's round is to do: the tap keys' next events, each trail's cut.
fn plan_shard<'t>(round: &Round<'t>, state: &ShardState, plan: &mut Plan<'t>) {
    let snapshot = round.snapshot;
    plan.was_full = state.buffer.is_full();
    for (index, key) in tap_runner::keys(round.taps, &state.info, snapshot) {
        let cursor = state.taps.cursor(&key);
        if tap_runner::fell_behind(&state.buffer, cursor) {
            plan.outcome = Some(Step::Alone);
            return;
        }
        if let Some(last) = tap_runner::pending(state.buffer.iter(), cursor, snapshot).last() {
            plan.taps.push((index, key, last.seq));
        }
    }
    for trail in snapshot.trails_covering(&state.info.account) {
        let from = state.cursor(trail.id);
        match round.cut(state, trail) {
            Cut::Nothing | Cut::Wait => {}
            Cut::Skip { through } => plan.skips.push((trail.id, through)),
            Cut::File { picked, through, .. } => {
                let records = picked.iter().map(|e| Arc::clone(&e.record)).collect();
                let arrivals = picked.iter().map(|e| e.received_at).collect();
                let contents = FileContents::of(picked.into_iter());
                plan.files.push(FileCut { trail, from, through, records, contents, arrivals });
            }
        }
    }
}

/// Builds every file of the group in one task off the runtime, and names them.
async fn build(
    round: &Round<'_>,
    states: &[&mut ShardState],
    plans: &mut [Plan<'_>],
) -> Result<(), StoreError> {
    let level = round.gzip_level;
    let records: Vec<Vec<Arc<str>>> = plans
        .iter_mut()
        .filter(|p| p.outcome.is_none())
        .flat_map(|p| p.files.iter_mut().map(|f| std::mem::take(&mut f.records)))
        .collect();
    if records.is_empty() {
        return Ok(());
    }
    let mut built = tokio::task::spawn_blocking(move || {
        records.iter().map(|r| batch::build(r.iter().map(|r| &**r), level)).collect::<Vec<_>>()
    })
    .await
    .map_err(|e| StoreError::Corrupt(format!("batch builder panicked: {e}")))?
    .into_iter();
    for (state, plan) in states.iter().zip(plans.iter_mut()).filter(|(_, p)| p.outcome.is_none()) {
        for cut in &plan.files {
            let Some(file) = built.next() else { break };
            plan.sealed.push(round.sealed_batch(
                &state.info,
                cut.trail,
                cut.from,
                cut.through,
                file,
                &cut.contents,
            ));
        }
    }
    Ok(())
}

/// Why a group transaction did not commit.
enum GroupError {
    Store(StoreError),
    /// A tap failed: its shards take their own rounds (which back off, or leave a refused event out).
    Tap(TapError),
}

impl From<StoreError> for GroupError {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

impl From<sqlx::Error> for GroupError {
    fn from(error: sqlx::Error) -> Self {
        Self::Store(error.into())
    }
}

/// A lease found lost by the group's fence check: the shard is dropped.
fn fenced(lease: Lease) -> Step {
    Step::Failed(shards::lost(lease))
}

/// Step (a) for the group, with the taps: one fenced transaction takes every tap key's events,
/// moves the tap and skipping trail cursors, and seals every file. True when some file is sealed.
async fn seal(round: &Round<'_>, states: &mut [&mut ShardState], plans: &mut [Plan<'_>]) -> bool {
    let leases: Vec<Lease> = plans.iter().filter(|p| p.writes()).map(|p| p.lease).collect();
    if leases.is_empty() {
        return false;
    }
    let written: Result<HashSet<ShardId>, GroupError> = async {
        let mut tx = round.pool.begin().await?;
        let held = shards::check_fences(&mut tx, round.owner, &leases).await?;
        let taking = |plan: &&Plan<'_>| plan.writes() && held.contains(&plan.lease.shard_id);
        // Per (shard, key): the events, then the batches that borrow them.
        let mut events = Vec::new();
        for (state, plan) in states.iter().zip(plans.iter()).filter(|(_, p)| taking(p)) {
            for (index, key, _) in &plan.taps {
                let cursor = state.taps.cursor(key);
                let pending = tap_runner::pending(state.buffer.iter(), cursor, round.snapshot);
                events.push((*index, key.as_str(), &state.info, tap_runner::tap_events(&pending)));
            }
        }
        for (index, tap) in round.taps.iter().enumerate() {
            let batches: Vec<TapBatch<'_>> = events
                .iter()
                .filter(|e| e.0 == index)
                .map(|(_, key, shard, events)| TapBatch {
                    key,
                    context: TapContext { shard, snapshot: round.snapshot },
                    events,
                })
                .collect();
            if !batches.is_empty() {
                tap.consume_many(&batches, &mut tx).await.map_err(GroupError::Tap)?;
            }
        }
        let taken: Vec<&Plan<'_>> = plans.iter().filter(taking).collect();
        let tap_moves: Vec<(ShardId, &str, i64)> = taken
            .iter()
            .flat_map(|p| p.taps.iter().map(|(_, key, through)| (p.lease.shard_id, key.as_str(), *through)))
            .collect();
        tap_runner::advance(&mut tx, &tap_moves).await?;
        let skips: Vec<(i64, ShardId, i64)> = taken
            .iter()
            .flat_map(|p| p.skips.iter().map(|(trail, through)| (*trail, p.lease.shard_id, *through)))
            .collect();
        checkpoint::upsert_cursors(&mut tx, &skips).await?;
        let sealed: Vec<&SealedBatch> = taken.iter().flat_map(|p| &p.sealed).collect();
        checkpoint::insert_sealed(&mut tx, &sealed).await?;
        tx.commit().await?;
        Ok(held)
    }
    .await;
    let mut sealed_any = false;
    match written {
        Ok(held) => {
            for (state, plan) in states.iter_mut().zip(plans.iter_mut()).filter(|(_, p)| p.writes()) {
                if !held.contains(&plan.lease.shard_id) {
                    plan.outcome = Some(fenced(plan.lease));
                    continue;
                }
                for (_, key, through) in &plan.taps {
                    state.taps.cursors.insert(key.clone(), *through);
                    state.taps.retry.remove(key);
                }
                for (trail, through) in &plan.skips {
                    state.cursors.insert(*trail, *through);
                }
                sealed_any |= !plan.sealed.is_empty();
            }
        }
        Err(GroupError::Tap(error)) => {
            tracing::warn!(%error, "a tap failed in a group of shards; they take their own rounds");
            for plan in plans.iter_mut().filter(|p| p.writes()) {
                plan.outcome = Some(Step::Alone);
            }
        }
        Err(GroupError::Store(error)) => {
            // Whether it took effect is unknown: the shards read their progress again.
            tracing::warn!(%error, shards = leases.len(), "sealing a group of shards failed");
            for (state, plan) in states.iter_mut().zip(plans.iter_mut()).filter(|(_, p)| p.writes()) {
                state.stale = true;
                plan.outcome = Some(Step::Done);
            }
        }
    }
    sealed_any
}

/// Step (b) for every sealed file of the group, several at once. A file whose put failed stays
/// sealed (its trail backs off over the shard). True when some file is in place.
async fn put(round: &Round<'_>, states: &mut [&mut ShardState], plans: &mut [Plan<'_>]) -> bool {
    let puts: Vec<(usize, usize)> = plans
        .iter()
        .enumerate()
        .filter(|(_, p)| p.outcome.is_none())
        .flat_map(|(i, p)| (0..p.sealed.len()).map(move |j| (i, j)))
        .collect();
    if puts.is_empty() {
        return false;
    }
    let mut outcomes = Vec::with_capacity(puts.len());
    for some in puts.chunks(PUTS_IN_PARALLEL) {
        let plans = &*plans;
        outcomes.extend(
            futures::future::join_all(some.iter().map(|&(i, j)| async move {
                ((i, j), checkpoint::put(round.pool, round.sink, &plans[i].sealed[j]).await)
            }))
            .await,
        );
    }
    let mut failed: Vec<(usize, usize)> = Vec::new();
    for ((i, j), outcome) in outcomes {
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                states[i].put_failed(&plans[i].sealed[j], &error);
                if let Some(file) = plans[i].files.get_mut(j) {
                    // Not delivered: no latency to observe.
                    file.arrivals.clear();
                }
                failed.push((i, j));
            }
            Err(error) => {
                tracing::warn!(shard = %states[i].info.id, %error, "cannot record a failed delivery");
                states[i].stale = true;
                plans[i].outcome = Some(Step::Done);
            }
        }
    }
    // Failed ones stay sealed and are not recorded now (last first, so indexes hold).
    failed.sort_unstable();
    for (i, j) in failed.into_iter().rev() {
        plans[i].sealed.remove(j);
    }
    plans.iter().any(|p| p.outcome.is_none() && !p.sealed.is_empty())
}

/// Step (c) for every file of the group in place: one fenced transaction records them all, moves
/// the trails' cursors and forgets the batches.
async fn commit(round: &Round<'_>, states: &mut [&mut ShardState], plans: &mut [Plan<'_>]) {
    let leases: Vec<Lease> =
        plans.iter().filter(|p| p.outcome.is_none() && !p.sealed.is_empty()).map(|p| p.lease).collect();
    if leases.is_empty() {
        return;
    }
    let written: Result<HashSet<ShardId>, StoreError> = async {
        let mut tx = round.pool.begin().await?;
        let held = shards::check_fences(&mut tx, round.owner, &leases).await?;
        let files: Vec<(&crate::model::shard::ShardInfo, &SealedBatch)> = states
            .iter()
            .zip(plans.iter())
            .filter(|(_, p)| p.outcome.is_none() && held.contains(&p.lease.shard_id))
            .flat_map(|(state, plan)| plan.sealed.iter().map(|batch| (&state.info, batch)))
            .collect();
        checkpoint::record(&mut tx, round.hooks, &files).await?;
        tx.commit().await?;
        Ok(held)
    }
    .await;
    match written {
        Ok(held) => {
            let now = Utc::now();
            let latency = &crate::metrics::pipeline().delivery_latency;
            for (state, plan) in states.iter_mut().zip(plans.iter_mut()) {
                if plan.outcome.is_some() || plan.sealed.is_empty() {
                    continue;
                }
                if !held.contains(&plan.lease.shard_id) {
                    plan.outcome = Some(fenced(plan.lease));
                    continue;
                }
                for batch in &plan.sealed {
                    state.committed(batch);
                    round.delivery_times.delivered(batch.trail_id, now);
                }
                for cut in &plan.files {
                    for arrival in &cut.arrivals {
                        latency.observe((now - *arrival).num_milliseconds().max(0) as f64 / 1000.0);
                    }
                }
            }
        }
        Err(error) => {
            tracing::warn!(%error, shards = leases.len(), "recording a group's files failed");
            for (state, plan) in states.iter_mut().zip(plans.iter_mut()) {
                if plan.outcome.is_none() && !plan.sealed.is_empty() {
                    // Sealed and maybe recorded: the shard reads its progress and finishes them.
                    state.stale = true;
                    plan.outcome = Some(Step::Done);
                }
            }
        }
    }
}

/// Releases from staging, in one call, what every trail and tap of each shard has passed.
async fn release(round: &Round<'_>, states: &mut [&mut ShardState], plans: &mut [Plan<'_>]) {
    let snapshot = round.snapshot;
    let mut releases: Vec<(usize, ShardId, i64)> = Vec::new();
    for (i, state) in states.iter().enumerate().filter(|(i, _)| plans[*i].outcome.is_none()) {
        let covering: Vec<&Trail> = snapshot.trails_covering(&state.info.account).collect();
        let keys = tap_runner::keys(round.taps, &state.info, snapshot);
        if let Some(through) = state.releasable(&covering, &keys) {
            releases.push((i, state.info.id, through));
        }
    }
    if releases.is_empty() {
        return;
    }
    let shards: Vec<(ShardId, i64)> = releases.iter().map(|r| (r.1, r.2)).collect();
    match round.staging.release_many(&shards, snapshot.loaded_at).await {
        Ok(_) => {
            for (i, _, through) in releases {
                states[i].released_through = through;
            }
        }
        Err(error) => {
            tracing::warn!(%error, shards = releases.len(), "cannot release a group's events from staging");
            for (i, _, _) in releases {
                states[i].stale = true;
                plans[i].outcome = Some(Step::Done);
            }
        }
    }
}
