//! The errors of AWS Organizations sync, mapped to gRPC statuses once in `api::error`.

use aws_sdk_organizations::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::model::FieldError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum OrgSyncError {
    /// The process has no AWS configuration (only `orgtrail dev` can be without one).
    #[error("AWS Organizations sync is not configured: {0}")]
    NotConfigured(String),
    #[error("no organization yet; create it with CreateOrganization before syncing accounts")]
    NoOrganization,
    #[error("{0}")]
    InvalidArgument(#[from] FieldError),
    #[error(
        "orgtrail may not call organizations:{operation} ({message}); grant it to the credentials or to organizations_role_arn"
    )]
    AccessDenied { operation: &'static str, message: String },
    #[error(
        "the AWS account orgtrail calls is not in an organization (AWSOrganizationsNotInUseException): use management-account credentials or set organizations_role_arn"
    )]
    NotInUse,
    #[error("ou_ids: {0} does not exist in the organization")]
    UnknownParent(String),
    #[error(
        "no usable AWS credentials for organizations:{operation} ({message}): set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or an instance role, or organizations_role_arn"
    )]
    NoCredentials { operation: &'static str, message: String },
    #[error("AWS Organizations throttled organizations:{operation}; retry later")]
    Throttled { operation: &'static str },
    #[error("organizations:{operation} failed: {message}")]
    Aws { operation: &'static str, message: String },
    #[error("another AWS Organizations sync is running; retry in a moment")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl OrgSyncError {
    /// Classifies a failed Organizations call by its AWS error code.
    pub fn from_sdk<E, R>(operation: &'static str, parent: Option<&str>, error: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let message =
            error.message().map(str::to_owned).unwrap_or_else(|| DisplayErrorContext(&error).to_string());
        match error.code() {
            Some("AccessDeniedException") => Self::AccessDenied { operation, message },
            Some("AWSOrganizationsNotInUseException") => Self::NotInUse,
            Some("ParentNotFoundException") | Some("TargetNotFoundException") => {
                Self::UnknownParent(parent.unwrap_or("a parent").to_owned())
            }
            Some("TooManyRequestsException") => Self::Throttled { operation },
            Some(_) => Self::Aws { operation, message },
            // No service answer: the request was never sent (credentials, endpoint) or got lost.
            None => {
                if message.contains("credential") {
                    Self::NoCredentials { operation, message }
                } else {
                    Self::Aws { operation, message }
                }
            }
        }
    }
}
