//! orgtrail: a self-hosted, CloudTrail-compatible, organization-wide trail aggregator.
//!
//! The layers, each using only those below it:
//! - [`node`]: the process root, the one place that builds a process's parts and runs them.
//! - [`control`]: the control plane (gRPC services, the CloudTrail-compatible HTTP API).
//! - [`features`]: what plugs into the pipeline from above (event history, Insights, alert rules,
//!   CloudWatch Logs, SNS notifications, usage, digests and validation).
//! - [`integrations`]: the outside systems (S3, SNS, CloudWatch Logs, AWS Organizations and IAM,
//!   the pull collectors).
//! - [`pipeline`]: delivery, one way and knowing no feature: staging → route → batch → seal → put →
//!   commit, with taps as the seam features use.
//! - [`store`]: the control plane's Postgres aggregates; [`model`]: validated domain types.
//!
//! Beside them: the tools ([`cli`], [`client`], [`dev`], [`bench`], [`terraform`]).

pub mod bench;
pub mod cli;
pub mod client;

pub mod control;
pub mod dev;
pub mod error_text;
pub mod features;
pub mod http_server;
pub mod integrations;
pub mod metrics;
pub mod model;
pub mod node;
pub mod pipeline;
pub mod proto;
pub mod secrets;
pub mod store;
pub mod terraform;
pub mod tls;
