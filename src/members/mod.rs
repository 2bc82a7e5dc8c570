//! The member-account side of orgtrail: what `orgtrail bootstrap` sets up in a member's AWS account.

pub mod iam;
pub mod iam_policy;
