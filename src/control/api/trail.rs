//! TrailService: CloudTrail's trail API with organization-aware authorization.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use tonic::{Request, Response};

use super::Ctx;
use super::auth::{Action, Caller, authorize, can_see_trail};
use super::convert;
use super::error::{ApiError, ApiResult, marker};
use crate::features::usage::store::{self as usage, Granularity, UsageFilter};
use crate::model::cost;
use crate::model::selectors::{EventSelectors, validate_insight_selectors};
use crate::model::trail::{Trail, TrailSettings, validate_tags};
use crate::model::{AccountId, BucketName, Region, TrailArn, TrailName};
use crate::proto::v1 as pb;
use crate::store::accounts::{self, AccountStatus};
use crate::store::{organizations, page, trails};

pub struct TrailApi {
    ctx: Ctx,
}

impl TrailApi {
    pub fn new(ctx: Ctx) -> Self {
        Self { ctx }
    }

    /// Whether a member caller's account is ACTIVE (organization trails cover only those).
    async fn member_active(&self, caller: &Caller) -> Result<bool, ApiError> {
        let Some(account_id) = caller.member_account() else {
            return Ok(true);
        };
        let account = accounts::get(&self.ctx.pool, account_id).await?;
        Ok(account.is_some_and(|a| a.status == AccountStatus::Active))
    }

    /// Finds the trail a "name or ARN" argument names, among the trails the caller may see.
    /// Trails the caller may not see are reported as not found.
    async fn resolve(&self, caller: &Caller, field: &str, name_or_arn: &str) -> Result<Trail, ApiError> {
        if name_or_arn.is_empty() {
            return Err(ApiError::invalid(field, "a trail name or ARN is required"));
        }
        let not_found = || ApiError::NotFound(format!("trail {name_or_arn} not found"));
        let member_active = self.member_active(caller).await?;
        if TrailArn::looks_like_arn(name_or_arn) {
            let arn = TrailArn::parse(field, name_or_arn)?;
            let trail = trails::get_by_arn(&self.ctx.pool, &arn).await?.ok_or_else(not_found)?;
            return if can_see_trail(caller, &trail, member_active) { Ok(trail) } else { Err(not_found()) };
        }
        let name = TrailName::parse(field, name_or_arn)?;
        let mut visible: Vec<Trail> = trails::find_by_name(&self.ctx.pool, &name)
            .await?
            .into_iter()
            .filter(|t| can_see_trail(caller, t, member_active))
            .collect();
        if let Some(own) = caller.member_account()
            && visible.len() > 1
        {
            // A member's own trail wins over an organization trail of the same name.
            visible.retain(|t| t.owner() == own);
        }
        match visible.len() {
            0 => Err(not_found()),
            1 => Ok(visible.remove(0)),
            _ => Err(ApiError::invalid(
                field,
                format!(
                    "{} trails are named {name_or_arn:?}; pass the trail ARN instead ({})",
                    visible.len(),
                    visible.iter().map(|t| t.arn.to_string()).collect::<Vec<_>>().join(", ")
                ),
            )),
        }
    }

    /// Resolves a trail the caller wants to change, and checks that it may.
    async fn resolve_for_write(
        &self,
        caller: &Caller,
        field: &str,
        name_or_arn: &str,
    ) -> Result<Trail, ApiError> {
        authorize(caller, Action::WriteTrails)?;
        let trail = self.resolve(caller, field, name_or_arn).await?;
        authorize(caller, Action::WriteTrail(&trail))?;
        Ok(trail)
    }

    /// The owner of a new trail: the management account for organization trails; the given
    /// account (admins) or the caller's own account (members) for account trails.
    async fn new_trail_owner(
        &self,
        caller: &Caller,
        requested: &str,
        organization: bool,
    ) -> Result<AccountId, ApiError> {
        let requested =
            if requested.is_empty() { None } else { Some(AccountId::parse("owner_account_id", requested)?) };
        if organization {
            let org = organizations::get(&self.ctx.pool).await?.ok_or_else(|| {
                ApiError::FailedPrecondition(format!(
                    "{}: organization trails need an organization; create it with CreateOrganization first",
                    marker::ORGANIZATIONS_NOT_IN_USE
                ))
            })?;
            if let Some(requested) = requested
                && requested != org.management_account_id
            {
                return Err(ApiError::invalid(
                    "owner_account_id",
                    format!(
                        "organization trails are owned by the management account {}, not {requested}",
                        org.management_account_id
                    ),
                ));
            }
            return Ok(org.management_account_id);
        }
        let owner = match (requested, caller.member_account()) {
            (Some(requested), _) => requested,
            (None, Some(own)) => own.clone(),
            (None, None) => {
                return Err(ApiError::invalid(
                    "owner_account_id",
                    "required for account trails created by admins (the account the trail covers)",
                ));
            }
        };
        // The management account owns trails of its own, registered as a member or not (it is
        // the account an admin acts as on the CloudTrail-compatible API).
        let management = organizations::get(&self.ctx.pool).await?.map(|org| org.management_account_id);
        if management.as_ref() == Some(&owner) {
            return Ok(owner);
        }
        match accounts::get(&self.ctx.pool, &owner).await? {
            Some(account) if account.status != AccountStatus::Removed => Ok(owner),
            _ => Err(ApiError::FailedPrecondition(format!(
                "account {owner} is not registered; register it first"
            ))),
        }
    }
}

