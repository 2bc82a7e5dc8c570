//! Built-in rule packs, off until enabled: the CIS AWS Foundations Benchmark §4 monitoring set
//! (its CloudWatch Logs metric filters, written as event patterns over the record) and the
//! trail-tampering set.
//!
//! The CIS filters count attempts: they have no `errorCode` term, so a denied `DeleteTrail` still
//! raises 4.5. The tampering rules on trails and buckets want the change to have happened (no
//! `errorCode`), except leaving the organization, where the attempt itself is the signal.

/// One rule of a pack.
#[derive(Debug, Clone, Copy)]
pub struct PackRule {
    /// Stable key within the pack (e.g. `4.1`, `stop-logging`).
    pub key: &'static str,
    pub title: &'static str,
    /// The EventBridge pattern (JSON), see [`super::pattern`].
    pub pattern: &'static str,
}

/// A pack of rules enabled and disabled together.
#[derive(Debug, Clone, Copy)]
pub struct Pack {
    pub name: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    pub rules: &'static [PackRule],
}

/// Every built-in pack.
pub const PACKS: &[Pack] = &[CIS, TAMPERING];

pub fn find(name: &str) -> Option<&'static Pack> {
    PACKS.iter().find(|p| p.name == name)
}

pub const CIS: Pack = Pack {
    name: "cis-aws-foundations-4",
    title: "CIS AWS Foundations Benchmark §4 monitoring",
    description: "The benchmark's 15 CloudWatch metric-filter alarms (4.1 to 4.15) as event patterns",
    rules: &[
        PackRule {
            key: "4.1",
            title: "Unauthorized API calls",
            pattern: r#"{"detail":{"$or":[{"errorCode":[{"suffix":"UnauthorizedOperation"}]},{"errorCode":[{"prefix":"AccessDenied"}]}],
                "sourceIPAddress":[{"anything-but":"delivery.logs.amazonaws.com"}],"eventName":[{"anything-but":"HeadBucket"}]}}"#,
        },
        PackRule {
            key: "4.2",
            title: "Management Console sign-in without MFA",
            pattern: r#"{"detail":{"eventName":["ConsoleLogin"],"additionalEventData":{"MFAUsed":[{"anything-but":"Yes"}]},
                "userIdentity":{"type":["IAMUser"]},"responseElements":{"ConsoleLogin":["Success"]}}}"#,
        },
        PackRule {
            key: "4.3",
            title: "Usage of the root account",
            pattern: r#"{"detail":{"userIdentity":{"type":["Root"],"invokedBy":[{"exists":false}]},
                "eventType":[{"anything-but":"AwsServiceEvent"}]}}"#,
        },
        PackRule {
            key: "4.4",
            title: "IAM policy changes",
            pattern: r#"{"detail":{"eventSource":["iam.amazonaws.com"],"eventName":["DeleteGroupPolicy","DeleteRolePolicy",
                "DeleteUserPolicy","PutGroupPolicy","PutRolePolicy","PutUserPolicy","CreatePolicy","DeletePolicy",
                "CreatePolicyVersion","DeletePolicyVersion","AttachRolePolicy","DetachRolePolicy","AttachUserPolicy",
                "DetachUserPolicy","AttachGroupPolicy","DetachGroupPolicy"]}}"#,
        },
        PackRule {
            key: "4.5",
            title: "CloudTrail configuration changes",
            pattern: r#"{"detail":{"eventName":["CreateTrail","UpdateTrail","DeleteTrail","StartLogging","StopLogging"]}}"#,
        },
        PackRule {
            key: "4.6",
            title: "Management Console authentication failures",
            pattern: r#"{"detail":{"eventName":["ConsoleLogin"],"errorMessage":["Failed authentication"]}}"#,
        },
        PackRule {
            key: "4.7",
            title: "Disabling or scheduled deletion of customer-created CMKs",
            pattern: r#"{"detail":{"eventSource":["kms.amazonaws.com"],"eventName":["DisableKey","ScheduleKeyDeletion"]}}"#,
        },
        PackRule {
            key: "4.8",
            title: "S3 bucket policy changes",
            pattern: r#"{"detail":{"eventSource":["s3.amazonaws.com"],"eventName":["PutBucketAcl","PutBucketPolicy",
                "PutBucketCors","PutBucketLifecycle","PutBucketReplication","DeleteBucketPolicy","DeleteBucketCors",
                "DeleteBucketLifecycle","DeleteBucketReplication"]}}"#,
        },
        PackRule {
            key: "4.9",
            title: "AWS Config configuration changes",
            pattern: r#"{"detail":{"eventSource":["config.amazonaws.com"],"eventName":["StopConfigurationRecorder",
                "DeleteDeliveryChannel","PutDeliveryChannel","PutConfigurationRecorder"]}}"#,
        },
        PackRule {
            key: "4.10",
            title: "Security group changes",
            pattern: r#"{"detail":{"eventName":["AuthorizeSecurityGroupIngress","AuthorizeSecurityGroupEgress",
                "RevokeSecurityGroupIngress","RevokeSecurityGroupEgress","CreateSecurityGroup","DeleteSecurityGroup"]}}"#,
        },
        PackRule {
            key: "4.11",
            title: "Network ACL changes",
            pattern: r#"{"detail":{"eventName":["CreateNetworkAcl","CreateNetworkAclEntry","DeleteNetworkAcl",
                "DeleteNetworkAclEntry","ReplaceNetworkAclEntry","ReplaceNetworkAclAssociation"]}}"#,
        },
        PackRule {
            key: "4.12",
            title: "Changes to network gateways",
            pattern: r#"{"detail":{"eventName":["CreateCustomerGateway","DeleteCustomerGateway","AttachInternetGateway",
                "CreateInternetGateway","DeleteInternetGateway","DetachInternetGateway"]}}"#,
        },
        PackRule {
            key: "4.13",
            title: "Route table changes",
            pattern: r#"{"detail":{"eventSource":["ec2.amazonaws.com"],"eventName":["CreateRoute","CreateRouteTable",
                "ReplaceRoute","ReplaceRouteTableAssociation","DeleteRouteTable","DeleteRoute","DisassociateRouteTable"]}}"#,
        },
        PackRule {
            key: "4.14",
            title: "VPC changes",
            pattern: r#"{"detail":{"eventName":["CreateVpc","DeleteVpc","ModifyVpcAttribute","AcceptVpcPeeringConnection",
                "CreateVpcPeeringConnection","DeleteVpcPeeringConnection","RejectVpcPeeringConnection",
                "AttachClassicLinkVpc","DetachClassicLinkVpc","DisableVpcClassicLink","EnableVpcClassicLink"]}}"#,
        },
        PackRule {
            key: "4.15",
            title: "AWS Organizations changes",
            pattern: r#"{"detail":{"eventSource":["organizations.amazonaws.com"],"eventName":["AcceptHandshake",
                "AttachPolicy","CreateAccount","CreateOrganizationalUnit","CreatePolicy","DeclineHandshake",
                "DeleteOrganization","DeleteOrganizationalUnit","DeletePolicy","DetachPolicy","DisablePolicyType",
                "EnablePolicyType","InviteAccountToOrganization","LeaveOrganization","MoveAccount",
                "RemoveAccountFromOrganization","UpdatePolicy","UpdateOrganizationalUnit"]}}"#,
        },
    ],
};

