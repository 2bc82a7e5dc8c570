//! The worker: claims shards (leases with fencing), routes each shard's staged events to the trails
//! that take them, batches per (trail, account, region), writes log files to S3, and checkpoints.
//!
//! Exactly once, in this order, per batch: (a) seal key, bytes and event range in Postgres; (b) PUT
//! the object only if absent (or already identical); (c) record the file and advance the trail's
//! cursor in one transaction that checks the lease's fencing generation. A crash anywhere repeats
//! the same key and bytes; a worker that lost its lease can neither commit nor overwrite.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::features::usage::tally as usage;
use crate::integrations::s3::{self, PutOutcome, S3Sink, SinkError};
use crate::model::AccountId;
use crate::model::record::{Category, RecordView};
use crate::model::trail::Trail;
use crate::pipeline::batcher;
use crate::pipeline::delivery::{self, Lease, SealedBatch, ShardInfo};
use crate::pipeline::router::{self, Snapshot};
use crate::pipeline::staging::{SOURCE_INSIGHTS, Staging};
use crate::pipeline::tap_cursors as taps;
use crate::pipeline::taps::{Tap, TapContext, TapEvent};
use crate::store::{StoreError, accounts, organizations, trails};

/// Worker settings (see `config.rs` for their documentation and defaults).
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub lease_ttl: Duration,
    pub poll_interval: Duration,
    pub max_batch_bytes: usize,
    pub read_limit: i64,
    pub gzip_level: u32,
    pub staged_retention: Duration,
    pub claim_limit: i64,
    /// Digest period (CloudTrail: one hour). Whole seconds.
    pub digest_period: Duration,
    /// Decrypts the digest signing keys; without it, trails with validation report an error.
    pub master_key: Option<Arc<crate::secrets::MasterKey>>,
    /// A region's signing key is replaced when older than this; None: only on demand.
    pub signing_key_rotation: Option<Duration>,
    /// Pull collectors (LookupEvents, member trail buckets) run beside delivery when set.
    pub collectors: Option<crate::integrations::collectors::CollectorConfig>,
    /// The Insights detector, which runs beside delivery.
    pub insights: crate::features::insights::detector::DetectorSettings,
    /// orgtrail's own AWS configuration (credentials, endpoints), for destinations in AWS such as
    /// trails' CloudWatch Logs groups. None: such deliveries fail with that reason.
    pub aws: Option<aws_config::SdkConfig>,
    /// Alert delivery (the dispatcher every worker runs).
    pub alerts: crate::features::alerts::AlertSettings,
    /// Delivery notifications to trails' SNS topics (the notifier every worker runs; it publishes
    /// with `aws`).
    pub notifications: crate::features::notifications::notifier::NotificationSettings,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            lease_ttl: Duration::from_secs(15),
            poll_interval: Duration::from_millis(200),
            max_batch_bytes: 10 * 1024 * 1024,
            read_limit: 50_000,
            gzip_level: 6,
            staged_retention: Duration::from_secs(30 * 24 * 3600),
            // Per claim round (one a second). Each claimed shard costs a few queries before the
            // next renewal; with thousands at once a worker outlasted its TTL and leases bounced
            // between workers (the scale-out test at 4,000 shards). Small rounds also spread new
            // shards over the fleet.
            claim_limit: 500,
            digest_period: crate::features::integrity::writer::DEFAULT_PERIOD,
            master_key: None,
            signing_key_rotation: Some(Duration::from_secs(30 * 24 * 3600)),
            collectors: None,
            insights: Default::default(),
            aws: None,
            alerts: crate::features::alerts::AlertSettings::default(),
            notifications: Default::default(),
        }
    }
}

/// Test hook: `ORGTRAIL_FAILPOINT=<name>` aborts the process at that point, as a SIGKILL would.
pub fn failpoint(name: &str) {
    if std::env::var("ORGTRAIL_FAILPOINT").is_ok_and(|v| v == name) {
        eprintln!("failpoint {name}: aborting");
        std::process::abort();
    }
}

/// Test hook: `ORGTRAIL_TEST_PAUSE_MS=<n>` widens the seal→PUT→commit window by n ms per step, so
/// that crash tests' random kills land inside it.
async fn test_pause() {
    static PAUSE: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();
    let pause = PAUSE.get_or_init(|| {
        std::env::var("ORGTRAIL_TEST_PAUSE_MS").ok().and_then(|v| v.parse().ok()).map(Duration::from_millis)
    });
    if let Some(pause) = pause {
        tokio::time::sleep(*pause).await;
    }
}

struct Staged {
    seq: i64,
    received_at: DateTime<Utc>,
    record: Arc<str>,
    /// None: the staged record no longer parses (cannot happen for records ingest accepted).
    view: Option<RecordView>,
}

