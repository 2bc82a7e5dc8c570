//! Log file integrity validation (spec §3): RSA signing keys as CloudTrail publishes them, the
//! digest file, its key layout, and the exact string CloudTrail signs. Pure functions; the digest
//! writer, key storage and `orgtrail validate` build on them.
//!
//! `validate` walks digest chains in a bucket (`orgtrail validate`).

pub mod digest;
pub mod keys;
pub mod validate;
