//! Pulled records → staging: each record validated, routed by its own recipientAccountId and
//! awsRegion, and staged byte for byte (dedupe on (recipientAccountId, eventID) is staging's).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::model::AccountId;
use crate::model::record::RecordView;
use crate::pipeline::staging::{Incoming, Source, StageOutcome, Staging};
use crate::store::StoreError;
use crate::store::accounts::{self, AccountStatus};

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

    let mut statuses: HashMap<AccountId, Option<AccountStatus>> = HashMap::new();
    let mut incoming = Vec::new();
    let mut rejected = Vec::new();
    for (view, record) in parsed {
        let view = match view {
            Ok(view) => view,
            Err(error) => {
                tracing::warn!(collector = %collector, source = source.as_str(), %context, %error, "invalid pulled record skipped");
                rejected.push(collector.clone());
                continue;
            }
        };
        let status = match statuses.get(&view.recipient_account_id) {
            Some(status) => *status,
            None => {
                let status = accounts::get(pool, &view.recipient_account_id).await?.map(|a| a.status);
                statuses.insert(view.recipient_account_id.clone(), status);
                status
            }
        };
        if status != Some(AccountStatus::Active) {
            tracing::warn!(collector = %collector, account = %view.recipient_account_id, event_id = %view.event_id,
                %context, "pulled record of an account that is not registered and ACTIVE skipped");
            rejected.push(collector.clone());
            continue;
        }
        report.newest = report.newest.max(Some(view.event_time));
        report.oldest = Some(report.oldest.map_or(view.event_time, |t| t.min(view.event_time)));
        incoming.push(Incoming {
            account_id: view.recipient_account_id,
            region: view.aws_region,
            source,
            event_id: view.event_id,
            record,
        });
    }
    report.rejected = rejected.len() as i64;
    if incoming.is_empty() && rejected.is_empty() {
        return Ok(report);
    }
    for outcome in staging.stage(incoming, &rejected).await? {
        match outcome {
            StageOutcome::Accepted => report.accepted += 1,
            StageOutcome::Duplicate => report.duplicates += 1,
        }
    }
    Ok(report)
}