/// What a worker keeps per owned shard; rebuilt from Postgres whenever the lease is (re)claimed.
struct ShardState {
    lease: Lease,
    info: ShardInfo,
    account: AccountId,
    cursors: HashMap<i64, i64>,
    buffer: VecDeque<Staged>,
    /// Highest seq loaded into the buffer.
    loaded_through: i64,
    /// Whether batches of deleted trails were looked for since the lease was taken.
    orphans_checked: bool,
    /// Released up to here (no need to ask Postgres again).
    released_through: i64,
    /// Events the buffer may hold; a full buffer cuts batches early so a busy shard keeps moving.
    capacity: i64,
    /// Trails whose outstanding sealed batch was looked for since the lease was taken.
    checked_sealed: std::collections::HashSet<i64>,
    /// Per trail: no attempt before this instant (backoff after failures).
    retry_at: HashMap<i64, (Instant, Duration)>,
    /// Per tap key: the last seq it consumed (missing: nothing yet).
    tap_cursors: HashMap<String, i64>,
    /// Per tap key: no attempt before this instant (backoff after failures).
    tap_retry_at: HashMap<String, (Instant, Duration)>,
    /// Some tap key has not consumed everything loaded (it failed, or fell behind the buffer).
    taps_behind: bool,
    /// A Postgres call failed without saying whether it took effect (a commit whose answer was
    /// lost, a connection that died): cursors and buffer are read again before anything else.
    stale: bool,
}

impl ShardState {
    fn new(lease: Lease, info: ShardInfo, account: AccountId) -> Self {
        Self {
            lease,
            info,
            account,
            cursors: HashMap::new(),
            buffer: VecDeque::new(),
            loaded_through: 0,
            capacity: MIN_READ_PER_SHARD,
            released_through: 0,
            orphans_checked: false,
            checked_sealed: Default::default(),
            retry_at: HashMap::new(),
            tap_cursors: HashMap::new(),
            tap_retry_at: HashMap::new(),
            taps_behind: false,
            stale: true,
        }
    }
}

/// Events a shard may buffer however many shards the worker holds.
const MIN_READ_PER_SHARD: i64 = 2_000;

/// Rounds a busy shard may take within one pass.
const BUSY_SHARD_ROUNDS: usize = 16;

/// Shards one worker processes at once.
const SHARDS_IN_PARALLEL: usize = 8;

/// How often a worker looks for shards nobody holds (new shards, dead workers' shards).
const CLAIM_EVERY: Duration = Duration::from_secs(1);

/// Events handed to one tap call at most (one transaction).
const TAP_BATCH: usize = 5_000;

/// Doubles the last backoff (1 s first, 30 s at most).
fn next_backoff(last: Option<&(Instant, Duration)>) -> Duration {
    last.map(|(_, last)| (*last * 2).min(Duration::from_secs(30))).unwrap_or(Duration::from_secs(1))
}

fn in_backoff(state: &ShardState, trail_id: i64) -> bool {
    state.retry_at.get(&trail_id).is_some_and(|(at, _)| Instant::now() < *at)
}

pub struct Worker {
    pool: PgPool,
    staging: Arc<dyn Staging>,
    sink: S3Sink,
    id: String,
    settings: WorkerSettings,
    /// Consumers of every shard's events beside the trails.
    taps: Vec<Arc<dyn Tap>>,
    /// Shards currently held, for the memory budget.
    shard_count: std::sync::atomic::AtomicI64,
    /// Per held shard, the labels of its lag series (removed when the shard goes).
    lag_series: std::sync::Mutex<HashMap<i64, [String; 4]>>,
}

impl Worker {
    pub fn new(pool: PgPool, staging: Arc<dyn Staging>, sink: S3Sink, settings: WorkerSettings) -> Self {
        let id = format!(
            "{}-{}-{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into()),
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        );
        let taps = crate::pipeline::taps::standard(&pool, &settings);
        Self {
            pool,
            staging,
            sink,
            id,
            settings,
            taps,
            shard_count: std::sync::atomic::AtomicI64::new(0),
            lag_series: Default::default(),
        }
    }

