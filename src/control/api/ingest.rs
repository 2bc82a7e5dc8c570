//! IngestService: pushed events become durable staged events, deduplicated, before the call returns.

use std::collections::HashSet;

use tonic::{Request, Response};
use uuid::Uuid;

use super::Ctx;
use super::auth::{Action, Caller, authorize};
use super::error::{ApiError, ApiResult};
use crate::model::record::{RecordError, RecordView};
use crate::model::shard::Source;
use crate::model::{AccountId, Region};
use crate::pipeline::staging::admit::{Admitted, Checked, admit};
use crate::proto::v1 as pb;
use crate::store::accounts::{self, AccountStatus};
use crate::store::channels::{self, Channel};

/// The default overdue threshold of GetBacklog is the longest delivery interval plus this: time
/// for a batch to be cut, put and committed.
pub const OVERDUE_SLACK_SECONDS: i64 = 120;

/// At most this many events per call (CloudTrail Lake's limit).
pub const MAX_EVENTS_PER_CALL: usize = 100;
/// At most this many bytes of event data per call.
pub const MAX_BYTES_PER_CALL: usize = 1024 * 1024;

pub struct IngestApi {
    ctx: Ctx,
}

impl IngestApi {
    pub fn new(ctx: Ctx) -> Self {
        Self { ctx }
    }
}

fn valid_entry_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Fills a channel event's missing account and region with the channel's, marking it as an
/// activity log event (CloudTrail Lake's shape for non-AWS sources).
fn complete_channel_event(data: &str, channel: &Channel) -> Result<String, RecordError> {
    let mut object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(data)
        .map_err(|e| RecordError::new("InvalidJson", format!("not a JSON object: {e}")))?;
    let missing_account = !object.contains_key("recipientAccountId");
    let missing_region = !object.contains_key("awsRegion");
    if !missing_account && !missing_region {
        return Ok(data.to_owned());
    }
    if missing_account {
        object.insert("recipientAccountId".into(), channel.account_id.clone().into());
    }
    if missing_region {
        object.insert("awsRegion".into(), channel.region.clone().into());
    }
    object.entry("eventCategory").or_insert_with(|| "ActivityAuditLog".into());
    object.entry("eventType").or_insert_with(|| "ActivityLog".into());
    serde_json::to_string(&object).map_err(|e| RecordError::new("InvalidJson", e.to_string()))
}

/// Checks one event: checksum, channel defaults, required fields, and whose it may be.
fn check_event(
    event: &pb::AuditEvent,
    channel: Option<&Channel>,
    own_account: Option<&AccountId>,
) -> Result<(RecordView, String), RecordError> {
    if !event.event_data_checksum.is_empty()
        && !checksum_matches(&event.event_data, &event.event_data_checksum)
    {
        return Err(RecordError::new(
            "InvalidChecksum",
            "event_data_checksum is not the SHA-256 of event_data",
        ));
    }
    let data = match channel {
        Some(channel) => complete_channel_event(&event.event_data, channel)?,
        None => event.event_data.clone(),
    };
    let view = RecordView::parse(&data)?;
    if let Some(channel) = channel
        && view.recipient_account_id.as_str() != channel.account_id
    {
        return Err(RecordError::new(
            "WrongAccount",
            format!(
                "recipientAccountId {} is not the channel's account {}",
                view.recipient_account_id, channel.account_id
            ),
        ));
    }
    if let Some(own) = own_account
        && &view.recipient_account_id != own
    {
        return Err(crate::model::record::account_mismatch(own, &view.recipient_account_id));
    }
    Ok((view, data))
}

fn checksum_matches(data: &str, expected: &str) -> bool {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data.as_bytes());
    hex::encode(digest.as_ref()).eq_ignore_ascii_case(expected)
}

fn channel_message(channel: &Channel) -> pb::Channel {
    pb::Channel {
        channel_id: channel.id.to_string(),
        name: channel.name.clone(),
        account_id: channel.account_id.clone(),
        region: channel.region.clone(),
        created_time: Some(super::convert::timestamp(channel.created_at)),
    }
}

