//! KeyService: digest signing keys, published as CloudTrail's ListPublicKeys.

use chrono::{DateTime, Utc};
use tonic::{Request, Response};

use super::auth::{Action, Caller, authorize};
use super::error::{ApiError, ApiResult};
use super::{Ctx, convert};
use crate::integrity::keys::SigningKey;
use crate::model::Region;
use crate::proto::v1 as pb;
use crate::store::signing_keys::{self, StoredKey};

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

    /// Generates a key and makes it current (RSA generation and encryption off the runtime).
    async fn install_new(&self, region: &Region, only_if_none: bool) -> Result<StoredKey, ApiError> {
        let master = self.ctx.master_key.clone().ok_or_else(|| {
            ApiError::FailedPrecondition(
                "signing keys need a master key: set master_key (ORGTRAIL_MASTER_KEY)".into(),
            )
        })?;
        let (public, fingerprint, sealed) = tokio::task::spawn_blocking(move || {
            let key = SigningKey::generate().map_err(|e| ApiError::Internal(e.to_string()))?;
            let private = key.to_pkcs8().map_err(|e| ApiError::Internal(e.to_string()))?;
            let sealed = master.encrypt(&private).map_err(|e| ApiError::Internal(e.to_string()))?;
            Ok::<_, ApiError>((key.public_key_pkcs1(), key.fingerprint(), sealed))
        })
        .await
        .map_err(|e| ApiError::Internal(format!("key generation panicked: {e}")))??;
        Ok(signing_keys::install(&self.ctx.pool, region, &public, &fingerprint, &sealed, only_if_none)
            .await?)
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
            (None, None) => {
                let current = match signing_keys::current(&self.ctx.pool, &region).await? {
                    Some(key) => key,
                    None => self.install_new(&region, true).await?,
                };
                vec![current]
            }
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
        let key = self.install_new(&region, false).await?;
        tracing::info!(region = %region, fingerprint = %key.fingerprint, "signing key rotated");
        Ok(Response::new(public_key(&key)))
    }
}