    /// Adds a tap beside the standard ones.
    pub fn with_tap(mut self, tap: Arc<dyn Tap>) -> Self {
        self.taps.push(tap);
        self
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Runs until `shutdown` resolves, then gives its leases up.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        tracing::info!(worker = %self.id, "worker started");
        tokio::pin!(shutdown);
        // Collectors stage what they pull; this loop delivers it like pushed events.
        let (stop_collectors, collectors_stopped) = tokio::sync::watch::channel(false);
        // Alerts the rules tap wrote to the outbox are sent from every worker.
        let mut dispatcher_stopped = collectors_stopped.clone();
        let dispatcher = tokio::spawn(crate::features::alerts::dispatch::run(
            self.pool.clone(),
            self.settings.alerts.with_master_key(self.settings.master_key.clone()),
            async move {
                let _ = dispatcher_stopped.wait_for(|s| *s).await;
            },
        ));
        // Notifications of delivered files queued in the outbox are published from every worker.
        let mut notifier_stopped = collectors_stopped.clone();
        let notifier = tokio::spawn(crate::features::notifications::notifier::run(
            self.pool.clone(),
            crate::integrations::sns::SnsSink::new(self.settings.aws.clone()),
            self.settings.notifications.clone(),
            async move {
                let _ = notifier_stopped.wait_for(|s| *s).await;
            },
        ));
        let collectors = self.settings.collectors.clone().map(|config| {
            let collector = Arc::new(crate::integrations::collectors::Collector::new(
                self.pool.clone(),
                self.staging.clone(),
                config,
                self.id.clone(),
            ));
            let mut stopped = collectors_stopped.clone();
            tokio::spawn(crate::integrations::collectors::runner::run(collector, async move {
                let _ = stopped.wait_for(|s| *s).await;
            }))
        });
        // The Insights detector stages Start/End records; this loop delivers them.
        let mut insights_stopped = collectors_stopped.clone();
        let insights = tokio::spawn(crate::features::insights::detector::run(
            self.pool.clone(),
            self.staging.clone(),
            self.settings.insights.clone(),
            async move {
                let _ = insights_stopped.wait_for(|s| *s).await;
            },
        ));
        let mut shards: HashMap<i64, ShardState> = HashMap::new();
        let mut last_renewal = Instant::now() - self.settings.lease_ttl;
        let mut last_claim = Instant::now() - CLAIM_EVERY;
        let mut last_expiry = Instant::now();
        let mut digest_writer = crate::features::integrity::writer::DigestWriter::new(
            self.pool.clone(),
            self.sink.clone(),
            crate::features::integrity::keyring::Keyring::new(
                self.pool.clone(),
                self.settings.master_key.clone(),
            )
            .rotating_after(self.settings.signing_key_rotation),
            self.settings.digest_period,
        );
        loop {
            let renew = last_renewal.elapsed() >= self.settings.lease_ttl / 3;
            if renew || last_claim.elapsed() >= CLAIM_EVERY {
                if let Err(error) = self.lease_round(&mut shards, renew).await {
                    tracing::warn!(%error, "lease round failed");
                }
                last_claim = Instant::now();
                self.refresh_lag(&shards).await;
                if renew {
                    last_renewal = Instant::now();
                }
            }
            if last_expiry.elapsed() >= Duration::from_secs(3600) {
                let cutoff = Utc::now() - self.settings.staged_retention;
                match delivery::expire_staged(&self.pool, cutoff).await {
                    Ok(n) if n > 0 => {
                        tracing::warn!(events = n, "undelivered events expired after the retention")
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "expiring staged events failed"),
                }
                last_expiry = Instant::now();
            }
            match self.snapshot().await {
                Ok(snapshot) => {
                    // Shards are independent: several at once keep every core busy.
                    self.shard_count.store(shards.len() as i64, std::sync::atomic::Ordering::Relaxed);
                    // Only shards with something to do: new events, buffered events, or trails whose
                    // leftover sealed batches were not looked for yet. One query tells which.
                    let ids: Vec<i64> = shards.keys().copied().collect();
                    let heads = match delivery::shard_heads(&self.pool, &ids).await {
                        Ok(heads) => heads,
                        Err(error) => {
                            tracing::warn!(%error, "cannot read shard heads");
                            HashMap::new()
                        }
                    };
                    let entries: Vec<(i64, &mut ShardState)> = shards
                        .iter_mut()
                        .filter(|(id, state)| {
                            heads.get(*id).is_none_or(|head| *head > state.loaded_through)
                                || !state.buffer.is_empty()
                                || state.taps_behind
                                || snapshot
                                    .trails_covering(&state.account)
                                    .any(|t| !state.checked_sealed.contains(&t.id))
                        })
                        .map(|(id, state)| (*id, state))
                        .collect();
                    let mut outcomes = Vec::with_capacity(entries.len());
                    let mut entries = entries.into_iter();
                    loop {
                        let batch: Vec<(i64, &mut ShardState)> =
                            entries.by_ref().take(SHARDS_IN_PARALLEL).collect();
                        if batch.is_empty() {
                            break;
                        }
                        let running =
                            batch.into_iter().map(|(id, state)| self.process_shard(id, state, &snapshot));
                        outcomes.extend(futures::future::join_all(running).await);
                    }
                    let mut lost = Vec::new();
                    for (shard_id, outcome) in outcomes {
                        match outcome {
                            Ok(()) => {}
                            Err(StoreError::Fenced(why)) => {
                                tracing::warn!(shard = shard_id, %why, "lease lost; shard dropped");
                                lost.push(shard_id);
                            }
                            Err(error) => tracing::warn!(shard = shard_id, %error, "shard processing failed"),
                        }
                    }
                    for shard_id in lost {
                        shards.remove(&shard_id);
                    }
                    digest_writer.pass(&snapshot).await;
                }
                Err(error) => tracing::warn!(%error, "cannot load trails"),
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(self.settings.poll_interval) => {}
            }
        }
        let _ = stop_collectors.send(true);
        let _ = dispatcher.await;
        let _ = notifier.await;
        if let Err(error) = insights.await {
            tracing::warn!(%error, "insights detector ended abnormally");
        }
        if let Some(collectors) = collectors
            && let Err(error) = collectors.await
        {
            tracing::warn!(%error, "collectors ended abnormally");
        }
        if let Err(error) = delivery::release_leases(&self.pool, &self.id).await {
            tracing::warn!(%error, "could not give leases up; they expire on their own");
        }
        tracing::info!(worker = %self.id, "worker stopped");
        Ok(())
    }

