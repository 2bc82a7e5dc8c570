//! PutEventSelectors, GetEventSelectors, PutInsightSelectors and GetInsightSelectors, answered
//! by TrailService; selectors read back exactly as they were put.

use serde::Deserialize;
use serde_json::Value;

use super::dispatch::Call;
use super::error::AwsError;
use super::protocol;
use super::shapes::{self, AdvancedSelectorInput, EventSelectorInput, InsightSelectorInput};
use super::trails::{home_trail, trail_ref};
use crate::proto::v1 as pb;
use crate::proto::v1::trail_service_server::TrailService;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutEventSelectorsInput {
    #[serde(default)]
    trail_name: String,
    #[serde(default)]
    event_selectors: Vec<EventSelectorInput>,
    #[serde(default)]
    advanced_event_selectors: Vec<AdvancedSelectorInput>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TrailNameInput {
    #[serde(default)]
    trail_name: String,
    /// CloudTrail Lake's; orgtrail has no event data stores.
    #[serde(default)]
    event_data_store: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutInsightSelectorsInput {
    #[serde(default)]
    trail_name: String,
    #[serde(default)]
    insight_selectors: Vec<InsightSelectorInput>,
    /// CloudTrail Lake's; orgtrail has no event data stores.
    #[serde(default)]
    event_data_store: String,
    #[serde(default)]
    insights_destination: String,
}

pub async fn put_event_selectors(call: &Call<'_>, body: &[u8]) -> Result<Value, AwsError> {
    let input: PutEventSelectorsInput = protocol::input(body)?;
    let trail = home_trail(call, &input.trail_name).await?;
    let request = call.request(pb::PutEventSelectorsRequest {
        trail_name: trail.trail_arn,
        event_selectors: input.event_selectors.into_iter().map(shapes::event_selector_from).collect(),
        advanced_event_selectors: input
            .advanced_event_selectors
            .into_iter()
            .map(shapes::advanced_selector_from)
            .collect(),
    });
    let put = call.services.trails.put_event_selectors(request).await.map_err(|s| call.status(s))?;
    Ok(shapes::event_selectors(put.get_ref()))
}

pub async fn get_event_selectors(call: &Call<'_>, body: &[u8]) -> Result<Value, AwsError> {
    let input: TrailNameInput = protocol::input(body)?;
    no_event_data_store(&input.event_data_store)?;
    let trail_name = trail_ref(call, &input.trail_name).await?;
    let request = call.request(pb::GetEventSelectorsRequest { trail_name });
    let got = call.services.trails.get_event_selectors(request).await.map_err(|s| call.status(s))?;
    Ok(shapes::event_selectors(got.get_ref()))
}

pub async fn put_insight_selectors(call: &Call<'_>, body: &[u8]) -> Result<Value, AwsError> {
    let input: PutInsightSelectorsInput = protocol::input(body)?;
    no_event_data_store(&input.event_data_store)?;
    no_event_data_store(&input.insights_destination)?;
    let trail = home_trail(call, &input.trail_name).await?;
    let request = call.request(pb::PutInsightSelectorsRequest {
        trail_name: trail.trail_arn,
        insight_selectors: input.insight_selectors.into_iter().map(shapes::insight_selector_from).collect(),
    });
    let put = call.services.trails.put_insight_selectors(request).await.map_err(|s| call.status(s))?;
    Ok(shapes::insight_selectors(put.get_ref()))
}

/// CloudTrail answers a trail without Insights with InsightNotEnabledException, not an empty list.
pub async fn get_insight_selectors(call: &Call<'_>, body: &[u8]) -> Result<Value, AwsError> {
    let input: TrailNameInput = protocol::input(body)?;
    no_event_data_store(&input.event_data_store)?;
    let trail_name = trail_ref(call, &input.trail_name).await?;
    let request = call.request(pb::GetInsightSelectorsRequest { trail_name });
    let got = call.services.trails.get_insight_selectors(request).await.map_err(|s| call.status(s))?;
    if got.get_ref().insight_selectors.is_empty() {
        return Err(AwsError::client(
            "InsightNotEnabledException",
            format!("trail {} has no Insights selectors", got.get_ref().trail_arn),
        ));
    }
    Ok(shapes::insight_selectors(got.get_ref()))
}

fn no_event_data_store(value: &str) -> Result<(), AwsError> {
    if value.is_empty() {
        return Ok(());
    }
    Err(AwsError::client(
        "InvalidParameterCombinationException",
        format!(
            "orgtrail has trails, not CloudTrail Lake event data stores; name a trail in TrailName, got {value:?}"
        ),
    ))
}
