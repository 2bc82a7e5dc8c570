//! TokenService.

use chrono::Utc;
use tonic::{Request, Response};
use uuid::Uuid;

use super::Ctx;
use super::auth::{Action, Caller, authorize};
use super::convert;
use super::error::{ApiError, ApiResult};
use crate::model::AccountId;
use crate::proto::v1 as pb;
use crate::secrets;
use crate::store::accounts::{self, AccountStatus};
use crate::store::tokens::{self, NewToken, Role};
use crate::store::{StoreError, page};

/// Longest token lifetime accepted: ten years.
const MAX_LIFETIME_SECONDS: i64 = 10 * 365 * 24 * 3600;

pub struct TokenApi {
    ctx: Ctx,
}

impl TokenApi {
    pub fn new(ctx: Ctx) -> Self {
        Self { ctx }
    }
}

/// What CreateToken returns: the stored token and its secrets, shown once.
pub struct IssuedToken {
    pub token: tokens::Token,
    pub secret: String,
    pub secret_access_key: Option<String>,
}

/// Creates a token. Shared by the API and the `create-admin-token` / `dev` commands, which
/// have no token yet.
pub async fn issue(
    executor: impl sqlx::PgExecutor<'_>,
    master_key: Option<&secrets::MasterKey>,
    name: &str,
    role: Role,
    account_id: Option<&AccountId>,
    lifetime_seconds: i64,
    with_access_key: bool,
) -> Result<IssuedToken, ApiError> {
    let secret = secrets::new_bearer_secret().map_err(|e| ApiError::Internal(e.to_string()))?;
    let hash = secrets::hash_bearer_secret(&secret);
    let access_key = if with_access_key {
        let key = master_key.ok_or_else(|| {
            ApiError::FailedPrecondition(
                "with_access_key needs a master key: set master_key (ORGTRAIL_MASTER_KEY) on the server"
                    .into(),
            )
        })?;
        let (id, secret) = secrets::new_access_key_pair().map_err(|e| ApiError::Internal(e.to_string()))?;
        let sealed = key.encrypt(secret.as_bytes()).map_err(|e| ApiError::Internal(e.to_string()))?;
        Some((id, secret, sealed))
    } else {
        None
    };
    let expire_time =
        (lifetime_seconds > 0).then(|| Utc::now() + chrono::Duration::seconds(lifetime_seconds));
    let token = tokens::insert(
        executor,
        NewToken {
            name,
            role,
            account_id,
            token_hash: &hash,
            access_key: access_key.as_ref().map(|(id, _, sealed)| (id.as_str(), sealed.as_slice())),
            expire_time,
        },
    )
    .await?;
    Ok(IssuedToken { token, secret, secret_access_key: access_key.map(|(_, secret, _)| secret) })
}

fn role_from(value: i32) -> Result<Role, ApiError> {
    match pb::Role::try_from(value) {
        Ok(pb::Role::Admin) => Ok(Role::Admin),
        Ok(pb::Role::Auditor) => Ok(Role::Auditor),
        Ok(pb::Role::Member) => Ok(Role::Member),
        Ok(pb::Role::Unspecified) | Err(_) => {
            Err(ApiError::invalid("role", "must be ROLE_ADMIN, ROLE_AUDITOR or ROLE_MEMBER"))
        }
    }
}

fn parse_token_id(value: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(value)
        .map_err(|_| ApiError::invalid("token_id", format!("{value:?} is not a token id (UUID)")))
}

#[tonic::async_trait]
impl pb::token_service_server::TokenService for TokenApi {
    async fn create_token(
        &self,
        request: Request<pb::CreateTokenRequest>,
    ) -> ApiResult<pb::CreateTokenResponse> {
        let caller = Caller::of(&request)?;
        authorize(&caller, Action::Administer)?;
        let input = request.into_inner();
        crate::model::names::check_name("name", &input.name)?;
        let role = role_from(input.role)?;
        let account_id = match (role, input.account_id.is_empty()) {
            (Role::Member, true) => {
                return Err(ApiError::invalid("account_id", "required for member tokens").into());
            }
            (Role::Member, false) => {
                let account_id = AccountId::parse("account_id", &input.account_id)?;
                match accounts::get(&self.ctx.pool, &account_id).await? {
                    Some(account) if account.status != AccountStatus::Removed => {}
                    _ => {
                        return Err(ApiError::FailedPrecondition(format!(
                            "account {account_id} is not registered; register it first"
                        ))
                        .into());
                    }
                }
                Some(account_id)
            }
            (Role::Admin | Role::Auditor, true) => None,
            (Role::Admin | Role::Auditor, false) => {
                return Err(
                    ApiError::invalid("account_id", "only member tokens are scoped to an account").into()
                );
            }
        };
        if !(0..=MAX_LIFETIME_SECONDS).contains(&input.expires_in_seconds) {
            return Err(ApiError::invalid(
                "expires_in_seconds",
                format!("must be 0 (never) to {MAX_LIFETIME_SECONDS}, got {}", input.expires_in_seconds),
            )
            .into());
        }
        let issued = issue(
            &self.ctx.pool,
            self.ctx.master_key.as_deref(),
            &input.name,
            role,
            account_id.as_ref(),
            input.expires_in_seconds,
            input.with_access_key,
        )
        .await?;
        tracing::info!(token_id = %issued.token.id, role = role.as_str(), "token created");
        Ok(Response::new(pb::CreateTokenResponse {
            token: Some(convert::token(&issued.token)),
            secret: issued.secret,
            secret_access_key: issued.secret_access_key.unwrap_or_default(),
        }))
    }

    async fn list_tokens(
        &self,
        request: Request<pb::ListTokensRequest>,
    ) -> ApiResult<pb::ListTokensResponse> {
        let caller = Caller::of(&request)?;
        authorize(&caller, Action::Administer)?;
        let input = request.into_inner();
        let limit = page::size(input.page_size)?;
        let after = page::decode(&input.next_token)?
            .map(|key| {
                Uuid::parse_str(&key)
                    .map_err(|_| ApiError::invalid("next_token", "is not a token returned by this API"))
            })
            .transpose()?;
        let mut found = tokens::list(&self.ctx.pool, after, limit + 1, input.include_inactive).await?;
        let next_token = if found.len() as i64 > limit {
            found.truncate(limit as usize);
            found.last().map(|t| page::encode(&t.id.to_string())).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListTokensResponse {
            tokens: found.iter().map(convert::token).collect(),
            next_token,
        }))
    }

    async fn revoke_token(&self, request: Request<pb::RevokeTokenRequest>) -> ApiResult<pb::Token> {
        let caller = Caller::of(&request)?;
        authorize(&caller, Action::Administer)?;
        let id = parse_token_id(&request.get_ref().token_id)?;
        let token = tokens::revoke(&self.ctx.pool, id).await.map_err(|e| match e {
            StoreError::NotFound(_) => ApiError::NotFound(format!("token {id} not found")),
            other => other.into(),
        })?;
        tracing::info!(token_id = %token.id, "token revoked");
        Ok(Response::new(convert::token(&token)))
    }

    async fn who_am_i(&self, request: Request<pb::WhoAmIRequest>) -> ApiResult<pb::Token> {
        let caller = Caller::of(&request)?;
        authorize(&caller, Action::WhoAmI)?;
        let token = tokens::get(&self.ctx.pool, caller.token_id).await?;
        let token = token.ok_or_else(|| ApiError::Unauthenticated("token no longer exists".into()))?;
        Ok(Response::new(convert::token(&token)))
    }
}
