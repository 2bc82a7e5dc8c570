//! Member accounts.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::types::Json;

use super::StoreError;
use crate::model::AccountId;
use crate::model::collector::CollectorSettings;

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

    pub(crate) fn parse(value: &str) -> Result<Self, StoreError> {
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

    pub(crate) fn parse(value: &str) -> Result<Self, StoreError> {
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
    pub collector: CollectorSettings,
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
    collector: Json<CollectorSettings>,
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
            collector: row.collector.0,
        })
    }
}

const COLUMNS: &str =
    "account_id, name, email, status, registration_source, joined_at, updated_at, collector";

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
    collector: Option<&CollectorSettings>,
) -> Result<Account, StoreError> {
    let row = sqlx::query_as::<_, Row>(&format!(
        "UPDATE accounts SET name = COALESCE($2, name), email = COALESCE($3, email),
                status = COALESCE($4, status), collector = COALESCE($5, collector), updated_at = now(),
                -- An admin's status change is the admin's: the Organizations sync no longer lifts it.
                suspended_by_org_sync = suspended_by_org_sync AND $4::text IS NULL
         WHERE account_id = $1 RETURNING {COLUMNS}"
    ))
    .bind(account_id.as_str())
    .bind(name)
    .bind(email)
    .bind(status.map(AccountStatus::as_str))
    .bind(collector.map(Json))
    .fetch_optional(pool)
    .await?;
    row.ok_or_else(|| StoreError::NotFound(format!("account {account_id}")))?.try_into()
}

/// The status of every account.
pub async fn statuses(pool: &PgPool) -> Result<Vec<(AccountId, AccountStatus)>, StoreError> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT account_id, status FROM accounts").fetch_all(pool).await?;
    parse_statuses(rows)
}

/// The status of each of `ids` that is registered, in one statement however many there are (an
/// ingest call may carry records of hundreds of accounts).
pub async fn statuses_of(
    pool: &PgPool,
    ids: &[&AccountId],
) -> Result<Vec<(AccountId, AccountStatus)>, StoreError> {
    let ids: Vec<&str> = ids.iter().map(|id| id.as_str()).collect();
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT account_id, status FROM accounts WHERE account_id = ANY($1)")
            .bind(&ids)
            .fetch_all(pool)
            .await?;
    parse_statuses(rows)
}

fn parse_statuses(rows: Vec<(String, String)>) -> Result<Vec<(AccountId, AccountStatus)>, StoreError> {
    rows.into_iter()
        .map(|(id, status)| {
            Ok((
                AccountId::parse("account_id", &id).map_err(StoreError::corrupt)?,
                AccountStatus::parse(&status)?,
            ))
        })
        .collect()
}

/// The state of one pull source of an account in one region.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CollectorStatus {
    pub source: String,
    pub region: String,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_error: String,
    pub last_error_at: Option<DateTime<Utc>>,
    pub events_collected: i64,
}

pub async fn collector_status(
    pool: &PgPool,
    account_id: &AccountId,
) -> Result<Vec<CollectorStatus>, StoreError> {
    Ok(sqlx::query_as::<_, CollectorStatus>(
        "SELECT source, region, last_success_at, last_error, last_error_at, events_collected
         FROM collector_status WHERE account_id = $1 ORDER BY source, region",
    )
    .bind(account_id.as_str())
    .fetch_all(pool)
    .await?)
}

/// A pull succeeded: `events` more were accepted; the error is cleared.
pub async fn record_collection(
    pool: &PgPool,
    account_id: &AccountId,
    source: &str,
    region: &str,
    events: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO collector_status (account_id, source, region, last_success_at, events_collected)
         VALUES ($1, $2, $3, now(), $4)
         ON CONFLICT (account_id, source, region) DO UPDATE
           SET last_success_at = now(), last_error = '', events_collected = collector_status.events_collected + $4",
    )
    .bind(account_id.as_str())
    .bind(source)
    .bind(region)
    .bind(events)
    .execute(pool)
    .await?;
    Ok(())
}

/// A pull failed; shown on the account until the next success.
pub async fn record_collection_error(
    pool: &PgPool,
    account_id: &AccountId,
    source: &str,
    region: &str,
    error: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO collector_status (account_id, source, region, last_error, last_error_at)
         VALUES ($1, $2, $3, $4, now())
         ON CONFLICT (account_id, source, region) DO UPDATE SET last_error = $4, last_error_at = now()",
    )
    .bind(account_id.as_str())
    .bind(source)
    .bind(region)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}
