//! An event record: parsed once at the edge for the fields orgtrail routes on; the JSON itself is
//! kept byte for byte, because consumers hash and compare it and newer fields must survive.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{AccountId, FieldError, Region};

/// Largest record accepted (CloudTrail's limit for one event).
pub const MAX_RECORD_BYTES: usize = 256 * 1024;

/// Deepest nesting of objects and arrays a record may have (the record object itself is level 1).
/// CloudTrail's deepest records nest about a dozen levels; standard consumers stop somewhere above
/// this (Python's json module at about 1,000 levels, some Java parsers at 1,000, others at 512).
pub const MAX_NESTING_DEPTH: usize = 64;

/// One pass over the JSON text, before it is parsed: refuses nesting deeper than
/// [`MAX_NESTING_DEPTH`] (serde_json skips unknown fields without a depth limit, so without this a
/// record nested 100,000 levels deep would be accepted and break every standard consumer's file),
/// and tells whether a string may hold an escaped NUL (`\u0000`), which Postgres cannot store and
/// CloudTrail never emits.
fn scan(json: &str) -> Result<bool, RecordError> {
    let bytes = json.as_bytes();
    let mut depth = 0usize;
    let mut maybe_nul = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                // Skip the string; escapes take the next byte along.
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' {
                        if bytes.get(i + 1) == Some(&b'u') && bytes.get(i + 2..i + 6) == Some(b"0000") {
                            maybe_nul = true;
                        }
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_NESTING_DEPTH {
                    return Err(RecordError::new(
                        "NestedTooDeep",
                        format!("the record nests objects and arrays deeper than {MAX_NESTING_DEPTH} levels"),
                    ));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(maybe_nul)
}

/// The path of the first key or string value holding a NUL character, as `a.b[2].c`.
fn nul_path(value: &serde_json::Value, path: &mut String) -> bool {
    match value {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                if nul_path(item, path) {
                    return true;
                }
                path.truncate(len);
            }
            false
        }
        serde_json::Value::Object(map) => {
            for (key, item) in map {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&key.replace('\0', "\\u0000"));
                if key.contains('\0') || nul_path(item, path) {
                    return true;
                }
                path.truncate(len);
            }
            false
        }
        _ => false,
    }
}

/// Refuses a record whose keys or strings hold a NUL character, naming where.
fn refuse_nul(json: &str) -> Result<(), RecordError> {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(json) else { return Ok(()) };
    let mut path = String::new();
    if nul_path(&value, &mut path) {
        return Err(RecordError::new(
            "InvalidField",
            format!("{path}: must not contain NUL characters (U+0000); CloudTrail never emits them"),
        ));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
struct Resource<'a> {
    #[serde(rename = "type", borrow, default)]
    resource_type: Option<Cow<'a, str>>,
    #[serde(rename = "ARN", borrow, default)]
    arn: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InsightDetails<'a> {
    #[serde(borrow, default)]
    event_source: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    event_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    insight_type: Option<Cow<'a, str>>,
    /// orgtrail's addition: the category the insight was computed on (absent: Management).
    #[serde(borrow, default)]
    event_category: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
struct UserIdentity<'a> {
    #[serde(borrow, default)]
    arn: Option<Cow<'a, str>>,
}

/// The fields orgtrail reads. Unknown fields are ignored here and kept in the JSON.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Fields<'a> {
    #[serde(rename = "eventID", borrow, default)]
    event_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    event_time: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    event_source: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    event_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    aws_region: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    recipient_account_id: Option<Cow<'a, str>>,
    #[serde(default)]
    read_only: Option<serde_json::Value>,
    #[serde(borrow, default)]
    event_category: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    event_type: Option<Cow<'a, str>>,
    #[serde(default)]
    management_event: Option<bool>,
    #[serde(borrow, default)]
    resources: Option<Vec<Resource<'a>>>,
    #[serde(default)]
    session_credential_from_console: Option<serde_json::Value>,
    #[serde(borrow, default)]
    user_identity: Option<UserIdentity<'a>>,
    #[serde(borrow, default)]
    error_code: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    vpc_endpoint_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    insight_details: Option<InsightDetails<'a>>,
}

