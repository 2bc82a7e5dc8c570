//! Insights counts, attribution tallies, per-(account, region) detector cursors and insights.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

pub use crate::model::insights::CountKey;
use crate::model::insights::{Open, Tallies, Window};
use crate::store::StoreError;

/// Adds tallies to the counts (in key order) and notes the oldest minute of each (account, region).
pub async fn add_tallies(conn: &mut sqlx::PgConnection, tallies: &Tallies) -> Result<(), StoreError> {
    if tallies.is_empty() {
        return Ok(());
    }
    let mut scopes: std::collections::BTreeMap<(&str, &str), DateTime<Utc>> = Default::default();
    for key in tallies.keys() {
        let oldest = scopes.entry((&key.account_id, &key.region)).or_insert(key.minute);
        *oldest = (*oldest).min(key.minute);
    }
    sqlx::query(
        "INSERT INTO insight_counts (account_id, region, category, event_source, event_name, minute, calls, errors)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[],
                              $7::int8[], $8::int8[])
         ON CONFLICT (account_id, region, category, event_source, event_name, minute) DO UPDATE
         SET calls = insight_counts.calls + EXCLUDED.calls, errors = insight_counts.errors + EXCLUDED.errors",
    )
    .bind(tallies.keys().map(|k| k.account_id.as_str()).collect::<Vec<_>>())
    .bind(tallies.keys().map(|k| k.region.as_str()).collect::<Vec<_>>())
    .bind(tallies.keys().map(|k| k.category.as_str()).collect::<Vec<_>>())
    .bind(tallies.keys().map(|k| k.event_source.as_str()).collect::<Vec<_>>())
    .bind(tallies.keys().map(|k| k.event_name.as_str()).collect::<Vec<_>>())
    .bind(tallies.keys().map(|k| k.minute).collect::<Vec<_>>())
    .bind(tallies.values().map(|t| t.calls).collect::<Vec<_>>())
    .bind(tallies.values().map(|t| t.errors).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;

    let mut rows: Vec<(&CountKey, &str, &str, i64, i64)> = Vec::new();
    for (key, tally) in tallies {
        for ((attribute, value), (calls, errors)) in &tally.attributions {
            rows.push((key, attribute, value, *calls, *errors));
        }
    }
    sqlx::query(
        "INSERT INTO insight_attributions (account_id, region, category, event_source, event_name, minute,
                                           attribute, value, calls, errors)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[],
                              $7::text[], $8::text[], $9::int8[], $10::int8[])
         ON CONFLICT (account_id, region, category, event_source, event_name, minute, attribute, value) DO UPDATE
         SET calls = insight_attributions.calls + EXCLUDED.calls,
             errors = insight_attributions.errors + EXCLUDED.errors",
    )
    .bind(rows.iter().map(|r| r.0.account_id.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.0.region.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.0.category.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.0.event_source.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.0.event_name.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.0.minute).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.1).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.2).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.3).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.4).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;

    // One statement for every (account, region): a group round brings hundreds of them.
    sqlx::query(
        "INSERT INTO insight_scopes (account_id, region, first_minute)
         SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[])
         ON CONFLICT (account_id, region) DO UPDATE
         SET first_minute = LEAST(insight_scopes.first_minute, EXCLUDED.first_minute)
         WHERE EXCLUDED.first_minute < insight_scopes.first_minute",
    )
    .bind(scopes.keys().map(|(account, _)| *account).collect::<Vec<_>>())
    .bind(scopes.keys().map(|(_, region)| *region).collect::<Vec<_>>())
    .bind(scopes.values().copied().collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// An (account, region) with counts: where the detector stands.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Scope {
    pub account_id: String,
    pub region: String,
    pub first_minute: DateTime<Utc>,
    pub evaluated_through: Option<DateTime<Utc>>,
}

/// The pairs to judge. With `selected` false (no trail selects Insights) only those judged
/// before, to be reset: an organization counts tens of thousands of pairs that nobody judges.
pub async fn scopes(pool: &PgPool, selected: bool) -> Result<Vec<Scope>, StoreError> {
    Ok(sqlx::query_as::<_, Scope>(
        "SELECT account_id, region, first_minute, evaluated_through FROM insight_scopes
         WHERE $1 OR evaluated_through IS NOT NULL ORDER BY account_id, region",
    )
    .bind(selected)
    .fetch_all(pool)
    .await?)
}

/// Takes the pair's detector lock for the transaction; false when another worker holds it.
pub async fn try_lock_scope(
    conn: &mut sqlx::PgConnection,
    account: &str,
    region: &str,
) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtext('insights:' || $1 || ':' || $2))")
        .bind(account)
        .bind(region)
        .fetch_one(conn)
        .await?)
}

