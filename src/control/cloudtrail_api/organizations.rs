//! AWS Organizations' actions (`AWSOrganizationsV20161128.*`), answered by OrganizationService.
//! validate-logs calls DescribeOrganization for the `o-...` segment of organization trails' keys.

use serde_json::Value;
use tonic::Code;

use super::dispatch::Call;
use super::error::AwsError;
use super::protocol::{self, Object};
use crate::proto::v1 as pb;
use crate::proto::v1::account_service_server::AccountService;
use crate::proto::v1::organization_service_server::OrganizationService;

pub async fn describe_organization(call: &Call<'_>, body: &[u8]) -> Result<Value, AwsError> {
    // No parameters; the body must still be JSON.
    let _: serde_json::Map<String, Value> = protocol::input(body)?;
    let request = call.request(pb::DescribeOrganizationRequest {});
    let org = call
        .services
        .organizations
        .describe_organization(request)
        .await
        .map_err(|s| call.status(s))?
        .into_inner();
    let management = org.management_account_id.as_str();
    // The management account's email, when it is registered and the caller may read it
    // (members may read only their own account).
    let request = call.request(pb::DescribeAccountRequest { account_id: org.management_account_id.clone() });
    let email = match call.services.accounts.describe_account(request).await {
        Ok(account) => account.into_inner().email,
        Err(status) if matches!(status.code(), Code::NotFound | Code::PermissionDenied) => String::new(),
        Err(status) => return Err(call.status(status)),
    };
    let organization = Object::new()
        .value("Id", org.id.as_str())
        .value("Arn", format!("arn:aws:organizations::{management}:organization/{}", org.id))
        .value("FeatureSet", "ALL")
        .value("MasterAccountId", management)
        .value(
            "MasterAccountArn",
            format!("arn:aws:organizations::{management}:account/{}/{management}", org.id),
        )
        .text("MasterAccountEmail", &email)
        .value("AvailablePolicyTypes", Vec::<Value>::new())
        .build();
    Ok(Object::new().value("Organization", organization).build())
}
