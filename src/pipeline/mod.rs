//! The delivery pipeline, one way: staged events (source) → router (trail scope + selectors) →
//! batcher (per trail, account, region) → sink (S3) → checkpoint (Postgres, fenced). It knows no
//! feature: features plug in from above through taps.

pub mod batcher;
pub mod delivery;
pub mod router;
pub mod staging;
pub mod tap_cursors;
pub mod taps;
pub mod worker;
