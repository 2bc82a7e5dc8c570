//! Pull collectors: events of member accounts that do not push, read from AWS with the account's
//! collector role — CloudTrail LookupEvents (`aws_lookup`) and the member's own trail bucket
//! (`aws_s3_trail`).
//!
//! Exactly once, like push: pull a page → validate each record → stage (durable, deduplicated on
//! (recipientAccountId, eventID)) → only then move the durable cursor. A crash in between pulls
//! the same page again and staging drops the repeats.
//!
//! Exclusivity: each (account, source, region) has a lease in `collector_leases` (like a shard's),
//! renewed on every pass and cursor move; cursor writes check it, so only one worker collects a
//! target at a time and a worker that lost its lease cannot move the cursor.

pub mod clients;
pub mod error;
pub mod lookup;
pub mod rate;
pub mod runner;
pub mod s3_trail;
pub mod stage;
pub mod state;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;

use crate::model::AccountId;
use crate::model::collector::CollectorSettings;
use crate::pipeline::staging::Staging;
use crate::store::StoreError;
use state::Target;

/// How the collectors of a worker run (see `config.rs` for the documented options).
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// orgtrail's own AWS configuration (credentials to call STS with, region, endpoints).
    pub sdk_config: aws_config::SdkConfig,
    /// Time between passes of a collector with nothing more to read.
    pub interval: Duration,
    /// How far back a first run reads (LookupEvents: at most 90 days).
    pub backfill_days: u32,
    /// LookupEvents requests per second per (account, region); AWS allows 2.
    pub lookup_requests_per_second: f64,
    /// How far before the cursor each live LookupEvents window starts (late events).
    pub lookup_overlap: Duration,
    /// A CloudTrail endpoint instead of AWS's (an API-compatible service, or a test double).
    pub cloudtrail_endpoint: Option<String>,
    /// Passes running at once in this worker.
    pub concurrency: usize,
    /// Where passes are counted (served by `orgtrail worker` with `metrics_listen`).
    pub metrics: crate::metrics::Metrics,
}

impl CollectorConfig {
    pub fn new(sdk_config: aws_config::SdkConfig) -> Self {
        Self {
            sdk_config,
            interval: Duration::from_secs(60),
            backfill_days: 0,
            lookup_requests_per_second: 2.0,
            lookup_overlap: Duration::from_secs(300),
            cloudtrail_endpoint: None,
            concurrency: 8,
            metrics: crate::metrics::Metrics::new(),
        }
    }

    /// A lease outlives a few idle intervals, so an idle collector keeps its worker.
    fn lease_ttl(&self) -> Duration {
        self.interval * 3 + Duration::from_secs(30)
    }
}

/// What a pass tells its driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Caught up: next pass after the interval.
    Idle,
    /// More is waiting: next pass at once.
    More,
    /// Nothing left ever (a finished backfill).
    Done,
}

/// One collector target with the settings it runs with.
#[derive(Debug, Clone)]
pub struct TargetRun {
    pub target: Target,
    pub account: AccountId,
    pub settings: CollectorSettings,
}

/// What every collector task of a worker shares.
pub struct Collector {
    pub pool: PgPool,
    pub staging: Arc<dyn Staging>,
    pub config: CollectorConfig,
    pub clients: clients::ClientCache,
    /// This worker's lease holder id.
    pub holder: String,
    permits: tokio::sync::Semaphore,
    buckets: Mutex<HashMap<(String, String), Arc<rate::TokenBucket>>>,
}

impl Collector {
    pub fn new(pool: PgPool, staging: Arc<dyn Staging>, config: CollectorConfig, holder: String) -> Self {
        let clients =
            clients::ClientCache::new(config.sdk_config.clone(), config.cloudtrail_endpoint.clone());
        let permits = tokio::sync::Semaphore::new(config.concurrency.max(1));
        Self { pool, staging, config, clients, holder, permits, buckets: Mutex::new(HashMap::new()) }
    }

    /// The LookupEvents token bucket of (account, region), one per worker.
    pub fn bucket(&self, account: &str, region: &str) -> Arc<rate::TokenBucket> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        buckets
            .entry((account.to_owned(), region.to_owned()))
            .or_insert_with(|| Arc::new(rate::TokenBucket::new(self.config.lookup_requests_per_second)))
            .clone()
    }

    pub async fn claim(&self, target: &Target) -> Result<bool, StoreError> {
        state::claim(&self.pool, target, &self.holder, self.config.lease_ttl()).await
    }

    pub async fn save_cursor<T: serde::Serialize>(
        &self,
        target: &Target,
        cursor: &T,
    ) -> Result<(), StoreError> {
        state::save_cursor(&self.pool, target, &self.holder, self.config.lease_ttl(), cursor).await
    }
}
