//! Enrollment tokens (single use, short-lived; only hashes stored) and the one transaction that
//! turns an enrollment into a registered account.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use super::StoreError;
use super::accounts::{AccountStatus, RegistrationSource};
use crate::model::AccountId;
use crate::model::collector::CollectorSettings;

#[derive(Debug, Clone)]
pub struct Enrollment {
    pub id: Uuid,
    pub external_id: String,
    pub aggregator_principal: String,
    pub pinned_account_id: Option<AccountId>,
    pub created_time: DateTime<Utc>,
    pub expire_time: DateTime<Utc>,
    pub used_time: Option<DateTime<Utc>>,
    pub used_by_account_id: Option<AccountId>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    external_id: String,
    aggregator_principal: String,
    pinned_account_id: Option<String>,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    used_at: Option<DateTime<Utc>>,
    used_by_account_id: Option<String>,
}

fn account(value: Option<String>) -> Result<Option<AccountId>, StoreError> {
    value.map(|a| AccountId::parse("account_id", &a).map_err(StoreError::corrupt)).transpose()
}

impl TryFrom<Row> for Enrollment {
    type Error = StoreError;
    fn try_from(row: Row) -> Result<Self, StoreError> {
        Ok(Self {
            id: row.id,
            external_id: row.external_id,
            aggregator_principal: row.aggregator_principal,
            pinned_account_id: account(row.pinned_account_id)?,
            created_time: row.created_at,
            expire_time: row.expires_at,
            used_time: row.used_at,
            used_by_account_id: account(row.used_by_account_id)?,
        })
    }
}

const COLUMNS: &str = "id, external_id, aggregator_principal, pinned_account_id, created_at, expires_at, \
                       used_at, used_by_account_id";

pub struct NewEnrollment<'a> {
    pub token_hash: &'a [u8],
    pub external_id: &'a str,
    pub aggregator_principal: &'a str,
    pub pinned_account_id: Option<&'a AccountId>,
    pub expire_time: DateTime<Utc>,
}

pub async fn insert(pool: &PgPool, new: NewEnrollment<'_>) -> Result<Enrollment, StoreError> {
    let row = sqlx::query_as::<_, Row>(&format!(
        "INSERT INTO enrollments (id, token_hash, external_id, aggregator_principal, pinned_account_id, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
    ))
    .bind(Uuid::new_v4())
    .bind(new.token_hash)
    .bind(new.external_id)
    .bind(new.aggregator_principal)
    .bind(new.pinned_account_id.map(AccountId::as_str))
    .bind(new.expire_time)
    .fetch_one(pool)
    .await?;
    row.try_into()
}

/// The enrollment with this secret hash, used or not, expired or not (callers say which).
pub async fn find_by_hash(pool: &PgPool, token_hash: &[u8]) -> Result<Option<Enrollment>, StoreError> {
    let row = sqlx::query_as::<_, Row>(&format!("SELECT {COLUMNS} FROM enrollments WHERE token_hash = $1"))
        .bind(token_hash)
        .fetch_optional(pool)
        .await?;
    row.map(Enrollment::try_from).transpose()
}

/// Like [`find_by_hash`], holding the row until the transaction ends: two concurrent Enroll calls
/// with one token serialize here, and the second sees the first one's use.
pub async fn lock_by_hash(
    tx: &mut Transaction<'_, Postgres>,
    token_hash: &[u8],
) -> Result<Option<Enrollment>, StoreError> {
    let row = sqlx::query_as::<_, Row>(&format!(
        "SELECT {COLUMNS} FROM enrollments WHERE token_hash = $1 FOR UPDATE"
    ))
    .bind(token_hash)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(Enrollment::try_from).transpose()
}

/// What enrollment needs to know about an already registered account.
#[derive(Debug, Clone)]
pub struct Existing {
    pub status: AccountStatus,
    pub registration_source: RegistrationSource,
    pub enrollment_id: Option<Uuid>,
    pub name: String,
}

pub async fn existing_account(
    executor: impl sqlx::PgExecutor<'_>,
    account_id: &AccountId,
    lock: bool,
) -> Result<Option<Existing>, StoreError> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    let row: Option<(String, String, Option<Uuid>, String)> = sqlx::query_as(&format!(
        "SELECT status, registration_source, enrollment_id, name FROM accounts WHERE account_id = $1{lock}"
    ))
    .bind(account_id.as_str())
    .fetch_optional(executor)
    .await?;
    row.map(|(status, source, enrollment_id, name)| {
        Ok(Existing {
            status: AccountStatus::parse(&status)?,
            registration_source: RegistrationSource::parse(&source)?,
            enrollment_id,
            name,
        })
    })
    .transpose()
}

/// Registers the account from an enrollment (or re-registers a REMOVED one, or completes one that
/// AWS Organizations sync registered, keeping that source), with its collector settings.
pub async fn register_account(
    tx: &mut Transaction<'_, Postgres>,
    account_id: &AccountId,
    name: &str,
    email: &str,
    collector: &CollectorSettings,
    enrollment_id: Uuid,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO accounts (account_id, name, email, status, registration_source, collector, enrollment_id)
         VALUES ($1, $2, $3, 'ACTIVE', 'BOOTSTRAP', $4, $5)
         ON CONFLICT (account_id) DO UPDATE
           SET name = EXCLUDED.name, email = EXCLUDED.email, collector = EXCLUDED.collector,
               enrollment_id = EXCLUDED.enrollment_id, updated_at = now(),
               status = CASE WHEN accounts.status = 'REMOVED' THEN 'ACTIVE' ELSE accounts.status END,
               registration_source = CASE WHEN accounts.status = 'REMOVED' THEN 'BOOTSTRAP'
                                          ELSE accounts.registration_source END,
               joined_at = CASE WHEN accounts.status = 'REMOVED' THEN now() ELSE accounts.joined_at END",
    )
    .bind(account_id.as_str())
    .bind(name)
    .bind(email)
    .bind(Json(collector))
    .bind(enrollment_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn mark_used(
    tx: &mut Transaction<'_, Postgres>,
    id: Uuid,
    account_id: &AccountId,
    member_token_id: Uuid,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE enrollments SET used_at = now(), used_by_account_id = $2, member_token_id = $3 WHERE id = $1",
    )
    .bind(id)
    .bind(account_id.as_str())
    .bind(member_token_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
