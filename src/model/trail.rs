//! A trail and the rules that bind its settings together.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::selectors::{EventSelectors, InsightSelector};
use super::{AccountId, BucketName, FieldError, Region, TrailArn};

/// At most this many tags per trail (CloudTrail's limit).
pub const MAX_TAGS: usize = 50;
/// At most this many trails per account and region (CloudTrail's limit).
pub const MAX_TRAILS_PER_REGION: i64 = 5;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// Everything about a trail that UpdateTrail may change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailSettings {
    pub s3_bucket_name: BucketName,
    pub s3_key_prefix: String,
    pub is_multi_region_trail: bool,
    pub include_global_service_events: bool,
    pub is_organization_trail: bool,
    pub log_file_validation_enabled: bool,
    pub cloud_watch_logs_log_group_arn: String,
    pub cloud_watch_logs_role_arn: String,
    pub kms_key_id: String,
    pub sns_topic_name: String,
    /// Seconds between log files of one (account, region): at least 1, at most 3600.
    pub delivery_interval_seconds: i32,
}

/// CloudTrail delivers about every 5 minutes; orgtrail defaults to a minute.
pub const DEFAULT_DELIVERY_INTERVAL_SECONDS: i32 = 60;

impl TrailSettings {
    /// The rules that span several fields, and the per-field rules of the free-form strings.
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.is_multi_region_trail && !self.include_global_service_events {
            return Err(FieldError::new(
                "include_global_service_events",
                "InvalidParameterCombination: a multi-region trail must include global service events",
            ));
        }
        validate_key_prefix(&self.s3_key_prefix)?;
        let group = &self.cloud_watch_logs_log_group_arn;
        let role = &self.cloud_watch_logs_role_arn;
        if group.is_empty() != role.is_empty() {
            let missing =
                if group.is_empty() { "cloud_watch_logs_log_group_arn" } else { "cloud_watch_logs_role_arn" };
            return Err(FieldError::new(
                missing,
                "cloud_watch_logs_log_group_arn and cloud_watch_logs_role_arn must be set together",
            ));
        }
        if !group.is_empty() {
            super::log_group::LogGroupArn::parse("cloud_watch_logs_log_group_arn", group)?;
        }
        if !role.is_empty() && !role.starts_with("arn:aws:iam::") {
            return Err(FieldError::new(
                "cloud_watch_logs_role_arn",
                format!("must be an IAM role ARN (arn:aws:iam::...), got {role:?}"),
            ));
        }
        if !(1..=3600).contains(&self.delivery_interval_seconds) {
            return Err(FieldError::new(
                "delivery_interval_seconds",
                format!("must be 1 to 3600, got {}", self.delivery_interval_seconds),
            ));
        }
        validate_kms_key_id(&self.kms_key_id)?;
        validate_sns_topic(&self.sns_topic_name)?;
        Ok(())
    }

    /// Whether the trail covers `region` as a place events happen (its own region or, when
    /// multi-region, any).
    pub fn covers_region(&self, home_region: &Region, region: &Region) -> bool {
        self.is_multi_region_trail || home_region == region
    }
}

fn validate_key_prefix(prefix: &str) -> Result<(), FieldError> {
    let field = "s3_key_prefix";
    if prefix.chars().count() > 200 {
        return Err(FieldError::new(field, "at most 200 characters"));
    }
    if prefix.starts_with('/') || prefix.ends_with('/') {
        return Err(FieldError::new(field, format!("must not start or end with '/', got {prefix:?}")));
    }
    if prefix.contains("//") || prefix.chars().any(|c| c.is_control()) {
        return Err(FieldError::new(
            field,
            format!("must not contain '//' or control characters, got {prefix:?}"),
        ));
    }
    Ok(())
}

fn validate_kms_key_id(key: &str) -> Result<(), FieldError> {
    if key.len() > 2048 || key.chars().any(char::is_whitespace) {
        return Err(FieldError::new("kms_key_id", "must be a key id, key ARN, alias name or alias ARN"));
    }
    Ok(())
}

fn validate_sns_topic(topic: &str) -> Result<(), FieldError> {
    let name = topic.rsplit(':').next().unwrap_or(topic);
    let arn_ok = !topic.contains(':') || topic.starts_with("arn:aws:sns:");
    let name_ok =
        name.len() <= 256 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if topic.is_empty() || (arn_ok && name_ok) {
        Ok(())
    } else {
        Err(FieldError::new("sns_topic_name", format!("must be an SNS topic name or ARN, got {topic:?}")))
    }
}

