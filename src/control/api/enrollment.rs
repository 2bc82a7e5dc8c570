//! Enrollment: an admin issues a single-use token; the member account presents it (no bearer
//! token) to learn what its IAM role must trust, then to register itself and get a member token.
//! The AccountService methods delegate here.

use chrono::{DateTime, Utc};

use super::Ctx;
use super::convert;
use super::error::ApiError;
use crate::model::AccountId;
use crate::proto::v1 as pb;
use crate::secrets;
use crate::store::accounts::{self, AccountStatus, RegistrationSource};
use crate::store::enrollments::{self, Enrollment, Existing, NewEnrollment};
use crate::store::organizations;
use crate::store::tokens::Role;

/// Lifetime of an enrollment token when the request names none.
pub const DEFAULT_LIFETIME_SECONDS: i64 = 3600;
/// Enrollment tokens are meant to be used at once; a week is the most an admin may ask for.
pub const MAX_LIFETIME_SECONDS: i64 = 7 * 24 * 3600;
const MIN_LIFETIME_SECONDS: i64 = 60;

fn lifetime(requested: i64) -> Result<i64, ApiError> {
    match requested {
        0 => Ok(DEFAULT_LIFETIME_SECONDS),
        n if (MIN_LIFETIME_SECONDS..=MAX_LIFETIME_SECONDS).contains(&n) => Ok(n),
        n => Err(ApiError::invalid(
            "expires_in_seconds",
            format!(
                "must be 0 (one hour) or {MIN_LIFETIME_SECONDS} to {MAX_LIFETIME_SECONDS} (7 days), got {n}"
            ),
        )),
    }
}

