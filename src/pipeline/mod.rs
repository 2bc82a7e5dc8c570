//! The delivery pipeline, one way and knowing no feature:
//!
//! ```text
//! staging ─► buffer ─► route ─► batch ─► checkpoint (seal ─► put ─► commit)
//!  (admit)   (read,     (trails    (cut      (Postgres, fenced by the shard's lease;
//!            parse)     + selectors) a file)  the sink writes the object)
//! ```
//!
//! A [`worker`] holds [`shards`] and runs a [`round`] over each with work; the rounds of shards that
//! need nothing unusual go together ([`group`]: one transaction seals, one commits, for the whole
//! group). Features plug in from
//! above: [`taps`] see every staged event of a shard (run by [`tap_runner`]), commit hooks add rows
//! to the transaction that records a delivered file ([`checkpoint::CommitHook`]), and the
//! [`sink`] is whatever object store the process root hands in.

pub mod backoff;
pub mod batch;
pub mod buffer;
pub mod changes;
pub mod checkpoint;
pub mod failpoints;
pub mod group;
pub mod heartbeat;
pub mod lag;
pub mod round;
pub mod route;
pub mod shards;
pub mod sink;
pub mod staging;
pub mod tap_runner;
pub mod taps;
pub mod worker;
