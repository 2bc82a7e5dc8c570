//! Where delivered batches go.

pub mod cloudwatch_logs;
pub mod s3;
pub mod sns;
