//! Log file integrity validation (spec §3): RSA signing keys as CloudTrail publishes them, the
//! digest file, its key layout, and the exact string CloudTrail signs; the keyring that keeps the
//! deployment's keys. The digest writer (`pipeline::digests`) and `orgtrail validate` build on them.

pub mod digest;
pub mod keyring;
pub mod keys;
