//! CloudWatch Logs log group ARNs, as trails name their stream destination.

use super::FieldError;

/// `arn:<partition>:logs:<region>:<account>:log-group:<name>[:*]` (CloudTrail's consoles add the
/// trailing `:*`; both forms name the same group).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogGroupArn {
    pub region: String,
    pub account_id: String,
    pub name: String,
}

impl LogGroupArn {
    pub fn parse(field: &str, arn: &str) -> Result<Self, FieldError> {
        let bad = |why: &str| {
            FieldError::new(
                field,
                format!(
                    "must be a CloudWatch Logs log group ARN (arn:aws:logs:REGION:ACCOUNT:log-group:NAME), {why}: {arn:?}"
                ),
            )
        };
        let parts: Vec<&str> = arn.splitn(7, ':').collect();
        let [prefix, partition, service, region, account_id, resource, rest] = parts[..] else {
            return Err(bad("too few parts"));
        };
        if prefix != "arn" || !partition.starts_with("aws") || service != "logs" || resource != "log-group" {
            return Err(bad("not a log group"));
        }
        if region.is_empty()
            || !region.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(bad("bad region"));
        }
        if account_id.len() != 12 || !account_id.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad("bad account id"));
        }
        let name = rest.strip_suffix(":*").unwrap_or(rest);
        let valid_name = (1..=512).contains(&name.len())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || "_-/.#".contains(c));
        if !valid_name {
            return Err(bad("bad log group name (1-512 of a-z A-Z 0-9 _ - / . #)"));
        }
        Ok(Self { region: region.to_owned(), account_id: account_id.to_owned(), name: name.to_owned() })
    }
}

/// CloudTrail's stream for one account and region: `ACCOUNT_CloudTrail_REGION`; organization
/// trails prefix their streams with the organization ID (`o-…_ACCOUNT_CloudTrail_REGION`), which
/// is why CloudTrail's role policy for organization trails grants `log-stream:o-…_*`.
pub fn stream_name(organization_id: Option<&str>, account_id: &str, region: &str) -> String {
    match organization_id {
        Some(org) => format!("{org}_{account_id}_CloudTrail_{region}"),
        None => format!("{account_id}_CloudTrail_{region}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms_and_names_the_field() {
        let with_star =
            LogGroupArn::parse("f", "arn:aws:logs:eu-west-1:123456789012:log-group:CloudTrail/logs:*");
        let plain = LogGroupArn::parse("f", "arn:aws:logs:eu-west-1:123456789012:log-group:CloudTrail/logs");
        assert_eq!(with_star.as_ref().ok(), plain.as_ref().ok());
        let arn = plain.unwrap();
        assert_eq!(
            (arn.region.as_str(), arn.account_id.as_str(), arn.name.as_str()),
            ("eu-west-1", "123456789012", "CloudTrail/logs")
        );
        for bad in [
            "arn:aws:logs:eu-west-1:123456789012:log-group:",
            "arn:aws:s3:eu-west-1:123456789012:log-group:x",
            "arn:aws:logs:eu-west-1:1234:log-group:x",
            "arn:aws:logs:eu-west-1:123456789012:destination:x",
            "arn:aws:logs:eu-west-1:123456789012:log-group:bad name",
        ] {
            let error = LogGroupArn::parse("cloud_watch_logs_log_group_arn", bad).unwrap_err();
            assert_eq!(error.field, "cloud_watch_logs_log_group_arn", "{bad}");
        }
    }

    #[test]
    fn stream_names_follow_cloudtrail() {
        assert_eq!(stream_name(None, "111111111111", "us-east-2"), "111111111111_CloudTrail_us-east-2");
        assert_eq!(
            stream_name(Some("o-exampleorgid"), "222222222222", "us-east-2"),
            "o-exampleorgid_222222222222_CloudTrail_us-east-2"
        );
    }
}
