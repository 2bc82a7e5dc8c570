//! Trails: settings, selectors, tags and the logging switch. Delivery outcomes are written by
//! workers into `trail_delivery_status`; here they are only read.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::types::Json;

use super::{StoreError, is_unique_violation};
use crate::model::selectors::{AdvancedEventSelector, EventSelector, EventSelectors, InsightSelector};
use crate::model::trail::{MAX_TRAILS_PER_REGION, Tag, Trail, TrailSettings};
use crate::model::{AccountId, BucketName, Region, TrailArn, TrailName};

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    owner_account_id: String,
    name: String,
    home_region: String,
    s3_bucket_name: String,
    s3_key_prefix: String,
    is_multi_region_trail: bool,
    include_global_service_events: bool,
    is_organization_trail: bool,
    log_file_validation_enabled: bool,
    cloud_watch_logs_log_group_arn: String,
    cloud_watch_logs_role_arn: String,
    kms_key_id: String,
    sns_topic_name: String,
    delivery_interval_seconds: i32,
    tags: Json<Vec<Tag>>,
    event_selectors: Option<Json<Vec<EventSelector>>>,
    advanced_event_selectors: Option<Json<Vec<AdvancedEventSelector>>>,
    insight_selectors: Json<Vec<InsightSelector>>,
    is_logging: bool,
    start_logging_at: Option<DateTime<Utc>>,
    stop_logging_at: Option<DateTime<Utc>>,
    validation_enabled_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<Row> for Trail {
    type Error = StoreError;
    fn try_from(row: Row) -> Result<Self, StoreError> {
        let arn = TrailArn::new(
            Region::parse("home_region", &row.home_region).map_err(StoreError::corrupt)?,
            AccountId::parse("owner_account_id", &row.owner_account_id).map_err(StoreError::corrupt)?,
            TrailName::parse("name", &row.name).map_err(StoreError::corrupt)?,
        );
        let event_selectors = match (row.event_selectors, row.advanced_event_selectors) {
            (Some(Json(basic)), None) => EventSelectors::Basic(basic),
            (None, Some(Json(advanced))) => EventSelectors::Advanced(advanced),
            (None, None) => EventSelectors::Default,
            (Some(_), Some(_)) => {
                return Err(StoreError::Corrupt(format!("trail {arn} has both selector kinds")));
            }
        };
        Ok(Trail {
            id: row.id,
            arn,
            settings: TrailSettings {
                s3_bucket_name: BucketName::parse("s3_bucket_name", &row.s3_bucket_name)
                    .map_err(StoreError::corrupt)?,
                s3_key_prefix: row.s3_key_prefix,
                is_multi_region_trail: row.is_multi_region_trail,
                include_global_service_events: row.include_global_service_events,
                is_organization_trail: row.is_organization_trail,
                log_file_validation_enabled: row.log_file_validation_enabled,
                cloud_watch_logs_log_group_arn: row.cloud_watch_logs_log_group_arn,
                cloud_watch_logs_role_arn: row.cloud_watch_logs_role_arn,
                kms_key_id: row.kms_key_id,
                sns_topic_name: row.sns_topic_name,
                delivery_interval_seconds: row.delivery_interval_seconds,
            },
            tags: row.tags.0,
            event_selectors,
            insight_selectors: row.insight_selectors.0,
            is_logging: row.is_logging,
            start_logging_time: row.start_logging_at,
            stop_logging_time: row.stop_logging_at,
            validation_enabled_time: row.validation_enabled_at,
            created_time: row.created_at,
            updated_time: row.updated_at,
        })
    }
}

const COLUMNS: &str = "id, owner_account_id, name, home_region, s3_bucket_name, s3_key_prefix,
    is_multi_region_trail, include_global_service_events, is_organization_trail,
    log_file_validation_enabled, cloud_watch_logs_log_group_arn, cloud_watch_logs_role_arn,
    kms_key_id, sns_topic_name, delivery_interval_seconds, tags, event_selectors, advanced_event_selectors, insight_selectors,
    is_logging, start_logging_at, stop_logging_at, validation_enabled_at, created_at, updated_at";

/// Counts the owner's trails present in `region` (multi-region trails are present everywhere),
/// not counting `except`.
async fn trails_in_region(
    conn: &mut sqlx::PgConnection,
    owner: &AccountId,
    region: &Region,
    except: Option<i64>,
) -> Result<i64, StoreError> {
    let count: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM trails
         WHERE owner_account_id = $1 AND (is_multi_region_trail OR home_region = $2)
           AND ($3::bigint IS NULL OR id <> $3)",
    )
    .bind(owner.as_str())
    .bind(region.as_str())
    .bind(except)
    .fetch_one(conn)
    .await?;
    Ok(count)
}

