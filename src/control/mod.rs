//! The control plane: organizations, accounts, trails, selectors, keys, tokens and rules, served
//! over gRPC ([`api`]) and as CloudTrail's own HTTP API ([`cloudtrail_api`]) for the aws CLI.

pub mod api;
pub mod cloudtrail_api;
