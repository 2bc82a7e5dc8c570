//! EventService: LookupEvents over the organization's event history.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use tonic::{Request, Response};

use super::auth::{Action, Caller, authorize};
use super::error::{ApiError, ApiResult};
use super::{Ctx, convert};
use crate::features::history::index::{self as index, Entry, Lookup, Position};
use crate::model::history::{self, LookupAttribute};
use crate::model::{AccountId, FieldError, Region};
use crate::proto::v1 as pb;

/// Events per page at most (CloudTrail's limit), and without max_results.
pub const MAX_RESULTS: i32 = 50;

/// The only event category a lookup may name.
pub const INSIGHT_CATEGORY: &str = "insight";

pub struct EventApi {
    ctx: Ctx,
}

impl EventApi {
    pub fn new(ctx: Ctx) -> Self {
        Self { ctx }
    }
}

fn time(field: &str, value: &Option<pbjson_types::Timestamp>) -> Result<Option<DateTime<Utc>>, FieldError> {
    value
        .as_ref()
        .map(|t| {
            DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)
                .ok_or_else(|| FieldError::new(field, "is not a valid time"))
        })
        .transpose()
}

/// The request, checked; `account_id` already narrowed to what the caller may see.
fn parse(request: &pb::LookupEventsRequest, caller: &Caller) -> Result<(Lookup, String), ApiError> {
    let attribute = match request.lookup_attributes.as_slice() {
        [] => None,
        [one] => {
            Some(LookupAttribute::parse("lookup_attributes[0]", &one.attribute_key, &one.attribute_value)?)
        }
        more => {
            return Err(ApiError::invalid(
                "lookup_attributes",
                format!("at most one lookup attribute is allowed, got {}", more.len()),
            ));
        }
    };
    let insight = match request.event_category.as_str() {
        "" => false,
        INSIGHT_CATEGORY => true,
        other => {
            return Err(ApiError::invalid(
                "event_category",
                format!("the only event category is {INSIGHT_CATEGORY:?}, got {other:?}"),
            ));
        }
    };
    if insight
        && let Some(attribute) = &attribute
        && !attribute.key.applies_to_insights()
    {
        return Err(ApiError::invalid(
            "lookup_attributes[0].attribute_key",
            format!(
                "{} cannot look up Insights events; use EventId, EventName or EventSource",
                attribute.key.as_str()
            ),
        ));
    }
    let start_time = time("start_time", &request.start_time)?;
    let end_time = time("end_time", &request.end_time)?;
    if let (Some(start), Some(end)) = (start_time, end_time)
        && start > end
    {
        return Err(ApiError::invalid("start_time", "must not be after end_time"));
    }
    let limit = match request.max_results {
        0 => MAX_RESULTS,
        n if (1..=MAX_RESULTS).contains(&n) => n,
        n => return Err(ApiError::invalid("max_results", format!("must be 1 to {MAX_RESULTS}, got {n}"))),
    };
    let requested_account = match request.account_id.as_str() {
        "" => None,
        value => Some(AccountId::parse("account_id", value)?),
    };
    authorize(caller, Action::ReadEvents(requested_account.as_ref()))?;
    // Members see their own account whatever they asked (authorize refused other accounts).
    let account_id = requested_account.or_else(|| caller.member_account().cloned());
    let region = match request.region.as_str() {
        "" => None,
        value => Some(Region::parse("region", value)?),
    };
    let lookup = Lookup {
        attribute,
        start_time,
        end_time,
        insight,
        account_id,
        region,
        after: None,
        limit: i64::from(limit),
    };
    let binding = binding(&lookup);
    Ok((lookup, binding))
}

