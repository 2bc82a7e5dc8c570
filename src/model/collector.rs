//! How orgtrail reaches a member account in AWS to pull its events (the pull collectors'
//! settings), validated once here.

use serde::{Deserialize, Serialize};

use super::{BucketName, FieldError, Region};

/// Pull sources.
pub const SOURCE_LOOKUP: &str = "aws_lookup";
pub const SOURCE_S3_TRAIL: &str = "aws_s3_trail";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CollectorSettings {
    /// The role orgtrail assumes in the member account; empty: nothing is pulled.
    pub role_arn: String,
    /// The ExternalId the role's trust policy requires.
    pub external_id: String,
    /// Pull management events with CloudTrail LookupEvents.
    pub lookup_events: bool,
    /// The member's own CloudTrail bucket to read; empty: not read.
    pub trail_bucket: String,
    /// Key prefix of the member's trail in that bucket.
    pub trail_prefix: String,
    /// Regions to pull; empty: the organization's regions.
    pub regions: Vec<String>,
}

impl CollectorSettings {
    /// Whether anything is pulled for the account.
    pub fn pulls(&self) -> bool {
        !self.role_arn.is_empty() && (self.lookup_events || !self.trail_bucket.is_empty())
    }

    /// Field paths are relative to the settings (`collector.` is prefixed by callers).
    pub fn validate(&self, account_id: &str) -> Result<(), FieldError> {
        if !self.role_arn.is_empty() {
            let role = role_account(&self.role_arn).ok_or_else(|| {
                FieldError::new(
                    "collector.role_arn",
                    "must be an IAM role ARN: arn:aws:iam::ACCOUNT:role/NAME",
                )
            })?;
            if role != account_id {
                return Err(FieldError::new(
                    "collector.role_arn",
                    format!("the role must be in the member account {account_id}, not {role}"),
                ));
            }
        } else if self.lookup_events || !self.trail_bucket.is_empty() {
            return Err(FieldError::new("collector.role_arn", "is required to pull events"));
        }
        // IAM's ExternalId: 2 to 1224 characters of [\w+=,.@:/-].
        if !self.external_id.is_empty()
            && (!(2..=1224).contains(&self.external_id.len())
                || !self.external_id.chars().all(|c| c.is_ascii_alphanumeric() || "_+=,.@:/-".contains(c)))
        {
            return Err(FieldError::new(
                "collector.external_id",
                "must be 2 to 1224 characters of letters, digits and _+=,.@:/-",
            ));
        }
        if !self.trail_bucket.is_empty() {
            BucketName::parse("collector.trail_bucket", &self.trail_bucket)?;
        }
        if self.trail_prefix.starts_with('/') || self.trail_prefix.len() > 200 {
            return Err(FieldError::new(
                "collector.trail_prefix",
                "must not start with '/' and is at most 200 characters",
            ));
        }
        for (i, region) in self.regions.iter().enumerate() {
            Region::parse(&format!("collector.regions[{i}]"), region)?;
        }
        Ok(())
    }
}

/// The account of `arn:aws[-partition]:iam::ACCOUNT:role/NAME`.
fn role_account(arn: &str) -> Option<&str> {
    let rest = arn.strip_prefix("arn:")?;
    let (partition, rest) = rest.split_once(':')?;
    if !partition.starts_with("aws") {
        return None;
    }
    let rest = rest.strip_prefix("iam::")?;
    let (account, resource) = rest.split_once(':')?;
    let name = resource.strip_prefix("role/")?;
    (account.len() == 12 && account.chars().all(|c| c.is_ascii_digit()) && !name.is_empty())
        .then_some(account)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_name_the_bad_field() {
        let ok = CollectorSettings {
            role_arn: "arn:aws:iam::222222222222:role/path/orgtrail-collector".into(),
            external_id: "o-abc:123".into(),
            lookup_events: true,
            ..Default::default()
        };
        assert_eq!(ok.validate("222222222222"), Ok(()));
        assert!(ok.pulls());
        let other = ok.validate("333333333333").unwrap_err();
        assert_eq!(other.field, "collector.role_arn");
        let no_role = CollectorSettings { lookup_events: true, ..Default::default() };
        assert_eq!(no_role.validate("222222222222").unwrap_err().field, "collector.role_arn");
        let bad_region = CollectorSettings { regions: vec!["Moon 1".into()], ..ok.clone() };
        assert_eq!(bad_region.validate("222222222222").unwrap_err().field, "collector.regions[0]");
        let bad_bucket = CollectorSettings { trail_bucket: "No_Such".into(), ..ok };
        assert_eq!(bad_bucket.validate("222222222222").unwrap_err().field, "collector.trail_bucket");
        assert!(!CollectorSettings::default().pulls());
    }
}
