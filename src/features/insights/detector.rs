//! The detector loop: judges each closed minute of every (account, region) covered by a logging
//! trail with insight selectors, seconds after the minute ends, and stages Start/End records.
//!
//! Safe with several workers: a pair is judged under a transaction-scoped advisory lock (a worker
//! that does not get it skips the pair). Durable: the minute cursor and the open insights commit
//! after the records were staged; a crash in between stages the same records again (their IDs
//! derive from the insight), which ingest dedupe drops. So a restart neither repeats nor loses a
//! Start or an End.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgPool;

use super::count::{enabled_types, minute_of};
use super::detect::{self, Open, Params, Transition, Window};
use super::record::{
    ATTRIBUTES, Attribution, CALL_RATE, ERROR_CODE, InsightRecord, Series, State, shared_event_id,
    top_averages,
};
use crate::features::insights::store::{self as store, Scope, StoredInsight};
use crate::model::shard::Source;
use crate::model::{AccountId, Region};
use crate::pipeline::route::Snapshot;
use crate::pipeline::staging::{Incoming, Staging};
use crate::store::{StoreError, accounts, trails};

/// Detector settings (see `config.rs` for their documentation and defaults).
#[derive(Debug, Clone)]
pub struct DetectorSettings {
    pub params: Params,
    /// A minute is judged this long after it ends: events for it staged later only count as
    /// baseline.
    pub settle: Duration,
    /// How much longer the detector waits for the insights tap to count events staged in time.
    pub max_wait: Duration,
    /// Pause between passes.
    pub tick: Duration,
}

impl Default for DetectorSettings {
    fn default() -> Self {
        Self {
            params: Params::default(),
            settle: Duration::from_secs(5),
            max_wait: Duration::from_secs(60),
            tick: Duration::from_secs(1),
        }
    }
}

/// Minutes one pass judges per pair at most (catching up after downtime goes in steps).
const MINUTES_PER_PASS: usize = 60;

/// How often old counts and closed insights are deleted.
const EXPIRE_EVERY: Duration = Duration::from_secs(600);

/// Closed insights are kept this long (CloudTrail's event history horizon).
const INSIGHTS_KEPT: TimeDelta = TimeDelta::days(90);

/// Runs until `shutdown` resolves.
pub async fn run(
    pool: PgPool,
    staging: Arc<dyn Staging>,
    settings: DetectorSettings,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let detector = Detector { pool, staging, settings };
    let mut last_expiry: Option<Instant> = None;
    let mut settled: Option<Inputs> = None;
    loop {
        match detector.inputs().await {
            // Nothing changed since every pair was judged through its last due minute.
            Ok(inputs) if settled == Some(inputs) => {}
            Ok(inputs) => match detector.pass().await {
                Ok(all_settled) => settled = all_settled.then_some(inputs),
                Err(error) => {
                    settled = None;
                    tracing::warn!(%error, "insights pass failed");
                }
            },
            Err(error) => tracing::warn!(%error, "insights: cannot read the configuration version"),
        }
        if last_expiry.is_none_or(|at| at.elapsed() >= EXPIRE_EVERY) {
            detector.expire().await;
            last_expiry = Some(Instant::now());
        }
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(detector.settings.tick) => {}
        }
    }
}

/// What decides whether a pass can have work: the configuration version, the pairs counted so
/// far, and the last minute due for judging. While they stay the same after a pass that left every
/// pair judged through that minute, a pass would only read every pair to find nothing to do.
type Inputs = (i64, i64, DateTime<Utc>);

struct Detector {
    pool: PgPool,
    staging: Arc<dyn Staging>,
    settings: DetectorSettings,
}

fn at_minute(minute: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(minute * 60, 0).unwrap_or_default()
}

fn minute_number(time: DateTime<Utc>) -> i64 {
    time.timestamp().div_euclid(60)
}

/// A change to the stored insights, applied after the records are staged.
enum Change {
    Started(StoredInsight),
    Progressed(uuid::Uuid, Open),
    Ended(uuid::Uuid, DateTime<Utc>),
}

