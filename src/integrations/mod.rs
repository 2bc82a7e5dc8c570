//! The systems outside orgtrail: object storage and messaging destinations, AWS Organizations and
//! IAM, and the pull collectors that read member accounts' CloudTrail.

pub mod aws;
pub mod cloudwatch_logs;
pub mod collectors;
pub mod s3;
pub mod sns;