/// What kind of event a record is, for selectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    Management,
    Data,
    NetworkActivity,
    Insight,
    /// Events from non-AWS sources arriving on a channel (CloudTrail Lake's ActivityAuditLog).
    ActivityAuditLog,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Management => "Management",
            Self::Data => "Data",
            Self::NetworkActivity => "NetworkActivity",
            Self::Insight => "Insight",
            Self::ActivityAuditLog => "ActivityAuditLog",
        }
    }
}

/// What an Insights record is about, for insight selectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsightView {
    /// `ApiCallRateInsight` or `ApiErrorRateInsight` (anything else matches no selector).
    pub insight_type: String,
    /// The category of the calls the insight was computed on: Management or Data.
    pub computed_on: Category,
}

/// The routing-relevant view of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordView {
    pub event_id: String,
    pub event_time: DateTime<Utc>,
    pub event_source: String,
    pub event_name: String,
    pub aws_region: Region,
    pub recipient_account_id: AccountId,
    pub category: Category,
    /// None when the record does not say.
    pub read_only: Option<bool>,
    pub event_type: Option<String>,
    /// `(type, ARN)` of each resource.
    pub resources: Vec<(String, String)>,
    pub session_credential_from_console: Option<String>,
    pub user_identity_arn: Option<String>,
    pub error_code: Option<String>,
    pub vpc_endpoint_id: Option<String>,
    /// Set for Insights records (category Insight).
    pub insight: Option<InsightView>,
}

/// Why a record was refused, with a stable code for per-event results.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct RecordError {
    pub code: &'static str,
    pub message: String,
}

impl RecordError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

/// Parses a CloudTrail `eventTime` (`YYYY-MM-DDTHH:MM:SSZ`, or any RFC 3339 time).
pub fn parse_event_time(value: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value).ok().map(|t| t.with_timezone(&Utc))
}

fn bool_like(value: &serde_json::Value) -> Option<bool> {
    match value {
        serde_json::Value::Bool(b) => Some(*b),
        serde_json::Value::String(s) if s == "true" => Some(true),
        serde_json::Value::String(s) if s == "false" => Some(false),
        _ => None,
    }
}

fn required<'a>(value: &'a Option<Cow<'_, str>>, field: &str) -> Result<&'a str, RecordError> {
    match value.as_deref() {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(RecordError::new("MissingRequiredField", format!("the record has no {field}"))),
    }
}