    /// Renews held leases (when `renew`) and claims shards nobody holds.
    async fn lease_round(
        &self,
        shards: &mut HashMap<i64, ShardState>,
        renew: bool,
    ) -> Result<(), StoreError> {
        let ttl_ms = self.settings.lease_ttl.as_millis() as i64;
        if renew {
            let held = delivery::renew_leases(&self.pool, &self.id, ttl_ms).await?;
            let held: HashMap<i64, i64> = held.into_iter().map(|l| (l.shard_id, l.generation)).collect();
            shards.retain(|id, state| held.get(id) == Some(&state.lease.generation));
        }
        let claimed = delivery::claim_shards(&self.pool, &self.id, ttl_ms, self.settings.claim_limit).await?;
        if claimed.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = claimed.iter().map(|c| c.lease.shard_id).collect();
        let infos: HashMap<i64, ShardInfo> =
            delivery::shard_infos(&self.pool, &ids).await?.into_iter().map(|i| (i.id, i)).collect();
        let metrics = crate::metrics::pipeline();
        metrics.lease_takeovers.inc_by(claimed.iter().filter(|c| c.taken_over).count() as u64);
        for delivery::Claim { lease, taken_over } in claimed {
            let Some(info) = infos.get(&lease.shard_id).cloned() else { continue };
            let Ok(account) = AccountId::parse("account_id", &info.account_id) else { continue };
            tracing::info!(shard = lease.shard_id, generation = lease.generation, account = %info.account_id,
                region = %info.region, taken_over, "shard claimed");
            // Its cursors are read on its first round (the state starts stale).
            shards.insert(lease.shard_id, ShardState::new(lease, info, account));
        }
        Ok(())
    }

    /// Sets `orgtrail_shard_lag_seconds` of every held shard and drops the series of shards no
    /// longer held.
    async fn refresh_lag(&self, shards: &HashMap<i64, ShardState>) {
        let metrics = crate::metrics::pipeline();
        let ids: Vec<i64> = shards.keys().copied().collect();
        let lag = match delivery::staged_lag(&self.pool, &ids).await {
            Ok(lag) => lag,
            Err(error) => {
                tracing::warn!(%error, "cannot read shard lag");
                return;
            }
        };
        let mut series = self.lag_series.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        series.retain(|id, labels| {
            let held = shards.contains_key(id);
            if !held {
                let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
                let _ = metrics.shard_lag.remove_label_values(&labels);
            }
            held
        });
        for (id, state) in shards {
            let labels = series.entry(*id).or_insert_with(|| {
                [
                    id.to_string(),
                    state.info.account_id.clone(),
                    state.info.region.clone(),
                    state.info.source.clone(),
                ]
            });
            let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
            metrics.shard_lag.with_label_values(&labels).set(lag.get(id).copied().unwrap_or(0.0));
        }
        metrics.shards_held.set(series.len() as i64);
    }

