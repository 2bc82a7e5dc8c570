//! Alert rules, enabled packs, the alert outbox and its dead letters.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use crate::features::outbox::{self, Kind, NewRow};
use crate::store::{StoreError, is_unique_violation};

/// A target as stored: `log`, or `webhook` with its URL and sealed secret.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredTarget {
    pub target_kind: String,
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<Vec<u8>>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredRule {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub enabled: bool,
    pub kind: String,
    pub definition: String,
    pub account_ids: Vec<String>,
    pub regions: Vec<String>,
    #[sqlx(flatten)]
    pub target: StoredTarget,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A rule's fields as written (create and full replace).
#[derive(Debug, Clone)]
pub struct RuleFields {
    pub name: String,
    pub description: String,
    pub enabled: bool,
    pub kind: &'static str,
    pub definition: String,
    pub account_ids: Vec<String>,
    pub regions: Vec<String>,
    pub target: StoredTarget,
}

const RULE_COLUMNS: &str = "id, name, description, enabled, kind, definition, account_ids, regions, target_kind, \
                            webhook_url, webhook_secret, created_at, updated_at";

async fn bump_version(conn: &mut PgConnection) -> Result<(), StoreError> {
    sqlx::query("UPDATE alert_rules_version SET version = version + 1").execute(conn).await?;
    Ok(())
}

/// The version that moves on every change of rules or packs.
pub async fn version(pool: &PgPool) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar("SELECT version FROM alert_rules_version").fetch_one(pool).await?)
}

pub async fn create(pool: &PgPool, rule: &RuleFields) -> Result<StoredRule, StoreError> {
    let mut tx = pool.begin().await?;
    let created = sqlx::query_as::<_, StoredRule>(&format!(
        "INSERT INTO alert_rules (name, description, enabled, kind, definition, account_ids, regions, target_kind, \
         webhook_url, webhook_secret) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {RULE_COLUMNS}"
    ))
    .bind(&rule.name)
    .bind(&rule.description)
    .bind(rule.enabled)
    .bind(rule.kind)
    .bind(&rule.definition)
    .bind(&rule.account_ids)
    .bind(&rule.regions)
    .bind(&rule.target.target_kind)
    .bind(&rule.target.webhook_url)
    .bind(&rule.target.webhook_secret)
    .fetch_one(&mut *tx)
    .await;
    let created = match created {
        Ok(rule) => rule,
        Err(e) if is_unique_violation(&e) => {
            return Err(StoreError::AlreadyExists(format!("rule {}", rule.name)));
        }
        Err(e) => return Err(e.into()),
    };
    bump_version(&mut tx).await?;
    tx.commit().await?;
    Ok(created)
}

pub async fn get(pool: &PgPool, name: &str) -> Result<StoredRule, StoreError> {
    sqlx::query_as::<_, StoredRule>(&format!("SELECT {RULE_COLUMNS} FROM alert_rules WHERE name = $1"))
        .bind(name)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("rule {name}")))
}

pub async fn list(pool: &PgPool) -> Result<Vec<StoredRule>, StoreError> {
    Ok(sqlx::query_as::<_, StoredRule>(&format!("SELECT {RULE_COLUMNS} FROM alert_rules ORDER BY name"))
        .fetch_all(pool)
        .await?)
}

/// Replaces every field of the rule named `name` (the API merges a partial update first).
pub async fn replace(pool: &PgPool, name: &str, rule: &RuleFields) -> Result<StoredRule, StoreError> {
    let mut tx = pool.begin().await?;
    let updated = sqlx::query_as::<_, StoredRule>(&format!(
        "UPDATE alert_rules SET name = $2, description = $3, enabled = $4, kind = $5, definition = $6, \
         account_ids = $7, regions = $8, target_kind = $9, webhook_url = $10, webhook_secret = $11, updated_at = now() \
         WHERE name = $1 RETURNING {RULE_COLUMNS}"
    ))
    .bind(name)
    .bind(&rule.name)
    .bind(&rule.description)
    .bind(rule.enabled)
    .bind(rule.kind)
    .bind(&rule.definition)
    .bind(&rule.account_ids)
    .bind(&rule.regions)
    .bind(&rule.target.target_kind)
    .bind(&rule.target.webhook_url)
    .bind(&rule.target.webhook_secret)
    .fetch_optional(&mut *tx)
    .await;
    let updated = match updated {
        Ok(Some(rule)) => rule,
        Ok(None) => return Err(StoreError::NotFound(format!("rule {name}"))),
        Err(e) if is_unique_violation(&e) => {
            return Err(StoreError::AlreadyExists(format!("rule {}", rule.name)));
        }
        Err(e) => return Err(e.into()),
    };
    bump_version(&mut tx).await?;
    tx.commit().await?;
    Ok(updated)
}

pub async fn delete(pool: &PgPool, name: &str) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    let deleted = sqlx::query("DELETE FROM alert_rules WHERE name = $1").bind(name).execute(&mut *tx).await?;
    if deleted.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("rule {name}")));
    }
    bump_version(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

/// An enabled built-in pack and where its alerts go.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EnabledPack {
    pub name: String,
    #[sqlx(flatten)]
    pub target: StoredTarget,
    pub enabled_at: DateTime<Utc>,
}

