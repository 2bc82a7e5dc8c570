//! The organization row (one per deployment).

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::StoreError;
use crate::model::{AccountId, OrganizationId, Region};

#[derive(Debug, Clone)]
pub struct Organization {
    pub id: OrganizationId,
    pub management_account_id: AccountId,
    pub regions: Vec<Region>,
    pub created_time: DateTime<Utc>,
    pub updated_time: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    management_account_id: String,
    regions: Vec<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<Row> for Organization {
    type Error = StoreError;
    fn try_from(row: Row) -> Result<Self, StoreError> {
        Ok(Self {
            id: OrganizationId::parse("id", &row.id).map_err(StoreError::corrupt)?,
            management_account_id: AccountId::parse("management_account_id", &row.management_account_id)
                .map_err(StoreError::corrupt)?,
            regions: row
                .regions
                .iter()
                .map(|r| Region::parse("regions", r).map_err(StoreError::corrupt))
                .collect::<Result<_, _>>()?,
            created_time: row.created_at,
            updated_time: row.updated_at,
        })
    }
}

const COLUMNS: &str = "id, management_account_id, regions, created_at, updated_at";

/// Creates the organization and registers its management account, in one transaction.
pub async fn create(
    pool: &PgPool,
    id: &OrganizationId,
    management_account_id: &AccountId,
    regions: &[Region],
) -> Result<Organization, StoreError> {
    let mut tx = pool.begin().await?;
    let regions: Vec<&str> = regions.iter().map(Region::as_str).collect();
    let inserted = sqlx::query_as::<_, Row>(&format!(
        "INSERT INTO organizations (id, management_account_id, regions) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING RETURNING {COLUMNS}"
    ))
    .bind(id.as_str())
    .bind(management_account_id.as_str())
    .bind(&regions)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = inserted else {
        return Err(StoreError::AlreadyExists("the organization (one per deployment)".into()));
    };
    sqlx::query(
        "INSERT INTO accounts (account_id, name, status, registration_source)
         VALUES ($1, 'management', 'ACTIVE', 'MANUAL') ON CONFLICT (account_id) DO NOTHING",
    )
    .bind(management_account_id.as_str())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    row.try_into()
}

pub async fn get(pool: &PgPool) -> Result<Option<Organization>, StoreError> {
    let row = sqlx::query_as::<_, Row>(&format!("SELECT {COLUMNS} FROM organizations"))
        .fetch_optional(pool)
        .await?;
    row.map(Organization::try_from).transpose()
}

pub async fn update_regions(pool: &PgPool, regions: &[Region]) -> Result<Organization, StoreError> {
    let regions: Vec<&str> = regions.iter().map(Region::as_str).collect();
    let row = sqlx::query_as::<_, Row>(&format!(
        "UPDATE organizations SET regions = $1, updated_at = now() RETURNING {COLUMNS}"
    ))
    .bind(&regions)
    .fetch_optional(pool)
    .await?;
    row.ok_or_else(|| StoreError::NotFound("organization".into()))?.try_into()
}