impl RecordView {
    /// Parses and checks a record. Every required field must be present and well formed.
    pub fn parse(json: &str) -> Result<Self, RecordError> {
        if json.len() > MAX_RECORD_BYTES {
            return Err(RecordError::new(
                "EventTooLarge",
                format!("the record is {} bytes; at most {MAX_RECORD_BYTES} are accepted", json.len()),
            ));
        }
        if scan(json)? {
            refuse_nul(json)?;
        }
        let fields: Fields<'_> = serde_json::from_str(json)
            .map_err(|e| RecordError::new("InvalidJson", format!("not a JSON object: {e}")))?;
        let event_id = required(&fields.event_id, "eventID")?;
        let event_time_text = required(&fields.event_time, "eventTime")?;
        // Insights records name the API inside insightDetails, not at the top.
        let details = fields.insight_details.as_ref();
        let event_source = match (&fields.event_source, details) {
            (None, Some(details)) => required(&details.event_source, "insightDetails.eventSource")?,
            _ => required(&fields.event_source, "eventSource")?,
        };
        let event_name = match (&fields.event_name, details) {
            (None, Some(details)) => required(&details.event_name, "insightDetails.eventName")?,
            _ => required(&fields.event_name, "eventName")?,
        };
        let region_text = required(&fields.aws_region, "awsRegion")?;
        let account_text = required(&fields.recipient_account_id, "recipientAccountId")?;
        let event_time = parse_event_time(event_time_text).ok_or_else(|| {
            RecordError::new(
                "InvalidField",
                format!("eventTime {event_time_text:?} is not a UTC time (YYYY-MM-DDTHH:MM:SSZ)"),
            )
        })?;
        let aws_region = Region::parse("awsRegion", region_text)
            .map_err(|e| RecordError::new("InvalidField", e.to_string()))?;
        let recipient_account_id = AccountId::parse("recipientAccountId", account_text)
            .map_err(|e| RecordError::new("InvalidField", e.to_string()))?;
        if event_id.len() > 128 {
            return Err(RecordError::new("InvalidField", "eventID is longer than 128 characters"));
        }
        let category = match fields.event_category.as_deref() {
            Some("Data") => Category::Data,
            Some("NetworkActivity") => Category::NetworkActivity,
            Some("Insight") => Category::Insight,
            Some("ActivityAuditLog") => Category::ActivityAuditLog,
            Some(_) => Category::Management,
            // Records older than eventVersion 1.07 carry no category: data events say
            // managementEvent=false; everything else was a management event.
            None if fields.event_type.as_deref() == Some("AwsCloudTrailInsight") => Category::Insight,
            None if fields.management_event == Some(false) => Category::Data,
            None => Category::Management,
        };
        let insight = match (category, details) {
            (Category::Insight, Some(details)) => Some(InsightView {
                insight_type: details.insight_type.as_deref().unwrap_or_default().to_owned(),
                computed_on: match details.event_category.as_deref() {
                    Some("Data") => Category::Data,
                    _ => Category::Management,
                },
            }),
            _ => None,
        };
        let resources = fields
            .resources
            .unwrap_or_default()
            .into_iter()
            .map(|r| {
                (r.resource_type.unwrap_or_default().into_owned(), r.arn.unwrap_or_default().into_owned())
            })
            .collect();
        Ok(Self {
            event_id: event_id.to_owned(),
            event_time,
            event_source: event_source.to_owned(),
            event_name: event_name.to_owned(),
            aws_region,
            recipient_account_id,
            category,
            read_only: fields.read_only.as_ref().and_then(bool_like),
            event_type: fields.event_type.map(Cow::into_owned),
            resources,
            session_credential_from_console: fields.session_credential_from_console.map(|v| match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            }),
            user_identity_arn: fields.user_identity.and_then(|u| u.arn).map(Cow::into_owned),
            error_code: fields.error_code.map(Cow::into_owned),
            vpc_endpoint_id: fields.vpc_endpoint_id.map(Cow::into_owned),
            insight,
        })
    }

    /// The value an advanced field selector compares, or None when the record lacks it.
    /// `resources.*` fields have several values; see [`RecordView::field_values`].
    pub fn field_values(&self, field: &str) -> Vec<&str> {
        fn one(v: Option<&str>) -> Vec<&str> {
            v.into_iter().collect()
        }
        match field {
            "eventCategory" => vec![self.category.as_str()],
            "eventSource" => vec![self.event_source.as_str()],
            "eventName" => vec![self.event_name.as_str()],
            "eventType" => one(self.event_type.as_deref()),
            "readOnly" => one(self.read_only.map(|b| if b { "true" } else { "false" })),
            "resources.type" => self.resources.iter().map(|(t, _)| t.as_str()).collect(),
            "resources.ARN" => self.resources.iter().map(|(_, a)| a.as_str()).collect(),
            "sessionCredentialFromConsole" => one(self.session_credential_from_console.as_deref()),
            "userIdentity.arn" => one(self.user_identity_arn.as_deref()),
            "errorCode" => one(self.error_code.as_deref()),
            "vpcEndpointId" => one(self.vpc_endpoint_id.as_deref()),
            _ => Vec::new(),
        }
    }
}

