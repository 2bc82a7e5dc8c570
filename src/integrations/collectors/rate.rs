//! The LookupEvents rate limit: a token bucket per (account, region), shared by the live window
//! and the backfill, in which live requests always go first.
//!
//! AWS allows 2 LookupEvents requests per second per account and region. The bucket holds one
//! token, refilled every `1/rate` seconds (plus a 5% margin): requests leave at least that far
//! apart, so no one-second window at AWS ever sees more than `rate` of them, even with network
//! jitter. A backfill request takes a token only while no live request waits for one, so a long
//! backfill never delays the live window by more than one request. A bucket starts empty, so a
//! collector that moves to another worker (one holder at a time, by lease) keeps the spacing.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    Live,
    Backfill,
}

#[derive(Debug)]
pub struct TokenBucket {
    spacing: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// When the next token is there.
    next_token: Instant,
    /// Live requests waiting for a token.
    live_waiting: usize,
}

/// Decrements the live waiters when a live acquire ends, even if it is cancelled.
struct LiveWaiting<'a>(&'a TokenBucket);

impl Drop for LiveWaiting<'_> {
    fn drop(&mut self) {
        let mut state = self.0.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.live_waiting -= 1;
    }
}

impl TokenBucket {
    /// At most `per_second` requests per second (> 0).
    pub fn new(per_second: f64) -> Self {
        let spacing = Duration::from_secs_f64(1.05 / per_second.max(0.001));
        // The first token comes one spacing after creation: a collector that just moved here (a
        // restart, a lease taken over) cannot follow its predecessor's last request too closely.
        Self { spacing, state: Mutex::new(State { next_token: Instant::now() + spacing, live_waiting: 0 }) }
    }

    pub fn spacing(&self) -> Duration {
        self.spacing
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits for a token.
    pub async fn acquire(&self, priority: Priority) {
        let _live = (priority == Priority::Live).then(|| {
            self.lock().live_waiting += 1;
            LiveWaiting(self)
        });
        loop {
            let wait = {
                let mut state = self.lock();
                let now = Instant::now();
                if priority == Priority::Backfill && state.live_waiting > 0 {
                    // Look again once the live request had its token.
                    Some(self.spacing)
                } else if now >= state.next_token {
                    state.next_token = now + self.spacing;
                    None
                } else {
                    Some(state.next_token - now)
                }
            };
            match wait {
                None => return,
                Some(wait) => tokio::time::sleep(wait).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// Grant times of `count` acquires at `priority`.
    async fn grants(bucket: Arc<TokenBucket>, priority: Priority, count: usize) -> Vec<Instant> {
        let mut times = Vec::new();
        for _ in 0..count {
            bucket.acquire(priority).await;
            times.push(Instant::now());
        }
        times
    }

    // A fast bucket (20 per second) keeps these tests short; the spacing logic is the same.
    #[tokio::test]
    async fn grants_are_spaced_so_no_second_holds_more_than_the_rate() {
        let bucket = Arc::new(TokenBucket::new(20.0));
        let (live, backfill) = tokio::join!(
            grants(bucket.clone(), Priority::Live, 10),
            grants(bucket.clone(), Priority::Backfill, 10)
        );
        let mut all: Vec<Instant> = live.into_iter().chain(backfill).collect();
        all.sort();
        for pair in all.windows(2) {
            assert!(pair[1] - pair[0] >= bucket.spacing(), "grants {:?} apart", pair[1] - pair[0]);
        }
        for (i, first) in all.iter().enumerate() {
            let in_window = all[i..]
                .iter()
                .take_while(|t| **t - *first < Duration::from_secs_f64(1.0 / 20.0 * 2.0))
                .count();
            assert!(in_window <= 2, "{in_window} grants within two spacings");
        }
    }

    #[tokio::test]
    async fn live_requests_go_before_waiting_backfill() {
        let bucket = Arc::new(TokenBucket::new(20.0));
        let (live, backfill) = tokio::join!(
            grants(bucket.clone(), Priority::Live, 5),
            grants(bucket.clone(), Priority::Backfill, 5)
        );
        let last_live = live.iter().max().copied().unwrap();
        // While live requests kept waiting, backfill got at most the first token (taken before
        // the live loop asked), never one in between.
        let backfill_before = backfill.iter().filter(|t| **t < last_live).count();
        assert!(backfill_before <= 1, "{backfill_before} backfill grants before the live ones finished");
    }

    #[tokio::test]
    async fn a_cancelled_live_request_does_not_block_the_backfill() {
        let bucket = Arc::new(TokenBucket::new(20.0));
        bucket.acquire(Priority::Live).await;
        // The next live request waits for a token and is given up while waiting.
        let waiting = tokio::time::timeout(Duration::from_millis(1), bucket.acquire(Priority::Live)).await;
        assert!(waiting.is_err());
        grants(bucket, Priority::Backfill, 2).await;
    }
}