/// Serializes trail creation and region changes per owner account, so the per-region limit holds.
async fn lock_owner(conn: &mut sqlx::PgConnection, owner: &AccountId) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('trails:' || $1))")
        .bind(owner.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

fn limit_error(owner: &AccountId, region: &Region) -> StoreError {
    StoreError::LimitExceeded(format!(
        "MaximumNumberOfTrailsExceeded: account {owner} already has {MAX_TRAILS_PER_REGION} trails in {region}"
    ))
}

pub async fn create(
    pool: &PgPool,
    arn: &TrailArn,
    settings: &TrailSettings,
    tags: &[Tag],
) -> Result<Trail, StoreError> {
    let mut tx = pool.begin().await?;
    lock_owner(&mut tx, &arn.owner_account_id).await?;
    if trails_in_region(&mut tx, &arn.owner_account_id, &arn.home_region, None).await?
        >= MAX_TRAILS_PER_REGION
    {
        return Err(limit_error(&arn.owner_account_id, &arn.home_region));
    }
    let inserted = sqlx::query_as::<_, Row>(&format!(
        "INSERT INTO trails (owner_account_id, name, home_region, s3_bucket_name, s3_key_prefix,
             is_multi_region_trail, include_global_service_events, is_organization_trail,
             log_file_validation_enabled, cloud_watch_logs_log_group_arn, cloud_watch_logs_role_arn,
             kms_key_id, sns_topic_name, tags, delivery_interval_seconds, validation_enabled_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                 CASE WHEN $9 THEN now() END) RETURNING {COLUMNS}"
    ))
    .bind(arn.owner_account_id.as_str())
    .bind(arn.name.as_str())
    .bind(arn.home_region.as_str())
    .bind(settings.s3_bucket_name.as_str())
    .bind(&settings.s3_key_prefix)
    .bind(settings.is_multi_region_trail)
    .bind(settings.include_global_service_events)
    .bind(settings.is_organization_trail)
    .bind(settings.log_file_validation_enabled)
    .bind(&settings.cloud_watch_logs_log_group_arn)
    .bind(&settings.cloud_watch_logs_role_arn)
    .bind(&settings.kms_key_id)
    .bind(&settings.sns_topic_name)
    .bind(Json(tags))
    .bind(settings.delivery_interval_seconds)
    .fetch_one(&mut *tx)
    .await;
    let row = match inserted {
        Ok(row) => row,
        Err(e) if is_unique_violation(&e) => {
            return Err(StoreError::AlreadyExists(format!(
                "trail {:?} of account {}",
                arn.name.as_str(),
                arn.owner_account_id
            )));
        }
        Err(e) => return Err(e.into()),
    };
    tx.commit().await?;
    row.try_into()
}

pub async fn get_by_arn(pool: &PgPool, arn: &TrailArn) -> Result<Option<Trail>, StoreError> {
    let row = sqlx::query_as::<_, Row>(&format!(
        "SELECT {COLUMNS} FROM trails WHERE owner_account_id = $1 AND name = $2 AND home_region = $3"
    ))
    .bind(arn.owner_account_id.as_str())
    .bind(arn.name.as_str())
    .bind(arn.home_region.as_str())
    .fetch_optional(pool)
    .await?;
    row.map(Trail::try_from).transpose()
}

/// Every trail with this name, across owners.
pub async fn find_by_name(pool: &PgPool, name: &TrailName) -> Result<Vec<Trail>, StoreError> {
    let rows = sqlx::query_as::<_, Row>(&format!("SELECT {COLUMNS} FROM trails WHERE name = $1 ORDER BY id"))
        .bind(name.as_str())
        .fetch_all(pool)
        .await?;
    rows.into_iter().map(Trail::try_from).collect()
}

/// One page in creation order. With `visible_to`, only that account's trails and the organization
/// trails covering it (the account is ACTIVE).
pub async fn list(
    pool: &PgPool,
    after_id: Option<i64>,
    limit: i64,
    visible_to: Option<&AccountId>,
) -> Result<Vec<Trail>, StoreError> {
    let rows = sqlx::query_as::<_, Row>(&format!(
        "SELECT {COLUMNS} FROM trails
         WHERE ($1::bigint IS NULL OR id > $1)
           AND ($2::text IS NULL OR owner_account_id = $2
                OR (is_organization_trail AND EXISTS (
                      SELECT 1 FROM accounts WHERE account_id = $2 AND status = 'ACTIVE')))
         ORDER BY id LIMIT $3"
    ))
    .bind(after_id)
    .bind(visible_to.map(AccountId::as_str))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(Trail::try_from).collect()
}

