//! AWS JSON 1.1 errors (`{"__type": "...", "message": "..."}` with an HTTP status), and the one
//! mapping from the gRPC services' `tonic::Status` to them.

use http::StatusCode;
use tonic::{Code, Status};

use crate::control::api::error::marker;

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
    ///
    /// The services name CloudTrail's exception where one rule has its own (`InvalidTimeRange: ...`,
    /// `MaximumNumberOfTrailsExceeded: ...`); otherwise a bad argument's exception follows from the
    /// field the message starts with. The message names the field as CloudTrail's parameter
    /// (`s3_bucket_name: ...` becomes `S3BucketName: ...`) and loses the marker.
    pub fn from_status(status: &Status, not_found: &'static str) -> Self {
        let (marked, message) = strip_marker(status.message());
        let message = aws_field_names(&message);
        let client = |default: &'static str| Self::client(marked.unwrap_or(default), message.clone());
        match status.code() {
            Code::NotFound => client(not_found),
            Code::InvalidArgument => client(field_exception(status.message())),
            Code::AlreadyExists => client("TrailAlreadyExistsException"),
            Code::PermissionDenied => client("AccessDeniedException"),
            // A rule the current state forbids (an unregistered owner, no organization yet).
            Code::FailedPrecondition => client("OperationNotPermittedException"),
            Code::ResourceExhausted => client("LimitExceededException"),
            Code::Unauthenticated => Self::unrecognized_client(message),
            Code::Ok
            | Code::Cancelled
            | Code::Unknown
            | Code::DeadlineExceeded
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

/// CloudTrail exceptions the services name in their messages, as `<Name>: why` (without the
/// `Exception` suffix).
const MARKED: &[(&str, &str)] = &[
    ("InvalidTimeRange", "InvalidTimeRangeException"),
    ("InvalidParameterCombination", "InvalidParameterCombinationException"),
    ("MaximumNumberOfTrailsExceeded", "MaximumNumberOfTrailsExceededException"),
    (marker::NOT_MANAGEMENT_ACCOUNT, "NotOrganizationMasterAccountException"),
    (marker::ORGANIZATIONS_NOT_IN_USE, "OrganizationsNotInUseException"),
];

/// The marked exception, and the message without its marker.
fn strip_marker(message: &str) -> (Option<&'static str>, String) {
    for (marker, exception) in MARKED {
        let tagged = format!("{marker}: ");
        if let Some(at) = message.find(&tagged) {
            let stripped = format!("{}{}", &message[..at], &message[at + tagged.len()..]);
            return (Some(exception), stripped);
        }
    }
    (None, message.to_owned())
}

/// The exception of a bad argument, by the field path the message starts with.
fn field_exception(message: &str) -> &'static str {
    const BY_FIELD: &[(&str, &str)] = &[
        ("name", "InvalidTrailNameException"),
        ("trail_name", "InvalidTrailNameException"),
        ("s3_bucket_name", "InvalidS3BucketNameException"),
        ("s3_key_prefix", "InvalidS3PrefixException"),
        ("sns_topic_name", "InvalidSnsTopicNameException"),
        ("kms_key_id", "InvalidKmsKeyIdException"),
        ("cloud_watch_logs_log_group_arn", "InvalidCloudWatchLogsLogGroupArnException"),
        ("cloud_watch_logs_role_arn", "InvalidCloudWatchLogsRoleArnException"),
        ("event_selectors", "InvalidEventSelectorsException"),
        ("advanced_event_selectors", "InvalidEventSelectorsException"),
        ("insight_selectors", "InvalidInsightSelectorsException"),
        // The whole set is over the limit; one tag (`tags[2].key`) is a bad parameter.
        ("tags", "TagsLimitExceededException"),
        ("next_token", "InvalidNextTokenException"),
    ];
    let path = message.split(':').next().unwrap_or_default();
    let head = path.split(['[', '.']).next().unwrap_or_default();
    match BY_FIELD.iter().find(|(field, _)| *field == head) {
        Some(("tags", _)) if path != "tags" => "InvalidTagParameterException",
        Some((_, exception)) => exception,
        None => "InvalidParameterException",
    }
}

/// The message with its leading field path spelled as CloudTrail's parameters:
/// `event_selectors[0].read_write_type: ...` becomes `EventSelectors[0].ReadWriteType: ...`.
fn aws_field_names(message: &str) -> String {
    let Some((path, rest)) = message.split_once(": ") else {
        return message.to_owned();
    };
    let is_path = !path.is_empty()
        && path.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.[]".contains(&b));
    if !is_path {
        return message.to_owned();
    }
    let mut out = String::with_capacity(message.len());
    for (i, segment) in path.split('.').enumerate() {
        if i > 0 {
            out.push('.');
        }
        let (word, index) = segment.split_at(segment.find('[').unwrap_or(segment.len()));
        out.push_str(&parameter_name(word));
        out.push_str(index);
    }
    format!("{out}: {rest}")
}

/// One snake_case field as CloudTrail's parameter; the few that differ by more than case are named.
fn parameter_name(field: &str) -> String {
    match field {
        "tags" => "TagsList".to_owned(),
        "log_file_validation_enabled" => "EnableLogFileValidation".to_owned(),
        "type" => "Type".to_owned(),
        _ => field
            .split('_')
            .map(|word| {
                let mut chars = word.chars();
                chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
            })
            .collect(),
    }
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
        assert_eq!(mapped(Status::invalid_argument("name: bad")).code, "InvalidTrailNameException");
        assert_eq!(mapped(Status::invalid_argument("region: bad")).code, "InvalidParameterException");
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

    #[test]
    fn field_paths_choose_the_exception_and_read_as_cloudtrail_parameters() {
        let mapped = |message: &str| AwsError::from_status(&Status::invalid_argument(message), "X");
        let selectors = mapped("event_selectors[0].read_write_type: must be ReadOnly, WriteOnly or All");
        assert_eq!(selectors.code, "InvalidEventSelectorsException");
        assert_eq!(selectors.message, "EventSelectors[0].ReadWriteType: must be ReadOnly, WriteOnly or All");
        let combination = mapped(
            "include_global_service_events: InvalidParameterCombination: a multi-region trail must include them",
        );
        assert_eq!(combination.code, "InvalidParameterCombinationException");
        assert_eq!(combination.message, "IncludeGlobalServiceEvents: a multi-region trail must include them");
        assert_eq!(mapped("tags: at most 50 tags per trail").code, "TagsLimitExceededException");
        let tag = mapped("tags[1].key: the aws: prefix is reserved");
        assert_eq!(
            (tag.code, tag.message.as_str()),
            ("InvalidTagParameterException", "TagsList[1].Key: the aws: prefix is reserved")
        );
        assert_eq!(mapped("s3_bucket_name: is required").message, "S3BucketName: is required");
        assert_eq!(
            mapped("advanced_event_selectors[0].field_selectors[1].field: unknown").message,
            "AdvancedEventSelectors[0].FieldSelectors[1].Field: unknown"
        );
        assert_eq!(mapped("no field here").message, "no field here");
        let denied = AwsError::from_status(
            &Status::permission_denied(
                "NotOrganizationMasterAccount: a member token may not create organization trails",
            ),
            "X",
        );
        assert_eq!(denied.code, "NotOrganizationMasterAccountException");
        assert_eq!(denied.message, "a member token may not create organization trails");
        let limit = AwsError::from_status(
            &Status::resource_exhausted("MaximumNumberOfTrailsExceeded: account 1 already has 5 trails"),
            "X",
        );
        assert_eq!(limit.code, "MaximumNumberOfTrailsExceededException");
        assert_eq!(
            AwsError::from_status(&Status::already_exists("trail t already exists"), "X").code,
            "TrailAlreadyExistsException"
        );
    }
}
