//! SNS topics of trails and CloudTrail's delivery notification. A trail's `sns_topic_name` holds
//! a topic name or a topic ARN (CloudTrail accepts both); a bare name is a topic in the trail's
//! home region and owner account.

use serde::Serialize;

/// A trail's topic, resolved to its ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnsTopic {
    arn: String,
}

impl SnsTopic {
    /// The topic a trail's `sns_topic_name` names; None when the trail has none.
    pub fn resolve(setting: &str, home_region: &str, owner_account_id: &str) -> Option<Self> {
        if setting.is_empty() {
            None
        } else if setting.starts_with("arn:") {
            Some(Self { arn: setting.to_owned() })
        } else {
            Some(Self { arn: format!("arn:aws:sns:{home_region}:{owner_account_id}:{setting}") })
        }
    }

    pub fn arn(&self) -> &str {
        &self.arn
    }

    /// The topic's name, the ARN's last part (CloudTrail's deprecated `SnsTopicName` field).
    pub fn name(&self) -> &str {
        self.arn.rsplit(':').next().unwrap_or(&self.arn)
    }

    /// The region the topic lives in (None for an ARN without one).
    pub fn region(&self) -> Option<&str> {
        self.arn.split(':').nth(3).filter(|region| !region.is_empty())
    }
}

/// The message CloudTrail publishes after delivering log files: subscribers (SIEMs reading the
/// topic through SQS) parse exactly this shape, fields in this order.
#[derive(Debug, Serialize)]
struct LogFileNotification<'a> {
    #[serde(rename = "s3Bucket")]
    s3_bucket: &'a str,
    #[serde(rename = "s3ObjectKey")]
    s3_object_key: &'a [&'a str],
}

/// The notification message for log files delivered to `bucket` under `keys`.
pub fn log_file_notification(bucket: &str, keys: &[&str]) -> String {
    // Two strings and a list of strings: serialization cannot fail.
    serde_json::to_string(&LogFileNotification { s3_bucket: bucket, s3_object_key: keys }).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_name_lives_in_the_trails_home_region_and_owner_account() {
        let topic = SnsTopic::resolve("trail-topic", "eu-west-1", "111111111111").unwrap();
        assert_eq!(topic.arn(), "arn:aws:sns:eu-west-1:111111111111:trail-topic");
        assert_eq!(topic.name(), "trail-topic");
        assert_eq!(topic.region(), Some("eu-west-1"));
    }

    #[test]
    fn an_arn_is_taken_as_given_even_in_another_region_or_account() {
        let arn = "arn:aws:sns:us-west-2:222222222222:shared-topic";
        let topic = SnsTopic::resolve(arn, "eu-west-1", "111111111111").unwrap();
        assert_eq!((topic.arn(), topic.name(), topic.region()), (arn, "shared-topic", Some("us-west-2")));
        assert_eq!(SnsTopic::resolve("", "eu-west-1", "111111111111"), None);
        assert_eq!(SnsTopic::resolve("arn:aws:sns:::t", "eu-west-1", "1").unwrap().region(), None);
    }

    #[test]
    fn the_notification_is_cloudtrails_message_byte_for_byte() {
        let key = "AWSLogs/o-aa111bb222/123456789012/CloudTrail/us-east-1/2026/11/24/123456789012_CloudTrail_us-east-1_20261124T1000Z_AbCdEfGh12345678.json.gz";
        let message = log_file_notification("central-bucket", &[key]);
        assert_eq!(message, format!(r#"{{"s3Bucket":"central-bucket","s3ObjectKey":["{key}"]}}"#));
        let parsed: serde_json::Value = serde_json::from_str(&message).unwrap();
        assert_eq!(parsed, serde_json::json!({"s3Bucket": "central-bucket", "s3ObjectKey": [key]}));
    }
}
