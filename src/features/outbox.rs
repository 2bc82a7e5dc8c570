//! The loop every outbox consumer runs (the alert dispatcher, the notifier): passes back to back
//! while they find work, a poll interval's pause when they find none, and a prompt stop.

use std::time::Duration;

use crate::store::StoreError;

/// Runs `pass` (which returns how many rows it handled) until `shutdown` resolves. A failed pass
/// is logged as `what` and retried after the pause.
pub async fn drain<F, Fut>(
    what: &'static str,
    poll_interval: Duration,
    shutdown: impl Future<Output = ()>,
    mut pass: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<usize, StoreError>>,
{
    tokio::pin!(shutdown);
    loop {
        let handled = match pass().await {
            Ok(handled) => handled,
            Err(error) => {
                tracing::warn!(%error, outbox = what, "outbox pass failed");
                0
            }
        };
        if handled > 0 {
            // More may be due right away; still stop promptly when asked.
            if futures::FutureExt::now_or_never(&mut shutdown).is_some() {
                break;
            }
            continue;
        }
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(poll_interval) => {}
        }
    }
}
