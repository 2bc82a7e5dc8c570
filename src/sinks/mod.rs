//! Where delivered batches go.

pub mod s3;