/// Hourly (default) or daily periods.
fn granularity(value: i32) -> Result<Granularity, ApiError> {
    match pb::UsageGranularity::try_from(value) {
        Ok(pb::UsageGranularity::Unspecified | pb::UsageGranularity::Hour) => Ok(Granularity::Hour),
        Ok(pb::UsageGranularity::Day) => Ok(Granularity::Day),
        Err(_) => Err(ApiError::invalid("granularity", format!("must be HOUR or DAY, got {value}"))),
    }
}

fn time(field: &str, value: &Option<pbjson_types::Timestamp>) -> Result<Option<DateTime<Utc>>, ApiError> {
    value
        .as_ref()
        .map(|t| {
            DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)
                .ok_or_else(|| ApiError::invalid(field, "is not a valid time"))
        })
        .transpose()
}

fn optional_bucket(value: &str) -> Result<BucketName, ApiError> {
    if value.is_empty() {
        return Err(ApiError::invalid("s3_bucket_name", "is required"));
    }
    Ok(BucketName::parse("s3_bucket_name", value)?)
}

fn selectors_response(trail: &Trail) -> pb::EventSelectorsResponse {
    pb::EventSelectorsResponse {
        trail_arn: trail.arn.to_string(),
        event_selectors: trail.event_selectors.reported_basic().iter().map(convert::event_selector).collect(),
        advanced_event_selectors: trail
            .event_selectors
            .reported_advanced()
            .iter()
            .map(convert::advanced_selector)
            .collect(),
        warnings: Vec::new(),
    }
}

fn insights_response(trail: &Trail) -> pb::InsightSelectorsResponse {
    pb::InsightSelectorsResponse {
        trail_arn: trail.arn.to_string(),
        insight_selectors: trail.insight_selectors.iter().map(convert::insight_selector).collect(),
    }
}

impl TrailApi {
    /// Cost warnings for `trail` as saved (see model::cost).
    async fn warnings(&self, trail: &Trail) -> Result<Vec<String>, ApiError> {
        let all = trails::all(&self.ctx.pool).await?;
        let mut owners: Vec<&AccountId> = all.iter().chain([trail]).map(|t| t.owner()).collect();
        owners.sort();
        owners.dedup();
        let mut active = HashSet::new();
        for owner in owners {
            if accounts::get(&self.ctx.pool, owner).await?.is_some_and(|a| a.status == AccountStatus::Active)
            {
                active.insert(owner.clone());
            }
        }
        Ok(cost::trail_warnings(trail, &all, &|account| active.contains(account)))
    }

    /// With the warnings, for the CreateTrail and UpdateTrail responses.
    async fn trail_with_warnings(&self, trail: &Trail) -> Result<pb::Trail, ApiError> {
        let warnings = self.warnings(trail).await?;
        for warning in &warnings {
            tracing::info!(trail_arn = %trail.arn, %warning, "cost warning");
        }
        Ok(pb::Trail { warnings, ..convert::trail(trail) })
    }
}

