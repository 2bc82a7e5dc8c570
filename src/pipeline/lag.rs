//! `orgtrail_shard_lag_seconds` per held shard (now − its oldest staged event), and
//! `orgtrail_shards_held`; the series of a shard go when the shard goes.

use std::collections::HashMap;

use sqlx::PgPool;

use super::round::ShardState;
use super::shards;
use crate::model::shard::ShardId;

#[derive(Default)]
pub struct LagSeries {
    /// Per held shard, the labels of its lag series.
    labels: HashMap<ShardId, [String; 4]>,
}

impl LagSeries {
    pub async fn refresh(&mut self, pool: &PgPool, held: &HashMap<ShardId, ShardState>) {
        let metrics = crate::metrics::pipeline();
        let ids: Vec<ShardId> = held.keys().copied().collect();
        let lag = match shards::staged_lag(pool, &ids).await {
            Ok(lag) => lag,
            Err(error) => {
                tracing::warn!(%error, "cannot read shard lag");
                return;
            }
        };
        self.labels.retain(|id, labels| {
            let kept = held.contains_key(id);
            if !kept {
                let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
                let _ = metrics.shard_lag.remove_label_values(&labels);
            }
            kept
        });
        for (id, state) in held {
            let labels = self.labels.entry(*id).or_insert_with(|| {
                [
                    id.to_string(),
                    state.info.account.to_string(),
                    state.info.region.to_string(),
                    state.info.source.as_str().to_owned(),
                ]
            });
            let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
            metrics.shard_lag.with_label_values(&labels).set(lag.get(id).copied().unwrap_or(0.0));
        }
        metrics.shards_held.set(self.labels.len() as i64);
    }
}
