//! The "rules" tap: evaluates the enabled rules against each event of a shard and writes the
//! matches into the alert outbox in the tap's transaction, so each (event, rule) yields exactly
//! one alert however often the worker restarts.

use std::sync::Arc;

use chrono::Utc;
use sqlx::PgPool;

use super::cache::{RuleCache, stored_target};
use crate::features::alerts::rules::Event;
use crate::features::alerts::store::{self as store, NewAlert};
use crate::pipeline::taps::{Tap, TapContext, TapError, TapEvent};

pub struct RulesTap {
    pool: PgPool,
    cache: Arc<RuleCache>,
}

impl RulesTap {
    pub fn new(pool: PgPool) -> Self {
        Self { pool, cache: Arc::new(RuleCache::default()) }
    }
}

#[async_trait::async_trait]
impl Tap for RulesTap {
    fn name(&self) -> &'static str {
        "rules"
    }

    async fn refresh(&self) -> Result<(), TapError> {
        self.cache.current(&self.pool).await?;
        Ok(())
    }

    async fn consume(
        &self,
        _key: &str,
        context: &TapContext<'_>,
        events: &[TapEvent<'_>],
        tx: &mut sqlx::PgConnection,
    ) -> Result<(), TapError> {
        let rules = self.cache.cached().await;
        if rules.is_empty() {
            return Ok(());
        }
        let shard_id = context.shard.id.0;
        let owned: Vec<(i64, chrono::DateTime<Utc>, String)> =
            events.iter().map(|e| (e.seq, e.received_at, e.record.to_owned())).collect();
        // Parsing and matching a batch is CPU work: off the async threads.
        let alerts = tokio::task::spawn_blocking(move || {
            let mut alerts = Vec::new();
            let now = Utc::now();
            for (seq, received_at, record) in &owned {
                let Ok(event) = Event::parse(record) else {
                    continue;
                };
                for rule in rules.iter().filter(|rule| rule.matches(&event)) {
                    match super::alert_body(shard_id, *seq, &rule.info, record, *received_at, now) {
                        Ok(body) => alerts.push(NewAlert {
                            shard_id,
                            seq: *seq,
                            rule_name: rule.info.name.clone(),
                            target: stored_target(&rule.target),
                            body,
                        }),
                        Err(error) => tracing::warn!(%error, seq, "alert body could not be built"),
                    }
                }
            }
            alerts
        })
        .await
        .map_err(|e| TapError::External(format!("rule evaluation failed: {e}")))?;
        if !alerts.is_empty() {
            tracing::debug!(shard = shard_id, alerts = alerts.len(), "rules matched");
        }
        store::insert_alerts(tx, &alerts).await?;
        Ok(())
    }
}
