//! The scheduled AWS Organizations sync that `serve` runs every `org_sync_interval_seconds`.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;

use super::org_sync::{SyncOptions, sync_accounts};
use super::sdk::AwsSettings;

/// Syncs every `interval` until `shutdown` resolves. Replicas take turns through the sync's
/// advisory lock, and a replica skips a turn another one took less than an interval ago. Each
/// outcome is logged and recorded (DescribeOrganization shows it); a failure waits for the next turn.
pub async fn run(
    pool: PgPool,
    aws: Arc<AwsSettings>,
    interval: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let client = aws.organizations();
    let options = SyncOptions {
        ou_ids: aws.default_ou_ids.clone(),
        dry_run: false,
        member_role_name: aws.member_role_name.clone(),
        wait_for_lock: false,
        // A little under the interval, so that timer jitter does not skip every other turn.
        skip_if_synced_within: Some(interval.mul_f64(0.9)),
    };
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = ticker.tick() => {}
        }
        match sync_accounts(&client, &pool, &options).await {
            Ok(Some(report)) => {
                tracing::info!(
                    registered = report.counts.registered,
                    reactivated = report.counts.reactivated,
                    suspended = report.counts.suspended,
                    removed = report.counts.removed,
                    unchanged = report.counts.unchanged,
                    warnings = report.warnings.len(),
                    "organizations sync done"
                );
                for change in &report.changes {
                    tracing::info!(account_id = %change.account_id, action = ?change.action, reason = %change.reason, "organizations sync changed an account");
                }
                for warning in &report.warnings {
                    tracing::warn!(%warning, "organizations sync");
                }
            }
            Ok(None) => tracing::debug!("organizations sync skipped: another replica has it"),
            Err(error) => tracing::warn!(error = %error, "organizations sync failed"),
        }
    }
}
