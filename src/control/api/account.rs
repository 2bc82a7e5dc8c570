//! AccountService.

use tonic::{Request, Response};

use super::Ctx;
use super::auth::{Action, Caller, authorize};
use super::convert;
use super::enrollment;
use super::error::{ApiError, ApiResult};
use crate::model::AccountId;
use crate::model::names::{check_email, check_name};
use crate::proto::v1 as pb;
use crate::store::accounts::{self, AccountStatus, RegistrationSource};
use crate::store::{organizations, page};

pub struct AccountApi {
    ctx: Ctx,
}

impl AccountApi {
    pub fn new(ctx: Ctx) -> Self {
        Self { ctx }
    }
}

fn status_filter(value: i32) -> Result<Option<AccountStatus>, ApiError> {
    match pb::AccountStatus::try_from(value) {
        Ok(pb::AccountStatus::Unspecified) => Ok(None),
        Ok(pb::AccountStatus::Active) => Ok(Some(AccountStatus::Active)),
        Ok(pb::AccountStatus::Suspended) => Ok(Some(AccountStatus::Suspended)),
        Ok(pb::AccountStatus::Removed) => Ok(Some(AccountStatus::Removed)),
        Err(_) => Err(ApiError::invalid("status", format!("unknown account status {value}"))),
    }
}

impl AccountApi {
    /// Account messages with their ingest counters.
    async fn with_counters(&self, found: &[accounts::Account]) -> Result<Vec<pb::Account>, ApiError> {
        let ids: Vec<&str> = found.iter().map(|a| a.account_id.as_str()).collect();
        let counters = crate::pipeline::staging::postgres::ingest_counters_for(&self.ctx.pool, &ids).await?;
        Ok(found
            .iter()
            .map(|account| {
                let mut message = convert::account(account);
                if let Some((accepted, duplicate, rejected)) = counters.get(account.account_id.as_str()) {
                    message.events_accepted = *accepted;
                    message.events_duplicate = *duplicate;
                    message.events_rejected = *rejected;
                }
                message
            })
            .collect())
    }

