//! `orgtrail_shard_lag_seconds` per held shard (now − its oldest buffered event, read from
//! staging and not yet delivered everywhere), and `orgtrail_shards_held`; the series of a shard go
//! when the shard goes. Taken from the worker's own buffers, so it costs no query however many
//! shards a worker holds; events staged but not read yet count from the pass that reads them.

use std::collections::HashMap;

use chrono::Utc;

use super::round::ShardState;
use crate::model::shard::ShardId;

#[derive(Default)]
pub struct LagSeries {
    /// Per held shard, the labels of its lag series and the value last set.
    labels: HashMap<ShardId, ([String; 4], f64)>,
}

impl LagSeries {
    pub fn refresh(&mut self, held: &HashMap<ShardId, ShardState>) {
        let metrics = crate::metrics::pipeline();
        let now = Utc::now();
        self.labels.retain(|id, (labels, _)| {
            let kept = held.contains_key(id);
            if !kept {
                let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
                let _ = metrics.shard_lag.remove_label_values(&labels);
            }
            kept
        });
        for (id, state) in held {
            let lag = state
                .oldest_buffered()
                .map_or(0.0, |oldest| (now - oldest).num_milliseconds().max(0) as f64 / 1000.0);
            let series = self.labels.entry(*id).or_insert_with(|| {
                let labels = [
                    id.to_string(),
                    state.info.account.to_string(),
                    state.info.region.to_string(),
                    state.info.source.as_str().to_owned(),
                ];
                // Never equal to a lag: the series is set on first sight.
                (labels, f64::NAN)
            });
            // Unchanged series are not set again: a worker holding tens of thousands of idle
            // shards would otherwise update every one of them every second.
            if series.1 != lag {
                let labels: Vec<&str> = series.0.iter().map(String::as_str).collect();
                metrics.shard_lag.with_label_values(&labels).set(lag);
                series.1 = lag;
            }
        }
        metrics.shards_held.set(self.labels.len() as i64);
    }
}
