//! The notifier: publishes CloudTrail's delivery notification (`{"s3Bucket", "s3ObjectKey"}`) to a
//! trail's SNS topic for each log file the trail delivered. Each pass locks a batch of due outbox
//! rows (SKIP LOCKED, so the notifiers of several workers share the outbox), publishes them
//! concurrently, and in the same transaction deletes the published ones and reschedules the rest
//! with backoff; a notification is never given up while its trail has a topic. A crash mid-pass
//! publishes the batch again: delivery is at least once, as SNS's own is.

use std::time::Duration;

use sqlx::PgPool;

use crate::features::notifications::store::{self as store, PendingNotification};
use crate::integrations::sns::SnsSink;
use crate::model::sns::{SnsTopic, log_file_notification};
use crate::store::StoreError;

/// Notification settings (see `config.rs` for their documentation).
#[derive(Debug, Clone)]
pub struct NotificationSettings {
    /// Wait after the first failure; doubled after each further one.
    pub retry_base: Duration,
    /// The longest wait between attempts.
    pub retry_max: Duration,
    /// Pause of an idle notifier between looks at the outbox.
    pub poll_interval: Duration,
    /// Notifications one notifier publishes at once.
    pub batch: i64,
}

impl Default for NotificationSettings {
    fn default() -> Self {
        Self {
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            poll_interval: Duration::from_millis(200),
            batch: 32,
        }
    }
}

impl NotificationSettings {
    /// The wait before attempt `attempts + 1`, after `attempts` failures.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(20));
        self.retry_base.saturating_mul(factor).min(self.retry_max)
    }
}

/// Publishes notifications until `shutdown` resolves.
pub async fn run(
    pool: PgPool,
    sink: SnsSink,
    settings: NotificationSettings,
    shutdown: impl Future<Output = ()>,
) {
    let (pool, sink, settings) = (&pool, &sink, &settings);
    crate::features::outbox::drain("notifications", settings.poll_interval, shutdown, || {
        pass(pool, sink, settings)
    })
    .await;
}

/// One batch: returns how many notifications were handled (published, rescheduled or dropped).
pub async fn pass(
    pool: &PgPool,
    sink: &SnsSink,
    settings: &NotificationSettings,
) -> Result<usize, StoreError> {
    let mut tx = pool.begin().await?;
    let due = store::claim_due(&mut tx, settings.batch).await?;
    if due.is_empty() {
        tx.rollback().await?;
        return Ok(0);
    }
    let outcomes = futures::future::join_all(due.iter().map(|n| publish(sink, n))).await;
    let metrics = crate::metrics::pipeline();
    for (notification, outcome) in due.iter().zip(outcomes) {
        match outcome {
            Outcome::Published => {
                crate::features::outbox::done(&mut tx, notification.id).await?;
                store::record_outcome(&mut tx, notification.trail_id, None).await?;
                metrics.notifications_published.inc();
            }
            Outcome::NoTopic => crate::features::outbox::done(&mut tx, notification.id).await?,
            Outcome::Failed(error) => {
                let attempts = notification.attempts.max(0) as u32 + 1;
                let wait = settings.backoff(attempts);
                tracing::warn!(trail_id = notification.trail_id, key = %notification.object_key, attempts,
                    %error, retry_in_ms = wait.as_millis() as u64, "delivery notification failed");
                let next =
                    chrono::Utc::now() + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
                crate::features::outbox::retry_later(&mut tx, notification.id, next, &error).await?;
                store::record_outcome(&mut tx, notification.trail_id, Some(&error)).await?;
                metrics.notifications_failed.inc();
            }
        }
    }
    tx.commit().await?;
    Ok(due.len())
}

enum Outcome {
    Published,
    /// The trail's topic was removed since the file was delivered: nothing to send.
    NoTopic,
    Failed(String),
}

async fn publish(sink: &SnsSink, notification: &PendingNotification) -> Outcome {
    // The trail was deleted, or its topic removed, since the file was delivered.
    let Some(trail) = &notification.trail else { return Outcome::NoTopic };
    let Some(topic) = SnsTopic::resolve(&trail.sns_topic_name, &trail.home_region, &trail.owner_account_id)
    else {
        return Outcome::NoTopic;
    };
    let message = log_file_notification(&notification.bucket, &[notification.object_key.as_str()]);
    match sink.publish(&topic, &message).await {
        Ok(()) => {
            tracing::debug!(topic = topic.arn(), key = %notification.object_key, "delivery notification published");
            Outcome::Published
        }
        Err(error) => Outcome::Failed(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_base_up_to_the_maximum() {
        let settings = NotificationSettings {
            retry_base: Duration::from_millis(500),
            retry_max: Duration::from_secs(5),
            ..Default::default()
        };
        let waits: Vec<u128> = (1..=7).map(|n| settings.backoff(n).as_millis()).collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 5000, 5000, 5000]);
        // Many failures never overflow: the wait stays at the maximum.
        assert_eq!(settings.backoff(u32::MAX), Duration::from_secs(5));
        assert_eq!(NotificationSettings::default().backoff(1), Duration::from_secs(1));
    }
}
