//! CloudTrail Insights: unusual call and error rates per API, account and region.
//!
//! One way: the `insights` tap counts every staged management and data event per minute
//! ([`count`], stored by [`store`]); the detector ([`detector`]) judges each closed
//! minute with the pure algorithm of [`detect`] for (account, region) pairs covered by a trail with
//! insight selectors, and stages Start/End records ([`record`]) in the pair's `insights` shard;
//! the worker delivers that shard like any other, under the `CloudTrail-Insight` key layout, to
//! the trails whose insight selectors take them. The algorithm is described in `docs/insights.md`.

pub mod count;
pub mod detect;
pub mod detector;
pub mod record;
pub mod store;
