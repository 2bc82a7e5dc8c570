//! The delivery pipeline, one way: staged events (source) → router (trail scope + selectors) →
//! batcher (per trail, account, region) → sink (S3) → checkpoint (Postgres, fenced); then the
//! digest writer signs, per period, what was delivered, and the notifier tells each trail's SNS
//! topic about each delivered log file.

pub mod batcher;
pub mod cloudwatch_logs;
pub mod digests;
pub mod history;
pub mod notifications;
pub mod outbox;
pub mod router;
pub mod taps;
pub mod usage;
pub mod worker;
