//! Runs one task per collector target: every ACTIVE account whose collector settings pull, per
//! region (the settings' regions, else the organization's) and per enabled source. Targets are
//! refreshed regularly: a SUSPENDED or REMOVED account, or one whose settings no longer pull,
//! loses its tasks. Each task retries its own failures with exponential backoff and records them
//! on the account, so one failing account never holds the others up; at most
//! `concurrency` passes run at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::error::{CollectError, backoff};
use super::lookup::LookupCollector;
use super::state::{self, Target};
use super::{Collector, Progress, TargetRun, s3_trail};
use crate::model::collector::{SOURCE_LOOKUP, SOURCE_S3_TRAIL};
use crate::store::accounts::{self, AccountStatus};
use crate::store::{StoreError, organizations};

/// Accounts read per query while refreshing targets.
const ACCOUNTS_PAGE: i64 = 500;

/// The targets that should run now, with their settings.
pub async fn targets(pool: &sqlx::PgPool) -> Result<Vec<TargetRun>, StoreError> {
    let organization_regions: Vec<String> = organizations::get(pool)
        .await?
        .map(|o| o.regions.iter().map(|r| r.as_str().to_owned()).collect())
        .unwrap_or_default();
    let mut runs = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page =
            accounts::list(pool, after.as_deref(), ACCOUNTS_PAGE, Some(AccountStatus::Active), None).await?;
        for account in &page {
            let settings = &account.collector;
            if !settings.pulls() {
                continue;
            }
            let regions = if settings.regions.is_empty() { &organization_regions } else { &settings.regions };
            let mut sources = Vec::new();
            if settings.lookup_events {
                sources.push(SOURCE_LOOKUP);
            }
            if !settings.trail_bucket.is_empty() {
                sources.push(SOURCE_S3_TRAIL);
            }
            for source in sources {
                for region in regions {
                    runs.push(TargetRun {
                        target: Target {
                            account_id: account.account_id.to_string(),
                            source,
                            region: region.clone(),
                        },
                        account: account.account_id.clone(),
                        settings: settings.clone(),
                    });
                }
            }
        }
        match page.last() {
            Some(last) if page.len() as i64 == ACCOUNTS_PAGE => after = Some(last.account_id.to_string()),
            _ => return Ok(runs),
        }
    }
}

/// Runs collector tasks until `shutdown` resolves; then gives their leases up.
pub async fn run(collector: Arc<Collector>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let refresh_every = collector.config.interval.min(Duration::from_secs(5));
    let mut running: HashMap<
        Target,
        (crate::model::collector::CollectorSettings, tokio::task::JoinHandle<()>),
    > = HashMap::new();
    tracing::info!(holder = %collector.holder, "collectors started");
    loop {
        match targets(&collector.pool).await {
            Ok(wanted) => {
                let wanted: HashMap<Target, TargetRun> =
                    wanted.into_iter().map(|r| (r.target.clone(), r)).collect();
                running.retain(|target, (settings, task)| {
                    let keep = wanted.get(target).is_some_and(|run| &run.settings == settings)
                        && !task.is_finished();
                    if !keep {
                        task.abort();
                        tracing::info!(%target, "collector stopped");
                    }
                    keep
                });
                for (target, run) in wanted {
                    if running.contains_key(&target) {
                        continue;
                    }
                    tracing::info!(%target, "collector started");
                    let settings = run.settings.clone();
                    let task = tokio::spawn(run_target(collector.clone(), Arc::new(run)));
                    running.insert(target, (settings, task));
                }
            }
            Err(error) => tracing::warn!(%error, "cannot list collector targets"),
        }
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(refresh_every) => {}
        }
    }
    for (_, (_, task)) in running {
        task.abort();
    }
    if let Err(error) = state::release_all(&collector.pool, &collector.holder).await {
        tracing::warn!(%error, "could not give collector leases up; they expire on their own");
    }
    tracing::info!(holder = %collector.holder, "collectors stopped");
}

async fn run_target(collector: Arc<Collector>, run: Arc<TargetRun>) {
    match run.target.source {
        SOURCE_LOOKUP => {
            let lookup = Arc::new(LookupCollector::new(collector.clone(), run.clone()));
            let live = lookup.clone();
            let backfill = lookup.clone();
            tokio::join!(
                drive(&collector, &run, "live", move || {
                    let live = live.clone();
                    async move { live.live().await }
                }),
                drive(&collector, &run, "backfill", move || {
                    let backfill = backfill.clone();
                    async move { backfill.backfill().await }
                }),
            );
        }
        _ => {
            let (inner, target_run) = (collector.clone(), run.clone());
            drive(&collector, &run, "pass", move || {
                let (collector, run) = (inner.clone(), target_run.clone());
                async move { s3_trail::collect(&collector, &run).await.map(|accepted| (Progress::Idle, accepted)) }
            })
            .await;
        }
    }
}

/// Runs `pass` again and again under the target's lease: at once while it has more, after the
/// interval when caught up, after a growing backoff when it fails; until it is Done.
async fn drive<F, Fut>(collector: &Collector, run: &TargetRun, part: &'static str, mut pass: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(Progress, i64), CollectError>>,
{
    let target = &run.target;
    let mut failures = 0u32;
    loop {
        let outcome = {
            let Ok(_permit) = collector.permits.acquire().await else { return };
            match collector.claim(target).await {
                Ok(true) => Some(pass().await),
                // Another worker collects this target.
                Ok(false) => None,
                Err(error) => Some(Err(error.into())),
            }
        };
        let wait = match outcome {
            None => collector.config.interval,
            Some(Ok((progress, accepted))) => {
                failures = 0;
                collector.config.metrics.record_collection(
                    &target.account_id,
                    target.source,
                    &target.region,
                    accepted,
                );
                if let Err(error) = accounts::record_collection(
                    &collector.pool,
                    &run.account,
                    target.source,
                    &target.region,
                    accepted,
                )
                .await
                {
                    tracing::warn!(%target, %error, "cannot record a collection");
                }
                match progress {
                    Progress::More => Duration::ZERO,
                    Progress::Idle => collector.config.interval,
                    Progress::Done => return,
                }
            }
            Some(Err(error)) => {
                failures += 1;
                let wait = backoff(&error, failures);
                tracing::warn!(%target, part, %error, failures, retry_in = ?wait, "collection failed");
                let message = error.to_string();
                collector.config.metrics.record_collection_error(
                    &target.account_id,
                    target.source,
                    &target.region,
                    error.code(),
                );
                if let Err(error) = accounts::record_collection_error(
                    &collector.pool,
                    &run.account,
                    target.source,
                    &target.region,
                    &message,
                )
                .await
                {
                    tracing::warn!(%target, %error, "cannot record a collection error");
                }
                wait
            }
        };
        tokio::time::sleep(wait).await;
    }
}
