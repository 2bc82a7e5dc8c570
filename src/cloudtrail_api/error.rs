//! AWS JSON 1.1 errors (`{"__type": "...", "message": "..."}` with an HTTP status), and the one
//! mapping from the gRPC services' `tonic::Status` to them.

use http::StatusCode;
use tonic::{Code, Status};

/// An error as AWS JSON 1.1 clients read it: botocore takes the exception name from `__type`
/// and the text from `message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsError {
    pub status: StatusCode,
    /// The exception name, e.g. `TrailNotFoundException`.
    pub code: &'static str,
    pub message: String,
}

impl AwsError {
    /// A client error (HTTP 400).
    pub fn client(code: &'static str, message: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, code, message: message.into() }
    }

    /// A server-side failure (HTTP 500); clients may retry.
    pub fn internal(message: impl Into<String>) -> Self {
        Self { status: StatusCode::INTERNAL_SERVER_ERROR, code: "InternalFailure", message: message.into() }
    }

    pub fn unknown_operation(message: impl Into<String>) -> Self {
        Self::client("UnknownOperationException", message)
    }

    pub fn serialization(message: impl Into<String>) -> Self {
        Self::client("SerializationException", message)
    }

    pub fn too_large(limit: usize) -> Self {
        Self {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "SerializationException",
            message: format!("the request body exceeds {limit} bytes"),
        }
    }

    pub fn missing_authentication_token(message: impl Into<String>) -> Self {
        Self::client("MissingAuthenticationTokenException", message)
    }

    pub fn incomplete_signature(message: impl Into<String>) -> Self {
        Self::client("IncompleteSignatureException", message)
    }

    pub fn unrecognized_client(message: impl Into<String>) -> Self {
        Self::client("UnrecognizedClientException", message)
    }

    pub fn invalid_signature(message: impl Into<String>) -> Self {
        Self::client("InvalidSignatureException", message)
    }

    /// Maps a gRPC service's answer to the AWS error of the same meaning. `not_found` names the
    /// operation's "no such resource" exception (`TrailNotFoundException` for trail operations).
    pub fn from_status(status: &Status, not_found: &'static str) -> Self {
        let message = status.message().to_owned();
        match status.code() {
            Code::NotFound => Self::client(not_found, message),
            Code::InvalidArgument => Self::client(invalid_argument_exception(&message), message),
            Code::PermissionDenied => Self::client("AccessDeniedException", message),
            Code::Unauthenticated => Self::unrecognized_client(message),
            Code::Ok
            | Code::Cancelled
            | Code::Unknown
            | Code::DeadlineExceeded
            | Code::AlreadyExists
            | Code::ResourceExhausted
            | Code::FailedPrecondition
            | Code::Aborted
            | Code::OutOfRange
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss => {
                tracing::warn!(code = ?status.code(), %message, "cloudtrail api: service call failed");
                Self::internal(message)
            }
        }
    }
}

/// Some services name CloudTrail's own exception in an InvalidArgument message (KeyService says
/// "InvalidTimeRange: ..."); those keep their name, every other InvalidArgument is a parameter error.
fn invalid_argument_exception(message: &str) -> &'static str {
    const NAMED: &[(&str, &str)] = &[("InvalidTimeRange:", "InvalidTimeRangeException")];
    NAMED
        .iter()
        .find(|(marker, _)| message.contains(marker))
        .map_or("InvalidParameterException", |(_, exception)| exception)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_map_to_aws_exceptions() {
        let mapped = |status: Status| AwsError::from_status(&status, "TrailNotFoundException");
        let not_found = mapped(Status::not_found("trail x not found"));
        assert_eq!((not_found.status, not_found.code), (StatusCode::BAD_REQUEST, "TrailNotFoundException"));
        assert_eq!(not_found.message, "trail x not found");
        assert_eq!(mapped(Status::invalid_argument("name: bad")).code, "InvalidParameterException");
        assert_eq!(
            mapped(Status::invalid_argument("end_time: InvalidTimeRange: end_time is before start_time"))
                .code,
            "InvalidTimeRangeException"
        );
        assert_eq!(mapped(Status::permission_denied("no")).code, "AccessDeniedException");
        assert_eq!(mapped(Status::unauthenticated("no")).code, "UnrecognizedClientException");
        let internal = mapped(Status::unavailable("database down"));
        assert_eq!((internal.status, internal.code), (StatusCode::INTERNAL_SERVER_ERROR, "InternalFailure"));
    }
}
