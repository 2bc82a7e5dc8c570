//! Event history (CloudTrail's LookupEvents): which records it keeps, the lookup attributes, and
//! the values a record has for each of them.
//!
//! `Username` follows what CloudTrail's event history shows for the record's identity:
//! `userIdentity.userName` when the record has one (IAM users; the account alias for the root
//! user; `HIDDEN_DUE_TO_SECURITY_REASONS` on some failed sign-ins); for assumed roles and
//! federated users the session name (the last segment of `userIdentity.arn`, as in
//! `arn:aws:sts::123456789012:assumed-role/Admin/alice` → `alice`, which is what the aws CLI's
//! own lookup-events example shows); `root` for a root identity without a user name; the calling
//! service (`userIdentity.invokedBy`) for AWS service identities. Other identities have none.

use std::borrow::Cow;

use serde::Deserialize;

use super::FieldError;
use super::record::{Category, RecordView};

/// A lookup attribute key, as CloudTrail spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttributeKey {
    EventId,
    EventName,
    ReadOnly,
    Username,
    ResourceType,
    ResourceName,
    EventSource,
    AccessKeyId,
}

impl AttributeKey {
    pub const ALL: [AttributeKey; 8] = [
        Self::EventId,
        Self::EventName,
        Self::ReadOnly,
        Self::Username,
        Self::ResourceType,
        Self::ResourceName,
        Self::EventSource,
        Self::AccessKeyId,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::EventId => "EventId",
            Self::EventName => "EventName",
            Self::ReadOnly => "ReadOnly",
            Self::Username => "Username",
            Self::ResourceType => "ResourceType",
            Self::ResourceName => "ResourceName",
            Self::EventSource => "EventSource",
            Self::AccessKeyId => "AccessKeyId",
        }
    }

    pub fn parse(field: &str, value: &str) -> Result<Self, FieldError> {
        Self::ALL.into_iter().find(|k| k.as_str() == value).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|k| k.as_str()).collect();
            FieldError::new(field, format!("must be one of {}, got {value:?}", names.join(", ")))
        })
    }

    /// Whether Insights events can be looked up by this key (CloudTrail: EventId, EventName,
    /// EventSource only).
    pub fn applies_to_insights(self) -> bool {
        matches!(self, Self::EventId | Self::EventName | Self::EventSource)
    }
}

/// Longest attribute value CloudTrail accepts.
pub const MAX_ATTRIBUTE_VALUE_CHARS: usize = 2000;

/// One lookup attribute, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupAttribute {
    pub key: AttributeKey,
    pub value: String,
}

impl LookupAttribute {
    /// Checks a key and value; `field` names the attribute in errors (`lookup_attributes[0]`).
    pub fn parse(field: &str, key: &str, value: &str) -> Result<Self, FieldError> {
        let key = AttributeKey::parse(&format!("{field}.attribute_key"), key)?;
        let chars = value.chars().count();
        if !(1..=MAX_ATTRIBUTE_VALUE_CHARS).contains(&chars) {
            return Err(FieldError::new(
                format!("{field}.attribute_value"),
                format!("must be 1 to {MAX_ATTRIBUTE_VALUE_CHARS} characters, got {chars}"),
            ));
        }
        if value.contains('\0') {
            return Err(FieldError::new(
                format!("{field}.attribute_value"),
                "must not contain NUL characters (U+0000); no event has one",
            ));
        }
        if key == AttributeKey::ReadOnly && value != "true" && value != "false" {
            return Err(FieldError::new(
                format!("{field}.attribute_value"),
                format!("ReadOnly must be \"true\" or \"false\", got {value:?}"),
            ));
        }
        Ok(Self { key, value: value.to_owned() })
    }
}

/// Longest value kept as itself in a lookup key; longer ones are kept as their digest, because a
/// B-tree entry holds at most about 2,700 bytes and CloudTrail lets a lookup ask for 2,000
/// characters (up to 8,000 bytes). Lookups apply the same mapping, so matches stay exact.
pub const MAX_PLAIN_KEY_BYTES: usize = 512;