fn optional_account(field: &str, value: &str) -> Result<Option<AccountId>, ApiError> {
    if value.is_empty() { Ok(None) } else { Ok(Some(AccountId::parse(field, value)?)) }
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The principal member roles must trust: the configured one, or the management account's root.
async fn aggregator_principal(ctx: &Ctx) -> Result<String, ApiError> {
    if let Some(arn) = &ctx.aggregator_principal_arn {
        return Ok(arn.clone());
    }
    match organizations::get(&ctx.pool).await? {
        Some(org) => Ok(format!("arn:aws:iam::{}:root", org.management_account_id)),
        None => Err(ApiError::FailedPrecondition(
            "no aggregator principal: create the organization first (its management account is the \
             default) or set aggregator_principal_arn on the server"
                .into(),
        )),
    }
}

pub async fn create_token(
    ctx: &Ctx,
    input: pb::CreateEnrollmentTokenRequest,
) -> Result<pb::CreateEnrollmentTokenResponse, ApiError> {
    let lifetime = lifetime(input.expires_in_seconds)?;
    let pinned = optional_account("account_id", &input.account_id)?;
    let principal = aggregator_principal(ctx).await?;
    let internal = |e: secrets::SecretError| ApiError::Internal(e.to_string());
    let secret = secrets::new_enrollment_secret().map_err(internal)?;
    let external_id = secrets::new_external_id().map_err(internal)?;
    let enrollment = enrollments::insert(
        &ctx.pool,
        NewEnrollment {
            token_hash: &secrets::hash_bearer_secret(&secret),
            external_id: &external_id,
            aggregator_principal: &principal,
            pinned_account_id: pinned.as_ref(),
            expire_time: Utc::now() + chrono::Duration::seconds(lifetime),
        },
    )
    .await?;
    tracing::info!(enrollment_id = %enrollment.id, pinned = ?pinned, "enrollment token created");
    Ok(pb::CreateEnrollmentTokenResponse {
        enrollment_token: secret,
        expire_time: Some(convert::timestamp(enrollment.expire_time)),
        external_id: enrollment.external_id,
        aggregator_principal: enrollment.aggregator_principal,
        account_id: input.account_id,
    })
}

/// Why an enrollment token cannot be used (now, by `account`).
fn check_usable(
    enrollment: &Enrollment,
    account: Option<&AccountId>,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    if let Some(used_by) = &enrollment.used_by_account_id {
        return Err(ApiError::FailedPrecondition(format!(
            "enrollment token was already used by account {used_by}{}",
            enrollment.used_time.map(|t| format!(" at {}", rfc3339(t))).unwrap_or_default()
        )));
    }
    if enrollment.expire_time <= now {
        return Err(ApiError::FailedPrecondition(format!(
            "enrollment token expired at {}; ask an admin for a new one (orgtrail accounts enroll-token)",
            rfc3339(enrollment.expire_time)
        )));
    }
    if let (Some(pinned), Some(account)) = (&enrollment.pinned_account_id, account)
        && pinned != account
    {
        return Err(ApiError::PermissionDenied(format!(
            "enrollment token is for account {pinned}, not {account}"
        )));
    }
    Ok(())
}

/// Whether the account may (still) enroll: new, REMOVED, or registered by AWS Organizations sync
/// (enrollment then adds its role). One registered by hand or by another enrollment is taken.
fn check_account(account_id: &AccountId, existing: Option<&Existing>) -> Result<(), ApiError> {
    let Some(existing) = existing else { return Ok(()) };
    let by = match (existing.status, existing.registration_source) {
        (AccountStatus::Removed, _) => return Ok(()),
        (_, RegistrationSource::AwsOrganizations) if existing.enrollment_id.is_none() => return Ok(()),
        (_, RegistrationSource::Manual) => "manually by an admin",
        (_, RegistrationSource::Bootstrap | RegistrationSource::AwsOrganizations) => "by another enrollment",
    };
    Err(ApiError::AlreadyExists(format!(
        "account {account_id} is already registered ({by}) and {}",
        existing.status.as_str()
    )))
}

async fn find(ctx: &Ctx, token: &str) -> Result<Enrollment, ApiError> {
    let unknown = || ApiError::Unauthenticated("unknown enrollment token".into());
    if !token.starts_with(secrets::ENROLLMENT_TOKEN_PREFIX) {
        return Err(unknown());
    }
    enrollments::find_by_hash(&ctx.pool, &secrets::hash_bearer_secret(token)).await?.ok_or_else(unknown)
}

pub async fn describe(
    ctx: &Ctx,
    input: pb::DescribeEnrollmentRequest,
) -> Result<pb::DescribeEnrollmentResponse, ApiError> {
    let enrollment = find(ctx, &input.enrollment_token).await?;
    let account = optional_account("account_id", &input.account_id)?;
    check_usable(&enrollment, account.as_ref(), Utc::now())?;
    if let Some(account) = &account {
        let existing = enrollments::existing_account(&ctx.pool, account, false).await?;
        check_account(account, existing.as_ref())?;
    }
    let org = organizations::get(&ctx.pool).await?;
    Ok(pb::DescribeEnrollmentResponse {
        external_id: enrollment.external_id,
        aggregator_principal: enrollment.aggregator_principal,
        expire_time: Some(convert::timestamp(enrollment.expire_time)),
        organization_id: org.map(|o| o.id.to_string()).unwrap_or_default(),
        account_id: enrollment.pinned_account_id.map(|a| a.to_string()).unwrap_or_default(),
    })
}

pub async fn enroll(ctx: &Ctx, input: pb::EnrollRequest) -> Result<pb::EnrollResponse, ApiError> {
    let hash = secrets::hash_bearer_secret(&input.enrollment_token);
    // Authenticate before validating anything else, so that a caller without a token learns nothing.
    find(ctx, &input.enrollment_token).await?;
    let account_id = AccountId::parse("account_id", &input.account_id)?;
    if !input.name.is_empty() {
        crate::model::names::check_name("name", &input.name)?;
    }
    crate::model::names::check_email("email", &input.email)?;
    let collector = input
        .collector
        .map(convert::collector_settings)
        .ok_or_else(|| ApiError::invalid("collector", "is required (role_arn and external_id)"))?;
    collector.validate(account_id.as_str())?;
    if collector.role_arn.is_empty() {
        return Err(ApiError::invalid("collector.role_arn", "is required"));
    }

    let mut tx = ctx.pool.begin().await.map_err(crate::store::StoreError::from)?;
    let enrollment = enrollments::lock_by_hash(&mut tx, &hash)
        .await?
        .ok_or_else(|| ApiError::Unauthenticated("unknown enrollment token".into()))?;
    check_usable(&enrollment, Some(&account_id), Utc::now())?;
    if collector.external_id != enrollment.external_id {
        return Err(ApiError::invalid(
            "collector.external_id",
            format!("must be this enrollment's ExternalId {:?}", enrollment.external_id),
        ));
    }
    let existing = enrollments::existing_account(&mut *tx, &account_id, true).await?;
    check_account(&account_id, existing.as_ref())?;
    let name = match (input.name.is_empty(), &existing) {
        (false, _) => input.name.clone(),
        (true, Some(existing)) => existing.name.clone(),
        (true, None) => account_id.to_string(),
    };
    enrollments::register_account(&mut tx, &account_id, &name, &input.email, &collector, enrollment.id)
        .await?;
    let issued = super::token::issue(
        &mut *tx,
        None,
        &format!("bootstrap {account_id}"),
        Role::Member,
        Some(&account_id),
        0,
        false,
    )
    .await?;
    enrollments::mark_used(&mut tx, enrollment.id, &account_id, issued.token.id).await?;
    tx.commit().await.map_err(crate::store::StoreError::from)?;
    tracing::info!(%account_id, enrollment_id = %enrollment.id, "account enrolled");

    let account = accounts::get(&ctx.pool, &account_id)
        .await?
        .ok_or_else(|| ApiError::Internal(format!("account {account_id} vanished after enrollment")))?;
    Ok(pb::EnrollResponse {
        account: Some(convert::account(&account)),
        member_token: issued.secret,
        member_token_id: issued.token.id.to_string(),
    })
}
