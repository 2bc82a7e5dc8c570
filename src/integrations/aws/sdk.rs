//! The server's AWS configuration for AWS Organizations sync: the standard AWS environment
//! (credentials chain, `AWS_ENDPOINT_URL_ORGANIZATIONS`, ...), optionally through an assumed role.

use aws_config::BehaviorVersion;
use aws_config::meta::region::RegionProviderChain;

use super::org_listing::OuId;
use crate::model::FieldError;

/// What a sync needs besides the database.
#[derive(Debug, Clone)]
pub struct AwsSettings {
    /// Credentials (already through `organizations_role_arn` when set), region and endpoints.
    pub sdk: aws_config::SdkConfig,
    /// Role name in every member account; non-empty: newly synced accounts get pull settings for it.
    pub member_role_name: String,
    /// OUs a sync covers when its request names none (the scheduled sync never names any).
    pub default_ou_ids: Vec<OuId>,
}

impl AwsSettings {
    /// Checks `member_role_name` and `org_sync_ou_ids` once, at start.
    pub fn new(
        sdk: aws_config::SdkConfig,
        member_role_name: &str,
        default_ou_ids: &[String],
    ) -> Result<Self, FieldError> {
        validate_role_name(member_role_name)?;
        let mut ou_ids = Vec::with_capacity(default_ou_ids.len());
        for (i, id) in default_ou_ids.iter().enumerate() {
            ou_ids.push(OuId::parse(&format!("org_sync_ou_ids[{i}]"), id)?);
        }
        Ok(Self { sdk, member_role_name: member_role_name.to_owned(), default_ou_ids: ou_ids })
    }

    pub fn organizations(&self) -> aws_sdk_organizations::Client {
        aws_sdk_organizations::Client::new(&self.sdk)
    }
}

/// IAM role names (optionally with a path): 1 to 64 characters of `[A-Za-z0-9+=,.@_-]` per segment.
fn validate_role_name(name: &str) -> Result<(), FieldError> {
    let ok = name.is_empty()
        || name.split('/').all(|segment| {
            (1..=64).contains(&segment.len())
                && segment.chars().all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
        });
    if ok {
        Ok(())
    } else {
        Err(FieldError::new("member_role_name", format!("{name:?} is not an IAM role name")))
    }
}

/// Whether the environment names AWS credentials or endpoints. `orgtrail dev` uses AWS only then,
/// so that a laptop without AWS never reaches for an instance role.
pub fn environment_configured() -> bool {
    const VARIABLES: &[&str] = &[
        "AWS_ACCESS_KEY_ID",
        "AWS_PROFILE",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_ORGANIZATIONS",
    ];
    VARIABLES.iter().any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()))
}

/// Loads the standard AWS configuration (region falls back to `fallback_region`), then assumes
/// `role_arn` when given. Nothing is called yet: credentials resolve on first use.
pub async fn load(fallback_region: &str, role_arn: Option<&str>) -> aws_config::SdkConfig {
    // Environment, then profile, then orgtrail's own region: never the instance metadata service,
    // whose lookups only slow the start of a process that may never sync.
    let region =
        RegionProviderChain::first_try(aws_config::environment::EnvironmentVariableRegionProvider::new())
            .or_else(aws_config::profile::ProfileFileRegionProvider::new())
            .or_else(aws_config::Region::new(fallback_region.to_owned()));
    let base = aws_config::defaults(BehaviorVersion::latest()).region(region).load().await;
    match role_arn.filter(|arn| !arn.is_empty()) {
        None => base,
        Some(arn) => assume_role(base, arn).await,
    }
}

/// The same configuration acting as `role_arn` (credentials cached and refreshed before expiry).
pub async fn assume_role(base: aws_config::SdkConfig, role_arn: &str) -> aws_config::SdkConfig {
    let provider = aws_config::sts::AssumeRoleProvider::builder(role_arn)
        .session_name("orgtrail-org-sync")
        .configure(&base)
        .build()
        .await;
    base.to_builder()
        .credentials_provider(aws_sdk_organizations::config::SharedCredentialsProvider::new(provider))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_are_checked() {
        assert!(validate_role_name("").is_ok());
        assert!(validate_role_name("OrganizationAccountAccessRole").is_ok());
        assert!(validate_role_name("orgtrail/collector").is_ok());
        assert_eq!(validate_role_name("bad name").unwrap_err().field, "member_role_name");
        assert!(validate_role_name(&"x".repeat(65)).is_err());
    }
}
