//! Insights' shared value types: what the `insights` tap counts, what the detector judges with, and
//! what its store keeps (the algorithm is `features::insights`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

/// One counted series in one minute.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CountKey {
    pub account_id: String,
    pub region: String,
    pub category: String,
    pub event_source: String,
    pub event_name: String,
    pub minute: DateTime<Utc>,
}

/// Calls and errors of one series in one minute, and per attribute value.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    pub calls: i64,
    pub errors: i64,
    /// (attribute, value) → (calls, errors).
    pub attributions: BTreeMap<(&'static str, String), (i64, i64)>,
}

/// Tallies per (account, region, category, event source, event name, minute), in key order (the
/// order rows are written in, so concurrent taps never deadlock).
pub type Tallies = BTreeMap<CountKey, Tally>;

/// Σx and Σx² over the W minutes before the judged one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Window {
    pub sum: i64,
    pub sum_of_squares: i64,
}

/// An insight in progress. Its baseline is frozen at the start: the burst does not raise the bar
/// it is judged against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Open {
    pub start: i64,
    pub baseline_average: f64,
    pub threshold: f64,
    /// Σ counts from the start through the last anomalous minute.
    pub insight_sum: i64,
    pub last_anomalous: i64,
    /// The current run of non-anomalous minutes, and Σ of their counts.
    pub quiet_minutes: u32,
    pub quiet_sum: i64,
}
