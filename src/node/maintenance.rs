//! Housekeeping that any process may run: partitions ahead of time (dedupe identities, event
//! history) and expiry of those past their horizon; expiry of staged events nobody delivered.

use std::time::Duration;

use sqlx::PgPool;

/// How long things are kept (see `config.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Horizons {
    /// Days an event identity is remembered for dedupe.
    pub dedupe_days: i64,
    /// Days events stay in the event history (LookupEvents).
    pub event_history_days: i64,
}

impl Default for Horizons {
    fn default() -> Self {
        Self { dedupe_days: 90, event_history_days: 90 }
    }
}

/// Before accepting events: this week's and the next two weeks' dedupe partitions must exist, or
/// identities would land in the default partition and block creating the week's partition later;
/// likewise this week's and the next weeks' event-history partitions.
pub async fn prepare(pool: &PgPool, horizons: Horizons) -> Result<(), crate::store::StoreError> {
    let today = chrono::Utc::now().date_naive();
    crate::pipeline::staging::postgres::maintain_identity_partitions(pool, today, horizons.dedupe_days)
        .await?;
    crate::features::history::index::maintain_partitions(pool, today, horizons.event_history_days).await
}

/// Repeats [`prepare`] hourly until `shutdown` resolves.
pub async fn run(pool: PgPool, horizons: Horizons, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
        }
        if let Err(error) = prepare(&pool, horizons).await {
            tracing::warn!(%error, "partition maintenance failed");
        }
    }
}

/// Hourly, until `shutdown` resolves: drops staged events older than `retention` even if some
/// trail never delivered them (a bucket that never came back), with a warning.
pub async fn expire_staged(pool: PgPool, retention: Duration, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
        }
        let cutoff = chrono::Utc::now() - retention;
        match crate::pipeline::staging::postgres::expire(&pool, cutoff).await {
            Ok(n) if n > 0 => tracing::warn!(events = n, "undelivered events expired after the retention"),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "expiring staged events failed"),
        }
    }
}
