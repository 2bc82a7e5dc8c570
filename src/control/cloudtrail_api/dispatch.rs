//! The dispatch table: which `X-Amz-Target` runs which action, signed for which service, and what
//! its "not found" is called. Actions call the gRPC services' own implementations, so validation
//! and authorization exist once.

use futures::future::BoxFuture;

use super::error::AwsError;
use super::{Settings, cloudtrail, organizations, selectors, tags, trails};
use crate::control::api::Ctx;
use crate::control::api::account::AccountApi;
use crate::control::api::auth::Caller;
use crate::control::api::event::EventApi;
use crate::control::api::key::KeyApi;
use crate::control::api::organization::OrganizationApi;
use crate::control::api::trail::TrailApi;
use crate::model::Region;

/// An AWS service this API speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    CloudTrail,
    Organizations,
}

impl Service {
    /// The SigV4 signing name clients put in the credential scope.
    pub fn signing_name(self) -> &'static str {
        match self {
            Self::CloudTrail => "cloudtrail",
            Self::Organizations => "organizations",
        }
    }

    /// `X-Amz-Target` prefixes; CloudTrail accepts the short form too.
    fn target_prefixes(self) -> &'static [&'static str] {
        match self {
            Self::CloudTrail => {
                &["com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.", "CloudTrail_20131101."]
            }
            Self::Organizations => &["AWSOrganizationsV20161128."],
        }
    }
}

/// The services the actions call, each built once.
pub struct Services {
    pub trails: TrailApi,
    pub keys: KeyApi,
    pub organizations: OrganizationApi,
    pub accounts: AccountApi,
    pub events: EventApi,
}

impl Services {
    pub fn new(ctx: &Ctx) -> Self {
        Self {
            trails: TrailApi::new(ctx.clone()),
            keys: KeyApi::new(ctx.clone()),
            organizations: OrganizationApi::new(ctx.clone()),
            accounts: AccountApi::new(ctx.clone()),
            events: EventApi::new(ctx.clone()),
        }
    }
}

/// One authenticated call: who, from which region, and the services to call on their behalf.
pub struct Call<'a> {
    pub services: &'a Services,
    pub settings: &'a Settings,
    pub caller: Caller,
    /// The credential scope's region: the region the client believes it is talking to.
    pub region: Region,
    /// The operation's "not found" exception, for [`Call::status`].
    pub not_found: &'static str,
}

impl Call<'_> {
    /// A gRPC request carrying the caller, as the auth layer would have made it.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.extensions_mut().insert(self.caller.clone());
        request
    }

    /// The AWS error for a failed service call.
    pub fn status(&self, status: tonic::Status) -> AwsError {
        AwsError::from_status(&status, self.not_found)
    }
}

/// An action: parses its input from the body and answers with its output.
pub type Handler = for<'a> fn(&'a Call<'a>, &'a [u8]) -> BoxFuture<'a, Result<serde_json::Value, AwsError>>;

pub struct Operation {
    pub service: Service,
    pub name: &'static str,
    /// The exception a NotFound from the service becomes.
    pub not_found: &'static str,
    pub handler: Handler,
}

const TRAIL_NOT_FOUND: &str = "TrailNotFoundException";

const RESOURCE_NOT_FOUND: &str = "ResourceNotFoundException";

/// A CloudTrail operation's row.
macro_rules! cloudtrail {
    ($name:literal, $not_found:expr, $handler:path) => {
        Operation {
            service: Service::CloudTrail,
            name: $name,
            not_found: $not_found,
            handler: |call, body| Box::pin($handler(call, body)),
        }
    };
}

/// Every operation served. A later action is one more row and one more function.
pub static OPERATIONS: &[Operation] = &[
    cloudtrail!("CreateTrail", TRAIL_NOT_FOUND, trails::create_trail),
    cloudtrail!("UpdateTrail", TRAIL_NOT_FOUND, trails::update_trail),
    cloudtrail!("DeleteTrail", TRAIL_NOT_FOUND, trails::delete_trail),
    cloudtrail!("ListTrails", TRAIL_NOT_FOUND, trails::list_trails),
    cloudtrail!("StartLogging", TRAIL_NOT_FOUND, trails::start_logging),
    cloudtrail!("StopLogging", TRAIL_NOT_FOUND, trails::stop_logging),
    cloudtrail!("DescribeTrails", TRAIL_NOT_FOUND, cloudtrail::describe_trails),
    cloudtrail!("GetTrail", TRAIL_NOT_FOUND, cloudtrail::get_trail),
    cloudtrail!("GetTrailStatus", TRAIL_NOT_FOUND, cloudtrail::get_trail_status),
    cloudtrail!("PutEventSelectors", TRAIL_NOT_FOUND, selectors::put_event_selectors),
    cloudtrail!("GetEventSelectors", TRAIL_NOT_FOUND, selectors::get_event_selectors),
    cloudtrail!("PutInsightSelectors", TRAIL_NOT_FOUND, selectors::put_insight_selectors),
    cloudtrail!("GetInsightSelectors", TRAIL_NOT_FOUND, selectors::get_insight_selectors),
    cloudtrail!("AddTags", RESOURCE_NOT_FOUND, tags::add_tags),
    cloudtrail!("RemoveTags", RESOURCE_NOT_FOUND, tags::remove_tags),
    cloudtrail!("ListTags", RESOURCE_NOT_FOUND, tags::list_tags),
    cloudtrail!("ListPublicKeys", RESOURCE_NOT_FOUND, cloudtrail::list_public_keys),
    cloudtrail!("LookupEvents", RESOURCE_NOT_FOUND, cloudtrail::lookup_events),
    Operation {
        service: Service::Organizations,
        name: "DescribeOrganization",
        not_found: "AWSOrganizationsNotInUseException",
        handler: |call, body| Box::pin(organizations::describe_organization(call, body)),
    },
];

/// The operation an `X-Amz-Target` names.
pub fn lookup(target: &str) -> Option<&'static Operation> {
    OPERATIONS.iter().find(|operation| {
        operation
            .service
            .target_prefixes()
            .iter()
            .any(|prefix| target.strip_prefix(prefix) == Some(operation.name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_name_operations_in_both_cloudtrail_forms() {
        let long = lookup("com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.DescribeTrails").unwrap();
        assert_eq!((long.service, long.name), (Service::CloudTrail, "DescribeTrails"));
        assert_eq!(lookup("CloudTrail_20131101.ListPublicKeys").map(|o| o.name), Some("ListPublicKeys"));
        let org = lookup("AWSOrganizationsV20161128.DescribeOrganization").unwrap();
        assert_eq!(org.service.signing_name(), "organizations");
        assert!(lookup("AWSOrganizationsV20161128.DescribeTrails").is_none());
        assert_eq!(lookup("CloudTrail_20131101.CreateTrail").map(|o| o.name), Some("CreateTrail"));
        assert!(lookup("CloudTrail_20131101.CreateEventDataStore").is_none());
        assert!(lookup("").is_none());
    }
}
