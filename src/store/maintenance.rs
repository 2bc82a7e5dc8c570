//! Periodic housekeeping that any process may run: dedupe partitions ahead of time and expiry of
//! those past the horizon.

use std::time::Duration;

use sqlx::PgPool;

/// Runs at once and then hourly until `shutdown` resolves.
pub async fn run(pool: PgPool, dedupe_horizon_days: i64, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let today = chrono::Utc::now().date_naive();
        if let Err(error) =
            super::staging::maintain_identity_partitions(&pool, today, dedupe_horizon_days).await
        {
            tracing::warn!(%error, "dedupe partition maintenance failed");
        }
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
        }
    }
}