pub const TAMPERING: Pack = Pack {
    name: "trail-tampering",
    title: "Trail tampering",
    description: "Someone stops, deletes or narrows a trail, changes its bucket's lifecycle or policy, or \
                  tries to leave the organization",
    rules: &[
        PackRule {
            key: "stop-logging",
            title: "CloudTrail logging stopped",
            pattern: r#"{"detail":{"eventSource":["cloudtrail.amazonaws.com"],"eventName":["StopLogging"],"errorCode":[{"exists":false},null]}}"#,
        },
        PackRule {
            key: "delete-trail",
            title: "CloudTrail trail deleted",
            pattern: r#"{"detail":{"eventSource":["cloudtrail.amazonaws.com"],"eventName":["DeleteTrail"],"errorCode":[{"exists":false},null]}}"#,
        },
        PackRule {
            key: "update-trail",
            title: "CloudTrail trail updated",
            pattern: r#"{"detail":{"eventSource":["cloudtrail.amazonaws.com"],"eventName":["UpdateTrail"],"errorCode":[{"exists":false},null]}}"#,
        },
        PackRule {
            key: "put-event-selectors",
            title: "CloudTrail event selectors changed",
            pattern: r#"{"detail":{"eventSource":["cloudtrail.amazonaws.com"],"eventName":["PutEventSelectors"],"errorCode":[{"exists":false},null]}}"#,
        },
        PackRule {
            key: "bucket-lifecycle",
            title: "S3 bucket lifecycle changed",
            pattern: r#"{"detail":{"eventSource":["s3.amazonaws.com"],"eventName":["PutBucketLifecycle","PutBucketLifecycleConfiguration",
                "DeleteBucketLifecycle"],"errorCode":[{"exists":false},null]}}"#,
        },
        PackRule {
            key: "bucket-policy",
            title: "S3 bucket policy changed",
            pattern: r#"{"detail":{"eventSource":["s3.amazonaws.com"],"eventName":["PutBucketPolicy","DeleteBucketPolicy",
                "PutBucketAcl"],"errorCode":[{"exists":false},null]}}"#,
        },
        PackRule {
            key: "leave-organization",
            title: "Attempt to leave the organization",
            pattern: r#"{"detail":{"eventSource":["organizations.amazonaws.com"],"eventName":["LeaveOrganization"]}}"#,
        },
    ],
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::alerts::rules::pattern::EventPattern;

    #[test]
    fn every_pack_rule_compiles_and_cis_has_fifteen() {
        for pack in PACKS {
            for rule in pack.rules {
                EventPattern::parse(rule.pattern)
                    .unwrap_or_else(|e| panic!("{} {}: {e}", pack.name, rule.key));
            }
        }
        assert_eq!(CIS.rules.len(), 15);
    }
}
