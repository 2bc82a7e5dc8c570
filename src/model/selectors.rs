//! Event and Insights selectors in CloudTrail's JSON shape (what PutEventSelectors takes and
//! GetEventSelectors returns), with CloudTrail's validation rules for trails.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::FieldError;

/// At most this many basic event selectors per trail.
pub const MAX_BASIC_SELECTORS: usize = 5;
/// At most this many data resource values (not counting "all resources" values) per trail.
pub const MAX_DATA_RESOURCE_VALUES: usize = 250;
/// At most this many condition values across all advanced selectors of a trail.
pub const MAX_ADVANCED_VALUES: usize = 500;

const BASIC_DATA_RESOURCE_TYPES: &[&str] =
    &["AWS::S3::Object", "AWS::Lambda::Function", "AWS::DynamoDB::Table"];
const EXCLUDABLE_SOURCES: &[&str] = &["kms.amazonaws.com", "rdsdata.amazonaws.com"];
const NETWORK_ACTIVITY_SOURCES: &[&str] =
    &["cloudtrail.amazonaws.com", "ec2.amazonaws.com", "kms.amazonaws.com", "secretsmanager.amazonaws.com"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ReadWriteType {
    ReadOnly,
    WriteOnly,
    #[default]
    All,
}

impl ReadWriteType {
    pub fn parse(field: &str, value: &str) -> Result<Self, FieldError> {
        match value {
            "" | "All" => Ok(Self::All),
            "ReadOnly" => Ok(Self::ReadOnly),
            "WriteOnly" => Ok(Self::WriteOnly),
            other => {
                Err(FieldError::new(field, format!("must be ReadOnly, WriteOnly or All, got {other:?}")))
            }
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadOnly => "ReadOnly",
            Self::WriteOnly => "WriteOnly",
            Self::All => "All",
        }
    }
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DataResource {
    #[serde(rename = "Type")]
    pub resource_type: String,
    #[serde(default)]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EventSelector {
    #[serde(default)]
    pub read_write_type: ReadWriteType,
    #[serde(default = "default_true")]
    pub include_management_events: bool,
    #[serde(default)]
    pub data_resources: Vec<DataResource>,
    #[serde(default)]
    pub exclude_management_event_sources: Vec<String>,
}

impl EventSelector {
    /// CloudTrail's selector for a trail created without any: all management events.
    pub fn default_management() -> Self {
        Self {
            read_write_type: ReadWriteType::All,
            include_management_events: true,
            data_resources: Vec::new(),
            exclude_management_event_sources: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct AdvancedFieldSelector {
    pub field: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub equals: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub starts_with: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ends_with: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_equals: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_starts_with: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ends_with: Vec<String>,
}

impl AdvancedFieldSelector {
    fn operators(&self) -> [(&'static str, &Vec<String>); 6] {
        [
            ("equals", &self.equals),
            ("starts_with", &self.starts_with),
            ("ends_with", &self.ends_with),
            ("not_equals", &self.not_equals),
            ("not_starts_with", &self.not_starts_with),
            ("not_ends_with", &self.not_ends_with),
        ]
    }

    fn value_count(&self) -> usize {
        self.operators().iter().map(|(_, values)| values.len()).sum()
    }

    fn only_operators(&self, allowed: &[&str]) -> Option<&'static str> {
        self.operators()
            .into_iter()
            .find(|(name, values)| !values.is_empty() && !allowed.contains(name))
            .map(|(name, _)| name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct AdvancedEventSelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub field_selectors: Vec<AdvancedFieldSelector>,
}

/// The selectors of a trail: CloudTrail's default, basic, or advanced (never both kinds).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum EventSelectors {
    /// No custom selectors: all read and write management events.
    #[default]
    Default,
    Basic(Vec<EventSelector>),
    Advanced(Vec<AdvancedEventSelector>),
}

impl EventSelectors {
    /// Validates a PutEventSelectors input exactly as CloudTrail does for trails.
    pub fn new(basic: Vec<EventSelector>, advanced: Vec<AdvancedEventSelector>) -> Result<Self, FieldError> {
        match (basic.is_empty(), advanced.is_empty()) {
            (false, false) => Err(FieldError::new(
                "advanced_event_selectors",
                "specify either event_selectors or advanced_event_selectors, not both",
            )),
            (true, true) => Err(FieldError::new(
                "event_selectors",
                "specify event_selectors or advanced_event_selectors (at least one selector)",
            )),
            (false, true) => {
                validate_basic(&basic)?;
                Ok(Self::Basic(basic))
            }
            (true, false) => {
                validate_advanced(&advanced)?;
                Ok(Self::Advanced(advanced))
            }
        }
    }

    pub fn is_custom(&self) -> bool {
        !matches!(self, Self::Default)
    }

    /// The basic selectors to report: the default selector for a trail without custom ones.
    pub fn reported_basic(&self) -> Vec<EventSelector> {
        match self {
            Self::Default => vec![EventSelector::default_management()],
            Self::Basic(selectors) => selectors.clone(),
            Self::Advanced(_) => Vec::new(),
        }
    }

    pub fn reported_advanced(&self) -> Vec<AdvancedEventSelector> {
        match self {
            Self::Advanced(selectors) => selectors.clone(),
            Self::Default | Self::Basic(_) => Vec::new(),
        }
    }
}

pub(crate) fn is_all_resources_value(value: &str) -> bool {
    matches!(value, "arn:aws:s3" | "arn:aws:s3:::" | "arn:aws:lambda" | "arn:aws:dynamodb")
}

fn validate_basic(selectors: &[EventSelector]) -> Result<(), FieldError> {
    if selectors.len() > MAX_BASIC_SELECTORS {
        return Err(FieldError::new(
            "event_selectors",
            format!("at most {MAX_BASIC_SELECTORS} event selectors per trail, got {}", selectors.len()),
        ));
    }
    let mut specific_values = 0usize;
    for (i, selector) in selectors.iter().enumerate() {
        for (j, source) in selector.exclude_management_event_sources.iter().enumerate() {
            if !EXCLUDABLE_SOURCES.contains(&source.as_str()) {
                return Err(FieldError::new(
                    format!("event_selectors[{i}].exclude_management_event_sources[{j}]"),
                    format!(
                        "only kms.amazonaws.com and rdsdata.amazonaws.com can be excluded, got {source:?}"
                    ),
                ));
            }
        }
        for (j, resource) in selector.data_resources.iter().enumerate() {
            let field = format!("event_selectors[{i}].data_resources[{j}]");
            let required_prefix = match resource.resource_type.as_str() {
                "AWS::S3::Object" => "arn:aws:s3",
                "AWS::Lambda::Function" => "arn:aws:lambda",
                "AWS::DynamoDB::Table" => "arn:aws:dynamodb",
                other => {
                    return Err(FieldError::new(
                        format!("{field}.type"),
                        format!(
                            "basic selectors support only {}; use advanced event selectors for {other:?}",
                            BASIC_DATA_RESOURCE_TYPES.join(", ")
                        ),
                    ));
                }
            };
            if resource.values.is_empty() {
                return Err(FieldError::new(
                    format!("{field}.values"),
                    "at least one ARN or ARN prefix is required",
                ));
            }
            for (k, value) in resource.values.iter().enumerate() {
                if !value.starts_with(required_prefix) {
                    return Err(FieldError::new(
                        format!("{field}.values[{k}]"),
                        format!("{value:?} is not an ARN of type {}", resource.resource_type),
                    ));
                }
                if !is_all_resources_value(value) {
                    specific_values += 1;
                }
            }
        }
    }
    if specific_values > MAX_DATA_RESOURCE_VALUES {
        return Err(FieldError::new(
            "event_selectors",
            format!("at most {MAX_DATA_RESOURCE_VALUES} data resources per trail, got {specific_values}"),
        ));
    }
    Ok(())
}

const KNOWN_FIELDS: &[&str] = &[
    "eventCategory",
    "eventSource",
    "eventName",
    "eventType",
    "readOnly",
    "resources.type",
    "resources.ARN",
    "sessionCredentialFromConsole",
    "userIdentity.arn",
    "errorCode",
    "vpcEndpointId",
];

fn fields_allowed_for(category: &str) -> &'static [&'static str] {
    match category {
        "Management" => &["eventCategory", "readOnly", "eventSource"],
        "Data" => &[
            "eventCategory",
            "resources.type",
            "readOnly",
            "eventName",
            "resources.ARN",
            "eventSource",
            "eventType",
            "sessionCredentialFromConsole",
            "userIdentity.arn",
        ],
        _ => &["eventCategory", "eventSource", "eventName", "errorCode", "vpcEndpointId", "userIdentity.arn"],
    }
}

fn validate_advanced(selectors: &[AdvancedEventSelector]) -> Result<(), FieldError> {
    let total: usize = selectors.iter().flat_map(|s| &s.field_selectors).map(|f| f.value_count()).sum();
    if total > MAX_ADVANCED_VALUES {
        return Err(FieldError::new(
            "advanced_event_selectors",
            format!("at most {MAX_ADVANCED_VALUES} condition values per trail, got {total}"),
        ));
    }
    for (i, selector) in selectors.iter().enumerate() {
        validate_advanced_selector(i, selector)?;
    }
    Ok(())
}

fn validate_advanced_selector(i: usize, selector: &AdvancedEventSelector) -> Result<(), FieldError> {
    let at = |suffix: &str| format!("advanced_event_selectors[{i}]{suffix}");
    if selector.name.as_ref().is_some_and(|n| n.chars().count() > 1000) {
        return Err(FieldError::new(at(".name"), "at most 1000 characters"));
    }
    if selector.field_selectors.is_empty() {
        return Err(FieldError::new(at(".field_selectors"), "at least one field selector is required"));
    }
    let mut seen = HashSet::new();
    for (j, field_selector) in selector.field_selectors.iter().enumerate() {
        let field = &field_selector.field;
        let here = at(&format!(".field_selectors[{j}]"));
        if !KNOWN_FIELDS.contains(&field.as_str()) {
            return Err(FieldError::new(
                format!("{here}.field"),
                format!("unknown field {field:?}; valid fields are {}", KNOWN_FIELDS.join(", ")),
            ));
        }
        if !seen.insert(field.as_str()) {
            return Err(FieldError::new(
                format!("{here}.field"),
                format!("field {field:?} appears more than once"),
            ));
        }
        if field_selector.value_count() == 0 {
            return Err(FieldError::new(
                here,
                "at least one operator (equals, starts_with, ...) with a value is required",
            ));
        }
        for (operator, values) in field_selector.operators() {
            for (k, value) in values.iter().enumerate() {
                if value.is_empty() || value.chars().count() > 2048 {
                    return Err(FieldError::new(
                        format!("{here}.{operator}[{k}]"),
                        "values must be 1 to 2048 characters",
                    ));
                }
            }
        }
        let equals_only = matches!(field.as_str(), "eventCategory" | "readOnly" | "resources.type");
        if equals_only && let Some(op) = field_selector.only_operators(&["equals"]) {
            return Err(FieldError::new(
                format!("{here}.{op}"),
                format!("field {field:?} supports only equals"),
            ));
        }
        if field == "sessionCredentialFromConsole"
            && let Some(op) = field_selector.only_operators(&["equals", "not_equals"])
        {
            return Err(FieldError::new(
                format!("{here}.{op}"),
                format!("field {field:?} supports only equals and not_equals"),
            ));
        }
        if field == "readOnly"
            && let Some(bad) = field_selector.equals.iter().find(|v| *v != "true" && *v != "false")
        {
            return Err(FieldError::new(
                format!("{here}.equals"),
                format!("readOnly takes \"true\" or \"false\", got {bad:?}"),
            ));
        }
        if field == "resources.ARN" {
            let exact = field_selector.equals.iter().chain(&field_selector.not_equals);
            if let Some(bad) = exact.into_iter().find(|v| !v.starts_with("arn:")) {
                return Err(FieldError::new(
                    format!("{here}.equals"),
                    format!("equals/not_equals on resources.ARN take full ARNs, got {bad:?}"),
                ));
            }
        }
    }

    // eventCategory decides which other fields make sense.
    let category_at = selector.field_selectors.iter().position(|f| f.field == "eventCategory");
    let Some(category_index) = category_at else {
        return Err(FieldError::new(at(".field_selectors"), "an eventCategory field selector is required"));
    };
    let category_selector = &selector.field_selectors[category_index];
    let category_field = at(&format!(".field_selectors[{category_index}].equals"));
    let [category] = category_selector.equals.as_slice() else {
        return Err(FieldError::new(category_field, "eventCategory takes exactly one value"));
    };
    if !matches!(category.as_str(), "Management" | "Data" | "NetworkActivity") {
        return Err(FieldError::new(
            category_field,
            format!("eventCategory must be Management, Data or NetworkActivity on trails, got {category:?}"),
        ));
    }
    let allowed = fields_allowed_for(category);
    for (j, field_selector) in selector.field_selectors.iter().enumerate() {
        if !allowed.contains(&field_selector.field.as_str()) {
            return Err(FieldError::new(
                at(&format!(".field_selectors[{j}].field")),
                format!("field {:?} cannot be used with eventCategory {category}", field_selector.field),
            ));
        }
    }
    let find = |name: &str| selector.field_selectors.iter().enumerate().find(|(_, f)| f.field == name);
    match category.as_str() {
        "Management" => {
            if let Some((j, source)) = find("eventSource") {
                let bad = source.only_operators(&["not_equals"]).map(|op| (op, None)).or_else(|| {
                    source
                        .not_equals
                        .iter()
                        .find(|v| !EXCLUDABLE_SOURCES.contains(&v.as_str()))
                        .map(|v| ("not_equals", Some(v.clone())))
                });
                if let Some((op, value)) = bad {
                    return Err(FieldError::new(
                        at(&format!(".field_selectors[{j}].{op}")),
                        format!(
                            "on management selectors eventSource supports only not_equals kms.amazonaws.com or rdsdata.amazonaws.com{}",
                            value.map(|v| format!(", got {v:?}")).unwrap_or_default()
                        ),
                    ));
                }
            }
        }
        "Data" => {
            let Some((j, resource_type)) = find("resources.type") else {
                return Err(FieldError::new(
                    at(".field_selectors"),
                    "data selectors require a resources.type field selector",
                ));
            };
            if resource_type.equals.len() != 1 {
                return Err(FieldError::new(
                    at(&format!(".field_selectors[{j}].equals")),
                    "resources.type takes exactly one value per selector",
                ));
            }
            if !resource_type.equals[0].starts_with("AWS::") {
                return Err(FieldError::new(
                    at(&format!(".field_selectors[{j}].equals")),
                    format!("{:?} is not a resource type (AWS::Service::Type)", resource_type.equals[0]),
                ));
            }
        }
        _ => {
            let Some((j, source)) = find("eventSource") else {
                return Err(FieldError::new(
                    at(".field_selectors"),
                    "network activity selectors require an eventSource field selector",
                ));
            };
            let sources_ok = source.only_operators(&["equals"]).is_none()
                && source.equals.len() == 1
                && NETWORK_ACTIVITY_SOURCES.contains(&source.equals[0].as_str());
            if !sources_ok {
                return Err(FieldError::new(
                    at(&format!(".field_selectors[{j}].equals")),
                    format!(
                        "network activity eventSource takes one of {} (equals)",
                        NETWORK_ACTIVITY_SOURCES.join(", ")
                    ),
                ));
            }
            if let Some((j, error_code)) = find("errorCode")
                && (error_code.only_operators(&["equals"]).is_some()
                    || error_code.equals.iter().any(|v| v != "VpceAccessDenied"))
            {
                return Err(FieldError::new(
                    at(&format!(".field_selectors[{j}].equals")),
                    "errorCode supports only equals \"VpceAccessDenied\"",
                ));
            }
        }
    }
    Ok(())
}

/// CloudTrail Insights types.
pub const INSIGHT_TYPES: &[&str] = &["ApiCallRateInsight", "ApiErrorRateInsight"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InsightSelector {
    pub insight_type: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_categories: Vec<String>,
}

/// Validates a PutInsightSelectors input; fills the default category (Management).
pub fn validate_insight_selectors(
    selectors: Vec<InsightSelector>,
) -> Result<Vec<InsightSelector>, FieldError> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(selectors.len());
    for (i, mut selector) in selectors.into_iter().enumerate() {
        if !INSIGHT_TYPES.contains(&selector.insight_type.as_str()) {
            return Err(FieldError::new(
                format!("insight_selectors[{i}].insight_type"),
                format!("must be ApiCallRateInsight or ApiErrorRateInsight, got {:?}", selector.insight_type),
            ));
        }
        if !seen.insert(selector.insight_type.clone()) {
            return Err(FieldError::new(
                format!("insight_selectors[{i}].insight_type"),
                format!("{} appears more than once", selector.insight_type),
            ));
        }
        for (j, category) in selector.event_categories.iter().enumerate() {
            if category != "Management" && category != "Data" {
                return Err(FieldError::new(
                    format!("insight_selectors[{i}].event_categories[{j}]"),
                    format!("must be Management or Data, got {category:?}"),
                ));
            }
        }
        if selector.event_categories.is_empty() {
            selector.event_categories.push("Management".to_owned());
        }
        selector.event_categories.dedup();
        out.push(selector);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, equals: &[&str]) -> AdvancedFieldSelector {
        AdvancedFieldSelector {
            field: name.to_owned(),
            equals: equals.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn selector(fields: Vec<AdvancedFieldSelector>) -> AdvancedEventSelector {
        AdvancedEventSelector { name: None, field_selectors: fields }
    }

    #[test]
    fn both_kinds_are_rejected() {
        let err = EventSelectors::new(
            vec![EventSelector::default_management()],
            vec![selector(vec![field("eventCategory", &["Management"])])],
        )
        .unwrap_err();
        assert_eq!(err.field, "advanced_event_selectors");
    }

    #[test]
    fn six_basic_selectors_are_too_many() {
        let err = EventSelectors::new(vec![EventSelector::default_management(); 6], vec![]).unwrap_err();
        assert_eq!(err.field, "event_selectors");
        assert!(err.message.contains("at most 5"));
    }

    #[test]
    fn unknown_advanced_field_is_named() {
        let err = EventSelectors::new(
            vec![],
            vec![selector(vec![field("eventCategory", &["Management"]), field("eventColour", &["x"])])],
        )
        .unwrap_err();
        assert_eq!(err.field, "advanced_event_selectors[0].field_selectors[1].field");
    }

    #[test]
    fn data_selector_needs_one_resource_type() {
        let err =
            EventSelectors::new(vec![], vec![selector(vec![field("eventCategory", &["Data"])])]).unwrap_err();
        assert!(err.message.contains("resources.type"));
        let ok = EventSelectors::new(
            vec![],
            vec![selector(vec![
                field("eventCategory", &["Data"]),
                field("resources.type", &["AWS::S3::Object"]),
            ])],
        );
        assert!(ok.is_ok());
    }

    #[test]
    fn too_many_condition_values() {
        let values: Vec<String> = (0..501).map(|i| format!("arn:aws:s3:::b{i}/")).collect();
        let arn = AdvancedFieldSelector {
            field: "resources.ARN".into(),
            starts_with: values,
            ..Default::default()
        };
        let err = EventSelectors::new(
            vec![],
            vec![selector(vec![
                field("eventCategory", &["Data"]),
                field("resources.type", &["AWS::S3::Object"]),
                arn,
            ])],
        )
        .unwrap_err();
        assert!(err.message.contains("at most 500"), "{err}");
    }

    #[test]
    fn cloudtrail_json_shape_round_trips() {
        let json = r#"[{"Name":"s3","FieldSelectors":[{"Field":"eventCategory","Equals":["Data"]},{"Field":"resources.type","Equals":["AWS::S3::Object"]},{"Field":"resources.ARN","NotStartsWith":["arn:aws:s3:::a/"]}]}]"#;
        let parsed: Vec<AdvancedEventSelector> = serde_json::from_str(json).unwrap();
        assert_eq!(serde_json::to_string(&parsed).unwrap(), json);
        let basic: Vec<EventSelector> = serde_json::from_str(r#"[{"ReadWriteType":"ReadOnly"}]"#).unwrap();
        assert!(basic[0].include_management_events);
        assert_eq!(basic[0].read_write_type, ReadWriteType::ReadOnly);
    }
}

/// Selector matching (CloudTrail's semantics, spec §4).
pub mod matching {
    use super::{AdvancedEventSelector, AdvancedFieldSelector, EventSelector, EventSelectors, ReadWriteType};
    use crate::model::record::{Category, RecordView};

    fn read_write_accepts(kind: ReadWriteType, read_only: Option<bool>) -> bool {
        match kind {
            ReadWriteType::All => true,
            ReadWriteType::ReadOnly => read_only == Some(true),
            ReadWriteType::WriteOnly => read_only != Some(true),
        }
    }

    /// A basic data resource value matches an ARN: S3 values and "all" values are prefixes; a
    /// specific Lambda function or DynamoDB table ARN must match exactly.
    fn data_value_matches(resource_type: &str, value: &str, arn: &str) -> bool {
        match resource_type {
            "AWS::S3::Object" => arn.starts_with(value),
            _ if matches!(value, "arn:aws:lambda" | "arn:aws:dynamodb") => arn.starts_with(value),
            _ => arn == value,
        }
    }

    fn basic_matches(selector: &EventSelector, record: &RecordView) -> bool {
        if !read_write_accepts(selector.read_write_type, record.read_only) {
            return false;
        }
        match record.category {
            Category::Management | Category::ActivityAuditLog => {
                selector.include_management_events
                    && !selector.exclude_management_event_sources.contains(&record.event_source)
            }
            Category::Data => selector.data_resources.iter().any(|resource| {
                record.resources.iter().any(|(resource_type, arn)| {
                    *resource_type == resource.resource_type
                        && resource.values.iter().any(|v| data_value_matches(resource_type, v, arn))
                })
            }),
            Category::NetworkActivity | Category::Insight => false,
        }
    }

    fn field_matches(field: &AdvancedFieldSelector, record: &RecordView) -> bool {
        let mut values = record.field_values(&field.field);
        if field.field == "eventCategory" && record.category == Category::ActivityAuditLog {
            // Channel events count as management events on trails.
            values = vec!["Management"];
        }
        let any = |candidates: &[String], test: &dyn Fn(&str, &str) -> bool| {
            values.iter().any(|v| candidates.iter().any(|c| test(v, c)))
        };
        let eq = |v: &str, c: &str| v == c;
        let starts = |v: &str, c: &str| v.starts_with(c);
        let ends = |v: &str, c: &str| v.ends_with(c);
        (field.equals.is_empty() || any(&field.equals, &eq))
            && (field.starts_with.is_empty() || any(&field.starts_with, &starts))
            && (field.ends_with.is_empty() || any(&field.ends_with, &ends))
            && !any(&field.not_equals, &eq)
            && !any(&field.not_starts_with, &starts)
            && !any(&field.not_ends_with, &ends)
    }

    fn advanced_matches(selector: &AdvancedEventSelector, record: &RecordView) -> bool {
        selector.field_selectors.iter().all(|field| field_matches(field, record))
    }

    /// Whether a trail with these selectors logs the record.
    pub fn selects(selectors: &EventSelectors, record: &RecordView) -> bool {
        match selectors {
            EventSelectors::Default => {
                matches!(record.category, Category::Management | Category::ActivityAuditLog)
            }
            EventSelectors::Basic(list) => list.iter().any(|s| basic_matches(s, record)),
            EventSelectors::Advanced(list) => list.iter().any(|s| advanced_matches(s, record)),
        }
    }
}
