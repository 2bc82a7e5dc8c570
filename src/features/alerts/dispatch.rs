//! The dispatcher: sends outbox alerts. Each pass locks a batch of due alerts (SKIP LOCKED, so
//! the dispatchers of several workers share the outbox), sends them concurrently, and in the same
//! transaction deletes the delivered ones and reschedules or dead-letters the rest. A crash
//! mid-pass sends the batch again: delivery is at least once, and the alert's `id` is stable.

use sqlx::PgPool;

use super::AlertSettings;
use super::webhook::WebhookClient;
use crate::features::alerts::store::{self as store, PendingAlert};
use crate::store::StoreError;

/// Sends alerts until `shutdown` resolves.
pub async fn run(pool: PgPool, settings: AlertSettings, shutdown: impl Future<Output = ()>) {
    let client = match WebhookClient::new(settings.ca_file.as_deref(), settings.request_timeout) {
        Ok(client) => Some(client),
        Err(error) => {
            tracing::error!(%error, "webhook alerts cannot be sent until this is fixed");
            None
        }
    };
    let (pool, settings, client) = (&pool, &settings, client.as_ref());
    crate::features::outbox::drain("alerts", settings.poll_interval, shutdown, || {
        pass(pool, settings, client)
    })
    .await;
}

/// One batch: returns how many alerts were handled.
pub async fn pass(
    pool: &PgPool,
    settings: &AlertSettings,
    client: Option<&WebhookClient>,
) -> Result<usize, StoreError> {
    let mut tx = pool.begin().await?;
    let due = store::claim_due(&mut tx, settings.batch).await?;
    if due.is_empty() {
        tx.rollback().await?;
        return Ok(0);
    }
    let outcomes = futures::future::join_all(due.iter().map(|alert| send(alert, settings, client))).await;
    for (alert, outcome) in due.iter().zip(outcomes) {
        match outcome {
            Ok(()) => crate::features::outbox::done(&mut tx, alert.id).await?,
            Err(error) => {
                let attempts = alert.attempts.max(0) as u32 + 1;
                if attempts >= settings.max_attempts {
                    tracing::warn!(alert = alert.id, rule = %alert.rule_name, attempts, %error, "alert dead-lettered");
                    store::dead_letter(&mut tx, alert.id, &error).await?;
                } else {
                    let wait = settings.backoff(attempts);
                    tracing::info!(alert = alert.id, rule = %alert.rule_name, attempts, %error, retry_in_ms = wait.as_millis() as u64, "alert delivery failed");
                    let next = chrono::Utc::now()
                        + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
                    crate::features::outbox::retry_later(&mut tx, alert.id, next, &error).await?;
                }
            }
        }
    }
    tx.commit().await?;
    Ok(due.len())
}

async fn send(
    alert: &PendingAlert,
    settings: &AlertSettings,
    client: Option<&WebhookClient>,
) -> Result<(), String> {
    match alert.target.target_kind.as_str() {
        "log" => {
            tracing::info!(target: "orgtrail::alert", rule = %alert.rule_name, alert = %alert.body, "alert");
            Ok(())
        }
        "webhook" => {
            let client = client.ok_or("the webhook client could not be set up (see the worker log)")?;
            let url = alert.target.webhook_url.as_deref().ok_or("the webhook target has no URL")?;
            let sealed = alert.target.webhook_secret.as_deref().ok_or("the webhook target has no secret")?;
            let master_key = settings
                .master_key
                .as_ref()
                .ok_or("the worker has no master_key to open the webhook secret")?;
            let secret =
                master_key.decrypt(sealed).map_err(|e| format!("cannot open the webhook secret: {e}"))?;
            client.post(url, &secret, &alert.body).await
        }
        other => Err(format!("unknown target type {other}")),
    }
}
