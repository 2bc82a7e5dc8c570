//! Usage per (trail, account, hour, category): added to when a log file's delivery is recorded,
//! read back by GetTrailUsage in hourly or daily periods.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

pub use crate::pipeline::batch::CategoryTally;
use crate::store::StoreError;

/// Adds a delivered file's tallies to its trail's usage in the current hour. Runs inside the
/// transaction that records the file, so each file is counted once.
pub async fn add(
    conn: &mut sqlx::PgConnection,
    trail_id: i64,
    trail_arn: &str,
    account_id: &str,
    tallies: &[CategoryTally],
) -> Result<(), StoreError> {
    let categories: Vec<&str> = tallies.iter().map(|t| t.category.as_str()).collect();
    let events: Vec<i64> = tallies.iter().map(|t| t.events).collect();
    let bytes: Vec<i64> = tallies.iter().map(|t| t.bytes).collect();
    sqlx::query(
        "INSERT INTO trail_usage (trail_id, trail_arn, account_id, hour, category, events, bytes)
         SELECT $1, $2, $3, date_trunc('hour', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', c, e, b
         FROM unnest($4::text[], $5::bigint[], $6::bigint[]) AS u(c, e, b)
         ON CONFLICT (trail_id, account_id, hour, category) DO UPDATE
             SET events = trail_usage.events + EXCLUDED.events, bytes = trail_usage.bytes + EXCLUDED.bytes,
                 trail_arn = EXCLUDED.trail_arn",
    )
    .bind(trail_id)
    .bind(trail_arn)
    .bind(account_id)
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
