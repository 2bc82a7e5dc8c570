//! SNS delivery notifications: an outbox row per delivered log file of a trail with a topic,
//! published by the notifier every worker runs.

pub mod notifier;
pub mod store;
