//! CloudTrail's actions (`CloudTrail_20131101.*`), each answered by TrailService or KeyService.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::Value;

use super::dispatch::Call;
use super::error::AwsError;
use super::protocol::{self, EpochSeconds, Object};
use super::shapes;
use crate::proto::v1 as pb;
use crate::proto::v1::event_service_server::EventService;
use crate::proto::v1::key_service_server::KeyService;
use crate::proto::v1::trail_service_server::TrailService;

#[derive(Debug, Deserialize)]
struct DescribeTrailsInput {
    /// Names (current region, the caller's own) or ARNs (anything visible); empty: the region's listing.
    #[serde(rename = "trailNameList", default)]
    trail_name_list: Vec<String>,
    /// Whether the region's listing includes trails homed elsewhere and organization trails of
    /// other accounts. CloudTrail's default is true.
    #[serde(rename = "includeShadowTrails")]
    include_shadow_trails: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct NameInput {
    /// A trail name or ARN; the service reports a missing one, naming the field.
    #[serde(rename = "Name", default)]
    name: String,
}

#[derive(Debug, Deserialize)]
struct ListPublicKeysInput {
    #[serde(rename = "StartTime")]
    start_time: Option<EpochSeconds>,
    #[serde(rename = "EndTime")]
    end_time: Option<EpochSeconds>,
    /// "Reserved for future use" by CloudTrail; every answer fits in one page.
    #[serde(rename = "NextToken")]
    _next_token: Option<String>,
}

#[derive(Debug, Deserialize)]
struct LookupAttributeInput {
    #[serde(rename = "AttributeKey", default)]
    attribute_key: String,
    #[serde(rename = "AttributeValue", default)]
    attribute_value: String,
}

#[derive(Debug, Deserialize)]
struct LookupEventsInput {
    #[serde(rename = "LookupAttributes", default)]
    lookup_attributes: Vec<LookupAttributeInput>,
    #[serde(rename = "StartTime")]
    start_time: Option<EpochSeconds>,
    #[serde(rename = "EndTime")]
    end_time: Option<EpochSeconds>,
    #[serde(rename = "EventCategory", default)]
    event_category: String,
    #[serde(rename = "MaxResults", default)]
    max_results: Option<i64>,
    #[serde(rename = "NextToken", default)]
    next_token: String,
}

pub async fn describe_trails(call: &Call<'_>, body: &[u8]) -> Result<Value, AwsError> {
    let input: DescribeTrailsInput = protocol::input(body)?;
    let visible = visible_trails(call).await?;
    let member = call.caller.member_account().map(|a| a.as_str());
    let region = call.region.as_str();
    let selected: Vec<Value> = visible
        .iter()
        .filter(|t| {
            if input.trail_name_list.is_empty() {
                in_region_listing(t, region, member, input.include_shadow_trails.unwrap_or(true))
            } else {
                input.trail_name_list.iter().any(|wanted| is_named(t, wanted, region, member))
            }
        })
        .map(shapes::trail)
        .collect();
    Ok(Object::new().value("trailList", selected).build())
}

pub async fn get_trail(call: &Call<'_>, body: &[u8]) -> Result<Value, AwsError> {
    let input: NameInput = protocol::input(body)?;
    let found = super::trails::find_trail(call, &input.name).await?;
    Ok(Object::new().value("Trail", shapes::trail(&found)).build())
}

pub async fn get_trail_status(call: &Call<'_>, body: &[u8]) -> Result<Value, AwsError> {
    let input: NameInput = protocol::input(body)?;
    let name = super::trails::trail_ref(call, &input.name).await?;
    let request = call.request(pb::GetTrailStatusRequest { name });
    let status =
        call.services.trails.get_trail_status(request).await.map_err(|s| call.status(s))?.into_inner();
    let time = |t: &Option<pbjson_types::Timestamp>| EpochSeconds::from_proto(t.as_ref());
    let iso = |t: &Option<pbjson_types::Timestamp>| time(t).map(EpochSeconds::to_iso8601).unwrap_or_default();
    Ok(Object::new()
        .value("IsLogging", status.is_logging)
        .text("LatestDeliveryError", &status.latest_delivery_error)
        .text("LatestNotificationError", &status.latest_notification_error)
        .time("LatestDeliveryTime", time(&status.latest_delivery_time))
        .time("LatestNotificationTime", time(&status.latest_notification_time))
        .time("StartLoggingTime", time(&status.start_logging_time))
        .time("StopLoggingTime", time(&status.stop_logging_time))
        .text("LatestCloudWatchLogsDeliveryError", &status.latest_cloud_watch_logs_delivery_error)
        .time("LatestCloudWatchLogsDeliveryTime", time(&status.latest_cloud_watch_logs_delivery_time))
        .time("LatestDigestDeliveryTime", time(&status.latest_digest_delivery_time))
        .text("LatestDigestDeliveryError", &status.latest_digest_delivery_error)
        // The deprecated string forms CloudTrail still returns ("2015-11-06T18:36:38Z"): attempts,
        // successes, and logging start and stop.
        .text("LatestDeliveryAttemptTime", &iso(&status.latest_delivery_attempt_time))
        .text("LatestDeliveryAttemptSucceeded", &iso(&status.latest_delivery_time))
        .text("LatestNotificationAttemptTime", &iso(&status.latest_notification_time))
        .text("LatestNotificationAttemptSucceeded", &iso(&status.latest_notification_time))
        .text("TimeLoggingStarted", &iso(&status.start_logging_time))
        .text("TimeLoggingStopped", &iso(&status.stop_logging_time))
        .build())
}

pub async fn list_public_keys(call: &Call<'_>, body: &[u8]) -> Result<Value, AwsError> {
    let input: ListPublicKeysInput = protocol::input(body)?;
    // Keys are per region: the region the client signed for, as CloudTrail serves its own.
    let request = call.request(pb::ListPublicKeysRequest {
        region: call.region.to_string(),
        start_time: input.start_time.map(EpochSeconds::to_timestamp),
        end_time: input.end_time.map(EpochSeconds::to_timestamp),
    });
    let keys = call.services.keys.list_public_keys(request).await.map_err(|s| call.status(s))?.into_inner();
    let list: Vec<Value> = keys
        .public_key_list
        .iter()
        .map(|key| {
            Object::new()
                // A blob travels as base64 of the PKCS#1 DER, encoded once (validate-logs decodes it itself).
                .value("Value", STANDARD.encode(&key.value))
                .time("ValidityStartTime", EpochSeconds::from_proto(key.validity_start_time.as_ref()))
                .time("ValidityEndTime", EpochSeconds::from_proto(key.validity_end_time.as_ref()))
                .value("Fingerprint", key.fingerprint.as_str())
                .build()
        })
        .collect();
    Ok(Object::new().value("PublicKeyList", list).build())
}

/// LookupEvents over the event history EventService keeps: the whole organization (a member's
/// own account), not only the region signed for, with CloudTrail's exceptions for bad input.
pub async fn lookup_events(call: &Call<'_>, body: &[u8]) -> Result<Value, AwsError> {
    let input: LookupEventsInput = protocol::input(body)?;
    let max_results = match input.max_results {
        None => 0,
        // 0 would mean "the default" to EventService; CloudTrail refuses it.
        Some(n) if !(1..=i64::from(crate::control::api::event::MAX_RESULTS)).contains(&n) => {
            return Err(AwsError::client(
                "InvalidMaxResultsException",
                format!("MaxResults must be 1 to {}, got {n}", crate::control::api::event::MAX_RESULTS),
            ));
        }
        Some(n) => n as i32,
    };
    let request = call.request(pb::LookupEventsRequest {
        lookup_attributes: input
            .lookup_attributes
            .into_iter()
            .map(|a| pb::LookupAttribute {
                attribute_key: a.attribute_key,
                attribute_value: a.attribute_value,
            })
            .collect(),
        start_time: input.start_time.map(EpochSeconds::to_timestamp),
        end_time: input.end_time.map(EpochSeconds::to_timestamp),
        event_category: input.event_category,
        max_results,
        next_token: input.next_token,
        account_id: String::new(),
        region: String::new(),
    });
    let page = call.services.events.lookup_events(request).await.map_err(lookup_error)?.into_inner();
    let events: Vec<Value> = page
        .events
        .iter()
        .map(|event| {
            let resources: Vec<Value> = event
                .resources
                .iter()
                .map(|r| {
                    Object::new()
                        .text("ResourceType", &r.resource_type)
                        .text("ResourceName", &r.resource_name)
                        .build()
                })
                .collect();
            Object::new()
                .value("EventId", event.event_id.as_str())
                .text("EventName", &event.event_name)
                .text("ReadOnly", &event.read_only)
                .text("AccessKeyId", &event.access_key_id)
                .time("EventTime", EpochSeconds::from_proto(event.event_time.as_ref()))
                .text("EventSource", &event.event_source)
                .text("Username", &event.username)
                .value("Resources", resources)
                .value("CloudTrailEvent", event.cloud_trail_event.as_str())
                .build()
        })
        .collect();
    Ok(Object::new().value("Events", events).text("NextToken", &page.next_token).build())
}

/// CloudTrail's LookupEvents exceptions, chosen by the field EventService names.
fn lookup_error(status: tonic::Status) -> AwsError {
    if status.code() == tonic::Code::InvalidArgument {
        const BY_FIELD: &[(&str, &str)] = &[
            ("lookup_attributes", "InvalidLookupAttributesException"),
            ("start_time", "InvalidTimeRangeException"),
            ("end_time", "InvalidTimeRangeException"),
            ("max_results", "InvalidMaxResultsException"),
            ("next_token", "InvalidNextTokenException"),
            ("event_category", "InvalidEventCategoryException"),
        ];
        if let Some((_, exception)) = BY_FIELD.iter().find(|(field, _)| status.message().starts_with(field)) {
            return AwsError::client(exception, status.message());
        }
    }
    AwsError::from_status(&status, "ResourceNotFoundException")
}

/// Every trail the caller may see, as TrailService lists them (it applies the visibility rules).
async fn visible_trails(call: &Call<'_>) -> Result<Vec<pb::Trail>, AwsError> {
    let mut trails = Vec::new();
    let mut next_token = String::new();
    loop {
        let request = call.request(pb::ListTrailsRequest { page_size: 1000, next_token });
        let page = call.services.trails.list_trails(request).await.map_err(|s| call.status(s))?.into_inner();
        trails.extend(page.trails);
        if page.next_token.is_empty() {
            return Ok(trails);
        }
        next_token = page.next_token;
    }
}

/// Whether a trail is the caller's own, as opposed to another account's organization trail
/// (admins and auditors act for every account).
fn is_own(trail: &pb::Trail, member: Option<&str>) -> bool {
    member.is_none_or(|account| trail.owner_account_id == account)
}

/// DescribeTrails without names: the trails that apply in `region`. Shadow trails are the
/// region's copies of trails homed elsewhere (multi-region) and, for members, the organization
/// trails that cover them.
fn in_region_listing(trail: &pb::Trail, region: &str, member: Option<&str>, include_shadow: bool) -> bool {
    let homed_here = trail.home_region == region;
    if !homed_here && !trail.is_multi_region_trail {
        return false;
    }
    let shadow = !homed_here || !is_own(trail, member);
    include_shadow || !shadow
}

/// DescribeTrails' `trailNameList`: an ARN names any visible trail, a name only the caller's own
/// trails homed in `region`.
fn is_named(trail: &pb::Trail, wanted: &str, region: &str, member: Option<&str>) -> bool {
    if crate::model::TrailArn::looks_like_arn(wanted) {
        trail.trail_arn == wanted
    } else {
        trail.name == wanted && trail.home_region == region && is_own(trail, member)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pb_trail(name: &str, owner: &str, home: &str, multi: bool, organization: bool) -> pb::Trail {
        pb::Trail {
            name: name.into(),
            owner_account_id: owner.into(),
            home_region: home.into(),
            trail_arn: format!("arn:aws:cloudtrail:{home}:{owner}:trail/{name}"),
            is_multi_region_trail: multi,
            is_organization_trail: organization,
            ..Default::default()
        }
    }

    #[test]
    fn region_listing_includes_shadow_trails_only_when_asked() {
        let home = pb_trail("here", "222222222222", "us-east-1", false, false);
        let elsewhere_multi = pb_trail("multi", "222222222222", "eu-west-1", true, false);
        let elsewhere_single = pb_trail("single", "222222222222", "eu-west-1", false, false);
        let org = pb_trail("org", "111111111111", "us-east-1", true, true);
        let member = Some("222222222222");
        let listed = |include_shadow: bool, who: Option<&str>| -> Vec<&str> {
            [&home, &elsewhere_multi, &elsewhere_single, &org]
                .into_iter()
                .filter(|t| in_region_listing(t, "us-east-1", who, include_shadow))
                .map(|t| t.name.as_str())
                .collect()
        };
        assert_eq!(listed(true, member), vec!["here", "multi", "org"]);
        assert_eq!(listed(false, member), vec!["here"], "another account's organization trail is a shadow");
        assert_eq!(listed(false, None), vec!["here", "org"], "admins own every trail");
    }

    #[test]
    fn names_match_own_trails_of_the_region_and_arns_match_anything() {
        let org = pb_trail("org", "111111111111", "us-east-1", true, true);
        let member = Some("222222222222");
        assert!(!is_named(&org, "org", "us-east-1", member), "members name organization trails by ARN");
        assert!(is_named(&org, &org.trail_arn, "us-east-1", member));
        assert!(is_named(&org, "org", "us-east-1", None));
        assert!(!is_named(&org, "org", "eu-west-1", None), "names match trails homed in the region");
    }
}