pub async fn update_settings(
    pool: &PgPool,
    trail: &Trail,
    settings: &TrailSettings,
) -> Result<Trail, StoreError> {
    let mut tx = pool.begin().await?;
    let becomes_multi_region = settings.is_multi_region_trail && !trail.settings.is_multi_region_trail;
    if becomes_multi_region {
        // Present in every region now: each region must have room for it.
        lock_owner(&mut tx, trail.owner()).await?;
        // The fullest region after the change: its single-region trails plus every multi-region one.
        let fullest: i64 = sqlx::query_scalar(
            "SELECT COALESCE((SELECT max(n) FROM (SELECT count(*) AS n FROM trails
                                 WHERE owner_account_id = $1 AND id <> $2 AND NOT is_multi_region_trail
                                 GROUP BY home_region) per_region), 0)
                  + (SELECT count(*) FROM trails
                     WHERE owner_account_id = $1 AND id <> $2 AND is_multi_region_trail)",
        )
        .bind(trail.owner().as_str())
        .bind(trail.id)
        .fetch_one(&mut *tx)
        .await?;
        if fullest >= MAX_TRAILS_PER_REGION {
            return Err(StoreError::LimitExceeded(format!(
                "MaximumNumberOfTrailsExceeded: account {} already has {MAX_TRAILS_PER_REGION} trails in some region",
                trail.owner()
            )));
        }
    }
    let row = sqlx::query_as::<_, Row>(&format!(
        "UPDATE trails SET s3_bucket_name = $2, s3_key_prefix = $3, is_multi_region_trail = $4,
             include_global_service_events = $5, is_organization_trail = $6,
             log_file_validation_enabled = $7, cloud_watch_logs_log_group_arn = $8,
             validation_enabled_at = CASE WHEN NOT $7 THEN NULL
                                          WHEN NOT log_file_validation_enabled THEN now()
                                          ELSE validation_enabled_at END,
             cloud_watch_logs_role_arn = $9, kms_key_id = $10, sns_topic_name = $11,
             delivery_interval_seconds = $12, updated_at = now()
         WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(trail.id)
    .bind(settings.s3_bucket_name.as_str())
    .bind(&settings.s3_key_prefix)
    .bind(settings.is_multi_region_trail)
    .bind(settings.include_global_service_events)
    .bind(settings.is_organization_trail)
    .bind(settings.log_file_validation_enabled)
    .bind(&settings.cloud_watch_logs_log_group_arn)
    .bind(&settings.cloud_watch_logs_role_arn)
    .bind(&settings.kms_key_id)
    .bind(&settings.sns_topic_name)
    .bind(settings.delivery_interval_seconds)
    .fetch_optional(&mut *tx)
    .await?;
    let row = row.ok_or_else(|| StoreError::NotFound(format!("trail {}", trail.arn)))?;
    tx.commit().await?;
    row.try_into()
}

pub async fn delete(pool: &PgPool, trail: &Trail) -> Result<(), StoreError> {
    let deleted = sqlx::query("DELETE FROM trails WHERE id = $1").bind(trail.id).execute(pool).await?;
    if deleted.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("trail {}", trail.arn)));
    }
    Ok(())
}

