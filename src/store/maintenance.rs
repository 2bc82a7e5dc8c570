//! Housekeeping that any process may run: dedupe partitions ahead of time and expiry of those past
//! the horizon.

use std::time::Duration;

use sqlx::PgPool;

/// Before accepting events: this week's and the next two weeks' dedupe partitions must exist, or
/// identities would land in the default partition and block creating the week's partition later.
pub async fn prepare(pool: &PgPool, dedupe_horizon_days: i64) -> Result<(), super::StoreError> {
    let today = chrono::Utc::now().date_naive();
    super::staging::maintain_identity_partitions(pool, today, dedupe_horizon_days).await
}

/// Repeats [`prepare`] hourly until `shutdown` resolves.
pub async fn run(pool: PgPool, dedupe_horizon_days: i64, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
        }
        if let Err(error) = prepare(&pool, dedupe_horizon_days).await {
            tracing::warn!(%error, "dedupe partition maintenance failed");
        }
    }
}
