//! Usage per (trail, account, hour, category): added to when a log file's delivery is recorded,
//! read back by GetTrailUsage in hourly or daily periods.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

pub use crate::pipeline::batch::CategoryTally;
use crate::pipeline::checkpoint::RecordedFile;
use crate::store::StoreError;

/// Adds delivered files' tallies to their trails' usage in the current hour. Runs inside the
/// transaction that records the files, so each file is counted once.
pub async fn add(conn: &mut sqlx::PgConnection, files: &[RecordedFile<'_>]) -> Result<(), StoreError> {
    // One row per (trail, account, category) in the statement: files of one trail and account from
    // several regions are summed first (a row may not be updated twice by one statement).
    let mut sums: BTreeMap<(i64, &str, &str), (&str, i64, i64)> = BTreeMap::new();
    for file in files {
        for tally in file.tallies {
            let sum = sums
                .entry((file.trail_id, file.account.as_str(), tally.category.as_str()))
                .or_insert((file.trail_arn, 0, 0));
            sum.1 += tally.events;
            sum.2 += tally.bytes;
        }
    }
    if sums.is_empty() {
        return Ok(());
    }
    let trails: Vec<i64> = sums.keys().map(|k| k.0).collect();
    let accounts: Vec<&str> = sums.keys().map(|k| k.1).collect();
    let categories: Vec<&str> = sums.keys().map(|k| k.2).collect();
    let arns: Vec<&str> = sums.values().map(|v| v.0).collect();
    let events: Vec<i64> = sums.values().map(|v| v.1).collect();
    let bytes: Vec<i64> = sums.values().map(|v| v.2).collect();
    sqlx::query(
        "INSERT INTO trail_usage (trail_id, trail_arn, account_id, hour, category, events, bytes)
         SELECT t, a, acct, date_trunc('hour', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', c, e, b
         FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[])
              AS u(t, a, acct, c, e, b)
         ON CONFLICT (trail_id, account_id, hour, category) DO UPDATE
             SET events = trail_usage.events + EXCLUDED.events, bytes = trail_usage.bytes + EXCLUDED.bytes,
                 trail_arn = EXCLUDED.trail_arn",
    )
    .bind(&trails)
    .bind(&arns)
    .bind(&accounts)
    .bind(&categories)
    .bind(&events)
    .bind(&bytes)
    .execute(conn)
    .await?;
    Ok(())
}

/// How usage rows are grouped in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    Hour,
    Day,
}

impl Granularity {
    fn sql_unit(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }
}

/// What to read; `None` filters match everything.
#[derive(Debug, Clone)]
pub struct UsageFilter {
    pub trail_id: Option<i64>,
    pub account_id: Option<String>,
    /// Inclusive: periods whose hours start at or after this.
    pub start: Option<DateTime<Utc>>,
    /// Exclusive.
    pub end: Option<DateTime<Utc>>,
    pub granularity: Granularity,
}

/// One reported row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UsageRow {
    pub trail_arn: String,
    pub account_id: String,
    pub period_start: DateTime<Utc>,
    pub category: String,
    pub events: i64,
    pub bytes: i64,
}

/// Usage matching `filter`, ordered by period, trail, account and category.
pub async fn query(pool: &PgPool, filter: &UsageFilter) -> Result<Vec<UsageRow>, StoreError> {
    Ok(sqlx::query_as::<_, UsageRow>(
        "SELECT trail_arn, account_id,
                date_trunc($1, hour AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS period_start,
                category, sum(events)::bigint AS events, sum(bytes)::bigint AS bytes
         FROM trail_usage
         WHERE ($2::bigint IS NULL OR trail_id = $2) AND ($3::text IS NULL OR account_id = $3)
           AND ($4::timestamptz IS NULL OR hour >= $4) AND ($5::timestamptz IS NULL OR hour < $5)
         GROUP BY trail_id, trail_arn, account_id, period_start, category
         ORDER BY period_start, trail_arn, account_id, category",
    )
    .bind(filter.granularity.sql_unit())
    .bind(filter.trail_id)
    .bind(&filter.account_id)
    .bind(filter.start)
    .bind(filter.end)
    .fetch_all(pool)
    .await?)
}