#[tonic::async_trait]
impl pb::trail_service_server::TrailService for TrailApi {
    async fn create_trail(&self, request: Request<pb::CreateTrailRequest>) -> ApiResult<pb::Trail> {
        let caller = Caller::of(&request)?;
        authorize(&caller, Action::WriteTrails)?;
        let input = request.into_inner();
        let name = TrailName::parse("name", &input.name)?;
        let home_region = if input.home_region.is_empty() {
            self.ctx.default_region.clone()
        } else {
            Region::parse("home_region", &input.home_region)?
        };
        let owner =
            self.new_trail_owner(&caller, &input.owner_account_id, input.is_organization_trail).await?;
        authorize(&caller, Action::CreateTrail { owner: &owner, organization: input.is_organization_trail })?;
        let settings = TrailSettings {
            s3_bucket_name: optional_bucket(&input.s3_bucket_name)?,
            s3_key_prefix: input.s3_key_prefix,
            is_multi_region_trail: input.is_multi_region_trail.unwrap_or(true),
            include_global_service_events: input.include_global_service_events.unwrap_or(true),
            is_organization_trail: input.is_organization_trail,
            log_file_validation_enabled: input.log_file_validation_enabled,
            cloud_watch_logs_log_group_arn: input.cloud_watch_logs_log_group_arn,
            cloud_watch_logs_role_arn: input.cloud_watch_logs_role_arn,
            kms_key_id: input.kms_key_id,
            sns_topic_name: input.sns_topic_name,
            delivery_interval_seconds: input
                .delivery_interval_seconds
                .unwrap_or(crate::model::trail::DEFAULT_DELIVERY_INTERVAL_SECONDS),
        };
        settings.validate()?;
        let tags = convert::tags_from(input.tags);
        validate_tags(&tags)?;
        let arn = TrailArn::new(home_region, owner, name);
        let trail = trails::create(&self.ctx.pool, &arn, &settings, &tags).await?;
        tracing::info!(trail_arn = %trail.arn, organization = settings.is_organization_trail, "trail created");
        Ok(Response::new(self.trail_with_warnings(&trail).await?))
    }

    async fn update_trail(&self, request: Request<pb::UpdateTrailRequest>) -> ApiResult<pb::Trail> {
        let caller = Caller::of(&request)?;
        let input = request.into_inner();
        let trail = self.resolve_for_write(&caller, "name", &input.name).await?;
        let mut settings = trail.settings.clone();
        if let Some(bucket) = input.s3_bucket_name {
            settings.s3_bucket_name = optional_bucket(&bucket)?;
        }
        if let Some(prefix) = input.s3_key_prefix {
            settings.s3_key_prefix = prefix;
        }
        if let Some(multi) = input.is_multi_region_trail {
            settings.is_multi_region_trail = multi;
        }
        if let Some(global) = input.include_global_service_events {
            settings.include_global_service_events = global;
        }
        if let Some(organization) = input.is_organization_trail
            && organization != settings.is_organization_trail
        {
            if caller.member_account().is_some() {
                return Err(ApiError::PermissionDenied(format!(
                    "{}: a member token may not convert trails to or from organization trails",
                    marker::NOT_MANAGEMENT_ACCOUNT
                ))
                .into());
            }
            if organization {
                let management = self.new_trail_owner(&caller, "", true).await?;
                if trail.owner() != &management {
                    return Err(ApiError::FailedPrecondition(format!(
                        "{}: only trails owned by the management account {management} can become organization trails",
                        marker::NOT_MANAGEMENT_ACCOUNT
                    ))
                    .into());
                }
            }
            settings.is_organization_trail = organization;
        }
        if let Some(validation) = input.log_file_validation_enabled {
            settings.log_file_validation_enabled = validation;
        }
        if let Some(group) = input.cloud_watch_logs_log_group_arn {
            settings.cloud_watch_logs_log_group_arn = group;
        }
        if let Some(role) = input.cloud_watch_logs_role_arn {
            settings.cloud_watch_logs_role_arn = role;
        }
        if let Some(key) = input.kms_key_id {
            settings.kms_key_id = key;
        }
        if let Some(topic) = input.sns_topic_name {
            settings.sns_topic_name = topic;
        }
        if let Some(interval) = input.delivery_interval_seconds {
            settings.delivery_interval_seconds = interval;
        }
        settings.validate()?;
        let updated = trails::update_settings(&self.ctx.pool, &trail, &settings).await?;
        tracing::info!(trail_arn = %updated.arn, "trail updated");
        Ok(Response::new(self.trail_with_warnings(&updated).await?))
    }

    async fn delete_trail(
        &self,
        request: Request<pb::DeleteTrailRequest>,
    ) -> ApiResult<pb::DeleteTrailResponse> {
        let caller = Caller::of(&request)?;
        let trail = self.resolve_for_write(&caller, "name", &request.get_ref().name).await?;
        trails::delete(&self.ctx.pool, &trail).await?;
        tracing::info!(trail_arn = %trail.arn, "trail deleted");
        Ok(Response::new(pb::DeleteTrailResponse {}))
    }

    async fn get_trail(&self, request: Request<pb::GetTrailRequest>) -> ApiResult<pb::Trail> {
        let caller = Caller::of(&request)?;
        authorize(&caller, Action::ReadTrails)?;
        let trail = self.resolve(&caller, "name", &request.get_ref().name).await?;
        Ok(Response::new(convert::trail(&trail)))
    }