/// The scope, read under its lock.
pub async fn scope(
    conn: &mut sqlx::PgConnection,
    account: &str,
    region: &str,
) -> Result<Option<Scope>, StoreError> {
    Ok(sqlx::query_as::<_, Scope>(
        "SELECT account_id, region, first_minute, evaluated_through FROM insight_scopes
         WHERE account_id = $1 AND region = $2",
    )
    .bind(account)
    .bind(region)
    .fetch_optional(conn)
    .await?)
}

/// Moves the detector's cursor (None: the pair is not covered; judging starts afresh later).
pub async fn set_evaluated_through(
    conn: &mut sqlx::PgConnection,
    account: &str,
    region: &str,
    through: Option<DateTime<Utc>>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE insight_scopes SET evaluated_through = $3 WHERE account_id = $1 AND region = $2")
        .bind(account)
        .bind(region)
        .bind(through)
        .execute(conn)
        .await?;
    Ok(())
}

/// Whether every event of the pair staged before `before` was counted by the insights tap: per
/// shard of the pair, the first event after the tap's cursor came later (or there is none).
pub async fn counted_through(
    conn: &mut sqlx::PgConnection,
    staging: &dyn crate::pipeline::staging::Staging,
    account: &str,
    region: &str,
    before: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let cursors: Vec<(crate::model::shard::ShardId, i64)> = sqlx::query_as(
        "SELECT s.id, COALESCE(t.through_seq, 0) FROM shards s
         LEFT JOIN tap_cursors t ON t.shard_id = s.id AND t.tap_key = $3
         WHERE s.account_id = $1 AND s.region = $2 AND s.source <> $4",
    )
    .bind(account)
    .bind(region)
    .bind(crate::features::insights::count::TAP_NAME)
    .bind(crate::model::shard::Source::Insights.as_str())
    .fetch_all(conn)
    .await?;
    for (shard, through) in cursors {
        if staging.first_after(shard, through).await?.is_some_and(|first| first < before) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A series' count in the judged minute, with the sums of the baseline window before it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MinuteCounts {
    pub category: String,
    pub event_source: String,
    pub event_name: String,
    pub calls: i64,
    pub errors: i64,
    pub calls_sum: i64,
    pub calls_squares: i64,
    pub errors_sum: i64,
    pub errors_squares: i64,
}

impl MinuteCounts {
    pub fn calls_window(&self) -> Window {
        Window { sum: self.calls_sum, sum_of_squares: self.calls_squares }
    }

    pub fn errors_window(&self) -> Window {
        Window { sum: self.errors_sum, sum_of_squares: self.errors_squares }
    }
}

/// Series with calls or errors in `minute`, each with its baseline window `[from, minute)`.
pub async fn minute_counts(
    conn: &mut sqlx::PgConnection,
    account: &str,
    region: &str,
    minute: DateTime<Utc>,
    from: DateTime<Utc>,
) -> Result<Vec<MinuteCounts>, StoreError> {
    Ok(sqlx::query_as::<_, MinuteCounts>(
        "SELECT n.category, n.event_source, n.event_name, n.calls, n.errors,
                COALESCE(SUM(b.calls), 0)::int8 AS calls_sum,
                COALESCE(SUM(b.calls * b.calls), 0)::int8 AS calls_squares,
                COALESCE(SUM(b.errors), 0)::int8 AS errors_sum,
                COALESCE(SUM(b.errors * b.errors), 0)::int8 AS errors_squares
         FROM insight_counts n
         LEFT JOIN insight_counts b
           ON b.account_id = n.account_id AND b.region = n.region AND b.category = n.category
          AND b.event_source = n.event_source AND b.event_name = n.event_name
          AND b.minute >= $4 AND b.minute < $3
         WHERE n.account_id = $1 AND n.region = $2 AND n.minute = $3
         GROUP BY n.category, n.event_source, n.event_name, n.calls, n.errors
         ORDER BY n.category, n.event_source, n.event_name",
    )
    .bind(account)
    .bind(region)
    .bind(minute)
    .bind(from)
    .fetch_all(conn)
    .await?)
}

/// Per attribute value: (attribute, value, calls, errors) summed over `[from, to)`.
pub async fn attributions(
    conn: &mut sqlx::PgConnection,
    series: &crate::features::insights::record::Series,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<(String, String, i64, i64)>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT attribute, value, SUM(calls)::int8, SUM(errors)::int8 FROM insight_attributions
         WHERE account_id = $1 AND region = $2 AND category = $3 AND event_source = $4 AND event_name = $5
           AND minute >= $6 AND minute < $7
         GROUP BY attribute, value",
    )
    .bind(&series.account_id)
    .bind(&series.region)
    .bind(&series.category)
    .bind(&series.event_source)
    .bind(&series.event_name)
    .bind(from)
    .bind(to)
    .fetch_all(conn)
    .await?)
}

/// An open insight as stored.
#[derive(Debug, Clone)]
pub struct StoredInsight {
    pub shared_event_id: uuid::Uuid,
    pub series: crate::features::insights::record::Series,
    pub open: Open,
}

