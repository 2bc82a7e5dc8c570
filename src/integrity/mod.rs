//! Log file integrity validation (spec §3): RSA signing keys as CloudTrail publishes them, the
//! digest file, its key layout, and the exact string CloudTrail signs. Pure functions; the digest
//! writer, key storage and `orgtrail validate` build on them.
//!
//! Status: foundation for the integrity issue; not yet wired into the worker or the API.

pub mod digest;
pub mod keys;
