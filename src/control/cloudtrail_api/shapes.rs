//! CloudTrail's shapes as they travel: the `Trail` family, event and Insights selectors and tags,
//! read from and written to the services' messages. Output leaves out what CloudTrail leaves out
//! (unset strings, the selector kind not in use, empty operator lists), so answers read back
//! exactly as they were put.

use serde::Deserialize;
use serde_json::Value;

use super::protocol::Object;
use crate::model::sns::SnsTopic;
use crate::proto::v1 as pb;

/// CloudTrail's `Trail` (DescribeTrails, GetTrail).
pub fn trail(trail: &pb::Trail) -> Value {
    trail_fields(trail)
        .value("HomeRegion", trail.home_region.as_str())
        .value("HasCustomEventSelectors", trail.has_custom_event_selectors)
        .value("HasInsightSelectors", trail.has_insight_selectors)
        .build()
}

/// The CreateTrail and UpdateTrail responses: the trail without its region and selector flags.
pub fn trail_response(trail: &pb::Trail) -> Value {
    trail_fields(trail).build()
}

fn trail_fields(trail: &pb::Trail) -> Object {
    let (topic_name, topic_arn) = sns_topic(trail);
    Object::new()
        .value("Name", trail.name.as_str())
        .value("S3BucketName", trail.s3_bucket_name.as_str())
        .text("S3KeyPrefix", &trail.s3_key_prefix)
        .text("SnsTopicName", &topic_name)
        .text("SnsTopicARN", &topic_arn)
        .value("IncludeGlobalServiceEvents", trail.include_global_service_events)
        .value("IsMultiRegionTrail", trail.is_multi_region_trail)
        .value("TrailARN", trail.trail_arn.as_str())
        .value("LogFileValidationEnabled", trail.log_file_validation_enabled)
        .text("CloudWatchLogsLogGroupArn", &trail.cloud_watch_logs_log_group_arn)
        .text("CloudWatchLogsRoleArn", &trail.cloud_watch_logs_role_arn)
        .text("KmsKeyId", &trail.kms_key_id)
        .value("IsOrganizationTrail", trail.is_organization_trail)
}

/// The topic as CloudTrail reports it: the name (deprecated field) and the ARN.
fn sns_topic(trail: &pb::Trail) -> (String, String) {
    SnsTopic::resolve(&trail.sns_topic_name, &trail.home_region, &trail.owner_account_id)
        .map(|topic| (topic.name().to_owned(), topic.arn().to_owned()))
        .unwrap_or_default()
}

/// `{Key, Value}`; CloudTrail's Value is optional.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagInput {
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub value: String,
}

pub fn tags_from(tags: Vec<TagInput>) -> Vec<pb::Tag> {
    tags.into_iter().map(|t| pb::Tag { key: t.key, value: t.value }).collect()
}

