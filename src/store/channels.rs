//! Channels for non-AWS sources.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::{StoreError, is_unique_violation};
use crate::model::{AccountId, Region};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Channel {
    pub id: Uuid,
    pub name: String,
    pub account_id: String,
    pub region: String,
    pub created_at: DateTime<Utc>,
}

pub async fn create(
    pool: &PgPool,
    name: &str,
    account: &AccountId,
    region: &Region,
) -> Result<Channel, StoreError> {
    let created = sqlx::query_as::<_, Channel>(
        "INSERT INTO channels (id, name, account_id, region) VALUES ($1, $2, $3, $4)
         RETURNING id, name, account_id, region, created_at",
    )
    .bind(Uuid::new_v4())
    .bind(name)
    .bind(account.as_str())
    .bind(region.as_str())
    .fetch_one(pool)
    .await;
    match created {
        Ok(channel) => Ok(channel),
        Err(e) if is_unique_violation(&e) => {
            Err(StoreError::AlreadyExists(format!("channel {name:?} of account {account}")))
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<Channel>, StoreError> {
    Ok(sqlx::query_as::<_, Channel>(
        "SELECT id, name, account_id, region, created_at FROM channels WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?)
}

pub async fn list(pool: &PgPool, only: Option<&AccountId>) -> Result<Vec<Channel>, StoreError> {
    Ok(sqlx::query_as::<_, Channel>(
        "SELECT id, name, account_id, region, created_at FROM channels
         WHERE ($1::text IS NULL OR account_id = $1) ORDER BY created_at, id",
    )
    .bind(only.map(AccountId::as_str))
    .fetch_all(pool)
    .await?)
}