    /// The management account must stay ACTIVE: it owns every organization trail.
    async fn refuse_management_account(&self, account_id: &AccountId, what: &str) -> Result<(), ApiError> {
        let org = organizations::get(&self.ctx.pool).await?;
        if org.is_some_and(|org| &org.management_account_id == account_id) {
            return Err(ApiError::FailedPrecondition(format!(
                "account {account_id} is the management account and cannot be {what}"
            )));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl pb::account_service_server::AccountService for AccountApi {
    async fn register_account(&self, request: Request<pb::RegisterAccountRequest>) -> ApiResult<pb::Account> {
        let caller = Caller::of(&request)?;
        authorize(&caller, Action::Administer)?;
        let input = request.into_inner();
        let account_id = AccountId::parse("account_id", &input.account_id)?;
        check_name("name", &input.name)?;
        check_email("email", &input.email)?;
        let account = accounts::register(
            &self.ctx.pool,
            &account_id,
            &input.name,
            &input.email,
            RegistrationSource::Manual,
        )
        .await?;
        tracing::info!(account_id = %account.account_id, "account registered");
        Ok(Response::new(convert::account(&account)))
    }

    async fn describe_account(&self, request: Request<pb::DescribeAccountRequest>) -> ApiResult<pb::Account> {
        let caller = Caller::of(&request)?;
        let account_id = AccountId::parse("account_id", &request.get_ref().account_id)?;
        authorize(&caller, Action::ReadAccount(&account_id))?;
        let account = accounts::get(&self.ctx.pool, &account_id).await?;
        let account =
            account.ok_or_else(|| ApiError::NotFound(format!("account {account_id} is not registered")))?;
        let mut messages = self.with_counters(std::slice::from_ref(&account)).await?;
        let mut message = messages.remove(0);
        message.collector_status = accounts::collector_status(&self.ctx.pool, &account_id)
            .await?
            .iter()
            .map(convert::collector_status)
            .collect();
        Ok(Response::new(message))
    }

    async fn list_accounts(
        &self,
        request: Request<pb::ListAccountsRequest>,
    ) -> ApiResult<pb::ListAccountsResponse> {
        let caller = Caller::of(&request)?;
        authorize(&caller, Action::ListAccounts)?;
        let input = request.into_inner();
        let limit = page::size(input.page_size)?;
        let after = page::decode(&input.next_token)?;
        let status = status_filter(input.status)?;
        let mut found =
            accounts::list(&self.ctx.pool, after.as_deref(), limit + 1, status, caller.member_account())
                .await?;
        let next_token = if found.len() as i64 > limit {
            found.truncate(limit as usize);
            found.last().map(|a| page::encode(a.account_id.as_str())).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListAccountsResponse {
            accounts: self.with_counters(&found).await?,
            next_token,
        }))
    }

    async fn update_account(&self, request: Request<pb::UpdateAccountRequest>) -> ApiResult<pb::Account> {
        let caller = Caller::of(&request)?;
        authorize(&caller, Action::Administer)?;
        let input = request.into_inner();
        let account_id = AccountId::parse("account_id", &input.account_id)?;
        if let Some(name) = &input.name {
            check_name("name", name)?;
        }
        if let Some(email) = &input.email {
            check_email("email", email)?;
        }
        let status = match input.status {
            None => None,
            Some(value) => match status_filter(value)? {
                Some(AccountStatus::Removed) => {
                    return Err(
                        ApiError::invalid("status", "use DeregisterAccount to remove an account").into()
                    );
                }
                None => return Err(ApiError::invalid("status", "must be ACTIVE or SUSPENDED").into()),
                Some(AccountStatus::Suspended) => {
                    self.refuse_management_account(&account_id, "suspended").await?;
                    Some(AccountStatus::Suspended)
                }
                Some(AccountStatus::Active) => Some(AccountStatus::Active),
            },
        };
        let collector = input.collector.map(convert::collector_settings);
        if let Some(collector) = &collector {
            collector.validate(account_id.as_str()).map_err(ApiError::from)?;
        }
        let account = accounts::update(
            &self.ctx.pool,
            &account_id,
            input.name.as_deref(),
            input.email.as_deref(),
            status,
            collector.as_ref(),
        )
        .await?;
        Ok(Response::new(convert::account(&account)))
    }

    async fn deregister_account(
        &self,
        request: Request<pb::DeregisterAccountRequest>,
    ) -> ApiResult<pb::Account> {
        let caller = Caller::of(&request)?;
        authorize(&caller, Action::Administer)?;
        let account_id = AccountId::parse("account_id", &request.get_ref().account_id)?;
        self.refuse_management_account(&account_id, "deregistered").await?;
        let account =
            accounts::update(&self.ctx.pool, &account_id, None, None, Some(AccountStatus::Removed), None)
                .await?;
        tracing::info!(account_id = %account.account_id, "account deregistered");
        Ok(Response::new(convert::account(&account)))
    }

    async fn create_enrollment_token(
        &self,
        request: Request<pb::CreateEnrollmentTokenRequest>,
    ) -> ApiResult<pb::CreateEnrollmentTokenResponse> {
        let caller = Caller::of(&request)?;
        authorize(&caller, Action::Administer)?;
        Ok(Response::new(enrollment::create_token(&self.ctx, request.into_inner()).await?))
    }

    // No Caller here: the auth layer lets enrollment RPCs through, the enrollment token authenticates.
    async fn describe_enrollment(
        &self,
        request: Request<pb::DescribeEnrollmentRequest>,
    ) -> ApiResult<pb::DescribeEnrollmentResponse> {
        Ok(Response::new(enrollment::describe(&self.ctx, request.into_inner()).await?))
    }

    async fn enroll(&self, request: Request<pb::EnrollRequest>) -> ApiResult<pb::EnrollResponse> {
        Ok(Response::new(enrollment::enroll(&self.ctx, request.into_inner()).await?))
    }
}