/// What the index stores for a lookup value: the value itself, or for a long one U+0001 (which no
/// CloudTrail value holds) followed by its SHA-256 in hex.
pub fn index_key(value: &str) -> Cow<'_, str> {
    if value.len() <= MAX_PLAIN_KEY_BYTES {
        return Cow::Borrowed(value);
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, value.as_bytes());
    Cow::Owned(format!("\u{1}{}", hex::encode(digest.as_ref())))
}

/// Whether a stored key is a digest of a longer value (see [`index_key`]).
pub fn is_digest_key(key: &str) -> bool {
    key.starts_with('\u{1}')
}

/// Whether event history keeps a record: management and Insights events (CloudTrail's event
/// history has no data or network activity events).
pub fn is_kept(category: Category) -> bool {
    matches!(category, Category::Management | Category::Insight)
}

#[derive(Debug, Default, Deserialize)]
struct Identity<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    arn: Option<Cow<'a, str>>,
    #[serde(rename = "userName", borrow, default)]
    user_name: Option<Cow<'a, str>>,
    #[serde(rename = "accessKeyId", borrow, default)]
    access_key_id: Option<Cow<'a, str>>,
    #[serde(rename = "invokedBy", borrow, default)]
    invoked_by: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
struct Fields<'a> {
    #[serde(rename = "userIdentity", borrow, default)]
    user_identity: Option<Identity<'a>>,
}

/// The values event history indexes for one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryFields {
    pub insight: bool,
    /// For Insights: the API the insight is about (`insightDetails.eventName`).
    pub event_name: String,
    pub event_source: String,
    pub read_only: Option<bool>,
    pub username: Option<String>,
    pub access_key_id: Option<String>,
    /// Distinct resource types, then distinct resource names (ARNs), of `resources[]`.
    pub resource_types: Vec<String>,
    pub resource_names: Vec<String>,
}

fn non_empty(value: Option<Cow<'_, str>>) -> Option<String> {
    value.filter(|v| !v.is_empty()).map(Cow::into_owned)
}

/// CloudTrail's Username of an identity (see the module documentation).
fn username(identity: Identity<'_>) -> Option<String> {
    if let Some(name) = non_empty(identity.user_name) {
        return Some(name);
    }
    match identity.kind.as_deref() {
        Some("AssumedRole" | "FederatedUser") => identity
            .arn
            .as_deref()
            .and_then(|arn| arn.rsplit_once('/'))
            .map(|(_, session)| session)
            .filter(|session| !session.is_empty())
            .map(str::to_owned),
        Some("Root") => Some("root".to_owned()),
        Some("AWSService") => non_empty(identity.invoked_by),
        _ => None,
    }
}

impl HistoryFields {
    /// The indexed values of a record event history keeps (see [`is_kept`]).
    pub fn of(record: &str, view: &RecordView) -> Self {
        // The view parsed this record already; a failure here can only mean an odd identity shape,
        // which then indexes no identity values.
        let identity =
            serde_json::from_str::<Fields<'_>>(record).ok().and_then(|f| f.user_identity).unwrap_or_default();
        let insight = view.category == Category::Insight;
        // For Insights the view's name and source are insightDetails' (the API the insight is about).
        let (event_name, event_source) = (view.event_name.clone(), view.event_source.clone());
        let access_key_id = non_empty(identity.access_key_id.clone());
        let mut resource_types: Vec<String> = Vec::new();
        let mut resource_names: Vec<String> = Vec::new();
        for (kind, arn) in &view.resources {
            if !kind.is_empty() && !resource_types.contains(kind) {
                resource_types.push(kind.clone());
            }
            if !arn.is_empty() && !resource_names.contains(arn) {
                resource_names.push(arn.clone());
            }
        }
        Self {
            insight,
            event_name,
            event_source,
            read_only: if insight { None } else { view.read_only },
            username: if insight { None } else { username(identity) },
            access_key_id: if insight { None } else { access_key_id },
            resource_types,
            resource_names,
        }
    }
}

#[derive(Debug, Deserialize)]
struct Resource<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(rename = "ARN", borrow, default)]
    arn: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
struct WithResources<'a> {
    #[serde(borrow, default)]
    resources: Option<Vec<Resource<'a>>>,
}

