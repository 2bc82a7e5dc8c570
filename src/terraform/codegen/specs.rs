//! The resources and data sources of the provider, and the proto messages each is made of.

use super::{Spec, SpecKind};

/// Everything the provider exposes.
pub const SPECS: &[Spec] = &[
    Spec {
        name: "orgtrail_trail",
        kind: SpecKind::Resource,
        description: "A trail: delivers the events it selects, for the accounts and regions it covers, to an \
            S3 bucket in CloudTrail's layout. Import with the trail's name or ARN.",
        state: &[
            "orgtrail.v1.Trail",
            "orgtrail.v1.EventSelectorsResponse",
            "orgtrail.v1.InsightSelectorsResponse",
        ],
        create: "orgtrail.v1.CreateTrailRequest",
        update: &[
            "orgtrail.v1.UpdateTrailRequest",
            "orgtrail.v1.PutEventSelectorsRequest",
            "orgtrail.v1.PutInsightSelectorsRequest",
            "orgtrail.v1.AddTagsRequest",
        ],
        id_from: "trail_arn",
        identity: "name",
        extra: &[(
            "logging",
            "Whether the trail delivers events (StartLogging / StopLogging). Default: true.",
            "true",
        )],
    },
    Spec {
        name: "orgtrail_account",
        kind: SpecKind::Resource,
        description: "A member account of the organization. Destroying it deregisters the account (its \
            delivered data stays). Import with the 12-digit account id.",
        state: &["orgtrail.v1.Account"],
        create: "orgtrail.v1.RegisterAccountRequest",
        update: &["orgtrail.v1.UpdateAccountRequest"],
        id_from: "account_id",
        identity: "account_id",
        extra: &[],
    },
    Spec {
        name: "orgtrail_token",
        kind: SpecKind::Resource,
        description: "An API token. Its secret is known only at creation and kept in the state (sensitive); \
            destroying the resource revokes the token. Every change replaces it. Import with the token id \
            (the secret is then unknown).",
        state: &["orgtrail.v1.Token", "orgtrail.v1.CreateTokenResponse"],
        create: "orgtrail.v1.CreateTokenRequest",
        update: &[],
        id_from: "token_id",
        identity: "token_id",
        extra: &[],
    },
    Spec {
        name: "orgtrail_alert_rule",
        kind: SpecKind::Resource,
        description: "An alert rule: an EventBridge event pattern or a Sigma rule evaluated against every \
            event, with the target its alerts go to. Import with the rule's name.",
        state: &["orgtrail.v1.Rule"],
        create: "orgtrail.v1.CreateRuleRequest",
        update: &["orgtrail.v1.UpdateRuleRequest"],
        id_from: "name",
        identity: "name",
        extra: &[],
    },
    Spec {
        name: "orgtrail_organization",
        kind: SpecKind::DataSource,
        description: "The organization of this orgtrail deployment.",
        state: &["orgtrail.v1.Organization"],
        create: "orgtrail.v1.DescribeOrganizationRequest",
        update: &[],
        id_from: "id",
        identity: "id",
        extra: &[],
    },
    Spec {
        name: "orgtrail_accounts",
        kind: SpecKind::DataSource,
        description: "The member accounts visible to the provider's token, optionally only those in one state.",
        state: &["orgtrail.v1.ListAccountsResponse"],
        create: "orgtrail.v1.ListAccountsRequest",
        update: &[],
        id_from: "",
        identity: "",
        extra: &[],
    },
    Spec {
        name: "orgtrail_trail_status",
        kind: SpecKind::DataSource,
        description: "Whether a trail is logging and how its deliveries went.",
        state: &["orgtrail.v1.TrailStatus"],
        create: "orgtrail.v1.GetTrailStatusRequest",
        update: &[],
        id_from: "trail_arn",
        identity: "trail_arn",
        extra: &[],
    },
];
