//! Postgres repositories, one file per aggregate. SQL stays next to its use (runtime-checked
//! queries, so building needs no database).

pub mod accounts;
pub mod channels;
pub mod enrollments;
pub mod org_sync;
pub mod organizations;
pub mod tokens;
pub mod trails;

use std::time::Duration;

use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;

/// The schema, embedded. Migrations are numbered and reversible (`.up.sql` / `.down.sql`).
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("{0}")]
    LimitExceeded(String),
    #[error("fenced: {0}")]
    Fenced(String),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The distributed log behind staging (NATS JetStream) failed or could not be reached.
    #[error("staging log unavailable: {0}")]
    Log(String),
}

impl From<sqlx::Error> for StoreError {
    /// Every database error the store sees passes here once: counted for `/metrics`.
    fn from(error: sqlx::Error) -> Self {
        crate::metrics::pipeline().postgres_error(&error);
        Self::Database(error)
    }
}

impl StoreError {
    fn corrupt(error: impl std::fmt::Display) -> Self {
        Self::Corrupt(error.to_string())
    }

    /// Whether Postgres refused the data itself (SQLSTATE class 22, data exception, or 54, a
    /// limit such as an index entry's size): the same statement would fail again however often it
    /// is retried.
    pub fn is_bad_data(&self) -> bool {
        let Self::Database(sqlx::Error::Database(db)) = self else { return false };
        db.code().is_some_and(|code| code.starts_with("22") || code.starts_with("54"))
    }
}

/// Whether a database error is a unique-constraint violation.
pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}

/// Connects a pool. `max_connections` bounds the load one process puts on Postgres.
pub async fn connect(database_url: &str, max_connections: u32) -> Result<PgPool, StoreError> {
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect(database_url)
        .await?;
    Ok(pool)
}

/// Applies pending migrations. Safe when several processes start at once: sqlx holds a Postgres
/// advisory lock for the duration, so the second waits and then finds nothing to do.
pub async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// An opaque page token over an integer sort key.
pub mod page {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use crate::model::FieldError;

    pub const DEFAULT_PAGE_SIZE: i64 = 100;
    pub const MAX_PAGE_SIZE: i64 = 1000;

    pub fn size(page_size: i32) -> Result<i64, FieldError> {
        match i64::from(page_size) {
            0 => Ok(DEFAULT_PAGE_SIZE),
            n if (1..=MAX_PAGE_SIZE).contains(&n) => Ok(n),
            n => Err(FieldError::new("page_size", format!("must be 0 to {MAX_PAGE_SIZE}, got {n}"))),
        }
    }

    pub fn encode(key: &str) -> String {
        URL_SAFE_NO_PAD.encode(format!("v1:{key}"))
    }

    /// The key after which the next page starts; None for the first page.
    pub fn decode(token: &str) -> Result<Option<String>, FieldError> {
        if token.is_empty() {
            return Ok(None);
        }
        let invalid = || FieldError::new("next_token", "is not a token returned by this API");
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        text.strip_prefix("v1:").map(|k| Some(k.to_owned())).ok_or_else(invalid)
    }
}
