//! Insights records in CloudTrail's shape (spec §4.4): a Start and an End record per insight,
//! sharing a `sharedEventID`. Identifiers are derived from the insight's identity, so staging a
//! record again (after a crash) is a duplicate that ingest dedupe drops.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

/// The two insight types.
pub const CALL_RATE: &str = "ApiCallRateInsight";
pub const ERROR_RATE: &str = "ApiErrorRateInsight";

/// Attribute names of `insightContext.attributions`.
pub const USER_IDENTITY_ARN: &str = "userIdentityArn";
pub const USER_AGENT: &str = "userAgent";
pub const ERROR_CODE: &str = "errorCode";
/// Attributes in the order records list them.
pub const ATTRIBUTES: [&str; 3] = [USER_IDENTITY_ARN, USER_AGENT, ERROR_CODE];

/// Entries per attribution list (CloudTrail shows at most five).
pub const TOP_VALUES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Start,
    End,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "Start",
            Self::End => "End",
        }
    }
}

/// Which API in which account and region an insight is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Series {
    pub account_id: String,
    pub region: String,
    pub insight_type: String,
    /// `Management` or `Data`: the calls the insight was computed on.
    pub category: String,
    pub event_source: String,
    pub event_name: String,
}

/// One attribute's top values during the insight and during the baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribution {
    pub attribute: &'static str,
    pub insight: Vec<(String, f64)>,
    pub baseline: Vec<(String, f64)>,
}

/// The top [`TOP_VALUES`] of `(value, total)` as averages over `minutes`: highest first, ties by
/// value.
pub fn top_averages(mut totals: Vec<(String, i64)>, minutes: i64) -> Vec<(String, f64)> {
    totals.retain(|(_, total)| *total > 0);
    totals.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    totals.truncate(TOP_VALUES);
    totals.into_iter().map(|(value, total)| (value, total as f64 / minutes.max(1) as f64)).collect()
}

/// Everything one Insights record says.
#[derive(Debug, Clone, PartialEq)]
pub struct InsightRecord {
    pub series: Series,
    pub shared_event_id: uuid::Uuid,
    pub state: State,
    /// Start: the first anomalous minute; End: the end of the last anomalous minute.
    pub event_time: DateTime<Utc>,
    pub baseline_average: f64,
    pub insight_average: f64,
    pub insight_duration_minutes: i64,
    pub baseline_duration_minutes: i64,
    /// Error-rate insights: the most frequent error code.
    pub error_code: Option<String>,
    pub attributions: Vec<Attribution>,
}

/// A UUID (version 8 layout) from the SHA-256 of `identity`.
fn derived_uuid(identity: &str) -> uuid::Uuid {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, identity.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.as_ref()[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// The sharedEventID of the insight of `series` that starts at `start`.
pub fn shared_event_id(series: &Series, start: DateTime<Utc>) -> uuid::Uuid {
    derived_uuid(&format!(
        "orgtrail-insight\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
        series.account_id,
        series.region,
        series.insight_type,
        series.category,
        series.event_source,
        series.event_name,
        start.timestamp()
    ))
}

fn number(value: f64) -> Value {
    serde_json::Number::from_f64(value).map(Value::Number).unwrap_or(Value::Null)
}

fn values(list: &[(String, f64)]) -> Value {
    Value::Array(
        list.iter().map(|(value, average)| json!({"value": value, "average": number(*average)})).collect(),
    )
}

impl InsightRecord {
    pub fn event_id(&self) -> String {
        derived_uuid(&format!("{}\n{}", self.shared_event_id, self.state.as_str())).to_string()
    }

    /// The record JSON, fields in CloudTrail's order.
    pub fn to_json(&self) -> String {
        let mut details = serde_json::Map::new();
        details.insert("state".into(), self.state.as_str().into());
        details.insert("eventSource".into(), self.series.event_source.clone().into());
        details.insert("eventName".into(), self.series.event_name.clone().into());
        details.insert("insightType".into(), self.series.insight_type.clone().into());
        if let Some(code) = &self.error_code {
            details.insert("errorCode".into(), code.clone().into());
        }
        // Not in CloudTrail's records: the calls the insight was computed on, which insight
        // selectors' EventCategories route by.
        details.insert("eventCategory".into(), self.series.category.clone().into());
        let attributions: Vec<Value> = self
            .attributions
            .iter()
            .map(|a| json!({"attribute": a.attribute, "insight": values(&a.insight), "baseline": values(&a.baseline)}))
            .collect();
        details.insert(
            "insightContext".into(),
            json!({
                "statistics": {
                    "baseline": {"average": number(self.baseline_average)},
                    "insight": {"average": number(self.insight_average)},
                    "insightDuration": self.insight_duration_minutes,
                    "baselineDuration": self.baseline_duration_minutes,
                },
                "attributions": attributions,
            }),
        );
        json!({
            "eventVersion": "1.07",
            "eventTime": self.event_time.to_rfc3339_opts(SecondsFormat::Secs, true),
            "awsRegion": self.series.region,
            "eventID": self.event_id(),
            "eventType": "AwsCloudTrailInsight",
            "recipientAccountId": self.series.account_id,
            "sharedEventID": self.shared_event_id.to_string(),
            "insightDetails": Value::Object(details),
            "eventCategory": "Insight",
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::record::{Category, RecordView};

    #[test]
    fn records_parse_as_insights_with_their_api() {
        let series = Series {
            account_id: "123456789012".into(),
            region: "eu-west-1".into(),
            insight_type: CALL_RATE.into(),
            category: "Data".into(),
            event_source: "dynamodb.amazonaws.com".into(),
            event_name: "PutItem".into(),
        };
        let start = DateTime::parse_from_rfc3339("2026-11-24T10:05:00Z").unwrap().with_timezone(&Utc);
        let record = InsightRecord {
            shared_event_id: shared_event_id(&series, start),
            series,
            state: State::Start,
            event_time: start,
            baseline_average: 0.5,
            insight_average: 40.0,
            insight_duration_minutes: 1,
            baseline_duration_minutes: 10080,
            error_code: None,
            attributions: vec![],
        };
        let view = RecordView::parse(&record.to_json()).unwrap();
        assert_eq!(view.category, Category::Insight);
        assert_eq!(view.event_name, "PutItem");
        assert_eq!(view.event_id, record.event_id());
        assert_eq!(view.insight.unwrap().computed_on, Category::Data);
        let end = InsightRecord { state: State::End, ..record.clone() };
        assert_ne!(end.event_id(), record.event_id());
    }

    #[test]
    fn top_values_are_sorted_and_cut() {
        let totals = (0..8).map(|i| (format!("v{i}"), i64::from(i % 4))).collect();
        let top = top_averages(totals, 2);
        assert_eq!(top.len(), 5);
        assert_eq!(top[0], ("v3".to_owned(), 1.5));
        assert_eq!(top[1], ("v7".to_owned(), 1.5));
        assert!(top.iter().all(|(_, average)| *average > 0.0));
    }
}