type InsightRow = (
    uuid::Uuid,
    String,
    String,
    String,
    String,
    String,
    String,
    DateTime<Utc>,
    f64,
    f64,
    i64,
    DateTime<Utc>,
    i32,
    i64,
);

fn minutes(time: DateTime<Utc>) -> i64 {
    time.timestamp().div_euclid(60)
}

/// The open insights of a pair.
pub async fn open_insights(
    conn: &mut sqlx::PgConnection,
    account: &str,
    region: &str,
) -> Result<Vec<StoredInsight>, StoreError> {
    let rows: Vec<InsightRow> = sqlx::query_as(
        "SELECT shared_event_id, account_id, region, insight_type, category, event_source, event_name,
                start_minute, baseline_average, threshold, insight_sum, last_anomalous, quiet_minutes, quiet_sum
         FROM insights WHERE account_id = $1 AND region = $2 AND end_minute IS NULL
         ORDER BY insight_type, category, event_source, event_name",
    )
    .bind(account)
    .bind(region)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| StoredInsight {
            shared_event_id: r.0,
            series: crate::features::insights::record::Series {
                account_id: r.1,
                region: r.2,
                insight_type: r.3,
                category: r.4,
                event_source: r.5,
                event_name: r.6,
            },
            open: Open {
                start: minutes(r.7),
                baseline_average: r.8,
                threshold: r.9,
                insight_sum: r.10,
                last_anomalous: minutes(r.11),
                quiet_minutes: r.12.max(0) as u32,
                quiet_sum: r.13,
            },
        })
        .collect())
}

fn at_minute(minute: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(minute * 60, 0).unwrap_or_default()
}

/// Records a started insight.
pub async fn insert_insight(
    conn: &mut sqlx::PgConnection,
    insight: &StoredInsight,
) -> Result<(), StoreError> {
    let s = &insight.series;
    let o = &insight.open;
    sqlx::query(
        "INSERT INTO insights (shared_event_id, account_id, region, insight_type, category, event_source, event_name,
                               start_minute, baseline_average, threshold, insight_sum, last_anomalous,
                               quiet_minutes, quiet_sum, start_staged_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, now())
         ON CONFLICT (shared_event_id) DO NOTHING",
    )
    .bind(insight.shared_event_id)
    .bind(&s.account_id)
    .bind(&s.region)
    .bind(&s.insight_type)
    .bind(&s.category)
    .bind(&s.event_source)
    .bind(&s.event_name)
    .bind(at_minute(o.start))
    .bind(o.baseline_average)
    .bind(o.threshold)
    .bind(o.insight_sum)
    .bind(at_minute(o.last_anomalous))
    .bind(o.quiet_minutes as i32)
    .bind(o.quiet_sum)
    .execute(conn)
    .await?;
    Ok(())
}

/// Stores the progress of an open insight.
pub async fn update_insight(
    conn: &mut sqlx::PgConnection,
    id: uuid::Uuid,
    open: &Open,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE insights SET insight_sum = $2, last_anomalous = $3, quiet_minutes = $4, quiet_sum = $5
         WHERE shared_event_id = $1",
    )
    .bind(id)
    .bind(open.insight_sum)
    .bind(at_minute(open.last_anomalous))
    .bind(open.quiet_minutes as i32)
    .bind(open.quiet_sum)
    .execute(conn)
    .await?;
    Ok(())
}

/// Closes an insight whose End record was staged.
pub async fn end_insight(
    conn: &mut sqlx::PgConnection,
    id: uuid::Uuid,
    end_minute: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE insights SET end_minute = $2, end_staged_at = now() WHERE shared_event_id = $1")
        .bind(id)
        .bind(end_minute)
        .execute(conn)
        .await?;
    Ok(())
}

/// Deletes counts older than `counts_before` and closed insights that ended before
/// `insights_before`, in bulk. Returns the rows deleted.
pub async fn expire(
    pool: &PgPool,
    counts_before: DateTime<Utc>,
    insights_before: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let mut deleted = 0;
    for statement in
        ["DELETE FROM insight_counts WHERE minute < $1", "DELETE FROM insight_attributions WHERE minute < $1"]
    {
        deleted += sqlx::query(statement).bind(counts_before).execute(pool).await?.rows_affected();
    }
    deleted += sqlx::query("DELETE FROM insights WHERE end_minute < $1")
        .bind(insights_before)
        .execute(pool)
        .await?
        .rows_affected();
    Ok(deleted)
}

/// When the Start (and End) record of an insight was staged: (start minute, start staged, end
/// minute, end staged), for reports and tests.
pub async fn staging_times(
    pool: &PgPool,
    id: uuid::Uuid,
) -> Result<Option<(DateTime<Utc>, DateTime<Utc>, Option<DateTime<Utc>>, Option<DateTime<Utc>>)>, StoreError>
{
    Ok(sqlx::query_as(
        "SELECT start_minute, start_staged_at, end_minute, end_staged_at FROM insights WHERE shared_event_id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?)
}
