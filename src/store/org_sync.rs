//! What AWS Organizations sync reads and writes: the accounts as it sees them, its changes (in
//! the caller's transaction, under an advisory lock), and its latest outcome.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};

use super::StoreError;
use super::accounts::{AccountStatus, RegistrationSource};
use crate::model::AccountId;
use crate::model::collector::CollectorSettings;

/// Key of the advisory lock that makes one sync at a time across all replicas ("orgsync").
const LOCK_KEY: i64 = 0x006f_7267_7379_6e63;

/// An account as the sync needs to know it.
#[derive(Debug, Clone)]
pub struct KnownAccount {
    pub account_id: AccountId,
    pub name: String,
    pub status: AccountStatus,
    pub registration_source: RegistrationSource,
    /// The sync suspended it (so the sync may lift the suspension; an admin's it never lifts).
    pub suspended_by_org_sync: bool,
}

#[derive(sqlx::FromRow)]
struct KnownRow {
    account_id: String,
    name: String,
    status: String,
    registration_source: String,
    suspended_by_org_sync: bool,
}

pub async fn known_accounts(conn: &mut PgConnection) -> Result<Vec<KnownAccount>, StoreError> {
    let rows = sqlx::query_as::<_, KnownRow>(
        "SELECT account_id, name, status, registration_source, suspended_by_org_sync
         FROM accounts ORDER BY account_id",
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|row| {
            Ok(KnownAccount {
                account_id: AccountId::parse("account_id", &row.account_id).map_err(StoreError::corrupt)?,
                name: row.name,
                status: AccountStatus::parse(&row.status)?,
                registration_source: RegistrationSource::parse(&row.registration_source)?,
                suspended_by_org_sync: row.suspended_by_org_sync,
            })
        })
        .collect()
}

/// Takes the sync lock for the transaction. `wait`: until `lock_timeout`; otherwise returns false
/// at once when another sync holds it.
pub async fn lock(conn: &mut PgConnection, wait: bool) -> Result<bool, StoreError> {
    if wait {
        sqlx::query("SET LOCAL lock_timeout = '60s'").execute(&mut *conn).await?;
        match sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(LOCK_KEY).execute(&mut *conn).await {
            Ok(_) => Ok(true),
            // lock_not_available: another sync held the lock for the whole minute.
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("55P03") => Ok(false),
            Err(error) => Err(error.into()),
        }
    } else {
        let (locked,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_xact_lock($1)")
            .bind(LOCK_KEY)
            .fetch_one(&mut *conn)
            .await?;
        Ok(locked)
    }
}

/// Registers an account AWS Organizations reported, with `collector` as its pull settings.
/// Returns false when it already exists (another writer got there first).
pub async fn register(
    conn: &mut PgConnection,
    account_id: &AccountId,
    name: &str,
    email: &str,
    collector: &CollectorSettings,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "INSERT INTO accounts (account_id, name, email, status, registration_source, collector)
         VALUES ($1, $2, $3, 'ACTIVE', $4, $5) ON CONFLICT (account_id) DO NOTHING",
    )
    .bind(account_id.as_str())
    .bind(name)
    .bind(email)
    .bind(RegistrationSource::AwsOrganizations.as_str())
    .bind(Json(collector))
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Makes a REMOVED account ACTIVE again as an AWS Organizations account (joined now, like
/// RegisterAccount), or lifts a suspension the sync made. Pull settings are kept, or set to
/// `collector` when there are none.
pub async fn reactivate(
    conn: &mut PgConnection,
    account_id: &AccountId,
    name: &str,
    email: &str,
    collector: &CollectorSettings,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE accounts SET
            status = 'ACTIVE', suspended_by_org_sync = FALSE, updated_at = now(),
            name = CASE WHEN status = 'REMOVED' THEN $2 ELSE name END,
            email = CASE WHEN status = 'REMOVED' THEN $3 ELSE email END,
            joined_at = CASE WHEN status = 'REMOVED' THEN now() ELSE joined_at END,
            registration_source = CASE WHEN status = 'REMOVED' THEN $4 ELSE registration_source END,
            collector = CASE WHEN collector = '{}'::jsonb THEN $5 ELSE collector END
         WHERE account_id = $1 AND (status = 'REMOVED' OR (status = 'SUSPENDED' AND suspended_by_org_sync))",
    )
    .bind(account_id.as_str())
    .bind(name)
    .bind(email)
    .bind(RegistrationSource::AwsOrganizations.as_str())
    .bind(Json(collector))
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Suspends an ACTIVE account, remembering that the sync did it.
pub async fn suspend(conn: &mut PgConnection, account_id: &AccountId) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE accounts SET status = 'SUSPENDED', suspended_by_org_sync = TRUE, updated_at = now()
         WHERE account_id = $1 AND status = 'ACTIVE'",
    )
    .bind(account_id.as_str())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Marks an account the sync registered REMOVED (DeregisterAccount's semantics: its data stays).
pub async fn remove(conn: &mut PgConnection, account_id: &AccountId) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE accounts SET status = 'REMOVED', suspended_by_org_sync = FALSE, updated_at = now()
         WHERE account_id = $1 AND status <> 'REMOVED' AND registration_source = 'AWS_ORGANIZATIONS'",
    )
    .bind(account_id.as_str())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// How many accounts a sync changed, by what it did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub registered: i32,
    pub reactivated: i32,
    pub suspended: i32,
    pub removed: i32,
    pub unchanged: i32,
}

