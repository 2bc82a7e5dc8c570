//! Pulled records → staging through `admit`: each record validated, staged under its own
//! recipientAccountId and awsRegion byte for byte (dedupe on (recipientAccountId, eventID) is
//! staging's).

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::model::AccountId;
use crate::model::record::{RecordError, RecordView};
use crate::model::shard::Source;
use crate::pipeline::staging::Staging;
use crate::pipeline::staging::admit::{Admitted, Checked, admit};
use crate::store::StoreError;

/// What became of one page of pulled records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageReport {
    pub accepted: i64,
    pub duplicates: i64,
    /// Invalid records, and records of accounts that are not registered and ACTIVE.
    pub rejected: i64,
    pub newest: Option<DateTime<Utc>>,
    pub oldest: Option<DateTime<Utc>>,
}

/// Validates and stages `records` pulled for `collector` (the account whose role pulled them).
/// Durable when it returns: only then may the caller move its cursor.
pub async fn stage_records(
    pool: &PgPool,
    staging: &dyn Staging,
    source: Source,
    collector: &AccountId,
    context: &str,
    records: Vec<String>,
) -> Result<StageReport, StoreError> {
    let mut report = StageReport::default();
    if records.is_empty() {
        return Ok(report);
    }
    // Parsing a page (up to a 50 MB file) is CPU work: off the async runtime.
    let parsed = tokio::task::spawn_blocking(move || {
        records.into_iter().map(|record| (RecordView::parse(&record), record)).collect::<Vec<_>>()
    })
    .await
    .map_err(|e| StoreError::Corrupt(format!("record parsing panicked: {e}")))?;

    let checked: Vec<Result<Checked, RecordError>> =
        parsed.into_iter().map(|(view, record)| view.map(|view| Checked { view, record })).collect();
    let times: Vec<Option<DateTime<Utc>>> =
        checked.iter().map(|c| c.as_ref().ok().map(|c| c.view.event_time)).collect();
    let verdicts = admit(pool, staging, source, checked, Some(collector)).await?;
    for (verdict, time) in verdicts.into_iter().zip(times) {
        match verdict {
            Admitted::Accepted | Admitted::Duplicate => {
                if verdict == Admitted::Accepted {
                    report.accepted += 1;
                } else {
                    report.duplicates += 1;
                }
                if let Some(time) = time {
                    report.newest = report.newest.max(Some(time));
                    report.oldest = Some(report.oldest.map_or(time, |t| t.min(time)));
                }
            }
            Admitted::Refused(error) => {
                tracing::warn!(collector = %collector, source = source.as_str(), %context, %error, "pulled record skipped");
                report.rejected += 1;
            }
        }
    }
    Ok(report)
}