    async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let loaded_at = Utc::now();
        let trails = trails::all(&self.pool).await?;
        let organization = organizations::get(&self.pool).await?;
        let organization_id = organization.as_ref().map(|o| o.id.to_string());
        let organization_regions = organization
            .map(|o| o.regions.iter().map(|r| r.as_str().to_owned()).collect())
            .unwrap_or_default();
        let account_status = accounts::statuses(&self.pool).await?.into_iter().collect();
        Ok(Snapshot { trails, organization_id, organization_regions, account_status, loaded_at })
    }

    async fn process_shard(
        &self,
        shard_id: i64,
        state: &mut ShardState,
        snapshot: &Snapshot,
    ) -> (i64, Result<(), StoreError>) {
        // A busy shard goes round again while its buffer keeps filling up, instead of waiting for
        // the next pass over every shard.
        for _ in 0..BUSY_SHARD_ROUNDS {
            match self.process(state, snapshot).await {
                Ok(true) => continue,
                Ok(false) => return (shard_id, Ok(())),
                Err(error) => return (shard_id, Err(error)),
            }
        }
        (shard_id, Ok(()))
    }

    /// Reads the shard's durable progress again and forgets everything derived from the old one.
    async fn reload(&self, state: &mut ShardState) -> Result<(), StoreError> {
        state.cursors = delivery::cursors(&self.pool, state.info.id).await?.into_iter().collect();
        state.tap_cursors = taps::cursors(&self.pool, state.info.id).await?;
        state.buffer.clear();
        state.loaded_through = 0;
        state.released_through = 0;
        state.orphans_checked = false;
        state.checked_sealed.clear();
        state.stale = false;
        Ok(())
    }

    /// One round over a shard; true when the buffer was full (more is waiting).
    async fn process(&self, state: &mut ShardState, snapshot: &Snapshot) -> Result<bool, StoreError> {
        let result = self.process_fresh(state, snapshot).await;
        if matches!(&result, Err(error) if !matches!(error, StoreError::Fenced(_))) {
            state.stale = true;
        }
        result
    }

    async fn process_fresh(&self, state: &mut ShardState, snapshot: &Snapshot) -> Result<bool, StoreError> {
        if state.stale {
            self.reload(state).await?;
        }
        let account = state.account.clone();
        let covering: Vec<&Trail> = snapshot.trails_covering(&account).collect();
        // Finish batches a previous owner (or a crash) left sealed before anything else, including
        // those of trails deleted since: every object in a bucket must end up recorded.
        let trail_vanished = state.cursors.keys().any(|id| !snapshot.trails.iter().any(|t| t.id == *id));
        if trail_vanished {
            state.cursors.retain(|id, _| snapshot.trails.iter().any(|t| t.id == *id));
            state.orphans_checked = false;
        }
        if !state.orphans_checked {
            state.orphans_checked = true;
            for batch in delivery::orphaned_sealed(&self.pool, state.info.id).await? {
                tracing::info!(trail = %batch.trail_arn, key = %batch.object_key, "finishing a batch of a deleted trail");
                self.deliver(state, batch).await?;
            }
        }
        for trail in &covering {
            if in_backoff(state, trail.id) {
                continue;
            }
            if state.checked_sealed.insert(trail.id)
                && let Some(batch) = delivery::sealed(&self.pool, trail.id, state.info.id).await?
            {
                self.deliver(state, batch).await?;
            }
        }

        let tap_keys = self.tap_keys(state, snapshot);
        let tap_floor =
            tap_keys.iter().map(|(_, key)| state.tap_cursors.get(key).copied().unwrap_or(0)).min();
        let trail_floor = covering.iter().map(|t| state.cursors.get(&t.id).copied().unwrap_or(0)).min();
        // The trails hold the buffer (a tap that fell behind reads staging itself, so a failing
        // tap never stalls delivery); without trails, the taps do.
        let min_cursor = trail_floor.or(tap_floor);
        let floor = min_cursor.unwrap_or(i64::MAX);
        // Every covering trail has judged what leaves the buffer: count what none of them took.
        let mut untaken = BTreeMap::new();
        while state.buffer.front().is_some_and(|e| e.seq <= floor) {
            if let Some(event) = state.buffer.pop_front() {
                count_untaken(&mut untaken, &event, &covering);
            }
        }
        self.record_untaken(state, untaken).await;
        let read_from = state.loaded_through.max(min_cursor.unwrap_or(state.loaded_through));
        // Buffered events across all shards stay near `read_limit`: memory is bounded however
        // many shards a worker holds.
        let per_shard = (self.settings.read_limit
            / self.shard_count.load(std::sync::atomic::Ordering::Relaxed).max(1))
        .clamp(MIN_READ_PER_SHARD, self.settings.read_limit);
        state.capacity = per_shard;
        if (state.buffer.len() as i64) < per_shard {
            let fresh = self.staging.read(state.info.id, read_from, per_shard).await?;
            // Parsing thousands of records is CPU work: off the async runtime.
            let fresh = tokio::task::spawn_blocking(move || {
                fresh.into_iter().map(|e| (RecordView::parse(&e.record).ok(), e)).collect::<Vec<_>>()
            })
            .await
            .map_err(|e| StoreError::Corrupt(format!("parsing panicked: {e}")))?;
            for (view, event) in fresh {
                state.loaded_through = state.loaded_through.max(event.seq);
                if view.is_none() {
                    tracing::error!(
                        shard = state.info.id,
                        seq = event.seq,
                        "staged record does not parse; skipped"
                    );
                }
                if event.seq > floor || covering.is_empty() {
                    state.buffer.push_back(Staged {
                        seq: event.seq,
                        received_at: event.received_at,
                        record: Arc::from(event.record),
                        view,
                    });
                }
            }
        }

        let was_full = state.buffer.len() as i64 >= state.capacity;
        let taps_before: i64 =
            tap_keys.iter().map(|(_, k)| state.tap_cursors.get(k).copied().unwrap_or(0)).sum();
        self.run_taps(state, snapshot, &tap_keys).await?;
        let tap_floor =
            tap_keys.iter().map(|(_, key)| state.tap_cursors.get(key).copied().unwrap_or(0)).min();
        let taps_after: i64 =
            tap_keys.iter().map(|(_, k)| state.tap_cursors.get(k).copied().unwrap_or(0)).sum();

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
                // No trail covers the account: none takes these.
                let mut untaken = BTreeMap::new();
                for event in state.buffer.iter().filter(|e| e.seq <= last) {
                    count_untaken(&mut untaken, event, &covering);
                }
                self.record_untaken(state, untaken).await;
                state.buffer.retain(|e| e.seq > last);
            }
            return Ok(was_full && taps_after > taps_before);
        }

        let cursors_before: i64 =
            covering.iter().map(|t| state.cursors.get(&t.id).copied().unwrap_or(0)).sum();
        for trail in &covering {
            if in_backoff(state, trail.id) {
                continue;
            }
            if let Err(error) = self.advance_trail(state, trail, snapshot).await {
                if matches!(error, StoreError::Fenced(_)) {
                    return Err(error);
                }
                tracing::warn!(trail = %trail.arn, shard = state.info.id, %error, "delivery step failed");
                // Whether the failed step took effect is unknown: read the progress again.
                state.stale = true;
                return Ok(false);
            }
        }

        let released_through =
            covering.iter().map(|t| state.cursors.get(&t.id).copied().unwrap_or(0)).min().unwrap_or(0);
        let released_through = tap_floor.map_or(released_through, |taps| taps.min(released_through));
        if released_through > state.released_through {
            self.staging.release(state.info.id, released_through, snapshot.loaded_at).await?;
            state.released_through = released_through;
        }
        let cursors_after: i64 =
            covering.iter().map(|t| state.cursors.get(&t.id).copied().unwrap_or(0)).sum();
        Ok(was_full && (cursors_after > cursors_before || taps_after > taps_before))
    }

    /// Every (tap, key) that consumes this shard now.
    fn tap_keys(&self, state: &ShardState, snapshot: &Snapshot) -> Vec<(usize, String)> {
        self.taps
            .iter()
            .enumerate()
            .flat_map(|(index, tap)| tap.keys(&state.info, snapshot).into_iter().map(move |key| (index, key)))
            .collect()
    }

    /// Hands each tap key the buffered events after its cursor; its writes and the cursor's advance
    /// commit together (fenced). A failing key backs off alone.
    async fn run_taps(
        &self,
        state: &mut ShardState,
        snapshot: &Snapshot,
        keys: &[(usize, String)],
    ) -> Result<(), StoreError> {
        for (index, key) in keys {
            if state.tap_retry_at.get(key).is_some_and(|(at, _)| Instant::now() < *at) {
                continue;
            }
            let cursor = state.tap_cursors.get(key).copied().unwrap_or(0);
            // A tap that fell behind the buffer (it failed while the trails went on) catches up
            // from staging.
            let behind = match state.buffer.front() {
                Some(first) => first.seq > cursor + 1,
                None => cursor < state.loaded_through,
            };
            let caught_up: Vec<Staged> =
                if behind { self.read_staged(state, cursor).await? } else { Vec::new() };
            let source: Box<dyn Iterator<Item = &Staged>> =
                if behind { Box::new(caught_up.iter()) } else { Box::new(state.buffer.iter()) };
            // Judge an event only with control-plane state loaded after it arrived.
            let pending: Vec<&Staged> = source
                .filter(|e| e.seq > cursor)
                .take_while(|e| e.received_at < snapshot.loaded_at)
                .take(TAP_BATCH)
                .collect();
            let Some(through) = pending.last().map(|e| e.seq) else { continue };
            let events: Vec<TapEvent<'_>> = pending
                .iter()
                .filter_map(|e| {
                    e.view.as_ref().map(|view| TapEvent {
                        seq: e.seq,
                        received_at: e.received_at,
                        record: &e.record,
                        view,
                    })
                })
                .collect();
            let tap = &self.taps[*index];
            let refreshed = if events.is_empty() { Ok(()) } else { tap.refresh().await };
            if let Err(error) = refreshed {
                let backoff = next_backoff(state.tap_retry_at.get(key));
                state.tap_retry_at.insert(key.clone(), (Instant::now() + backoff, backoff));
                tracing::warn!(tap = tap.name(), %key, %error, retry_in = ?backoff, "tap could not refresh");
                continue;
            }
            let context = TapContext { shard: &state.info, snapshot };
            let mut tx = taps::begin_fenced(&self.pool, &self.id, state.lease).await?;
            let mut consumed =
                if events.is_empty() { Ok(()) } else { tap.consume(key, &context, &events, &mut tx).await };
            if matches!(&consumed, Err(error) if error.is_bad_data()) {
                // Postgres refuses some event itself: find it and leave it out, so that one bad
                // record never stalls the tap for its shard.
                drop(tx);
                tx = taps::begin_fenced(&self.pool, &self.id, state.lease).await?;
                consumed = consume_leaving_out_bad(tap.as_ref(), key, &context, &events, &mut tx).await;
            }
            match consumed {
                Ok(()) => {
                    taps::advance(&mut tx, state.info.id, key, through).await?;
                    tx.commit().await?;
                    state.tap_cursors.insert(key.clone(), through);
                    state.tap_retry_at.remove(key);
                }
                Err(error) => {
                    drop(tx);
                    tap.failed(key, &error).await;
                    let backoff = next_backoff(state.tap_retry_at.get(key));
                    state.tap_retry_at.insert(key.clone(), (Instant::now() + backoff, backoff));
                    tracing::warn!(tap = tap.name(), %key, shard = state.info.id, %error, retry_in = ?backoff,
                        "tap failed; its events come again");
                }
            }
        }
        state.taps_behind = keys
            .iter()
            .any(|(_, key)| state.tap_cursors.get(key).copied().unwrap_or(0) < state.loaded_through);
        Ok(())
    }

    /// Adds to the account's counts of acknowledged events no trail took (best effort: a count,
    /// not a record of which events).
    async fn record_untaken(&self, state: &ShardState, untaken: BTreeMap<&'static str, i64>) {
        if untaken.is_empty() {
            return;
        }
        if let Err(error) = crate::pipeline::staging::add_untaken(&self.pool, &state.account, &untaken).await
        {
            tracing::warn!(shard = state.info.id, %error, "cannot count events no trail took");
        }
    }

    /// Staged events of the shard after `after_seq`, parsed (for a tap behind the buffer).
    async fn read_staged(&self, state: &ShardState, after_seq: i64) -> Result<Vec<Staged>, StoreError> {
        let fresh = self.staging.read(state.info.id, after_seq, TAP_BATCH as i64).await?;
        tokio::task::spawn_blocking(move || {
            fresh
                .into_iter()
                .map(|e| Staged {
                    seq: e.seq,
                    received_at: e.received_at,
                    view: RecordView::parse(&e.record).ok(),
                    record: Arc::from(e.record),
                })
                .collect()
        })
        .await
        .map_err(|e| StoreError::Corrupt(format!("parsing panicked: {e}")))
    }

    /// Routes the buffered events after the trail's cursor and flushes a batch when due.
    async fn advance_trail(
        &self,
        state: &mut ShardState,
        trail: &Trail,
        snapshot: &Snapshot,
    ) -> Result<(), StoreError> {
        let cursor = state.cursors.get(&trail.id).copied().unwrap_or(0);
        let interval = Duration::from_secs(trail.settings.delivery_interval_seconds.max(1) as u64);
        let mut selected: Vec<&Staged> = Vec::new();
        let mut selected_bytes = 0usize;
        let mut judged_through = cursor;
        let mut full = false;
        for event in state.buffer.iter().filter(|e| e.seq > cursor) {
            // Judge an event only with control-plane state loaded after it arrived.
            if event.received_at >= snapshot.loaded_at {
                break;
            }
            let takes =
                event.view.as_ref().is_some_and(|view| router::routes(trail, view, event.received_at));
            if takes {
                if !selected.is_empty()
                    && selected_bytes + event.record.len() + 1 > self.settings.max_batch_bytes
                {
                    full = true;
                    break;
                }
                selected_bytes += event.record.len() + 1;
                selected.push(event);
            }
            judged_through = event.seq;
        }
        if judged_through == cursor {
            return Ok(());
        }
        if selected.is_empty() {
            delivery::skip(&self.pool, &self.id, state.lease, trail.id, judged_through).await?;
            state.cursors.insert(trail.id, judged_through);
            return Ok(());
        }
        let oldest_arrival = selected.iter().map(|e| e.received_at).min().unwrap_or(snapshot.loaded_at);
        let due = full
            || state.buffer.len() as i64 >= state.capacity
            || selected_bytes >= self.settings.max_batch_bytes
            || (Utc::now() - oldest_arrival).to_std().unwrap_or_default() >= interval;
        if !due {
            return Ok(());
        }

        let arrivals: Vec<DateTime<Utc>> = selected.iter().map(|e| e.received_at).collect();
        let records: Vec<Arc<str>> = selected.iter().map(|e| e.record.clone()).collect();
        let categories: Vec<(Category, usize)> = selected
            .iter()
            .map(|e| (e.view.as_ref().map_or(Category::Management, |v| v.category), e.record.len()))
            .collect();
        let times: Vec<DateTime<Utc>> =
            selected.iter().filter_map(|e| e.view.as_ref().map(|v| v.event_time)).collect();
        let level = self.settings.gzip_level;
        let file = tokio::task::spawn_blocking(move || batcher::build(records.iter().map(|r| &**r), level))
            .await
            .map_err(|e| StoreError::Corrupt(format!("batch builder panicked: {e}")))?;
        let delivered_at = Utc::now();
        // The whole range names the file: a batch with other contents never gets this key.
        let unique =
            s3::unique_part(&format!("{}:{}:{}-{}", trail.id, state.info.id, cursor, judged_through));
        let organization =
            if trail.settings.is_organization_trail { snapshot.organization_id.as_deref() } else { None };
        // Insights shards hold Insights records only: CloudTrail keeps them in their own folder.
        let key_of =
            if state.info.source == SOURCE_INSIGHTS { s3::insight_file_key } else { s3::log_file_key };
        let key = key_of(
            &trail.settings.s3_key_prefix,
            organization,
            &state.info.account_id,
            &state.info.region,
            delivered_at,
            &unique,
        );
        let tallies = usage::tally(categories, file.body.len());
        let mut batch = SealedBatch {
            trail_id: trail.id,
            trail_arn: trail.arn.to_string(),
            shard_id: state.info.id,
            from_seq: cursor,
            to_seq: judged_through,
            bucket: trail.settings.s3_bucket_name.to_string(),
            object_key: key,
            kms_key_id: trail.settings.kms_key_id.clone(),
            sha256: file.sha256,
            content_sha256: Some(file.content_sha256),
            body: file.body,
            record_count: selected.len() as i32,
            oldest_event_time: times.iter().min().copied().unwrap_or(delivered_at),
            newest_event_time: times.iter().max().copied().unwrap_or(delivered_at),
            usage_categories: None,
            usage_events: None,
            usage_bytes: None,
        };
        batch.set_tallies(&tallies);
        delivery::seal(&self.pool, &self.id, state.lease, &batch).await?;
        failpoint("after-seal");
        test_pause().await;
        self.deliver(state, batch).await?;
        if state.cursors.get(&trail.id) == Some(&judged_through) {
            let latency = &crate::metrics::pipeline().delivery_latency;
            let now = Utc::now();
            for arrival in arrivals {
                latency.observe((now - arrival).num_milliseconds().max(0) as f64 / 1000.0);
            }
        }
        Ok(())
    }

    /// Steps (b) and (c) for a sealed batch.
    /// Steps (b) and (c) for a sealed batch (its trail may have been deleted since).
    async fn deliver(&self, state: &mut ShardState, batch: SealedBatch) -> Result<(), StoreError> {
        let trail_id = batch.trail_id;
        let put = self
            .sink
            .put_log_file(&batch.bucket, &batch.object_key, &batch.body, &batch.sha256, &batch.kms_key_id)
            .await;
        match put {
            Ok(outcome) => {
                if outcome == PutOutcome::AlreadyPresent {
                    tracing::info!(key = %batch.object_key, "object already present with the sealed bytes");
                }
            }
            Err(error) => {
                let message = error.to_string();
                if matches!(error, SinkError::Conflict { .. }) {
                    tracing::error!(trail = %batch.trail_arn, %message, "delivery conflict");
                }
                let backoff = next_backoff(state.retry_at.get(&trail_id));
                state.retry_at.insert(trail_id, (Instant::now() + backoff, backoff));
                // The batch stays sealed: the retry re-sends the same key and bytes.
                state.checked_sealed.remove(&trail_id);
                state.orphans_checked = false;
                delivery::record_failure(&self.pool, trail_id, &message).await?;
                tracing::warn!(trail = %batch.trail_arn, error = %message, retry_in = ?backoff, "delivery failed");
                return Ok(());
            }
        }
        failpoint("after-put");
        test_pause().await;
        let fallback =
            if state.info.source == SOURCE_INSIGHTS { Category::Insight } else { Category::Management };
        let tallies = batch.tallies(fallback.as_str());
        delivery::commit(
            &self.pool,
            &self.id,
            state.lease,
            &batch,
            &state.info.account_id,
            &state.info.region,
            &tallies,
        )
        .await?;
        state.retry_at.remove(&trail_id);
        state.cursors.insert(trail_id, batch.to_seq);
        let kind = if state.info.source == SOURCE_INSIGHTS { "insight" } else { "log" };
        let metrics = crate::metrics::pipeline();
        metrics.delivered_files.with_label_values(&[kind]).inc();
        metrics.delivered_bytes.with_label_values(&[kind]).inc_by(batch.body.len() as u64);
        metrics.delivered_events.with_label_values(&[kind]).inc_by(batch.record_count.max(0) as u64);
        tracing::debug!(trail = %batch.trail_arn, key = %batch.object_key, records = batch.record_count, "log file delivered");
        Ok(())
    }
}

/// Counts `event` by category when none of the covering trails takes it.
fn count_untaken(untaken: &mut BTreeMap<&'static str, i64>, event: &Staged, covering: &[&Trail]) {
    let Some(view) = &event.view else { return };
    if !covering.iter().any(|trail| router::routes(trail, view, event.received_at)) {
        *untaken.entry(view.category.as_str()).or_default() += 1;
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
) -> Result<(), crate::pipeline::taps::TapError> {
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
                    tracing::error!(tap = tap.name(), %key, shard = context.shard.id, seq = event.seq,
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