impl Detector {
    async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        Ok(Snapshot {
            trails: trails::all(&self.pool).await?,
            organization_id: None,
            organization_regions: Vec::new(),
            account_status: accounts::statuses(&self.pool).await?.into_iter().collect(),
            loaded_at: Utc::now(),
        })
    }

    async fn inputs(&self) -> Result<Inputs, StoreError> {
        let (version, pairs): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT version FROM config_version), (SELECT count(*) FROM insight_scopes)",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((version, pairs, self.last_due(Utc::now())))
    }

    /// The last minute that may be judged at `now`: minute t is due once t + 1 min + settle passed.
    fn last_due(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let settle = TimeDelta::from_std(self.settings.settle).unwrap_or_default();
        minute_of(now - settle) - TimeDelta::minutes(1)
    }

    /// Judges every pair; true when each is judged through its last due minute (or not judged).
    async fn pass(&self) -> Result<bool, StoreError> {
        let snapshot = self.snapshot().await?;
        let selected = snapshot.trails.iter().any(|t| t.is_logging && !t.insight_selectors.is_empty());
        let scopes = store::scopes(&self.pool, selected).await?;
        let mut settled = true;
        for scope in scopes {
            let Ok(account) = AccountId::parse("account_id", &scope.account_id) else { continue };
            let enabled = enabled_types(&snapshot, &account, &scope.region);
            match self.judge_pair(&scope, &enabled).await {
                Ok(done) => settled &= done,
                Err(error) => {
                    settled = false;
                    tracing::warn!(account = %scope.account_id, region = %scope.region, %error, "insights: judging failed");
                }
            }
        }
        Ok(settled)
    }

    async fn expire(&self) {
        let window = TimeDelta::minutes(i64::from(self.settings.params.baseline_minutes) + 60);
        let now = Utc::now();
        match store::expire(&self.pool, now - window, now - INSIGHTS_KEPT).await {
            Ok(0) => {}
            Ok(rows) => tracing::debug!(rows, "insights: old counts deleted"),
            Err(error) => tracing::warn!(%error, "insights: expiring counts failed"),
        }
    }

    async fn judge_pair(
        &self,
        scope: &Scope,
        enabled: &BTreeSet<(String, String)>,
    ) -> Result<bool, StoreError> {
        if enabled.is_empty() && scope.evaluated_through.is_none() {
            return Ok(true);
        }
        let settle = TimeDelta::from_std(self.settings.settle).unwrap_or_default();
        let max_wait = TimeDelta::from_std(self.settings.max_wait).unwrap_or_default();
        let now = Utc::now();
        let last_due = self.last_due(now);
        if scope.evaluated_through.is_some_and(|through| through >= last_due) && !enabled.is_empty() {
            return Ok(true);
        }
        let (account, region) = (scope.account_id.as_str(), scope.region.as_str());
        let mut tx = self.pool.begin().await?;
        if !store::try_lock_scope(&mut tx, account, region).await? {
            // Another worker judges it: looked at again on the next pass.
            return Ok(false);
        }
        let Some(scope) = store::scope(&mut tx, account, region).await? else { return Ok(true) };
        if enabled.is_empty() {
            // Not covered any more: judging starts afresh when a trail covers the pair again.
            store::set_evaluated_through(&mut tx, account, region, None).await?;
            tx.commit().await?;
            return Ok(true);
        }
        let Some(mut through) = scope.evaluated_through else {
            // Newly covered: judging starts with the next minute.
            store::set_evaluated_through(&mut tx, account, region, Some(last_due)).await?;
            tx.commit().await?;
            tracing::info!(account, region, from = %(last_due + TimeDelta::minutes(1)), "insights: judging starts");
            return Ok(true);
        };
        let mut judged = 0;
        while through < last_due && judged < MINUTES_PER_PASS {
            let minute = through + TimeDelta::minutes(1);
            let deadline = minute + TimeDelta::minutes(1) + settle;
            if now < deadline + max_wait
                && !store::counted_through(&mut tx, self.staging.as_ref(), account, region, deadline).await?
            {
                break;
            }
            self.judge_minute(&mut tx, &scope, enabled, minute).await?;
            through = minute;
            judged += 1;
        }
        if judged > 0 {
            store::set_evaluated_through(&mut tx, account, region, Some(through)).await?;
        }
        tx.commit().await?;
        Ok(through >= last_due)
    }

    /// Judges one minute of every series of the pair; stages the records, then records the changes.
    async fn judge_minute(
        &self,
        tx: &mut sqlx::PgConnection,
        scope: &Scope,
        enabled: &BTreeSet<(String, String)>,
        minute: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let params = &self.settings.params;
        let baseline_minutes = i64::from(params.baseline_minutes);
        let from = minute - TimeDelta::minutes(baseline_minutes);
        // No full baseline yet: no insight starts (open ones may still end).
        let full_history = from >= scope.first_minute;
        let counts = store::minute_counts(tx, &scope.account_id, &scope.region, minute, from).await?;
        let mut open: HashMap<Series, StoredInsight> =
            store::open_insights(tx, &scope.account_id, &scope.region)
                .await?
                .into_iter()
                .map(|insight| (insight.series.clone(), insight))
                .collect();

        let mut candidates: BTreeMap<Series, (i64, Option<Window>)> = BTreeMap::new();
        for row in &counts {
            for (insight_type, category) in enabled {
                if *category != row.category {
                    continue;
                }
                let (count, window) = if insight_type == CALL_RATE {
                    (row.calls, row.calls_window())
                } else {
                    (row.errors, row.errors_window())
                };
                if count > 0 {
                    let series = Series {
                        account_id: scope.account_id.clone(),
                        region: scope.region.clone(),
                        insight_type: insight_type.clone(),
                        category: category.clone(),
                        event_source: row.event_source.clone(),
                        event_name: row.event_name.clone(),
                    };
                    candidates.insert(series, (count, Some(window)));
                }
            }
        }
        for series in open.keys() {
            candidates.entry(series.clone()).or_insert((0, None));
        }

        let mut records = Vec::new();
        let mut changes = Vec::new();
        for (series, (count, window)) in candidates {
            let existing = open.remove(&series);
            let (next, transition) =
                detect::step(params, existing.as_ref().map(|e| e.open), minute_number(minute), count, || {
                    window.filter(|_| full_history)
                });
            match (transition, existing, next) {
                (
                    Some(Transition::Start { minute: start, baseline_average, insight_average }),
                    _,
                    Some(next),
                ) => {
                    let start = at_minute(start);
                    let id = shared_event_id(&series, start);
                    let attributions = self
                        .attributions(tx, &series, (start, start + TimeDelta::minutes(1), 1), (from, start))
                        .await?;
                    records.push(self.record(
                        &series,
                        id,
                        State::Start,
                        start,
                        (baseline_average, insight_average, 1),
                        attributions,
                    ));
                    changes.push(Change::Started(StoredInsight { shared_event_id: id, series, open: next }));
                }
                (
                    Some(Transition::End { start, duration, baseline_average, insight_average }),
                    Some(existing),
                    _,
                ) => {
                    let start = at_minute(start);
                    let end = start + TimeDelta::minutes(duration);
                    let baseline_from = start - TimeDelta::minutes(baseline_minutes);
                    let attributions = self
                        .attributions(tx, &series, (start, end, duration), (baseline_from, start))
                        .await?;
                    records.push(self.record(
                        &series,
                        existing.shared_event_id,
                        State::End,
                        end,
                        (baseline_average, insight_average, duration),
                        attributions,
                    ));
                    changes.push(Change::Ended(existing.shared_event_id, end));
                }
                (None, Some(existing), Some(next)) if next != existing.open => {
                    changes.push(Change::Progressed(existing.shared_event_id, next));
                }
                _ => {}
            }
        }

        if !records.is_empty() {
            let account = AccountId::parse("account_id", &scope.account_id)
                .map_err(|e| StoreError::Corrupt(format!("insight scope: {e}")))?;
            let region = Region::parse("region", &scope.region)
                .map_err(|e| StoreError::Corrupt(format!("insight scope: {e}")))?;
            let incoming = records
                .iter()
                .map(|record| Incoming {
                    account_id: account.clone(),
                    region: region.clone(),
                    source: Source::Insights,
                    event_id: record.event_id(),
                    record: record.to_json(),
                })
                .collect();
            // Before the changes commit: a crash stages the same records again, as duplicates.
            self.staging.stage(incoming, &[]).await?;
            for record in &records {
                tracing::info!(account = %scope.account_id, region = %scope.region, state = record.state.as_str(),
                    insight_type = %record.series.insight_type, event_source = %record.series.event_source,
                    event_name = %record.series.event_name, event_time = %record.event_time, "insight staged");
            }
        }
        for change in changes {
            match change {
                Change::Started(insight) => store::insert_insight(tx, &insight).await?,
                Change::Progressed(id, open) => store::update_insight(tx, id, &open).await?,
                Change::Ended(id, end) => store::end_insight(tx, id, end).await?,
            }
        }
        Ok(())
    }

    /// Top values per attribute: during `insight` (from, to, minutes) and the baseline `[from, to)`.
    async fn attributions(
        &self,
        tx: &mut sqlx::PgConnection,
        series: &Series,
        insight: (DateTime<Utc>, DateTime<Utc>, i64),
        baseline: (DateTime<Utc>, DateTime<Utc>),
    ) -> Result<Vec<Attribution>, StoreError> {
        let errors = series.insight_type != CALL_RATE;
        let during = store::attributions(tx, series, insight.0, insight.1).await?;
        let before = store::attributions(tx, series, baseline.0, baseline.1).await?;
        let pick = |rows: &[(String, String, i64, i64)], attribute: &str| -> Vec<(String, i64)> {
            rows.iter()
                .filter(|row| row.0 == attribute)
                .map(|row| (row.1.clone(), if errors { row.3 } else { row.2 }))
                .collect()
        };
        let baseline_minutes = i64::from(self.settings.params.baseline_minutes);
        Ok(ATTRIBUTES
            .iter()
            .map(|attribute| Attribution {
                attribute,
                insight: top_averages(pick(&during, attribute), insight.2),
                baseline: top_averages(pick(&before, attribute), baseline_minutes),
            })
            .collect())
    }

    fn record(
        &self,
        series: &Series,
        shared_event_id: uuid::Uuid,
        state: State,
        event_time: DateTime<Utc>,
        (baseline_average, insight_average, duration): (f64, f64, i64),
        attributions: Vec<Attribution>,
    ) -> InsightRecord {
        // Error-rate insights name the error code most seen during the insight.
        let error_code = (series.insight_type != CALL_RATE)
            .then(|| {
                attributions
                    .iter()
                    .find(|a| a.attribute == ERROR_CODE)
                    .and_then(|a| a.insight.first())
                    .map(|(code, _)| code.clone())
            })
            .flatten();
        InsightRecord {
            series: series.clone(),
            shared_event_id,
            state,
            event_time,
            baseline_average,
            insight_average,
            insight_duration_minutes: duration,
            baseline_duration_minutes: i64::from(self.settings.params.baseline_minutes),
            error_code,
            attributions,
        }
    }
}