/// `(type, ARN)` of each of a record's resources, in order (LookupEvents' Resources).
pub fn resources(record: &str) -> Vec<(String, String)> {
    let Ok(parsed) = serde_json::from_str::<WithResources<'_>>(record) else { return Vec::new() };
    parsed
        .resources
        .unwrap_or_default()
        .into_iter()
        .map(|r| {
            (r.kind.map(Cow::into_owned).unwrap_or_default(), r.arn.map(Cow::into_owned).unwrap_or_default())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(record: serde_json::Value) -> HistoryFields {
        let text = record.to_string();
        HistoryFields::of(&text, &RecordView::parse(&text).unwrap())
    }

    fn base(identity: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "eventVersion": "1.08", "userIdentity": identity, "eventTime": "2026-01-01T00:00:00Z",
            "eventSource": "s3.amazonaws.com", "eventName": "CreateBucket", "awsRegion": "us-east-1",
            "eventID": "e1", "recipientAccountId": "111122223333", "readOnly": false,
            "resources": [{"type": "AWS::S3::Bucket", "ARN": "arn:aws:s3:::b"}, {"type": "AWS::S3::Bucket", "ARN": "arn:aws:s3:::b"}],
            "eventCategory": "Management"
        })
    }

    #[test]
    fn username_follows_the_identity_type() {
        let user =
            fields(base(serde_json::json!({"type": "IAMUser", "userName": "alice", "accessKeyId": "AKIA1"})));
        assert_eq!((user.username.as_deref(), user.access_key_id.as_deref()), (Some("alice"), Some("AKIA1")));
        let role = fields(base(serde_json::json!({"type": "AssumedRole",
            "arn": "arn:aws:sts::111122223333:assumed-role/Admin/my-session", "accessKeyId": ""})));
        assert_eq!((role.username.as_deref(), role.access_key_id), (Some("my-session"), None));
        assert_eq!(fields(base(serde_json::json!({"type": "Root"}))).username.as_deref(), Some("root"));
        let service =
            fields(base(serde_json::json!({"type": "AWSService", "invokedBy": "ec2.amazonaws.com"})));
        assert_eq!(service.username.as_deref(), Some("ec2.amazonaws.com"));
        assert_eq!(fields(base(serde_json::json!({"type": "Unknown"}))).username, None);
    }

    #[test]
    fn resources_are_distinct_and_insights_take_their_api_from_the_details() {
        let record = fields(base(serde_json::json!({"type": "IAMUser", "userName": "a"})));
        assert_eq!(record.resource_types, vec!["AWS::S3::Bucket"]);
        assert_eq!(record.resource_names, vec!["arn:aws:s3:::b"]);
        assert_eq!(record.read_only, Some(false));
        let insight = fields(serde_json::json!({
            "eventVersion": "1.07", "eventTime": "2026-01-01T00:00:00Z", "awsRegion": "us-east-1",
            "eventID": "i1", "eventType": "AwsCloudTrailInsight", "recipientAccountId": "111122223333",
            "insightDetails": {"state": "Start", "eventSource": "ssm.amazonaws.com", "eventName": "UpdateInstanceInformation"},
            "eventCategory": "Insight"
        }));
        assert!(insight.insight);
        assert_eq!(
            (insight.event_source.as_str(), insight.event_name.as_str()),
            ("ssm.amazonaws.com", "UpdateInstanceInformation")
        );
    }

    #[test]
    fn attributes_are_checked_naming_the_field() {
        let bad = LookupAttribute::parse("lookup_attributes[0]", "User", "x").unwrap_err();
        assert_eq!(bad.field, "lookup_attributes[0].attribute_key");
        let empty = LookupAttribute::parse("lookup_attributes[0]", "EventName", "").unwrap_err();
        assert_eq!(empty.field, "lookup_attributes[0].attribute_value");
        assert!(LookupAttribute::parse("a", "ReadOnly", "yes").is_err());
        assert_eq!(LookupAttribute::parse("a", "ReadOnly", "true").unwrap().key, AttributeKey::ReadOnly);
    }
}
