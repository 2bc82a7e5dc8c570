//! The CloudWatch Logs stream: a tap that sends each event a trail takes to the trail's log group,
//! one stream per account and region. One cursor per trail, so a failing log group holds back
//! only its own trail's stream; delivery is at least once (a call that succeeded before its cursor
//! was saved is repeated), as CloudTrail's own CloudWatch Logs delivery does not promise more.

use crate::integrations::cloudwatch_logs::{CloudWatchLogsSink, LogEvent};
use crate::model::log_group::{LogGroupArn, stream_name};
use crate::model::record::Category;
use crate::model::shard::ShardInfo;
use crate::model::trail::Trail;
use crate::pipeline::route::{self, Snapshot};
use crate::pipeline::taps::{Tap, TapContext, TapError, TapEvent};

const KEY_PREFIX: &str = "cloudwatch_logs:";

pub struct CloudWatchLogsTap {
    pool: sqlx::PgPool,
    sink: CloudWatchLogsSink,
}

impl CloudWatchLogsTap {
    pub fn new(pool: sqlx::PgPool, sink: CloudWatchLogsSink) -> Self {
        Self { pool, sink }
    }
}

fn streams(trail: &Trail) -> bool {
    !trail.settings.cloud_watch_logs_log_group_arn.is_empty()
        && !trail.settings.cloud_watch_logs_role_arn.is_empty()
}

#[async_trait::async_trait]
impl Tap for CloudWatchLogsTap {
    fn name(&self) -> &'static str {
        "cloudwatch_logs"
    }

    fn keys(&self, shard: &ShardInfo, snapshot: &Snapshot) -> Vec<String> {
        snapshot
            .trails_covering(&shard.account)
            .filter(|t| streams(t))
            .map(|t| format!("{KEY_PREFIX}{}", t.id))
            .collect()
    }

    async fn consume(
        &self,
        key: &str,
        context: &TapContext<'_>,
        events: &[TapEvent<'_>],
        tx: &mut sqlx::PgConnection,
    ) -> Result<(), TapError> {
        let trail_id: Option<i64> = key.strip_prefix(KEY_PREFIX).and_then(|id| id.parse().ok());
        let Some(trail) = context.snapshot.trails.iter().find(|t| Some(t.id) == trail_id) else {
            return Ok(()); // deleted since the keys were taken
        };
        if !streams(trail) {
            return Ok(());
        }
        let log_events: Vec<LogEvent> = events
            .iter()
            .filter(|e| e.view.category != Category::Insight && route::routes(trail, e.view, e.received_at))
            .map(|e| LogEvent {
                timestamp_ms: e.view.event_time.timestamp_millis(),
                message: e.record.to_owned(),
            })
            .collect();
        if log_events.is_empty() {
            return Ok(());
        }
        let outcome = match LogGroupArn::parse(
            "cloud_watch_logs_log_group_arn",
            &trail.settings.cloud_watch_logs_log_group_arn,
        ) {
            Ok(group) => {
                let organization = if trail.settings.is_organization_trail {
                    context.snapshot.organization_id.as_ref().map(|o| o.as_str())
                } else {
                    None
                };
                let stream =
                    stream_name(organization, context.shard.account.as_str(), context.shard.region.as_str());
                self.sink
                    .put(&trail.settings.cloud_watch_logs_role_arn, &group, &stream, log_events)
                    .await
                    .map_err(|e| e.to_string())
            }
            Err(error) => Err(error.to_string()),
        };
        match outcome {
            Ok(delivered) => {
                crate::store::trails::record_cloud_watch_logs_delivery(&mut *tx, trail.id, None).await?;
                tracing::debug!(trail = %trail.arn, accepted = delivered.accepted, rejected = delivered.rejected,
                    "events streamed to CloudWatch Logs");
                Ok(())
            }
            Err(message) => Err(TapError::External(message)),
        }
    }

    async fn failed(&self, key: &str, error: &TapError) {
        let Some(trail_id) = key.strip_prefix(KEY_PREFIX).and_then(|id| id.parse::<i64>().ok()) else {
            return;
        };
        let message = error.to_string();
        let recorded =
            crate::store::trails::record_cloud_watch_logs_delivery(&self.pool, trail_id, Some(&message))
                .await;
        if let Err(error) = recorded {
            tracing::warn!(trail_id, %error, "cannot record the CloudWatch Logs delivery error");
        }
    }
}
