//! The delivery pipeline, one way: staged events (source) → router (trail scope + selectors) →
//! batcher (per trail, account, region) → sink (S3) → checkpoint (Postgres, fenced).

pub mod batcher;
pub mod router;
pub mod worker;
