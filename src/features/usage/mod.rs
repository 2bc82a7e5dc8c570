//! Usage and cost: events and bytes delivered per trail, account, period and event category.

pub mod store;
pub mod tally;
