//! `aws_lookup`: CloudTrail LookupEvents per (account, region).
//!
//! Live: each pass asks for the sliding window from the cursor minus an overlap (CloudTrail adds
//! events to its history late) to now, every page (newest first, 50 per page), and only after the
//! whole window is staged moves the cursor to the newest event time seen. Events in the overlap
//! come again; staging drops them by eventID. A crash mid-window repeats the window.
//!
//! Backfill: the range [horizon, first run] is walked page by page, newest first; after each
//! staged page its end moves down to the oldest event of the page, so a restart resumes there.
//! Both share the (account, region)'s token bucket, where live requests go first.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::error::CollectError;
use super::rate::{Priority, TokenBucket};
use super::stage::{StageReport, stage_records};
use super::state;
use super::{Collector, Progress, TargetRun};
use crate::model::shard::Source;

/// LookupEvents looks back at most 90 days.
pub const MAX_LOOKBACK_DAYS: u32 = 90;
/// LookupEvents returns at most 50 events per page.
pub const PAGE_SIZE: i32 = 50;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupCursor {
    /// The newest event time seen by the live window (the next window starts an overlap before).
    pub live_from: DateTime<Utc>,
    /// What the backfill still has to read; None: done (or none configured).
    pub backfill: Option<TimeRange>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeRange {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl LookupCursor {
    /// A first run: live from now on, backfill from `backfill_days` ago (at most 90) to now.
    pub fn initial(now: DateTime<Utc>, backfill_days: u32) -> Self {
        let days = backfill_days.min(MAX_LOOKBACK_DAYS);
        Self {
            live_from: now,
            backfill: (days > 0)
                .then(|| TimeRange { start: now - Duration::days(i64::from(days)), end: now }),
        }
    }
}

/// The live window at `now`: from the cursor minus the overlap (never beyond what LookupEvents
/// keeps) to now.
pub fn live_window(live_from: DateTime<Utc>, now: DateTime<Utc>, overlap: Duration) -> TimeRange {
    let oldest = now - Duration::days(i64::from(MAX_LOOKBACK_DAYS));
    let start = (live_from - overlap).max(oldest).min(now);
    TimeRange { start, end: now }
}

/// The backfill range after a staged page whose oldest event is `oldest`.
pub fn backfill_after_page(range: TimeRange, oldest: Option<DateTime<Utc>>) -> TimeRange {
    // The end is inclusive: events of the same second as `oldest` are asked for again (and
    // deduplicated) rather than missed.
    TimeRange { start: range.start, end: oldest.map_or(range.end, |t| t.min(range.end).max(range.start)) }
}

struct Page {
    records: Vec<String>,
    next_token: Option<String>,
}

/// The state of one (account, region)'s lookup collector in this worker.
pub struct LookupCollector {
    collector: std::sync::Arc<Collector>,
    run: std::sync::Arc<TargetRun>,
    bucket: std::sync::Arc<TokenBucket>,
    /// Serialises cursor updates of the live and backfill halves.
    cursor_lock: tokio::sync::Mutex<()>,
    /// The backfill's NextToken and the range it belongs to (a token is only valid with the
    /// parameters of the call that returned it).
    backfill_token: tokio::sync::Mutex<Option<(TimeRange, String)>>,
}

impl LookupCollector {
    pub fn new(collector: std::sync::Arc<Collector>, run: std::sync::Arc<TargetRun>) -> Self {
        let bucket = collector.bucket(&run.target.account_id, &run.target.region);
        Self {
            collector,
            run,
            bucket,
            cursor_lock: tokio::sync::Mutex::new(()),
            backfill_token: tokio::sync::Mutex::new(None),
        }
    }

    /// The stored cursor, or a first run's (stored at once, so the backfill horizon stays put).
    async fn cursor(&self) -> Result<LookupCursor, CollectError> {
        let _guard = self.cursor_lock.lock().await;
        if let Some(cursor) = state::load_cursor(&self.collector.pool, &self.run.target).await? {
            return Ok(cursor);
        }
        let cursor = LookupCursor::initial(Utc::now(), self.collector.config.backfill_days);
        self.collector.save_cursor(&self.run.target, &cursor).await?;
        Ok(cursor)
    }

    /// Changes the stored cursor under the lock (the other half may have moved its part).
    async fn update(&self, change: impl FnOnce(&mut LookupCursor)) -> Result<(), CollectError> {
        let _guard = self.cursor_lock.lock().await;
        let mut cursor = state::load_cursor(&self.collector.pool, &self.run.target)
            .await?
            .unwrap_or_else(|| LookupCursor::initial(Utc::now(), self.collector.config.backfill_days));
        change(&mut cursor);
        self.collector.save_cursor(&self.run.target, &cursor).await?;
        Ok(())
    }

    async fn lookup(
        &self,
        priority: Priority,
        range: TimeRange,
        token: Option<String>,
    ) -> Result<Page, CollectError> {
        let clients = self.collector.clients.for_account(&self.run.settings).await;
        let client = clients.cloudtrail(&self.run.target.region);
        // Credentials first: the token is taken right before the request goes out.
        clients.ready().await?;
        self.bucket.acquire(priority).await;
        let output = client
            .lookup_events()
            .start_time(aws_sdk_cloudtrail::primitives::DateTime::from_secs(range.start.timestamp()))
            .end_time(aws_sdk_cloudtrail::primitives::DateTime::from_secs(range.end.timestamp()))
            .max_results(PAGE_SIZE)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| CollectError::from_sdk("LookupEvents", e))?;
        let mut records = Vec::with_capacity(output.events().len());
        for event in output.events() {
            match event.cloud_trail_event() {
                Some(record) => records.push(record.to_owned()),
                None => tracing::warn!(account = %self.run.account, event_id = ?event.event_id(),
                    "LookupEvents returned an event without its record; skipped"),
            }
        }
        Ok(Page { records, next_token: output.next_token().filter(|t| !t.is_empty()).map(str::to_owned) })
    }

    async fn stage(&self, records: Vec<String>, range: TimeRange) -> Result<StageReport, CollectError> {
        let context = format!("LookupEvents {}..{}", range.start, range.end);
        Ok(stage_records(
            &self.collector.pool,
            &*self.collector.staging,
            Source::AwsLookup,
            &self.run.account,
            &context,
            records,
        )
        .await?)
    }

    /// One live window, every page of it; returns the events accepted.
    pub async fn live(&self) -> Result<(Progress, i64), CollectError> {
        let cursor = self.cursor().await?;
        let overlap =
            Duration::from_std(self.collector.config.lookup_overlap).unwrap_or(Duration::minutes(5));
        let window = live_window(cursor.live_from, Utc::now(), overlap);
        let mut token = None;
        let mut newest = None;
        let mut accepted = 0;
        loop {
            let page = self.lookup(Priority::Live, window, token).await?;
            let report = self.stage(page.records, window).await?;
            accepted += report.accepted;
            newest = newest.max(report.newest);
            token = page.next_token;
            if token.is_none() {
                break;
            }
        }
        if let Some(newest) = newest {
            self.update(|c| c.live_from = c.live_from.max(newest)).await?;
        }
        Ok((Progress::Idle, accepted))
    }

    /// One backfill page; Done when the backfill has nothing left.
    pub async fn backfill(&self) -> Result<(Progress, i64), CollectError> {
        let Some(stored) = self.cursor().await?.backfill else {
            return Ok((Progress::Done, 0));
        };
        let (range, token) = match self.backfill_token.lock().await.take() {
            Some((range, token)) => (range, Some(token)),
            None => (stored, None),
        };
        let page = self.lookup(Priority::Backfill, range, token).await?;
        let report = self.stage(page.records, range).await?;
        match page.next_token {
            None => {
                self.update(|c| c.backfill = None).await?;
                tracing::info!(account = %self.run.account, region = %self.run.target.region, "lookup backfill done");
                Ok((Progress::Done, report.accepted))
            }
            Some(next) => {
                let remaining = backfill_after_page(stored, report.oldest);
                self.update(|c| c.backfill = Some(remaining)).await?;
                *self.backfill_token.lock().await = Some((range, next));
                Ok((Progress::More, report.accepted))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn the_live_window_starts_an_overlap_before_the_cursor() {
        let now = at("2026-11-24T12:00:00Z");
        let window = live_window(at("2026-11-24T11:58:00Z"), now, Duration::minutes(5));
        assert_eq!(window, TimeRange { start: at("2026-11-24T11:53:00Z"), end: now });
        // Never before LookupEvents' 90 days, never after now.
        let old = live_window(at("2026-01-01T00:00:00Z"), now, Duration::minutes(5));
        assert_eq!(old.start, now - Duration::days(90));
        let future = live_window(at("2026-11-24T13:00:00Z"), now, Duration::minutes(5));
        assert_eq!(future.start, now);
    }

    #[test]
    fn first_runs_backfill_at_most_ninety_days() {
        let now = at("2026-11-24T12:00:00Z");
        assert_eq!(LookupCursor::initial(now, 0), LookupCursor { live_from: now, backfill: None });
        let cursor = LookupCursor::initial(now, 365);
        assert_eq!(cursor.backfill, Some(TimeRange { start: now - Duration::days(90), end: now }));
    }

    #[test]
    fn the_backfill_shrinks_to_the_oldest_event_of_each_page() {
        let range = TimeRange { start: at("2026-11-20T00:00:00Z"), end: at("2026-11-24T00:00:00Z") };
        let after = backfill_after_page(range, Some(at("2026-11-23T10:00:00Z")));
        assert_eq!(after, TimeRange { start: range.start, end: at("2026-11-23T10:00:00Z") });
        assert_eq!(backfill_after_page(range, None), range);
        assert_eq!(backfill_after_page(range, Some(at("2026-11-19T00:00:00Z"))).end, range.start);
    }
}
