//! Member accounts as AWS knows them: AWS Organizations sync (on demand and on a schedule).

pub mod aws;
pub mod error;
pub mod org_listing;
pub mod org_sync;
pub mod schedule;

pub use error::OrgSyncError;
