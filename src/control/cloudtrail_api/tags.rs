//! AddTags, RemoveTags and ListTags on trails (`ResourceId`: a trail ARN, or a name), answered by
//! TrailService.

use serde::Deserialize;
use serde_json::Value;

use super::dispatch::Call;
use super::error::AwsError;
use super::protocol::{self, Object};
use super::shapes::{self, TagInput};
use super::trails::trail_ref;
use crate::proto::v1 as pb;
use crate::proto::v1::trail_service_server::TrailService;
use crate::store::page;

/// CloudTrail's limit on ListTags' `ResourceIdList`.
const MAX_RESOURCE_IDS: usize = 20;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagsInput {
    #[serde(default)]
    resource_id: String,
    #[serde(default)]
    tags_list: Vec<TagInput>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListTagsInput {
    #[serde(default)]
    resource_id_list: Vec<String>,
    #[serde(default)]
    next_token: String,
}

pub async fn add_tags(call: &Call<'_>, body: &[u8]) -> Result<Value, AwsError> {
    let input: TagsInput = protocol::input(body)?;
    let name = trail_ref(call, &input.resource_id).await?;
    let request = call.request(pb::AddTagsRequest { name, tags: shapes::tags_from(input.tags_list) });
    call.services.trails.add_tags(request).await.map_err(|s| resource_error(call, s))?;
    Ok(Object::new().build())
}

/// Removes the keys named (a Value given with a key is not compared, as in CloudTrail).
pub async fn remove_tags(call: &Call<'_>, body: &[u8]) -> Result<Value, AwsError> {
    let input: TagsInput = protocol::input(body)?;
    let name = trail_ref(call, &input.resource_id).await?;
    let keys = input.tags_list.into_iter().map(|t| t.key).collect();
    let request = call.request(pb::RemoveTagsRequest { name, keys });
    call.services.trails.remove_tags(request).await.map_err(|s| resource_error(call, s))?;
    Ok(Object::new().build())
}

/// The tags of each trail named, `cloudtrail_list_page_size` trails a page.
pub async fn list_tags(call: &Call<'_>, body: &[u8]) -> Result<Value, AwsError> {
    let input: ListTagsInput = protocol::input(body)?;
    if input.resource_id_list.is_empty() || input.resource_id_list.len() > MAX_RESOURCE_IDS {
        return Err(AwsError::client(
            "InvalidParameterException",
            format!(
                "ResourceIdList: must name 1 to {MAX_RESOURCE_IDS} trails, got {}",
                input.resource_id_list.len()
            ),
        ));
    }
    let invalid_token = || {
        AwsError::client(
            "InvalidTokenException",
            "NextToken: is not a token returned by ListTags for this list",
        )
    };
    let start = match page::decode(&input.next_token).map_err(|_| invalid_token())? {
        None => 0,
        Some(offset) => offset.parse::<usize>().map_err(|_| invalid_token())?,
    };
    if start >= input.resource_id_list.len() {
        return Err(invalid_token());
    }
    let end = (start + call.settings.list_page_size.max(1) as usize).min(input.resource_id_list.len());
    let mut listed = Vec::with_capacity(end - start);
    for resource_id in &input.resource_id_list[start..end] {
        let name = trail_ref(call, resource_id).await?;
        let request = call.request(pb::GetTrailRequest { name });
        let trail = call.services.trails.get_trail(request).await.map_err(|s| resource_error(call, s))?;
        listed.push(
            Object::new()
                .value("ResourceId", resource_id.as_str())
                .value("TagsList", shapes::tags(&trail.get_ref().tags))
                .build(),
        );
    }
    let next_token =
        if end < input.resource_id_list.len() { page::encode(&end.to_string()) } else { String::new() };
    Ok(Object::new().value("ResourceTagList", listed).text("NextToken", &next_token).build())
}

/// The service names the trail argument `name`; here it is `ResourceId`.
fn resource_error(call: &Call<'_>, status: tonic::Status) -> AwsError {
    let mut error = call.status(status);
    if let Some(rest) = error.message.strip_prefix("Name: ") {
        error.message = format!("ResourceId: {rest}");
    }
    error
}
