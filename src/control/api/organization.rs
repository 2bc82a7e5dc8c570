//! OrganizationService.

use tonic::{Request, Response, Status};

use super::Ctx;
use super::auth::{Action, Caller, authorize};
use super::convert;
use super::error::{ApiError, ApiResult};
use crate::integrations::aws::OrgSyncError;
use crate::integrations::aws::org_listing::OuId;
use crate::integrations::aws::org_sync::{SyncOptions, sync_accounts};
use crate::model::ids::COMMERCIAL_REGIONS;
use crate::model::{AccountId, OrganizationId, Region};
use crate::proto::v1 as pb;
use crate::store::{org_sync, organizations};

pub struct OrganizationApi {
    ctx: Ctx,
}

impl OrganizationApi {
    pub fn new(ctx: Ctx) -> Self {
        Self { ctx }
    }
}

/// Parses a region list; empty means the commercial regions. Duplicates are dropped.
fn regions_or_default(regions: &[String]) -> Result<Vec<Region>, ApiError> {
    let names: Vec<&str> = if regions.is_empty() {
        COMMERCIAL_REGIONS.to_vec()
    } else {
        regions.iter().map(String::as_str).collect()
    };
    let mut parsed = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let region = Region::parse(&format!("regions[{i}]"), name)?;
        if !parsed.contains(&region) {
            parsed.push(region);
        }
    }
    Ok(parsed)
}

#[tonic::async_trait]
impl pb::organization_service_server::OrganizationService for OrganizationApi {
    async fn create_organization(
        &self,
        request: Request<pb::CreateOrganizationRequest>,
    ) -> ApiResult<pb::Organization> {
        let caller = Caller::of(&request)?;
        authorize(&caller, Action::Administer)?;
        let input = request.into_inner();
        let id = if input.id.is_empty() {
            OrganizationId::generate()
        } else {
            OrganizationId::parse("id", &input.id)?
        };
        let management = AccountId::parse("management_account_id", &input.management_account_id)?;
        let regions = regions_or_default(&input.regions)?;
        let org = organizations::create(&self.ctx.pool, &id, &management, &regions).await?;
        tracing::info!(organization_id = %org.id, "organization created");
        Ok(Response::new(convert::organization(&org)))
    }

    async fn describe_organization(
        &self,
        request: Request<pb::DescribeOrganizationRequest>,
    ) -> ApiResult<pb::Organization> {
        let caller = Caller::of(&request)?;
        authorize(&caller, Action::ReadOrganization)?;
        let org = organizations::get(&self.ctx.pool).await?;
        let org =
            org.ok_or_else(|| Status::not_found("no organization yet; create it with CreateOrganization"))?;
        let mut message = convert::organization(&org);
        message.last_sync = org_sync::status(&self.ctx.pool).await?.as_ref().map(convert::org_sync_status);
        Ok(Response::new(message))
    }

    async fn update_organization(
        &self,
        request: Request<pb::UpdateOrganizationRequest>,
    ) -> ApiResult<pb::Organization> {
        let caller = Caller::of(&request)?;
        authorize(&caller, Action::Administer)?;
        let input = request.into_inner();
        let current = organizations::get(&self.ctx.pool).await?;
        let current = current
            .ok_or_else(|| Status::not_found("no organization yet; create it with CreateOrganization"))?;
        let Some(list) = input.regions else {
            return Ok(Response::new(convert::organization(&current)));
        };
        let regions = regions_or_default(&list.regions)?;
        let org = organizations::update_regions(&self.ctx.pool, &regions).await?;
        Ok(Response::new(convert::organization(&org)))
    }

    async fn sync_accounts(
        &self,
        request: Request<pb::SyncAccountsRequest>,
    ) -> ApiResult<pb::SyncAccountsResponse> {
        let caller = Caller::of(&request)?;
        authorize(&caller, Action::Administer)?;
        let input = request.into_inner();
        let mut ou_ids = Vec::with_capacity(input.ou_ids.len());
        for (i, id) in input.ou_ids.iter().enumerate() {
            ou_ids.push(OuId::parse(&format!("ou_ids[{i}]"), id)?);
        }
        let aws = self.ctx.aws.as_ref().ok_or_else(|| {
            ApiError::from(OrgSyncError::NotConfigured(
                "the server has no AWS configuration; give `orgtrail serve` management-account \
                 credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or an instance role) \
                 and optionally organizations_role_arn; `orgtrail dev` uses AWS only when the AWS \
                 environment (AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL_ORGANIZATIONS, ...) is set at start"
                    .into(),
            ))
        })?;
        let options = SyncOptions {
            ou_ids: if ou_ids.is_empty() { aws.default_ou_ids.clone() } else { ou_ids },
            dry_run: input.dry_run,
            member_role_name: aws.member_role_name.clone(),
            wait_for_lock: true,
            skip_if_synced_within: None,
        };
        let report = sync_accounts(&aws.organizations(), &self.ctx.pool, &options)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::from(OrgSyncError::Busy))?;
        tracing::info!(
            dry_run = report.dry_run,
            registered = report.counts.registered,
            reactivated = report.counts.reactivated,
            suspended = report.counts.suspended,
            removed = report.counts.removed,
            "organizations sync requested"
        );
        Ok(Response::new(convert::sync_report(&report)))
    }
}
