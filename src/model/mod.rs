//! Domain types, validated once at the edge: a value of one of these types is known to be well formed.

pub mod collector;
pub mod cost;
pub mod history;
pub mod ids;
pub mod insights;
pub mod layout;
pub mod log_group;
pub mod names;
pub mod record;
pub mod selectors;
pub mod shard;
pub mod sns;
pub mod trail;

pub use ids::{AccountId, BucketName, OrganizationId, Region, TrailArn, TrailName};

/// A rejected input value, naming the field (as the API spells it) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}
