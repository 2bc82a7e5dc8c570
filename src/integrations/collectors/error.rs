//! Why a pull failed, decided once from the AWS SDK's error, and how long to wait before retrying.

use std::time::Duration;

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// The role cannot be assumed, or it may not read the bucket / call LookupEvents.
    #[error("AccessDenied: {0}")]
    Denied(String),
    /// AWS asked us to slow down.
    #[error("Throttling: {0}")]
    Throttled(String),
    /// The assumed credentials expired mid-call (they are refreshed on the next attempt).
    #[error("ExpiredToken: {0}")]
    ExpiredCredentials(String),
    /// The request never got an answer (DNS, connection, timeout).
    #[error("network: {0}")]
    Network(String),
    /// Any other error AWS answered with.
    #[error("{0}")]
    Service(String),
    /// Our own database failed, or the lease was lost.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// First wait after a failure; doubles per consecutive failure up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

impl CollectError {
    /// A short, fixed code for the error (the `error` label of the metrics): the message itself
    /// carries request ids, one value per failure.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Denied(_) => "AccessDenied",
            Self::Throttled(_) => "Throttling",
            Self::ExpiredCredentials(_) => "ExpiredToken",
            Self::Network(_) => "Network",
            Self::Service(_) | Self::Store(_) => "Other",
        }
    }

    /// The shortest wait before the next attempt: throttling waits longer from the start.
    pub fn backoff_floor(&self) -> Duration {
        match self {
            Self::Throttled(_) => Duration::from_secs(2),
            Self::Denied(_) => Duration::from_secs(5),
            Self::ExpiredCredentials(_) | Self::Network(_) | Self::Service(_) | Self::Store(_) => MIN_BACKOFF,
        }
    }

    /// Maps an SDK error of any AWS operation.
    pub fn from_sdk<E, R>(operation: &str, error: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        if let SdkError::ServiceError(_) = &error {
            let code = error.code().unwrap_or("Unknown");
            let message = format!("{operation}: {code}: {}", error.message().unwrap_or_default());
            return Self::from_code(code, message);
        }
        let message = format!("{operation}: {}", DisplayErrorContext(&error));
        match &error {
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
                // Credentials come from STS while the request is dispatched: a refused AssumeRole
                // surfaces here and is a denial, not a network problem.
                if message.contains("AccessDenied") {
                    Self::Denied(message)
                } else if message.contains("ExpiredToken") {
                    Self::ExpiredCredentials(message)
                } else {
                    Self::Network(message)
                }
            }
            _ => Self::Service(message),
        }
    }

    fn from_code(code: &str, message: String) -> Self {
        match code {
            "AccessDenied"
            | "AccessDeniedException"
            | "UnauthorizedOperation"
            | "InvalidClientTokenId"
            | "UnrecognizedClientException"
            | "AllAccessDisabled" => Self::Denied(message),
            "Throttling"
            | "ThrottlingException"
            | "SlowDown"
            | "RequestLimitExceeded"
            | "TooManyRequestsException" => Self::Throttled(message),
            "ExpiredToken" | "ExpiredTokenException" | "RequestExpired" => Self::ExpiredCredentials(message),
            _ => Self::Service(message),
        }
    }
}

/// The wait after `failures` consecutive failures ending with `error`.
pub fn backoff(error: &CollectError, failures: u32) -> Duration {
    let exponential = MIN_BACKOFF.saturating_mul(1u32 << failures.min(16).saturating_sub(1));
    exponential.max(error.backoff_floor()).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_its_floor_and_is_capped() {
        let network = CollectError::Network("x".into());
        assert_eq!(backoff(&network, 1), Duration::from_secs(1));
        assert_eq!(backoff(&network, 2), Duration::from_secs(2));
        assert_eq!(backoff(&network, 4), Duration::from_secs(8));
        assert_eq!(backoff(&network, 40), MAX_BACKOFF);
        let throttled = CollectError::Throttled("x".into());
        assert_eq!(backoff(&throttled, 1), Duration::from_secs(2));
    }
}
