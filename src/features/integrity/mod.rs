//! Log file integrity validation (spec §3): RSA signing keys as CloudTrail publishes them, the
//! digest file, its key layout, and the exact string CloudTrail signs; the keyring that keeps the
//! deployment's keys. The digest writer ([`writer`]) and `orgtrail validate`
//! ([`validate`]: walks the chains in a bucket) build on them.

pub mod chains;
pub mod digest;
pub mod keyring;
pub mod keys;
pub mod signing_keys;
pub mod validate;
pub mod writer;
