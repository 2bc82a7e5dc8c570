//! The API layer's error, mapped once to gRPC status codes.

use tonic::Status;

use crate::model::FieldError;
use crate::store::StoreError;

/// Prefixes (`<marker>: why`) that name CloudTrail's exception for a rule whose gRPC code is shared
/// with other rules; the CloudTrail-compatible API maps them (cloudtrail_api::error).
pub mod marker {
    /// Only the management account may do this to organization trails.
    pub const NOT_MANAGEMENT_ACCOUNT: &str = "NotOrganizationMasterAccount";
    /// There is no organization yet.
    pub const ORGANIZATIONS_NOT_IN_USE: &str = "OrganizationsNotInUse";
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidArgument(#[from] FieldError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::InvalidArgument(FieldError::new(field, message))
    }

    /// Whether a client may retry the same call unchanged.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Unavailable(_) => true,
            Self::InvalidArgument(_)
            | Self::NotFound(_)
            | Self::AlreadyExists(_)
            | Self::FailedPrecondition(_)
            | Self::PermissionDenied(_)
            | Self::Unauthenticated(_)
            | Self::ResourceExhausted(_)
            | Self::Internal(_) => false,
        }
    }
}

impl From<crate::features::integrity::keyring::KeyringError> for ApiError {
    fn from(error: crate::features::integrity::keyring::KeyringError) -> Self {
        use crate::features::integrity::keyring::KeyringError;
        match error {
            KeyringError::NoMasterKey => Self::FailedPrecondition(error.to_string()),
            KeyringError::Key(why) => Self::Internal(why),
            KeyringError::Store(e) => e.into(),
        }
    }
}

impl From<crate::integrations::aws::OrgSyncError> for ApiError {
    fn from(error: crate::integrations::aws::OrgSyncError) -> Self {
        use crate::integrations::aws::OrgSyncError;
        let message = error.to_string();
        match error {
            OrgSyncError::InvalidArgument(field) => Self::InvalidArgument(field),
            OrgSyncError::UnknownParent(_) => Self::InvalidArgument(crate::model::FieldError::new(
                "ou_ids",
                message.trim_start_matches("ou_ids: "),
            )),
            OrgSyncError::NotConfigured(_)
            | OrgSyncError::NoOrganization
            | OrgSyncError::NotInUse
            | OrgSyncError::NoCredentials { .. } => Self::FailedPrecondition(message),
            OrgSyncError::AccessDenied { .. } => Self::PermissionDenied(message),
            OrgSyncError::Throttled { .. } | OrgSyncError::Aws { .. } | OrgSyncError::Busy => {
                Self::Unavailable(message)
            }
            OrgSyncError::Store(e) => e.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(what) => Self::NotFound(format!("{what} not found")),
            StoreError::AlreadyExists(what) => Self::AlreadyExists(format!("{what} already exists")),
            StoreError::LimitExceeded(message) => Self::ResourceExhausted(message),
            StoreError::Database(
                sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Io(_)
                | sqlx::Error::Tls(_),
            ) => Self::Unavailable("the database is unavailable; retry later".into()),
            StoreError::Log(why) => {
                tracing::warn!(%why, "staging log unavailable");
                Self::Unavailable("the staging log is unavailable; retry later".into())
            }
            other @ (StoreError::Corrupt(_)
            | StoreError::Database(_)
            | StoreError::Migrate(_)
            | StoreError::Fenced(_)) => {
                tracing::error!(error = %other, "store error");
                Self::Internal("internal error; see the server log".into())
            }
        }
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        let message = error.to_string();
        match error {
            ApiError::InvalidArgument(_) => Status::invalid_argument(message),
            ApiError::NotFound(_) => Status::not_found(message),
            ApiError::AlreadyExists(_) => Status::already_exists(message),
            ApiError::FailedPrecondition(_) => Status::failed_precondition(message),
            ApiError::PermissionDenied(_) => Status::permission_denied(message),
            ApiError::Unauthenticated(_) => Status::unauthenticated(message),
            ApiError::ResourceExhausted(_) => Status::resource_exhausted(message),
            ApiError::Unavailable(_) => Status::unavailable(message),
            ApiError::Internal(_) => Status::internal(message),
        }
    }
}

pub type ApiResult<T> = Result<tonic::Response<T>, Status>;

impl From<StoreError> for Status {
    fn from(error: StoreError) -> Self {
        ApiError::from(error).into()
    }
}

impl From<FieldError> for Status {
    fn from(error: FieldError) -> Self {
        ApiError::from(error).into()
    }
}
