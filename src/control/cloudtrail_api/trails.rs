//! CloudTrail's trail lifecycle actions: CreateTrail, UpdateTrail, DeleteTrail, ListTrails,
//! StartLogging and StopLogging, each answered by TrailService on the caller's behalf.
//!
//! What only this API has is decided here: the caller's account (an admin key acts as the
//! management account, a member key as its own), the home region (the one signed for), and
//! CloudTrail's own defaults (`IsMultiRegionTrail` false).

use serde::Deserialize;
use serde_json::Value;

use super::dispatch::Call;
use super::error::AwsError;
use super::protocol::{self, Object};
use super::shapes::{self, TagInput};
use crate::model::{AccountId, TrailArn, TrailName};
use crate::proto::v1 as pb;
use crate::proto::v1::organization_service_server::OrganizationService;
use crate::proto::v1::trail_service_server::TrailService;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateTrailInput {
    #[serde(default)]
    name: String,
    #[serde(default)]
    s3_bucket_name: String,
    #[serde(default)]
    s3_key_prefix: String,
    #[serde(default)]
    sns_topic_name: String,
    include_global_service_events: Option<bool>,
    is_multi_region_trail: Option<bool>,
    #[serde(default)]
    enable_log_file_validation: bool,
    #[serde(default)]
    cloud_watch_logs_log_group_arn: String,
    #[serde(default)]
    cloud_watch_logs_role_arn: String,
    #[serde(default)]
    kms_key_id: String,
    #[serde(default)]
    is_organization_trail: bool,
    #[serde(default)]
    tags_list: Vec<TagInput>,
    /// Whether CloudTrail logs the events of its own deliveries; orgtrail's deliveries make no
    /// events, so either value holds. Accepted so scripts that set it work.
    #[serde(rename = "RecursiveLogging")]
    _recursive_logging: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateTrailInput {
    #[serde(default)]
    name: String,
    s3_bucket_name: Option<String>,
    s3_key_prefix: Option<String>,
    sns_topic_name: Option<String>,
    include_global_service_events: Option<bool>,
    is_multi_region_trail: Option<bool>,
    enable_log_file_validation: Option<bool>,
    cloud_watch_logs_log_group_arn: Option<String>,
    cloud_watch_logs_role_arn: Option<String>,
    kms_key_id: Option<String>,
    is_organization_trail: Option<bool>,
    /// See CreateTrailInput.
    #[serde(rename = "RecursiveLogging")]
    _recursive_logging: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NameInput {
    #[serde(default)]
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListTrailsInput {
    #[serde(default)]
    next_token: String,
}

pub async fn create_trail(call: &Call<'_>, body: &[u8]) -> Result<Value, AwsError> {
    let input: CreateTrailInput = protocol::input(body)?;
    // Organization trails belong to the management account whoever asks (TrailService checks
    // that the caller may create them); account trails to the caller's account.
    let owner_account_id =
        if input.is_organization_trail { String::new() } else { caller_account(call).await? };
    let request = call.request(pb::CreateTrailRequest {
        name: input.name,
        home_region: call.region.to_string(),
        owner_account_id,
        s3_bucket_name: input.s3_bucket_name,
        s3_key_prefix: input.s3_key_prefix,
        // CloudTrail's API defaults (TrailService's own default is multi-region).
        is_multi_region_trail: Some(input.is_multi_region_trail.unwrap_or(false)),
        include_global_service_events: Some(input.include_global_service_events.unwrap_or(true)),
        is_organization_trail: input.is_organization_trail,
        log_file_validation_enabled: input.enable_log_file_validation,
        cloud_watch_logs_log_group_arn: input.cloud_watch_logs_log_group_arn,
        cloud_watch_logs_role_arn: input.cloud_watch_logs_role_arn,
        kms_key_id: input.kms_key_id,
        sns_topic_name: input.sns_topic_name,
        tags: shapes::tags_from(input.tags_list),
        delivery_interval_seconds: None,
    });
    let created = call.services.trails.create_trail(request).await.map_err(|s| call.status(s))?.into_inner();
    Ok(shapes::trail_response(&created))
}

pub async fn update_trail(call: &Call<'_>, body: &[u8]) -> Result<Value, AwsError> {
    let input: UpdateTrailInput = protocol::input(body)?;
    let trail = home_trail(call, &input.name).await?;
    let request = call.request(pb::UpdateTrailRequest {
        name: trail.trail_arn,
        s3_bucket_name: input.s3_bucket_name,
        s3_key_prefix: input.s3_key_prefix,
        is_multi_region_trail: input.is_multi_region_trail,
        include_global_service_events: input.include_global_service_events,
        is_organization_trail: input.is_organization_trail,
        log_file_validation_enabled: input.enable_log_file_validation,
        cloud_watch_logs_log_group_arn: input.cloud_watch_logs_log_group_arn,
        cloud_watch_logs_role_arn: input.cloud_watch_logs_role_arn,
        kms_key_id: input.kms_key_id,
        sns_topic_name: input.sns_topic_name,
        delivery_interval_seconds: None,
    });
    let updated = call.services.trails.update_trail(request).await.map_err(|s| call.status(s))?.into_inner();
    Ok(shapes::trail_response(&updated))
}

pub async fn delete_trail(call: &Call<'_>, body: &[u8]) -> Result<Value, AwsError> {
    lifecycle(call, body, Lifecycle::Delete).await
}

pub async fn start_logging(call: &Call<'_>, body: &[u8]) -> Result<Value, AwsError> {
    lifecycle(call, body, Lifecycle::StartLogging).await
}

pub async fn stop_logging(call: &Call<'_>, body: &[u8]) -> Result<Value, AwsError> {
    lifecycle(call, body, Lifecycle::StopLogging).await
}

/// The actions that take `{Name}` of a trail in its home region and answer `{}`.
enum Lifecycle {
    Delete,
    StartLogging,
    StopLogging,
}

async fn lifecycle(call: &Call<'_>, body: &[u8], action: Lifecycle) -> Result<Value, AwsError> {
    let input: NameInput = protocol::input(body)?;
    let name = home_trail(call, &input.name).await?.trail_arn;
    let trails = &call.services.trails;
    let done = match action {
        Lifecycle::Delete => {
            trails.delete_trail(call.request(pb::DeleteTrailRequest { name })).await.map(drop)
        }
        Lifecycle::StartLogging => {
            trails.start_logging(call.request(pb::StartLoggingRequest { name })).await.map(drop)
        }
        Lifecycle::StopLogging => {
            trails.stop_logging(call.request(pb::StopLoggingRequest { name })).await.map(drop)
        }
    };
    done.map_err(|s| call.status(s))?;
    Ok(Object::new().build())
}

/// Every trail the caller may see, in all regions, a page at a time (`cloudtrail_list_page_size`).
pub async fn list_trails(call: &Call<'_>, body: &[u8]) -> Result<Value, AwsError> {
    let input: ListTrailsInput = protocol::input(body)?;
    let request = call.request(pb::ListTrailsRequest {
        page_size: call.settings.list_page_size,
        next_token: input.next_token,
    });
    let page = call.services.trails.list_trails(request).await.map_err(|s| call.status(s))?.into_inner();
    let trails: Vec<Value> = page
        .trails
        .iter()
        .map(|t| {
            Object::new()
                .value("TrailARN", t.trail_arn.as_str())
                .value("Name", t.name.as_str())
                .value("HomeRegion", t.home_region.as_str())
                .build()
        })
        .collect();
    Ok(Object::new().value("Trails", trails).text("NextToken", &page.next_token).build())
}

/// The trail a write action names, which CloudTrail changes only in its home region.
pub async fn home_trail(call: &Call<'_>, name_or_arn: &str) -> Result<pb::Trail, AwsError> {
    let trail = find_trail(call, name_or_arn).await?;
    if trail.home_region != call.region.as_str() {
        return Err(AwsError::client(
            "InvalidHomeRegionException",
            format!(
                "trail {} can be changed only in its home region {}, not {}",
                trail.trail_arn, trail.home_region, call.region
            ),
        ));
    }
    Ok(trail)
}

/// The trail a request names (see [`trail_ref`]), fetched once.
pub async fn find_trail(call: &Call<'_>, name_or_arn: &str) -> Result<pb::Trail, AwsError> {
    if let Some(own) = own_trail_here(call, name_or_arn).await? {
        return Ok(own);
    }
    let request = call.request(pb::GetTrailRequest { name: name_or_arn.to_owned() });
    Ok(call.services.trails.get_trail(request).await.map_err(|s| call.status(s))?.into_inner())
}

/// What to ask the service for when a request names a trail. CloudTrail reads a bare name as the
/// caller's own trail homed in the signing region, so a name that several accounts use picks that
/// one; a name the caller has no trail of there is passed on as it is (an organization trail, or
/// a trail homed elsewhere), and so is an ARN.
pub async fn trail_ref(call: &Call<'_>, name_or_arn: &str) -> Result<String, AwsError> {
    Ok(match own_trail_here(call, name_or_arn).await? {
        Some(own) => own.trail_arn,
        None => name_or_arn.to_owned(),
    })
}

/// The caller's own trail of that bare name homed in the signing region, if there is one.
async fn own_trail_here(call: &Call<'_>, name_or_arn: &str) -> Result<Option<pb::Trail>, AwsError> {
    check_arn(name_or_arn)?;
    if TrailArn::looks_like_arn(name_or_arn) {
        return Ok(None);
    }
    // A malformed name is reported by the service, naming the field.
    let Ok(name) = TrailName::parse("Name", name_or_arn) else { return Ok(None) };
    let Some(account) = own_account(call).await? else { return Ok(None) };
    let Ok(account) = AccountId::parse("account", &account) else { return Ok(None) };
    let arn = TrailArn::new(call.region.clone(), account, name).to_string();
    match call.services.trails.get_trail(call.request(pb::GetTrailRequest { name: arn })).await {
        Ok(own) => Ok(Some(own.into_inner())),
        Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
        Err(status) => Err(call.status(status)),
    }
}

/// A trail reference that is meant as an ARN but is not a trail's ARN.
fn check_arn(name_or_arn: &str) -> Result<(), AwsError> {
    if TrailArn::looks_like_arn(name_or_arn)
        && let Err(error) = TrailArn::parse("Name", name_or_arn)
    {
        return Err(AwsError::client("CloudTrailARNInvalidException", error.to_string()));
    }
    Ok(())
}

/// The account the caller acts as: a member key's own, or the management account for admin and
/// auditor keys (they act for the organization).
async fn caller_account(call: &Call<'_>) -> Result<String, AwsError> {
    own_account(call).await?.ok_or_else(|| {
        AwsError::client(
            "OrganizationsNotInUseException",
            "an admin key acts as the organization's management account, and there is no organization \
             yet; create it first (orgtrail org create)",
        )
    })
}

/// [`caller_account`], or None for an admin or auditor key before there is an organization.
async fn own_account(call: &Call<'_>) -> Result<Option<String>, AwsError> {
    if let Some(account) = call.caller.member_account() {
        return Ok(Some(account.to_string()));
    }
    let request = call.request(pb::DescribeOrganizationRequest {});
    match call.services.organizations.describe_organization(request).await {
        Ok(org) => Ok(Some(org.into_inner().management_account_id)),
        Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
        Err(status) => Err(call.status(status)),
    }
}
