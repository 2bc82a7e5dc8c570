//! A CloudTrail record as the rules see it: the parsed JSON, and the EventBridge envelope around
//! it (EventBridge delivers CloudTrail records as the `detail` of an event whose `source` is
//! `aws.<service>` and whose `detail-type` names the record's `eventType`).

use std::borrow::Cow;

use serde_json::Value;

/// One record, parsed once for every rule.
pub struct Event {
    pub record: Value,
    /// EventBridge's `source`: `aws.` and the event source without `.amazonaws.com`.
    source: Value,
    /// EventBridge's `detail-type`.
    detail_type: Value,
}

impl Event {
    /// Parses a record (a JSON object).
    pub fn parse(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json).map(Self::new)
    }

    pub fn new(record: Value) -> Self {
        let event_source = record.get("eventSource").and_then(Value::as_str).unwrap_or_default();
        let service = event_source.strip_suffix(".amazonaws.com").unwrap_or(event_source);
        let detail_type = match record.get("eventType").and_then(Value::as_str) {
            Some("AwsConsoleSignIn") => "AWS Console Sign In via CloudTrail",
            Some("AwsServiceEvent") => "AWS Service Event via CloudTrail",
            Some("AwsCloudTrailInsight") => "AWS Insight via CloudTrail",
            Some("AwsVpceEvent") => "AWS VPCE Event via CloudTrail",
            _ => "AWS API Call via CloudTrail",
        };
        Self {
            source: Value::String(format!("aws.{service}")),
            detail_type: Value::String(detail_type.to_owned()),
            record,
        }
    }

    /// A top-level field of the EventBridge envelope.
    pub fn envelope_field(&self, key: &str) -> Option<&Value> {
        match key {
            "detail" => Some(&self.record),
            "source" => Some(&self.source),
            "detail-type" => Some(&self.detail_type),
            "account" => self.record.get("recipientAccountId"),
            "region" => self.record.get("awsRegion"),
            "time" => self.record.get("eventTime"),
            "id" => self.record.get("eventID"),
            _ => None,
        }
    }

    /// The value at a dotted path through nested objects (Sigma's field names); arrays are
    /// values, not descended into.
    pub fn at_path<'a>(&'a self, path: &[String]) -> Option<&'a Value> {
        let mut value = &self.record;
        for key in path {
            value = value.as_object()?.get(key)?;
        }
        Some(value)
    }
}

/// A value as text for string comparisons: strings as they are, numbers and booleans as JSON
/// spells them, objects and arrays as compact JSON; JSON null and absent fields have none.
pub fn text_of(value: &Value) -> Option<Cow<'_, str>> {
    match value {
        Value::Null => None,
        Value::String(text) => Some(Cow::Borrowed(text)),
        Value::Bool(true) => Some(Cow::Borrowed("true")),
        Value::Bool(false) => Some(Cow::Borrowed("false")),
        Value::Number(number) => Some(Cow::Owned(number.to_string())),
        Value::Array(_) | Value::Object(_) => Some(Cow::Owned(value.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_follows_eventbridge() {
        let event = Event::parse(
            r#"{"eventSource":"cloudtrail.amazonaws.com","eventType":"AwsApiCall","recipientAccountId":"111122223333"}"#,
        )
        .unwrap();
        assert_eq!(event.envelope_field("source"), Some(&Value::from("aws.cloudtrail")));
        assert_eq!(event.envelope_field("detail-type"), Some(&Value::from("AWS API Call via CloudTrail")));
        assert_eq!(event.envelope_field("account"), Some(&Value::from("111122223333")));
        let signin =
            Event::parse(r#"{"eventSource":"signin.amazonaws.com","eventType":"AwsConsoleSignIn"}"#).unwrap();
        assert_eq!(
            signin.envelope_field("detail-type"),
            Some(&Value::from("AWS Console Sign In via CloudTrail"))
        );
    }

    #[test]
    fn text_of_spells_values_as_json() {
        let value: Value = serde_json::from_str(r#"{"b":true,"n":1.5,"o":{"x":[1,"y"]},"z":null}"#).unwrap();
        assert_eq!(text_of(&value["b"]).as_deref(), Some("true"));
        assert_eq!(text_of(&value["n"]).as_deref(), Some("1.5"));
        assert_eq!(text_of(&value["o"]).as_deref(), Some(r#"{"x":[1,"y"]}"#));
        assert_eq!(text_of(&value["z"]), None);
    }
}
