//! API tokens. Only hashes of bearer secrets are stored; access-key secrets are stored encrypted.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::StoreError;
use crate::model::AccountId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Admin,
    Auditor,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Auditor => "auditor",
            Self::Member => "member",
        }
    }

    fn parse(value: &str) -> Result<Self, StoreError> {
        match value {
            "admin" => Ok(Self::Admin),
            "auditor" => Ok(Self::Auditor),
            "member" => Ok(Self::Member),
            other => Err(StoreError::Corrupt(format!("token role {other:?}"))),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Token {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
    pub account_id: Option<AccountId>,
    pub access_key_id: Option<String>,
    pub created_time: DateTime<Utc>,
    pub expire_time: Option<DateTime<Utc>>,
    pub revoked_time: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    name: String,
    role: String,
    account_id: Option<String>,
    access_key_id: Option<String>,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl TryFrom<Row> for Token {
    type Error = StoreError;
    fn try_from(row: Row) -> Result<Self, StoreError> {
        Ok(Self {
            id: row.id,
            name: row.name,
            role: Role::parse(&row.role)?,
            account_id: row
                .account_id
                .map(|a| AccountId::parse("account_id", &a).map_err(StoreError::corrupt))
                .transpose()?,
            access_key_id: row.access_key_id,
            created_time: row.created_at,
            expire_time: row.expires_at,
            revoked_time: row.revoked_at,
        })
    }
}

const COLUMNS: &str = "id, name, role, account_id, access_key_id, created_at, expires_at, revoked_at";

pub struct NewToken<'a> {
    pub name: &'a str,
    pub role: Role,
    pub account_id: Option<&'a AccountId>,
    pub token_hash: &'a [u8],
    pub access_key: Option<(&'a str, &'a [u8])>,
    pub expire_time: Option<DateTime<Utc>>,
}

/// Inserts a token; `executor` is a pool or an open transaction (enrollment issues a member token
/// in the transaction that registers the account).
pub async fn insert(executor: impl sqlx::PgExecutor<'_>, new: NewToken<'_>) -> Result<Token, StoreError> {
    let row = sqlx::query_as::<_, Row>(&format!(
        "INSERT INTO api_tokens (id, name, role, account_id, token_hash, access_key_id,
                                 secret_access_key_ciphertext, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLUMNS}"
    ))
    .bind(Uuid::new_v4())
    .bind(new.name)
    .bind(new.role.as_str())
    .bind(new.account_id.map(AccountId::as_str))
    .bind(new.token_hash)
    .bind(new.access_key.map(|(id, _)| id))
    .bind(new.access_key.map(|(_, sealed)| sealed))
    .bind(new.expire_time)
    .fetch_one(executor)
    .await?;
    row.try_into()
}

/// The active (not revoked, not expired) token with this secret hash.
pub async fn find_active_by_hash(pool: &PgPool, token_hash: &[u8]) -> Result<Option<Token>, StoreError> {
    let row = sqlx::query_as::<_, Row>(&format!(
        "SELECT {COLUMNS} FROM api_tokens
         WHERE token_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())"
    ))
    .bind(token_hash)
    .fetch_optional(pool)
    .await?;
    row.map(Token::try_from).transpose()
}

/// The active token with this access key id and its encrypted secret (for SigV4).
pub async fn find_active_by_access_key(
    pool: &PgPool,
    access_key_id: &str,
) -> Result<Option<(Token, Vec<u8>)>, StoreError> {
    #[derive(sqlx::FromRow)]
    struct WithSecret {
        #[sqlx(flatten)]
        row: Row,
        secret_access_key_ciphertext: Vec<u8>,
    }
    let found = sqlx::query_as::<_, WithSecret>(&format!(
        "SELECT {COLUMNS}, secret_access_key_ciphertext FROM api_tokens
         WHERE access_key_id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())"
    ))
    .bind(access_key_id)
    .fetch_optional(pool)
    .await?;
    found.map(|f| Ok((Token::try_from(f.row)?, f.secret_access_key_ciphertext))).transpose()
}

/// One page, newest first. The page key is "created_at-micros/id".
pub async fn list(
    pool: &PgPool,
    after: Option<Uuid>,
    limit: i64,
    include_inactive: bool,
) -> Result<Vec<Token>, StoreError> {
    let rows = sqlx::query_as::<_, Row>(&format!(
        "SELECT {COLUMNS} FROM api_tokens t
         WHERE ($1::uuid IS NULL OR (t.created_at, t.id) < (SELECT created_at, id FROM api_tokens WHERE id = $1))
           AND ($2 OR (t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now())))
         ORDER BY t.created_at DESC, t.id DESC LIMIT $3"
    ))
    .bind(after)
    .bind(include_inactive)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(Token::try_from).collect()
}

pub async fn revoke(pool: &PgPool, id: Uuid) -> Result<Token, StoreError> {
    let row = sqlx::query_as::<_, Row>(&format!(
        "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, now()) WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.ok_or_else(|| StoreError::NotFound(format!("token {id}")))?.try_into()
}

pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<Token>, StoreError> {
    let row = sqlx::query_as::<_, Row>(&format!("SELECT {COLUMNS} FROM api_tokens WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.map(Token::try_from).transpose()
}
