//! KeyService: digest signing keys, published as CloudTrail's ListPublicKeys.

use chrono::{DateTime, Utc};
use tonic::{Request, Response};

use super::auth::{Action, Caller, authorize};
use super::error::{ApiError, ApiResult};
use super::{Ctx, convert};
use crate::features::integrity::keyring::Keyring;
use crate::features::integrity::signing_keys::{self, StoredKey};
use crate::model::Region;
use crate::proto::v1 as pb;

pub struct KeyApi {
    ctx: Ctx,
}

impl KeyApi {
    pub fn new(ctx: Ctx) -> Self {
        Self { ctx }
    }

    fn region(&self, value: &str) -> Result<Region, ApiError> {
        if value.is_empty() {
            Ok(self.ctx.default_region.clone())
        } else {
            Ok(Region::parse("region", value)?)
        }
    }

    fn keyring(&self) -> Keyring {
        Keyring::new(self.ctx.pool.clone(), self.ctx.master_key.clone())
    }
}

fn public_key(key: &StoredKey) -> pb::PublicKey {
    pb::PublicKey {
        value: key.public_key.clone(),
        validity_start_time: Some(convert::timestamp(key.valid_from)),
        validity_end_time: convert::opt_timestamp(key.valid_to),
        fingerprint: key.fingerprint.clone(),
        region: key.region.clone(),
    }
}

fn time(field: &str, value: &Option<pbjson_types::Timestamp>) -> Result<Option<DateTime<Utc>>, ApiError> {
    value
        .as_ref()
        .map(|t| {
            DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)
                .ok_or_else(|| ApiError::invalid(field, "is not a valid time"))
        })
        .transpose()
}

#[tonic::async_trait]
impl pb::key_service_server::KeyService for KeyApi {
    async fn list_public_keys(
        &self,
        request: Request<pb::ListPublicKeysRequest>,
    ) -> ApiResult<pb::ListPublicKeysResponse> {
        let caller = Caller::of(&request)?;
        authorize(&caller, Action::ReadTrails)?;
        let input = request.into_inner();
        let region = self.region(&input.region)?;
        let start = time("start_time", &input.start_time)?;
        let end = time("end_time", &input.end_time)?;
        let keys = match (start, end) {
            // A read never creates a key: a region gets its first one with its first digest (or
            // RotateSigningKey); until then there is nothing to list.
            (None, None) => signing_keys::current(&self.ctx.pool, &region).await?.into_iter().collect(),
            (start, end) => {
                let start = start.unwrap_or(DateTime::<Utc>::MIN_UTC);
                let end = end.unwrap_or_else(Utc::now);
                if end < start {
                    return Err(ApiError::invalid(
                        "end_time",
                        "InvalidTimeRange: end_time is before start_time",
                    )
                    .into());
                }
                signing_keys::overlapping(&self.ctx.pool, &region, start, end).await?
            }
        };
        Ok(Response::new(pb::ListPublicKeysResponse {
            public_key_list: keys.iter().map(public_key).collect(),
        }))
    }

    async fn rotate_signing_key(
        &self,
        request: Request<pb::RotateSigningKeyRequest>,
    ) -> ApiResult<pb::PublicKey> {
        let caller = Caller::of(&request)?;
        authorize(&caller, Action::Administer)?;
        let region = self.region(&request.get_ref().region)?;
        let key = self
            .keyring()
            .install_new(&region, signing_keys::Replace::Always)
            .await
            .map_err(ApiError::from)?;
        tracing::info!(region = %region, fingerprint = %key.fingerprint, "signing key rotated");
        Ok(Response::new(public_key(&key)))
    }
}
