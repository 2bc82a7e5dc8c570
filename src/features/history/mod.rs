//! Event history (CloudTrail's LookupEvents): the tap that indexes every management and Insights
//! event, and the index it writes and lookups read.

pub mod blocks;
pub mod index;
pub mod tap;