#[tonic::async_trait]
impl pb::ingest_service_server::IngestService for IngestApi {
    async fn put_audit_events(
        &self,
        request: Request<pb::PutAuditEventsRequest>,
    ) -> ApiResult<pb::PutAuditEventsResponse> {
        let caller = Caller::of(&request)?;
        authorize(&caller, Action::Ingest)?;
        let mut input = request.into_inner();
        if input.audit_events.is_empty() {
            return Err(ApiError::invalid("audit_events", "at least one event is required").into());
        }
        if input.audit_events.len() > MAX_EVENTS_PER_CALL {
            return Err(ApiError::invalid(
                "audit_events",
                format!("at most {MAX_EVENTS_PER_CALL} events per call, got {}", input.audit_events.len()),
            )
            .into());
        }
        let total: usize = input.audit_events.iter().map(|e| e.event_data.len()).sum();
        if total > MAX_BYTES_PER_CALL {
            return Err(ApiError::invalid(
                "audit_events",
                format!("at most {MAX_BYTES_PER_CALL} bytes of event_data per call, got {total}"),
            )
            .into());
        }
        let mut ids = HashSet::new();
        for (i, event) in input.audit_events.iter().enumerate() {
            if !valid_entry_id(&event.id) {
                return Err(ApiError::invalid(
                    &format!("audit_events[{i}].id"),
                    "must be 1 to 128 letters, digits, '-' or '_'",
                )
                .into());
            }
            if !ids.insert(event.id.as_str()) {
                return Err(ApiError::invalid(
                    &format!("audit_events[{i}].id"),
                    format!("duplicate entry id {:?}; the request is rejected whole", event.id),
                )
                .into());
            }
        }
        let metrics = crate::metrics::pipeline();
        metrics.received.inc_by(input.audit_events.len() as u64);
        let channel = if input.channel_id.is_empty() {
            None
        } else {
            let id = Uuid::parse_str(&input.channel_id).map_err(|_| {
                ApiError::invalid("channel_id", format!("{:?} is not a channel id", input.channel_id))
            })?;
            let channel = channels::get(&self.ctx.pool, id)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("channel {id} not found")))?;
            if let Some(own) = caller.member_account()
                && own.as_str() != channel.account_id
            {
                return Err(ApiError::NotFound(format!("channel {id} not found")).into());
            }
            Some(channel)
        };

        // Parse and check each event on its own (a bad one never spoils the rest), off the async
        // runtime: a full call is a megabyte of JSON.
        let own_account = caller.member_account().cloned();
        let checked_channel = channel.clone();
        let events = std::mem::take(&mut input.audit_events);
        let (events, parsed) = tokio::task::spawn_blocking(move || {
            let parsed: Vec<(usize, Result<(RecordView, String), RecordError>)> = events
                .iter()
                .enumerate()
                .map(|(i, event)| (i, check_event(event, checked_channel.as_ref(), own_account.as_ref())))
                .collect();
            (events, parsed)
        })
        .await
        .map_err(|e| ApiError::Internal(format!("event parsing panicked: {e}")))?;
        input.audit_events = events;

        let checked: Vec<Result<Checked, RecordError>> = parsed
            .into_iter()
            .map(|(_, result)| result.map(|(view, record)| Checked { view, record }))
            .collect();
        // The eventID each record states, for the answer.
        let event_ids: Vec<String> =
            checked.iter().map(|c| c.as_ref().map(|c| c.view.event_id.clone()).unwrap_or_default()).collect();
        let verdicts =
            admit(&self.ctx.pool, self.ctx.staging.as_ref(), Source::Push, checked, caller.member_account())
                .await?;
        crate::pipeline::failpoints::abort_at("after-ingest-commit");
        let mut successful = Vec::new();
        let mut failed = Vec::new();
        for ((event, verdict), event_id) in input.audit_events.iter().zip(verdicts).zip(event_ids) {
            match verdict {
                Admitted::Accepted | Admitted::Duplicate => {
                    let duplicate = verdict == Admitted::Duplicate;
                    if duplicate {
                        metrics.duplicates.inc();
                    } else {
                        metrics.accepted.inc();
                    }
                    successful.push(pb::AuditEventResultEntry { id: event.id.clone(), event_id, duplicate });
                }
                Admitted::Refused(error) => {
                    metrics.rejected.with_label_values(&[error.code]).inc();
                    failed.push(pb::ResultErrorEntry {
                        id: event.id.clone(),
                        error_code: error.code.into(),
                        error_message: error.message,
                    });
                }
            }
        }
        Ok(Response::new(pb::PutAuditEventsResponse { successful, failed }))
    }

    async fn create_channel(&self, request: Request<pb::CreateChannelRequest>) -> ApiResult<pb::Channel> {
        let caller = Caller::of(&request)?;
        authorize(&caller, Action::Ingest)?;
        let input = request.into_inner();
        crate::model::names::check_name("name", &input.name)?;
        let account = match (caller.member_account(), input.account_id.is_empty()) {
            (Some(own), true) => own.clone(),
            (_, false) => AccountId::parse("account_id", &input.account_id)?,
            (None, true) => return Err(ApiError::invalid("account_id", "required for admins").into()),
        };
        if let Some(own) = caller.member_account()
            && own != &account
        {
            return Err(ApiError::PermissionDenied(format!(
                "a member token may not create channels for account {account}"
            ))
            .into());
        }
        let region = Region::parse("region", &input.region)?;
        match accounts::get(&self.ctx.pool, &account).await? {
            Some(found) if found.status == AccountStatus::Active => {}
            _ => {
                return Err(ApiError::FailedPrecondition(format!(
                    "account {account} is not an ACTIVE registered account"
                ))
                .into());
            }
        }
        let channel = channels::create(&self.ctx.pool, &input.name, &account, &region).await?;
        Ok(Response::new(channel_message(&channel)))
    }

    async fn get_backlog(&self, request: Request<pb::GetBacklogRequest>) -> ApiResult<pb::Backlog> {
        let caller = Caller::of(&request)?;
        authorize(&caller, Action::ReadTrails)?;
        let input = request.into_inner();
        if input.overdue_after_seconds < 0 {
            return Err(ApiError::invalid("overdue_after_seconds", "must not be negative").into());
        }
        let overdue_after = match input.overdue_after_seconds {
            0 => {
                crate::store::trails::longest_delivery_interval(&self.ctx.pool).await? + OVERDUE_SLACK_SECONDS
            }
            seconds => seconds,
        };
        let own = caller.member_account();
        let overdue_before = chrono::Utc::now() - chrono::Duration::seconds(overdue_after);
        let staged = self.ctx.staging.backlog(own, overdue_before).await?;
        let untaken = crate::pipeline::staging::postgres::untaken(&self.ctx.pool, own).await?;
        Ok(Response::new(pb::Backlog {
            staged_events: staged.events,
            oldest_staged_time: staged.oldest.map(super::convert::timestamp),
            overdue_after_seconds: overdue_after,
            overdue_events: staged.overdue_events,
            overdue_shards: staged
                .overdue_shards
                .into_iter()
                .map(|s| pb::ShardBacklog {
                    account_id: s.account_id,
                    region: s.region,
                    source: s.source,
                    events: s.events,
                    oldest_received_time: Some(super::convert::timestamp(s.oldest)),
                })
                .collect(),
            untaken: untaken
                .into_iter()
                .map(|u| pb::UntakenEvents {
                    account_id: u.account_id,
                    category: u.category,
                    events: u.events,
                    latest_time: Some(super::convert::timestamp(u.latest_at)),
                })
                .collect(),
        }))
    }

    async fn list_channels(
        &self,
        request: Request<pb::ListChannelsRequest>,
    ) -> ApiResult<pb::ListChannelsResponse> {
        let caller = Caller::of(&request)?;
        authorize(&caller, Action::ReadTrails)?;
        let found = channels::list(&self.ctx.pool, caller.member_account()).await?;
        Ok(Response::new(pb::ListChannelsResponse { channels: found.iter().map(channel_message).collect() }))
    }
}