    async fn list_trails(
        &self,
        request: Request<pb::ListTrailsRequest>,
    ) -> ApiResult<pb::ListTrailsResponse> {
        let caller = Caller::of(&request)?;
        authorize(&caller, Action::ReadTrails)?;
        let input = request.into_inner();
        let limit = page::size(input.page_size)?;
        let after = page::decode(&input.next_token)?
            .map(|key| {
                key.parse::<i64>()
                    .map_err(|_| ApiError::invalid("next_token", "is not a token returned by this API"))
            })
            .transpose()?;
        let mut found = trails::list(&self.ctx.pool, after, limit + 1, caller.member_account()).await?;
        let next_token = if found.len() as i64 > limit {
            found.truncate(limit as usize);
            found.last().map(|t| page::encode(&t.id.to_string())).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListTrailsResponse {
            trails: found.iter().map(convert::trail).collect(),
            next_token,
        }))
    }

    async fn start_logging(
        &self,
        request: Request<pb::StartLoggingRequest>,
    ) -> ApiResult<pb::StartLoggingResponse> {
        let caller = Caller::of(&request)?;
        let trail = self.resolve_for_write(&caller, "name", &request.get_ref().name).await?;
        trails::set_logging(&self.ctx.pool, &trail, true).await?;
        tracing::info!(trail_arn = %trail.arn, "logging started");
        Ok(Response::new(pb::StartLoggingResponse {}))
    }

    async fn stop_logging(
        &self,
        request: Request<pb::StopLoggingRequest>,
    ) -> ApiResult<pb::StopLoggingResponse> {
        let caller = Caller::of(&request)?;
        let trail = self.resolve_for_write(&caller, "name", &request.get_ref().name).await?;
        trails::set_logging(&self.ctx.pool, &trail, false).await?;
        tracing::info!(trail_arn = %trail.arn, "logging stopped");
        Ok(Response::new(pb::StopLoggingResponse {}))
    }

    async fn get_trail_status(
        &self,
        request: Request<pb::GetTrailStatusRequest>,
    ) -> ApiResult<pb::TrailStatus> {
        let caller = Caller::of(&request)?;
        authorize(&caller, Action::ReadTrails)?;
        let trail = self.resolve(&caller, "name", &request.get_ref().name).await?;
        let delivery = trails::delivery_status(&self.ctx.pool, &trail).await?;
        Ok(Response::new(pb::TrailStatus {
            trail_arn: trail.arn.to_string(),
            is_logging: trail.is_logging,
            start_logging_time: convert::opt_timestamp(trail.start_logging_time),
            stop_logging_time: convert::opt_timestamp(trail.stop_logging_time),
            latest_delivery_time: convert::opt_timestamp(delivery.latest_delivery_time),
            latest_delivery_attempt_time: convert::opt_timestamp(delivery.latest_delivery_attempt_time),
            latest_delivery_error: delivery.latest_delivery_error,
            latest_digest_delivery_time: convert::opt_timestamp(delivery.latest_digest_delivery_time),
            latest_digest_delivery_error: delivery.latest_digest_delivery_error,
            latest_notification_time: convert::opt_timestamp(delivery.latest_notification_time),
            latest_notification_error: delivery.latest_notification_error,
            latest_cloud_watch_logs_delivery_time: convert::opt_timestamp(
                delivery.latest_cloud_watch_logs_delivery_time,
            ),
            latest_cloud_watch_logs_delivery_error: delivery.latest_cloud_watch_logs_delivery_error,
        }))
    }

    async fn put_event_selectors(
        &self,
        request: Request<pb::PutEventSelectorsRequest>,
    ) -> ApiResult<pb::EventSelectorsResponse> {
        let caller = Caller::of(&request)?;
        let input = request.into_inner();
        let trail = self.resolve_for_write(&caller, "trail_name", &input.trail_name).await?;
        let basic = input
            .event_selectors
            .into_iter()
            .enumerate()
            .map(|(i, s)| convert::event_selector_from(i, s))
            .collect::<Result<Vec<_>, _>>()?;
        let advanced =
            input.advanced_event_selectors.into_iter().map(convert::advanced_selector_from).collect();
        let selectors = EventSelectors::new(basic, advanced)?;
        let updated = trails::put_event_selectors(&self.ctx.pool, &trail, &selectors).await?;
        tracing::info!(trail_arn = %updated.arn, "event selectors put");
        let warnings = cost::selector_warnings(&updated.event_selectors);
        Ok(Response::new(pb::EventSelectorsResponse { warnings, ..selectors_response(&updated) }))
    }

    async fn get_event_selectors(
        &self,
        request: Request<pb::GetEventSelectorsRequest>,
    ) -> ApiResult<pb::EventSelectorsResponse> {
        let caller = Caller::of(&request)?;
        authorize(&caller, Action::ReadTrails)?;
        let trail = self.resolve(&caller, "trail_name", &request.get_ref().trail_name).await?;
        Ok(Response::new(selectors_response(&trail)))
    }

    async fn put_insight_selectors(
        &self,
        request: Request<pb::PutInsightSelectorsRequest>,
    ) -> ApiResult<pb::InsightSelectorsResponse> {
        let caller = Caller::of(&request)?;
        let input = request.into_inner();
        let trail = self.resolve_for_write(&caller, "trail_name", &input.trail_name).await?;
        let selectors = validate_insight_selectors(
            input.insight_selectors.into_iter().map(convert::insight_selector_from).collect(),
        )?;
        let updated = trails::put_insight_selectors(&self.ctx.pool, &trail, &selectors).await?;
        Ok(Response::new(insights_response(&updated)))
    }

    async fn get_insight_selectors(
        &self,
        request: Request<pb::GetInsightSelectorsRequest>,
    ) -> ApiResult<pb::InsightSelectorsResponse> {
        let caller = Caller::of(&request)?;
        authorize(&caller, Action::ReadTrails)?;
        let trail = self.resolve(&caller, "trail_name", &request.get_ref().trail_name).await?;
        Ok(Response::new(insights_response(&trail)))
    }

    async fn add_tags(&self, request: Request<pb::AddTagsRequest>) -> ApiResult<pb::Trail> {
        let caller = Caller::of(&request)?;
        let input = request.into_inner();
        let trail = self.resolve_for_write(&caller, "name", &input.name).await?;
        let mut tags = trail.tags.clone();
        for tag in convert::tags_from(input.tags) {
            match tags.iter_mut().find(|t| t.key == tag.key) {
                Some(existing) => existing.value = tag.value,
                None => tags.push(tag),
            }
        }
        validate_tags(&tags)?;
        let updated = trails::set_tags(&self.ctx.pool, &trail, &tags).await?;
        Ok(Response::new(convert::trail(&updated)))
    }

    async fn remove_tags(&self, request: Request<pb::RemoveTagsRequest>) -> ApiResult<pb::Trail> {
        let caller = Caller::of(&request)?;
        let input = request.into_inner();
        let trail = self.resolve_for_write(&caller, "name", &input.name).await?;
        let mut tags = trail.tags.clone();
        tags.retain(|t| !input.keys.contains(&t.key));
        let updated = trails::set_tags(&self.ctx.pool, &trail, &tags).await?;
        Ok(Response::new(convert::trail(&updated)))
    }

    async fn get_trail_usage(
        &self,
        request: Request<pb::GetTrailUsageRequest>,
    ) -> ApiResult<pb::GetTrailUsageResponse> {
        let caller = Caller::of(&request)?;
        authorize(&caller, Action::ReadTrails)?;
        let input = request.into_inner();
        let requested = match input.account_id.as_str() {
            "" => None,
            value => Some(AccountId::parse("account_id", value)?),
        };
        if let (Some(own), Some(requested)) = (caller.member_account(), &requested)
            && own != requested
        {
            return Err(ApiError::PermissionDenied(format!(
                "a member token sees only its own account's usage ({own}), not {requested}"
            ))
            .into());
        }
        let account_id = requested.or_else(|| caller.member_account().cloned());
        let start = time("start_time", &input.start_time)?;
        let end = time("end_time", &input.end_time)?;
        if let (Some(start), Some(end)) = (start, end)
            && end <= start
        {
            return Err(ApiError::invalid("end_time", "must be after start_time").into());
        }
        let granularity = granularity(input.granularity)?;
        let trail_id = match input.trail.as_str() {
            "" => None,
            name_or_arn => Some(self.resolve(&caller, "trail", name_or_arn).await?.id),
        };
        let filter =
            UsageFilter { trail_id, account_id: account_id.map(|a| a.to_string()), start, end, granularity };
        let rows = usage::query(&self.ctx.pool, &filter).await?;
        Ok(Response::new(pb::GetTrailUsageResponse {
            usage: rows
                .into_iter()
                .map(|row| pb::TrailUsage {
                    trail_arn: row.trail_arn,
                    account_id: row.account_id,
                    period_start: Some(convert::timestamp(row.period_start)),
                    category: row.category,
                    events: row.events,
                    bytes: row.bytes,
                })
                .collect(),
        }))
    }
}