pub fn tags(tags: &[pb::Tag]) -> Vec<Value> {
    tags.iter().map(|t| Object::new().value("Key", t.key.as_str()).text("Value", &t.value).build()).collect()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DataResourceInput {
    #[serde(default)]
    pub r#type: String,
    #[serde(default)]
    pub values: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EventSelectorInput {
    #[serde(default)]
    pub read_write_type: String,
    pub include_management_events: Option<bool>,
    #[serde(default)]
    pub data_resources: Vec<DataResourceInput>,
    #[serde(default)]
    pub exclude_management_event_sources: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FieldSelectorInput {
    #[serde(default)]
    pub field: String,
    #[serde(default)]
    pub equals: Vec<String>,
    #[serde(default)]
    pub starts_with: Vec<String>,
    #[serde(default)]
    pub ends_with: Vec<String>,
    #[serde(default)]
    pub not_equals: Vec<String>,
    #[serde(default)]
    pub not_starts_with: Vec<String>,
    #[serde(default)]
    pub not_ends_with: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AdvancedSelectorInput {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub field_selectors: Vec<FieldSelectorInput>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InsightSelectorInput {
    #[serde(default)]
    pub insight_type: String,
    #[serde(default)]
    pub event_categories: Vec<String>,
}

pub fn event_selector_from(s: EventSelectorInput) -> pb::EventSelector {
    pb::EventSelector {
        read_write_type: s.read_write_type,
        include_management_events: s.include_management_events,
        data_resources: s
            .data_resources
            .into_iter()
            .map(|r| pb::DataResource { r#type: r.r#type, values: r.values })
            .collect(),
        exclude_management_event_sources: s.exclude_management_event_sources,
    }
}

pub fn advanced_selector_from(s: AdvancedSelectorInput) -> pb::AdvancedEventSelector {
    pb::AdvancedEventSelector {
        name: s.name,
        field_selectors: s
            .field_selectors
            .into_iter()
            .map(|f| pb::AdvancedFieldSelector {
                field: f.field,
                equals: f.equals,
                starts_with: f.starts_with,
                ends_with: f.ends_with,
                not_equals: f.not_equals,
                not_starts_with: f.not_starts_with,
                not_ends_with: f.not_ends_with,
            })
            .collect(),
    }
}

pub fn insight_selector_from(s: InsightSelectorInput) -> pb::InsightSelector {
    pb::InsightSelector { insight_type: s.insight_type, event_categories: s.event_categories }
}

/// PutEventSelectors' and GetEventSelectors' answer: the kind of selectors in use.
pub fn event_selectors(response: &pb::EventSelectorsResponse) -> Value {
    let mut object = Object::new().value("TrailARN", response.trail_arn.as_str());
    if !response.event_selectors.is_empty() {
        object = object
            .value("EventSelectors", response.event_selectors.iter().map(event_selector).collect::<Vec<_>>());
    }
    if !response.advanced_event_selectors.is_empty() {
        object = object.value(
            "AdvancedEventSelectors",
            response.advanced_event_selectors.iter().map(advanced_selector).collect::<Vec<_>>(),
        );
    }
    object.build()
}

fn event_selector(s: &pb::EventSelector) -> Value {
    let resources: Vec<Value> = s
        .data_resources
        .iter()
        .map(|r| Object::new().value("Type", r.r#type.as_str()).value("Values", r.values.clone()).build())
        .collect();
    Object::new()
        .value("ReadWriteType", s.read_write_type.as_str())
        .value("IncludeManagementEvents", s.include_management_events.unwrap_or(true))
        .value("DataResources", resources)
        .value("ExcludeManagementEventSources", s.exclude_management_event_sources.clone())
        .build()
}

fn advanced_selector(s: &pb::AdvancedEventSelector) -> Value {
    let fields: Vec<Value> = s
        .field_selectors
        .iter()
        .map(|f| {
            Object::new()
                .value("Field", f.field.as_str())
                .list("Equals", &f.equals)
                .list("StartsWith", &f.starts_with)
                .list("EndsWith", &f.ends_with)
                .list("NotEquals", &f.not_equals)
                .list("NotStartsWith", &f.not_starts_with)
                .list("NotEndsWith", &f.not_ends_with)
                .build()
        })
        .collect();
    Object::new().text("Name", &s.name).value("FieldSelectors", fields).build()
}

/// PutInsightSelectors' and GetInsightSelectors' answer.
pub fn insight_selectors(response: &pb::InsightSelectorsResponse) -> Value {
    let selectors: Vec<Value> = response
        .insight_selectors
        .iter()
        .map(|s| {
            Object::new()
                .value("InsightType", s.insight_type.as_str())
                .list("EventCategories", &s.event_categories)
                .build()
        })
        .collect();
    Object::new().value("TrailARN", response.trail_arn.as_str()).value("InsightSelectors", selectors).build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trails_leave_out_unset_strings_and_report_the_topic_arn() {
        let t = pb::Trail {
            name: "t".into(),
            owner_account_id: "111111111111".into(),
            home_region: "us-east-1".into(),
            trail_arn: "arn:aws:cloudtrail:us-east-1:111111111111:trail/t".into(),
            s3_bucket_name: "b".into(),
            sns_topic_name: "topic".into(),
            is_multi_region_trail: true,
            ..Default::default()
        };
        let value = trail(&t);
        assert_eq!(value["SnsTopicARN"], "arn:aws:sns:us-east-1:111111111111:topic");
        assert_eq!(value["SnsTopicName"], "topic");
        assert!(value.get("S3KeyPrefix").is_none());
        assert!(value.get("KmsKeyId").is_none());
        assert_eq!(value["HomeRegion"], "us-east-1");
        let response = trail_response(&t);
        assert!(response.get("HomeRegion").is_none() && response.get("HasInsightSelectors").is_none());
        assert_eq!(response["TrailARN"], t.trail_arn.as_str());
    }

    #[test]
    fn selectors_read_back_as_put() {
        let input = serde_json::json!([{"ReadWriteType": "ReadOnly", "IncludeManagementEvents": false,
            "DataResources": [{"Type": "AWS::S3::Object", "Values": ["arn:aws:s3:::b/"]}],
            "ExcludeManagementEventSources": ["kms.amazonaws.com"]}]);
        let parsed: Vec<EventSelectorInput> = serde_json::from_value(input.clone()).unwrap();
        let response = pb::EventSelectorsResponse {
            trail_arn: "arn".into(),
            event_selectors: parsed.into_iter().map(event_selector_from).collect(),
            ..Default::default()
        };
        let out = event_selectors(&response);
        assert_eq!(out["EventSelectors"], input);
        assert!(out.get("AdvancedEventSelectors").is_none());

        let advanced = serde_json::json!([{"Name": "n", "FieldSelectors": [
            {"Field": "eventCategory", "Equals": ["Data"]}, {"Field": "resources.ARN", "StartsWith": ["arn:aws:s3:::b/"]}]}]);
        let parsed: Vec<AdvancedSelectorInput> = serde_json::from_value(advanced.clone()).unwrap();
        let response = pb::EventSelectorsResponse {
            trail_arn: "arn".into(),
            advanced_event_selectors: parsed.into_iter().map(advanced_selector_from).collect(),
            ..Default::default()
        };
        let out = event_selectors(&response);
        assert_eq!(out["AdvancedEventSelectors"], advanced);
        assert!(out.get("EventSelectors").is_none());
    }
}