pub async fn enabled_packs(pool: &PgPool) -> Result<Vec<EnabledPack>, StoreError> {
    Ok(sqlx::query_as::<_, EnabledPack>(
        "SELECT name, target_kind, webhook_url, webhook_secret, enabled_at FROM alert_rule_packs ORDER BY name",
    )
    .fetch_all(pool)
    .await?)
}

/// Enables a pack (or changes the target of an enabled one).
pub async fn enable_pack(pool: &PgPool, name: &str, target: &StoredTarget) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO alert_rule_packs (name, target_kind, webhook_url, webhook_secret) VALUES ($1, $2, $3, $4)
         ON CONFLICT (name) DO UPDATE SET target_kind = $2, webhook_url = $3, webhook_secret = $4",
    )
    .bind(name)
    .bind(&target.target_kind)
    .bind(&target.webhook_url)
    .bind(&target.webhook_secret)
    .execute(&mut *tx)
    .await?;
    bump_version(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Disables a pack; disabling a disabled pack is fine.
pub async fn disable_pack(pool: &PgPool, name: &str) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM alert_rule_packs WHERE name = $1").bind(name).execute(&mut *tx).await?;
    bump_version(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

/// An alert matched by the rules tap.
#[derive(Debug, Clone)]
pub struct NewAlert {
    pub shard_id: i64,
    pub seq: i64,
    pub rule_name: String,
    pub target: StoredTarget,
    pub body: String,
}

/// Writes alerts into the outbox in the tap's transaction; a repeat of the same (shard, event,
/// rule) is ignored.
pub async fn insert_alerts(conn: &mut PgConnection, alerts: &[NewAlert]) -> Result<(), StoreError> {
    let rows: Vec<NewRow> = alerts
        .iter()
        .map(|alert| NewRow {
            dedupe_key: format!("{}:{}:{}", alert.shard_id, alert.seq, alert.rule_name),
            payload: serde_json::json!({
                "rule_name": alert.rule_name,
                "target_kind": alert.target.target_kind,
                "webhook_url": alert.target.webhook_url,
                "body": alert.body,
            }),
            secret: alert.target.webhook_secret.clone(),
        })
        .collect();
    outbox::enqueue(conn, Kind::Alert, &rows).await
}

/// An alert waiting in the outbox.
#[derive(Debug, Clone)]
pub struct PendingAlert {
    pub id: i64,
    pub rule_name: String,
    pub target: StoredTarget,
    pub body: String,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
}

/// The fields of an alert's outbox payload.
#[derive(serde::Deserialize)]
struct AlertPayload {
    rule_name: String,
    target_kind: String,
    webhook_url: Option<String>,
    body: String,
}

/// Locks up to `limit` due alerts for this transaction; other dispatchers skip them.
pub async fn claim_due(conn: &mut PgConnection, limit: i64) -> Result<Vec<PendingAlert>, StoreError> {
    let mut alerts = Vec::new();
    for due in outbox::claim_due(conn, Kind::Alert, limit).await? {
        let payload: AlertPayload = serde_json::from_value(due.payload)
            .map_err(|e| StoreError::Corrupt(format!("alert {} in the outbox: {e}", due.id)))?;
        alerts.push(PendingAlert {
            id: due.id,
            rule_name: payload.rule_name,
            target: StoredTarget {
                target_kind: payload.target_kind,
                webhook_url: payload.webhook_url,
                webhook_secret: due.secret,
            },
            body: payload.body,
            attempts: due.attempts,
            created_at: due.created_at,
        });
    }
    Ok(alerts)
}

/// Moves an alert that failed its last attempt to the dead letters.
pub async fn dead_letter(conn: &mut PgConnection, id: i64, error: &str) -> Result<(), StoreError> {
    sqlx::query(
        "WITH gone AS (DELETE FROM outbox WHERE id = $1 AND kind = 'alert' RETURNING *)
         INSERT INTO alert_dead_letters (id, rule_name, target_kind, webhook_url, body, attempts, last_error, created_at)
         SELECT id, payload->>'rule_name', payload->>'target_kind', payload->>'webhook_url', payload->>'body',
                attempts + 1, $2, created_at FROM gone",
    )
    .bind(id)
    .bind(error)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeadLetter {
    pub id: i64,
    pub rule_name: String,
    pub target_kind: String,
    pub webhook_url: Option<String>,
    pub body: String,
    pub attempts: i32,
    pub last_error: String,
    pub created_at: DateTime<Utc>,
    pub failed_at: DateTime<Utc>,
}

/// Dead letters, newest first, after `before_id` when paging.
pub async fn dead_letters(
    pool: &PgPool,
    before_id: Option<i64>,
    limit: i64,
) -> Result<Vec<DeadLetter>, StoreError> {
    Ok(sqlx::query_as::<_, DeadLetter>(
        "SELECT id, rule_name, target_kind, webhook_url, body, attempts, last_error, created_at, failed_at
         FROM alert_dead_letters WHERE $1::bigint IS NULL OR id < $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(before_id)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Alerts still in the outbox (for status and benchmarks).
pub async fn pending_count(pool: &PgPool) -> Result<i64, StoreError> {
    outbox::count(pool, Kind::Alert).await
}