/// The latest sync's outcome.
#[derive(Debug, Clone)]
pub struct SyncStatus {
    pub last_sync_time: DateTime<Utc>,
    pub last_error: String,
    pub last_success_time: Option<DateTime<Utc>>,
    pub counts: Counts,
}

#[derive(sqlx::FromRow)]
struct StatusRow {
    last_sync_at: DateTime<Utc>,
    last_error: String,
    last_success_at: Option<DateTime<Utc>>,
    registered: i32,
    reactivated: i32,
    suspended: i32,
    removed: i32,
    unchanged: i32,
}

pub async fn status(pool: &PgPool) -> Result<Option<SyncStatus>, StoreError> {
    let row = sqlx::query_as::<_, StatusRow>(
        "SELECT last_sync_at, last_error, last_success_at, registered, reactivated, suspended, removed, unchanged
         FROM org_sync_status",
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|row| SyncStatus {
        last_sync_time: row.last_sync_at,
        last_error: row.last_error,
        last_success_time: row.last_success_at,
        counts: Counts {
            registered: row.registered,
            reactivated: row.reactivated,
            suspended: row.suspended,
            removed: row.removed,
            unchanged: row.unchanged,
        },
    }))
}

/// When the latest sync (successful or not) ran.
pub async fn last_sync_time(conn: &mut PgConnection) -> Result<Option<DateTime<Utc>>, StoreError> {
    Ok(sqlx::query_scalar("SELECT last_sync_at FROM org_sync_status").fetch_optional(conn).await?)
}

/// Records a successful sync (in its transaction, so that it commits with the changes).
pub async fn record_success(conn: &mut PgConnection, counts: Counts) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO org_sync_status (last_sync_at, last_error, last_success_at,
                                      registered, reactivated, suspended, removed, unchanged)
         VALUES (now(), '', now(), $1, $2, $3, $4, $5)
         ON CONFLICT (singleton) DO UPDATE SET
           last_sync_at = now(), last_error = '', last_success_at = now(), registered = $1,
           reactivated = $2, suspended = $3, removed = $4, unchanged = $5",
    )
    .bind(counts.registered)
    .bind(counts.reactivated)
    .bind(counts.suspended)
    .bind(counts.removed)
    .bind(counts.unchanged)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records a failed sync; the counts of the last success stay.
pub async fn record_failure(pool: &PgPool, error: &str) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO org_sync_status (last_sync_at, last_error) VALUES (now(), $1)
         ON CONFLICT (singleton) DO UPDATE SET last_sync_at = now(), last_error = $1",
    )
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}
