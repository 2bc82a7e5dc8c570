//! orgtrail: a self-hosted, CloudTrail-compatible, organization-wide trail aggregator.
//!
//! Data flows one way: source → router → batcher → sink → checkpoint. The control plane
//! ([`api`]) keeps organizations, accounts, trails and tokens in Postgres ([`store`]).

pub mod alerts;
pub mod api;
pub mod athena;
pub mod bench;
pub mod cli;
pub mod cloudtrail_api;
pub mod collectors;
pub mod config;
pub mod dev;
pub mod error_text;
pub mod insights;
pub mod integrity;
pub mod members;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod proto;
pub mod rules;
pub mod secrets;
pub mod serve;
pub mod sinks;
pub mod store;
pub mod terraform;
