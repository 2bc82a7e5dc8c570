//! Retry pacing after failures: 1 s after the first, doubled after each further one, 30 s at most.

use std::time::{Duration, Instant};

const FIRST: Duration = Duration::from_secs(1);
const LONGEST: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, Default)]
pub struct Backoff {
    until: Option<Instant>,
    last: Option<Duration>,
}

impl Backoff {
    /// Whether the next attempt must still wait.
    pub fn waiting(&self) -> bool {
        self.until.is_some_and(|until| Instant::now() < until)
    }

    /// Records a failure at `now`: the next attempt waits longer than the last.
    pub fn failed(&mut self, now: Instant) {
        let wait = self.last.map_or(FIRST, |last| (last * 2).min(LONGEST));
        self.last = Some(wait);
        self.until = Some(now + wait);
    }

    /// The wait set by the last failure.
    pub fn last(&self) -> Option<Duration> {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_longest() {
        let mut backoff = Backoff::default();
        assert!(!backoff.waiting());
        let now = Instant::now();
        let waits: Vec<Duration> = (0..7)
            .map(|_| {
                backoff.failed(now);
                backoff.last().unwrap()
            })
            .collect();
        assert_eq!(waits.iter().map(|w| w.as_secs()).collect::<Vec<_>>(), vec![1, 2, 4, 8, 16, 30, 30]);
        assert!(backoff.waiting());
    }
}
