//! The process root.

pub mod maintenance;
pub mod serve;
