//! Member accounts.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::StoreError;
use crate::model::AccountId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountStatus {
    Active,
    Suspended,
    Removed,
}

impl AccountStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Suspended => "SUSPENDED",
            Self::Removed => "REMOVED",
        }
    }

    fn parse(value: &str) -> Result<Self, StoreError> {
        match value {
            "ACTIVE" => Ok(Self::Active),
            "SUSPENDED" => Ok(Self::Suspended),
            "REMOVED" => Ok(Self::Removed),
            other => Err(StoreError::Corrupt(format!("account status {other:?}"))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationSource {
    Manual,
    Bootstrap,
    AwsOrganizations,
}

impl RegistrationSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Manual => "MANUAL",
            Self::Bootstrap => "BOOTSTRAP",
            Self::AwsOrganizations => "AWS_ORGANIZATIONS",
        }
    }

    fn parse(value: &str) -> Result<Self, StoreError> {
        match value {
            "MANUAL" => Ok(Self::Manual),
            "BOOTSTRAP" => Ok(Self::Bootstrap),
            "AWS_ORGANIZATIONS" => Ok(Self::AwsOrganizations),
            other => Err(StoreError::Corrupt(format!("registration source {other:?}"))),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Account {
    pub account_id: AccountId,
    pub name: String,
    pub email: String,
    pub status: AccountStatus,
    pub registration_source: RegistrationSource,
    pub joined_time: DateTime<Utc>,
    pub updated_time: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct Row {
    account_id: String,
    name: String,
    email: String,
    status: String,
    registration_source: String,
    joined_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<Row> for Account {
    type Error = StoreError;
    fn try_from(row: Row) -> Result<Self, StoreError> {
        Ok(Self {
            account_id: AccountId::parse("account_id", &row.account_id).map_err(StoreError::corrupt)?,
            name: row.name,
            email: row.email,
            status: AccountStatus::parse(&row.status)?,
            registration_source: RegistrationSource::parse(&row.registration_source)?,
            joined_time: row.joined_at,
            updated_time: row.updated_at,
        })
    }
}

const COLUMNS: &str = "account_id, name, email, status, registration_source, joined_at, updated_at";

/// Registers an account, or registers a REMOVED one again. An ACTIVE or SUSPENDED account is
/// AlreadyExists.
pub async fn register(
    pool: &PgPool,
    account_id: &AccountId,
    name: &str,
    email: &str,
    source: RegistrationSource,
) -> Result<Account, StoreError> {
    let row = sqlx::query_as::<_, Row>(&format!(
        "INSERT INTO accounts (account_id, name, email, status, registration_source)
         VALUES ($1, $2, $3, 'ACTIVE', $4)
         ON CONFLICT (account_id) DO UPDATE
           SET name = EXCLUDED.name, email = EXCLUDED.email, status = 'ACTIVE',
               registration_source = EXCLUDED.registration_source, joined_at = now(), updated_at = now()
           WHERE accounts.status = 'REMOVED'
         RETURNING {COLUMNS}"
    ))
    .bind(account_id.as_str())
    .bind(name)
    .bind(email)
    .bind(source.as_str())
    .fetch_optional(pool)
    .await?;
    row.ok_or_else(|| StoreError::AlreadyExists(format!("account {account_id}")))?.try_into()
}

pub async fn get(pool: &PgPool, account_id: &AccountId) -> Result<Option<Account>, StoreError> {
    let row = sqlx::query_as::<_, Row>(&format!("SELECT {COLUMNS} FROM accounts WHERE account_id = $1"))
        .bind(account_id.as_str())
        .fetch_optional(pool)
        .await?;
    row.map(Account::try_from).transpose()
}

/// One page ordered by account id. `only` restricts to one account (member callers).
pub async fn list(
    pool: &PgPool,
    after: Option<&str>,
    limit: i64,
    status: Option<AccountStatus>,
    only: Option<&AccountId>,
) -> Result<Vec<Account>, StoreError> {
    let rows = sqlx::query_as::<_, Row>(&format!(
        "SELECT {COLUMNS} FROM accounts
         WHERE ($1::text IS NULL OR account_id > $1)
           AND ($2::text IS NULL OR status = $2)
           AND ($3::text IS NULL OR account_id = $3)
         ORDER BY account_id LIMIT $4"
    ))
    .bind(after)
    .bind(status.map(AccountStatus::as_str))
    .bind(only.map(AccountId::as_str))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(Account::try_from).collect()
}

pub async fn update(
    pool: &PgPool,
    account_id: &AccountId,
    name: Option<&str>,
    email: Option<&str>,
    status: Option<AccountStatus>,
) -> Result<Account, StoreError> {
    let row = sqlx::query_as::<_, Row>(&format!(
        "UPDATE accounts SET name = COALESCE($2, name), email = COALESCE($3, email),
                status = COALESCE($4, status), updated_at = now()
         WHERE account_id = $1 RETURNING {COLUMNS}"
    ))
    .bind(account_id.as_str())
    .bind(name)
    .bind(email)
    .bind(status.map(AccountStatus::as_str))
    .fetch_optional(pool)
    .await?;
    row.ok_or_else(|| StoreError::NotFound(format!("account {account_id}")))?.try_into()
}

/// The status of every account.
pub async fn statuses(pool: &PgPool) -> Result<Vec<(AccountId, AccountStatus)>, StoreError> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT account_id, status FROM accounts").fetch_all(pool).await?;
    rows.into_iter()
        .map(|(id, status)| {
            Ok((
                AccountId::parse("account_id", &id).map_err(StoreError::corrupt)?,
                AccountStatus::parse(&status)?,
            ))
        })
        .collect()
}