/// Validates a whole tag set (after any merge), CloudTrail's limits.
pub fn validate_tags(tags: &[Tag]) -> Result<(), FieldError> {
    if tags.len() > MAX_TAGS {
        return Err(FieldError::new(
            "tags",
            format!("at most {MAX_TAGS} tags per trail, got {}", tags.len()),
        ));
    }
    let mut keys = std::collections::HashSet::new();
    for (i, tag) in tags.iter().enumerate() {
        if !(1..=128).contains(&tag.key.chars().count()) {
            return Err(FieldError::new(format!("tags[{i}].key"), "must be 1 to 128 characters"));
        }
        if tag.value.chars().count() > 256 {
            return Err(FieldError::new(format!("tags[{i}].value"), "must be at most 256 characters"));
        }
        if tag.key.starts_with("aws:") {
            return Err(FieldError::new(format!("tags[{i}].key"), "the aws: prefix is reserved"));
        }
        if !keys.insert(tag.key.as_str()) {
            return Err(FieldError::new(format!("tags[{i}].key"), format!("duplicate key {:?}", tag.key)));
        }
    }
    Ok(())
}

/// A trail as stored.
#[derive(Debug, Clone)]
pub struct Trail {
    pub id: i64,
    pub arn: TrailArn,
    pub settings: TrailSettings,
    pub tags: Vec<Tag>,
    pub event_selectors: EventSelectors,
    pub insight_selectors: Vec<InsightSelector>,
    pub is_logging: bool,
    pub start_logging_time: Option<DateTime<Utc>>,
    pub stop_logging_time: Option<DateTime<Utc>>,
    /// When log file validation was last switched on; None while it is off.
    pub validation_enabled_time: Option<DateTime<Utc>>,
    pub created_time: DateTime<Utc>,
    pub updated_time: DateTime<Utc>,
}

impl Trail {
    pub fn owner(&self) -> &AccountId {
        &self.arn.owner_account_id
    }

    /// Since when digests are written: validation on and logging, from the later switch-on.
    /// A different value than a chain's start means a new chain (CloudTrail's starting digest).
    pub fn digest_chain_start(&self) -> Option<DateTime<Utc>> {
        if !self.settings.log_file_validation_enabled || !self.is_logging {
            return None;
        }
        let validation = self.validation_enabled_time?;
        let logging = self.start_logging_time?;
        Some(validation.max(logging))
    }
}

/// Settings of a plain trail, for tests: multi-region with global service events, bucket `bucket`.
#[cfg(test)]
pub(crate) fn example_settings() -> TrailSettings {
    TrailSettings {
        s3_bucket_name: BucketName::parse("b", "bucket").unwrap(),
        s3_key_prefix: String::new(),
        is_multi_region_trail: true,
        include_global_service_events: true,
        is_organization_trail: false,
        log_file_validation_enabled: false,
        cloud_watch_logs_log_group_arn: String::new(),
        cloud_watch_logs_role_arn: String::new(),
        kms_key_id: String::new(),
        sns_topic_name: String::new(),
        delivery_interval_seconds: 60,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> TrailSettings {
        example_settings()
    }

    #[test]
    fn multi_region_requires_global_service_events() {
        let mut s = settings();
        s.include_global_service_events = false;
        assert_eq!(s.validate().unwrap_err().field, "include_global_service_events");
        s.is_multi_region_trail = false;
        assert!(s.validate().is_ok());
    }

    #[test]
    fn cloudwatch_fields_go_together() {
        let mut s = settings();
        s.cloud_watch_logs_log_group_arn = "arn:aws:logs:us-east-1:123456789012:log-group:g:*".into();
        assert_eq!(s.validate().unwrap_err().field, "cloud_watch_logs_role_arn");
    }

    #[test]
    fn tags_are_limited() {
        let tag = |k: &str| Tag { key: k.into(), value: "v".into() };
        assert!(validate_tags(&[tag("a"), tag("b")]).is_ok());
        assert_eq!(validate_tags(&[tag("a"), tag("a")]).unwrap_err().field, "tags[1].key");
        assert_eq!(validate_tags(&[tag("")]).unwrap_err().field, "tags[0].key");
    }
}
