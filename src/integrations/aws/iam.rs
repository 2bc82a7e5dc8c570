//! Creating or updating the collector role in the member's account, writing only what differs.

use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};

use super::iam_policy::{INLINE_POLICY_NAME, RolePlan, parse_document, same_policy};

/// A failed AWS call, said in one line that names what was not allowed.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error("no IAM permission to {what}: {action} ({message})")]
    AccessDenied { what: &'static str, action: &'static str, message: String },
    #[error("cannot reach AWS for {action}: {message}")]
    Unreachable { action: &'static str, message: String },
    #[error("{action} failed: {message}")]
    Failed { action: &'static str, message: String },
}

/// Error codes AWS services use for a missing permission.
fn is_access_denied(code: Option<&str>) -> bool {
    matches!(code, Some("AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation"))
}

/// Maps an SDK error once: AccessDenied names the action; transport failures say AWS was not reached.
pub fn aws_error<E, R>(what: &'static str, action: &'static str, error: SdkError<E, R>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let code = error.code().map(str::to_owned);
    let message = match error.message() {
        Some(message) => message.to_owned(),
        None => aws_sdk_iam::error::DisplayErrorContext(&error).to_string(),
    };
    match error {
        SdkError::ServiceError(_) if is_access_denied(code.as_deref()) => {
            AwsError::AccessDenied { what, action, message }
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => AwsError::Unreachable { action, message },
        SdkError::ConstructionFailure(_) | SdkError::ResponseError(_) | SdkError::ServiceError(_) => {
            AwsError::Failed { action, message: code.map(|c| format!("{c}: {message}")).unwrap_or(message) }
        }
        // SdkError is non-exhaustive.
        _ => AwsError::Failed { action, message },
    }
}

/// One IAM write made (or, in a dry run, that would be made).
pub type Change = String;

/// Makes the role and its inline policy match `plan`; returns the role ARN and the writes made
/// (empty when everything already matched).
pub async fn ensure_role(
    client: &aws_sdk_iam::Client,
    plan: &RolePlan,
) -> Result<(String, Vec<Change>), AwsError> {
    let mut changes = Vec::new();
    let trust = plan.trust_policy();
    let found = match client.get_role().role_name(&plan.role_name).send().await {
        Ok(output) => output.role,
        Err(error) if error.as_service_error().is_some_and(|e| e.is_no_such_entity_exception()) => None,
        Err(error) => return Err(aws_error("read the role", "iam:GetRole", error)),
    };
    let role_arn = match found {
        None => {
            let created = client
                .create_role()
                .role_name(&plan.role_name)
                .assume_role_policy_document(trust.to_string())
                .description("orgtrail collector: lets the aggregator read this account's CloudTrail events")
                .send()
                .await
                .map_err(|e| aws_error("create the role", "iam:CreateRole", e))?;
            changes.push(format!("iam:CreateRole {}", plan.role_name));
            created.role.map(|r| r.arn).unwrap_or_else(|| plan.role_arn())
        }
        Some(role) => {
            let current = role.assume_role_policy_document.as_deref().and_then(parse_document);
            if !current.is_some_and(|current| same_policy(&current, &trust)) {
                client
                    .update_assume_role_policy()
                    .role_name(&plan.role_name)
                    .policy_document(trust.to_string())
                    .send()
                    .await
                    .map_err(|e| {
                        aws_error("update the role's trust policy", "iam:UpdateAssumeRolePolicy", e)
                    })?;
                changes.push(format!("iam:UpdateAssumeRolePolicy {}", plan.role_name));
            }
            role.arn
        }
    };
    let policy = plan.inline_policy();
    let current = match client
        .get_role_policy()
        .role_name(&plan.role_name)
        .policy_name(INLINE_POLICY_NAME)
        .send()
        .await
    {
        Ok(output) => parse_document(&output.policy_document),
        Err(error) if error.as_service_error().is_some_and(|e| e.is_no_such_entity_exception()) => None,
        Err(error) => return Err(aws_error("read the role's policy", "iam:GetRolePolicy", error)),
    };
    if !current.is_some_and(|current| same_policy(&current, &policy)) {
        client
            .put_role_policy()
            .role_name(&plan.role_name)
            .policy_name(INLINE_POLICY_NAME)
            .policy_document(policy.to_string())
            .send()
            .await
            .map_err(|e| aws_error("write the role's policy", "iam:PutRolePolicy", e))?;
        changes.push(format!("iam:PutRolePolicy {} {INLINE_POLICY_NAME}", plan.role_name));
    }
    Ok((role_arn, changes))
}