/// What a page token is bound to: every parameter that selects events (not max_results, which
/// only sizes pages), as a short digest.
fn binding(lookup: &Lookup) -> String {
    let micros = |t: Option<DateTime<Utc>>| t.map(|t| t.timestamp_micros().to_string()).unwrap_or_default();
    let canonical = serde_json::json!([
        lookup.attribute.as_ref().map(|a| a.key.as_str()),
        lookup.attribute.as_ref().map(|a| a.value.as_str()),
        micros(lookup.start_time),
        micros(lookup.end_time),
        lookup.insight,
        lookup.account_id.as_ref().map(AccountId::as_str),
        lookup.region.as_ref().map(Region::as_str),
    ])
    .to_string();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
    hex::encode(&digest.as_ref()[..12])
}

fn encode_token(binding: &str, position: Position) -> String {
    URL_SAFE_NO_PAD.encode(format!("h1:{binding}:{}:{}", position.event_time.timestamp_micros(), position.id))
}

fn decode_token(token: &str, binding: &str) -> Result<Position, FieldError> {
    let invalid = || FieldError::new("next_token", "is not a token returned by LookupEvents");
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let mut parts = text.split(':');
    let (Some("h1"), Some(bound), Some(micros), Some(id), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid());
    };
    if bound != binding {
        return Err(FieldError::new(
            "next_token",
            "was returned for other parameters; send it with the same lookup attributes, times, \
             event category, account and region",
        ));
    }
    let event_time = micros.parse().ok().and_then(DateTime::from_timestamp_micros).ok_or_else(invalid)?;
    let id = id.parse().map_err(|_| invalid())?;
    Ok(Position { event_time, id })
}

fn event(entry: Entry) -> pb::Event {
    let resources = history::resources(&entry.record)
        .into_iter()
        .map(|(resource_type, resource_name)| pb::EventResource { resource_type, resource_name })
        .collect();
    pb::Event {
        event_id: entry.event_id,
        event_name: entry.event_name,
        read_only: entry.read_only.map(|r| r.to_string()).unwrap_or_default(),
        access_key_id: entry.access_key_id.unwrap_or_default(),
        event_time: Some(convert::timestamp(entry.event_time)),
        event_source: entry.event_source,
        username: entry.username.unwrap_or_default(),
        resources,
        cloud_trail_event: entry.record,
        account_id: entry.account_id,
        region: entry.region,
    }
}

#[tonic::async_trait]
impl pb::event_service_server::EventService for EventApi {
    async fn lookup_events(
        &self,
        request: Request<pb::LookupEventsRequest>,
    ) -> ApiResult<pb::LookupEventsResponse> {
        let caller = Caller::of(&request)?;
        let input = request.into_inner();
        let (mut lookup, binding) = parse(&input, &caller)?;
        if !input.next_token.is_empty() {
            lookup.after = Some(decode_token(&input.next_token, &binding)?);
        }
        let page_size = lookup.limit;
        // One more than the page tells whether another page follows.
        lookup.limit += 1;
        let mut entries = index::lookup(&self.ctx.pool, &lookup).await?;
        let next_token = if entries.len() as i64 > page_size {
            entries.truncate(page_size as usize);
            entries.last().map(|last| encode_token(&binding, last.position())).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::LookupEventsResponse {
            events: entries.into_iter().map(event).collect(),
            next_token,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_bound_to_their_parameters() {
        let lookup = Lookup { limit: 50, ..Default::default() };
        let bound = binding(&lookup);
        let position =
            Position { event_time: DateTime::from_timestamp(1_700_000_000, 5_000).unwrap(), id: 42 };
        assert_eq!(decode_token(&encode_token(&bound, position), &bound), Ok(position));
        let other = binding(&Lookup { insight: true, ..lookup.clone() });
        assert_ne!(bound, other);
        let refused = decode_token(&encode_token(&bound, position), &other).unwrap_err();
        assert_eq!(refused.field, "next_token");
        assert!(decode_token("garbage", &bound).is_err());
        // Page size is not a parameter that selects events.
        assert_eq!(bound, binding(&Lookup { limit: 5, ..lookup }));
    }
}
