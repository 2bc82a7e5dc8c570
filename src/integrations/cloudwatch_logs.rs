//! CloudWatch Logs: log events into a trail's log group, one stream per account and region,
//! acting as the trail's CloudWatch Logs role, within PutLogEvents' limits.

use std::collections::HashMap;

use aws_config::SdkConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_sdk_cloudwatchlogs::error::DisplayErrorContext;
use aws_sdk_cloudwatchlogs::types::InputLogEvent;

use crate::model::log_group::LogGroupArn;

/// PutLogEvents' limits: events per call, bytes per call (each event counts its UTF-8 message
/// plus 26 bytes), and the time span one call may cover.
pub const MAX_BATCH_EVENTS: usize = 10_000;
pub const MAX_BATCH_BYTES: usize = 1_048_576;
pub const EVENT_OVERHEAD_BYTES: usize = 26;
pub const MAX_BATCH_SPAN_MS: i64 = 24 * 3600 * 1000;
/// One log event's limit, overhead included.
pub const MAX_EVENT_BYTES: usize = 256 * 1024;

/// The session name our assumed-role sessions carry (shows in the destination's CloudTrail).
const SESSION_NAME: &str = "orgtrail-cloudwatch-logs";

/// One log event: milliseconds since the epoch and the message (a CloudTrail record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    pub timestamp_ms: i64,
    pub message: String,
}

/// What one delivery did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub accepted: usize,
    /// Refused by CloudWatch Logs as too old, too new or past the group's retention, or too
    /// large for one log event: reported, not retried (a retry cannot change the answer).
    pub rejected: usize,
}