/// Turns logging on or off; the start/stop time moves only on an actual change.
pub async fn set_logging(pool: &PgPool, trail: &Trail, on: bool) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE trails SET is_logging = $2,
             start_logging_at = CASE WHEN $2 AND NOT is_logging THEN now() ELSE start_logging_at END,
             stop_logging_at = CASE WHEN NOT $2 AND is_logging THEN now() ELSE stop_logging_at END
         WHERE id = $1",
    )
    .bind(trail.id)
    .bind(on)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn put_event_selectors(
    pool: &PgPool,
    trail: &Trail,
    selectors: &EventSelectors,
) -> Result<Trail, StoreError> {
    let (basic, advanced) = match selectors {
        EventSelectors::Default => (None, None),
        EventSelectors::Basic(basic) => (Some(Json(basic)), None),
        EventSelectors::Advanced(advanced) => (None, Some(Json(advanced))),
    };
    let row = sqlx::query_as::<_, Row>(&format!(
        "UPDATE trails SET event_selectors = $2, advanced_event_selectors = $3, updated_at = now()
         WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(trail.id)
    .bind(basic)
    .bind(advanced)
    .fetch_optional(pool)
    .await?;
    row.ok_or_else(|| StoreError::NotFound(format!("trail {}", trail.arn)))?.try_into()
}

pub async fn put_insight_selectors(
    pool: &PgPool,
    trail: &Trail,
    selectors: &[InsightSelector],
) -> Result<Trail, StoreError> {
    let row = sqlx::query_as::<_, Row>(&format!(
        "UPDATE trails SET insight_selectors = $2, updated_at = now() WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(trail.id)
    .bind(Json(selectors))
    .fetch_optional(pool)
    .await?;
    row.ok_or_else(|| StoreError::NotFound(format!("trail {}", trail.arn)))?.try_into()
}

pub async fn set_tags(pool: &PgPool, trail: &Trail, tags: &[Tag]) -> Result<Trail, StoreError> {
    let row = sqlx::query_as::<_, Row>(&format!(
        "UPDATE trails SET tags = $2, updated_at = now() WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(trail.id)
    .bind(Json(tags))
    .fetch_optional(pool)
    .await?;
    row.ok_or_else(|| StoreError::NotFound(format!("trail {}", trail.arn)))?.try_into()
}

/// Delivery outcomes recorded by workers; all empty before the first delivery attempt.
#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct DeliveryStatus {
    pub latest_delivery_time: Option<DateTime<Utc>>,
    pub latest_delivery_attempt_time: Option<DateTime<Utc>>,
    pub latest_delivery_error: String,
    pub latest_digest_delivery_time: Option<DateTime<Utc>>,
    pub latest_digest_delivery_error: String,
    pub latest_notification_time: Option<DateTime<Utc>>,
    pub latest_notification_error: String,
    pub latest_cloud_watch_logs_delivery_time: Option<DateTime<Utc>>,
    pub latest_cloud_watch_logs_delivery_error: String,
}

pub async fn delivery_status(pool: &PgPool, trail: &Trail) -> Result<DeliveryStatus, StoreError> {
    let status = sqlx::query_as::<_, DeliveryStatus>(
        "SELECT latest_delivery_time, latest_delivery_attempt_time, latest_delivery_error,
                latest_digest_delivery_time, latest_digest_delivery_error, latest_notification_time,
                latest_notification_error, latest_cloud_watch_logs_delivery_time,
                latest_cloud_watch_logs_delivery_error
         FROM trail_delivery_status WHERE trail_id = $1",
    )
    .bind(trail.id)
    .fetch_optional(pool)
    .await?;
    Ok(status.unwrap_or_default())
}

/// Every trail (workers route with the whole set).
pub async fn all(pool: &PgPool) -> Result<Vec<Trail>, StoreError> {
    let rows = sqlx::query_as::<_, Row>(&format!("SELECT {COLUMNS} FROM trails ORDER BY id"))
        .fetch_all(pool)
        .await?;
    rows.into_iter().map(Trail::try_from).collect()
}

/// Records a CloudWatch Logs delivery: `None` a success (now; clears the error), `Some` a failure.
pub async fn record_cloud_watch_logs_delivery(
    conn: impl sqlx::PgExecutor<'_>,
    trail_id: i64,
    error: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO trail_delivery_status (trail_id, latest_cloud_watch_logs_delivery_time, latest_cloud_watch_logs_delivery_error)
         SELECT $1, CASE WHEN $2::text IS NULL THEN now() END, COALESCE($2, '')
         WHERE EXISTS (SELECT 1 FROM trails WHERE id = $1)
         ON CONFLICT (trail_id) DO UPDATE SET
             latest_cloud_watch_logs_delivery_time = CASE WHEN $2::text IS NULL THEN now()
                 ELSE trail_delivery_status.latest_cloud_watch_logs_delivery_time END,
             latest_cloud_watch_logs_delivery_error = COALESCE($2, '')",
    )
    .bind(trail_id)
    .bind(error)
    .execute(conn)
    .await?;
    Ok(())
}

/// The longest delivery interval of a logging trail, in seconds (60 without any).
pub async fn longest_delivery_interval(pool: &PgPool) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT coalesce(max(delivery_interval_seconds), 60)::int8 FROM trails WHERE is_logging",
    )
    .fetch_one(pool)
    .await?)
}
