//! The worker process. Today it holds a database connection and reports itself; the delivery
//! pipeline (source → router → batcher → sink → checkpoint) lands with the pipeline issue.

use std::time::Duration;

use sqlx::PgPool;

/// Runs until `shutdown` resolves.
pub async fn run(pool: PgPool, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    tracing::info!("worker started; no pipeline stages are implemented yet, so it only checks the database");
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {
                if let Err(error) = sqlx::query("SELECT 1").execute(&pool).await {
                    tracing::warn!(%error, "worker cannot reach the database");
                }
            }
        }
    }
    tracing::info!("worker stopped");
    Ok(())
}