/// Validates `Field` names of an incoming record for the error message of a wrong account.
pub fn account_mismatch(expected: &AccountId, got: &AccountId) -> RecordError {
    RecordError::new(
        "WrongAccount",
        format!("recipientAccountId {got} is not the caller's account {expected}"),
    )
}

impl From<FieldError> for RecordError {
    fn from(error: FieldError) -> Self {
        RecordError::new("InvalidField", error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shared_record_with_the_required_fields_parses() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/cloudtrail/records.jsonl.gz");
        let Ok(file) = std::fs::File::open(path) else {
            return; // shared data is beside the checkout in CI and here; nothing to check elsewhere
        };
        use std::io::BufRead;
        let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(file));
        let (mut parsed, mut refused) = (0, 0);
        for line in reader.lines() {
            let line = line.unwrap();
            match RecordView::parse(&line) {
                Ok(_) => parsed += 1,
                Err(e) => {
                    assert!(matches!(e.code, "MissingRequiredField"), "{e}: {line}");
                    refused += 1;
                }
            }
        }
        assert!(parsed > 2300, "parsed {parsed}, refused {refused}");
    }

    #[test]
    fn insights_records_name_their_api_inside_insight_details() {
        let json = r#"{"eventVersion":"1.07","eventTime":"2019-11-14T00:52:00Z","awsRegion":"us-east-1","eventID":"e-1","eventType":"AwsCloudTrailInsight","recipientAccountId":"123456789012","sharedEventID":"s-1","insightDetails":{"state":"End","eventSource":"ssm.amazonaws.com","eventName":"UpdateInstanceInformation","insightType":"ApiCallRateInsight","insightContext":{"statistics":{"baseline":{"average":85.42},"insight":{"average":664},"insightDuration":1}}},"eventCategory":"Insight"}"#;
        let view = RecordView::parse(json).unwrap();
        assert_eq!(view.category, Category::Insight);
        assert_eq!(
            (view.event_source.as_str(), view.event_name.as_str()),
            ("ssm.amazonaws.com", "UpdateInstanceInformation")
        );
        let insight = view.insight.unwrap();
        assert_eq!(
            (insight.insight_type.as_str(), insight.computed_on),
            ("ApiCallRateInsight", Category::Management)
        );
    }

    #[test]
    fn nesting_is_limited_and_strings_do_not_count() {
        let nested = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        assert!(scan(&nested(MAX_NESTING_DEPTH)).is_ok());
        assert_eq!(scan(&nested(MAX_NESTING_DEPTH + 1)).unwrap_err().code, "NestedTooDeep");
        let in_string = format!("[\"{}\\\"\"]", "[".repeat(500));
        assert_eq!(scan(&in_string), Ok(false), "brackets inside strings are text");
    }

    #[test]
    fn nul_characters_are_found_where_they_are() {
        assert_eq!(scan(r#"{"a":"x\u0000"}"#), Ok(true));
        assert_eq!(scan(r#"{"a":"x\\u0000"}"#), Ok(false), "an escaped backslash, then text");
        assert!(refuse_nul(r#"{"a":"x\\u0000"}"#).is_ok());
        let err = refuse_nul(r#"{"a":{"b":[1,"x\u0000"]}}"#).unwrap_err();
        assert!(err.message.starts_with("a.b[1]:"), "{err}");
        let err = refuse_nul(r#"{"k\u0000":1}"#).unwrap_err();
        assert!(err.message.starts_with("k\\u0000:"), "{err}");
    }

    #[test]
    fn missing_fields_are_named() {
        let err = RecordView::parse(r#"{"eventID":"x","eventTime":"2024-01-01T00:00:00Z"}"#).unwrap_err();
        assert_eq!(err.code, "MissingRequiredField");
        assert!(err.message.contains("eventSource"));
        assert_eq!(RecordView::parse("[1,2]").unwrap_err().code, "InvalidJson");
    }
}
