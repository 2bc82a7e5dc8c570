//! The member-account side of orgtrail: what `orgtrail bootstrap` sets up in a member's AWS account,
//! and AWS Organizations sync (on demand and on a schedule).

pub mod error;
pub mod iam;
pub mod iam_policy;
pub mod org_listing;
pub mod org_sync;
pub mod schedule;
pub mod sdk;

pub use error::OrgSyncError;