/// Splits events (sorted by time here, as PutLogEvents requires) into calls within the limits.
/// Events too large for one log event are returned apart.
pub fn batches(mut events: Vec<LogEvent>) -> (Vec<Vec<LogEvent>>, usize) {
    events.sort_by_key(|e| e.timestamp_ms);
    let mut batches: Vec<Vec<LogEvent>> = Vec::new();
    let mut current: Vec<LogEvent> = Vec::new();
    let mut bytes = 0usize;
    let mut too_large = 0usize;
    for event in events {
        let size = event.message.len() + EVENT_OVERHEAD_BYTES;
        if size > MAX_EVENT_BYTES {
            too_large += 1;
            continue;
        }
        let span_exceeded =
            current.first().is_some_and(|first| event.timestamp_ms - first.timestamp_ms > MAX_BATCH_SPAN_MS);
        if !current.is_empty()
            && (current.len() == MAX_BATCH_EVENTS || bytes + size > MAX_BATCH_BYTES || span_exceeded)
        {
            batches.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push(event);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    (batches, too_large)
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CloudWatchLogsError(pub String);

/// Clients per (role, region), each assuming its role once and refreshing before expiry.
#[derive(Clone)]
pub struct CloudWatchLogsSink {
    base: Option<SdkConfig>,
    clients: std::sync::Arc<tokio::sync::Mutex<HashMap<(String, String), aws_sdk_cloudwatchlogs::Client>>>,
}

impl CloudWatchLogsSink {
    /// `base` carries orgtrail's own AWS credentials and endpoints (None: no AWS configured, every
    /// delivery fails with that reason).
    pub fn new(base: Option<SdkConfig>) -> Self {
        Self { base, clients: Default::default() }
    }

    async fn client(
        &self,
        role_arn: &str,
        region: &str,
    ) -> Result<aws_sdk_cloudwatchlogs::Client, CloudWatchLogsError> {
        let Some(base) = &self.base else {
            return Err(CloudWatchLogsError(
                "no AWS configuration in this worker (set the standard AWS environment)".into(),
            ));
        };
        let mut clients = self.clients.lock().await;
        let key = (role_arn.to_owned(), region.to_owned());
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let role =
            AssumeRoleProvider::builder(role_arn).session_name(SESSION_NAME).configure(base).build().await;
        let config = aws_sdk_cloudwatchlogs::config::Builder::from(base)
            .region(aws_config::Region::new(region.to_owned()))
            .credentials_provider(role)
            .build();
        let client = aws_sdk_cloudwatchlogs::Client::from_conf(config);
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// Delivers `events` to `stream` of `group` (creating the stream when missing).
    pub async fn put(
        &self,
        role_arn: &str,
        group: &LogGroupArn,
        stream: &str,
        events: Vec<LogEvent>,
    ) -> Result<Delivered, CloudWatchLogsError> {
        let client = self.client(role_arn, &group.region).await?;
        let (batches, too_large) = batches(events);
        let mut delivered = Delivered { accepted: 0, rejected: too_large };
        for batch in batches {
            let count = batch.len();
            let input: Vec<InputLogEvent> = batch
                .into_iter()
                .map(|e| InputLogEvent::builder().timestamp(e.timestamp_ms).message(e.message).build())
                .collect::<Result<_, _>>()
                .map_err(|e| CloudWatchLogsError(format!("log event: {e}")))?;
            let rejected = match send(&client, group, stream, input.clone()).await {
                Err(SendError::NoStream) => {
                    create_stream(&client, group, stream).await?;
                    send(&client, group, stream, input).await.map_err(SendError::into_error)?
                }
                other => other.map_err(SendError::into_error)?,
            };
            delivered.rejected += rejected;
            delivered.accepted += count - rejected;
        }
        Ok(delivered)
    }
}

/// One line: the service's error code and message, or the transport failure.
fn describe<E, R>(error: &aws_sdk_cloudwatchlogs::error::SdkError<E, R>) -> String
where
    E: aws_sdk_cloudwatchlogs::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match error.as_service_error() {
        Some(service) => {
            format!("{}: {}", service.code().unwrap_or("error"), service.message().unwrap_or("(no message)"))
        }
        None => DisplayErrorContext(error).to_string(),
    }
}

enum SendError {
    NoStream,
    Other(String),
}

impl SendError {
    fn into_error(self) -> CloudWatchLogsError {
        match self {
            Self::NoStream => CloudWatchLogsError("PutLogEvents: the log stream does not exist".into()),
            Self::Other(message) => CloudWatchLogsError(message),
        }
    }
}

/// One PutLogEvents call; the number of events CloudWatch Logs refused.
async fn send(
    client: &aws_sdk_cloudwatchlogs::Client,
    group: &LogGroupArn,
    stream: &str,
    events: Vec<InputLogEvent>,
) -> Result<usize, SendError> {
    let count = events.len();
    let output = client
        .put_log_events()
        .log_group_name(&group.name)
        .log_stream_name(stream)
        .set_log_events(Some(events))
        .send()
        .await
        .map_err(|error| {
            let message = describe(&error);
            let stream_missing =
                error.as_service_error().is_some_and(|e| e.is_resource_not_found_exception())
                    && message.contains("log stream");
            if stream_missing {
                SendError::NoStream
            } else {
                SendError::Other(format!("PutLogEvents: {message}"))
            }
        })?;
    // The info gives index ranges: events before `tooOldLogEventEndIndex` (exclusive) or
    // `expiredLogEventEndIndex`, and from `tooNewLogEventStartIndex` on.
    let rejected = output.rejected_log_events_info().map_or(0, |info| {
        let old = info
            .too_old_log_event_end_index()
            .unwrap_or(0)
            .max(info.expired_log_event_end_index().unwrap_or(0));
        let new =
            info.too_new_log_event_start_index().map_or(0, |start| count.saturating_sub(start as usize));
        (old.max(0) as usize + new).min(count)
    });
    if rejected > 0 {
        tracing::warn!(group = %group.name, stream, rejected, "CloudWatch Logs refused events (too old, too new or expired)");
    }
    Ok(rejected)
}

async fn create_stream(
    client: &aws_sdk_cloudwatchlogs::Client,
    group: &LogGroupArn,
    stream: &str,
) -> Result<(), CloudWatchLogsError> {
    match client.create_log_stream().log_group_name(&group.name).log_stream_name(stream).send().await {
        Ok(_) => Ok(()),
        Err(error) if error.as_service_error().is_some_and(|e| e.is_resource_already_exists_exception()) => {
            Ok(())
        }
        Err(error) => Err(CloudWatchLogsError(format!("CreateLogStream: {}", describe(&error)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(t: i64, size: usize) -> LogEvent {
        LogEvent { timestamp_ms: t, message: "x".repeat(size) }
    }

    #[test]
    fn batches_respect_count_bytes_span_and_order() {
        let (split, too_large) = batches((0..25_000).rev().map(|t| event(t, 10)).collect());
        assert_eq!(too_large, 0);
        assert_eq!(split.iter().map(Vec::len).collect::<Vec<_>>(), vec![10_000, 10_000, 5_000]);
        let flat: Vec<i64> = split.iter().flatten().map(|e| e.timestamp_ms).collect();
        assert!(flat.windows(2).all(|w| w[0] <= w[1]), "chronological");

        // 100 KiB events: ten fit in 1 MiB with their overhead (10 × 102,426 B), the eleventh does not.
        let (split, _) = batches((0..25).map(|t| event(t, 100 * 1024)).collect());
        assert!(
            split.iter().all(|b| b.iter().map(|e| e.message.len() + 26).sum::<usize>() <= MAX_BATCH_BYTES)
        );
        assert_eq!(split.iter().map(Vec::len).collect::<Vec<_>>(), vec![10, 10, 5]);

        let day = MAX_BATCH_SPAN_MS;
        let (split, _) = batches(vec![event(0, 1), event(day, 1), event(day + 1, 1), event(3 * day, 1)]);
        assert_eq!(split.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 1, 1]);

        let (split, too_large) = batches(vec![event(0, MAX_EVENT_BYTES), event(1, 5)]);
        assert_eq!((split.len(), too_large), (1, 1));
    }
}
