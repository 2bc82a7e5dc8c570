//! Which RPCs each resource and data source calls. Everything else (schemas, conversions, plans)
//! is generic; a field added to a message flows through the generated conversions used here.

use std::collections::BTreeMap;

use async_trait::async_trait;
use tonic::Code;

use super::convert::{TfError, TfMessage, TfUpdate, changed};
use super::value::Value;
use crate::client::Clients;
use crate::proto::v1 as pb;

/// Why a resource operation failed.
#[derive(Debug)]
pub enum Failure {
    /// The configuration cannot be turned into a request.
    Invalid(TfError),
    /// The control plane refused or failed a call.
    Rpc(&'static str, tonic::Status),
}

impl From<TfError> for Failure {
    fn from(e: TfError) -> Self {
        Failure::Invalid(e)
    }
}

fn rpc(call: &'static str) -> impl FnOnce(tonic::Status) -> Failure {
    move |status| Failure::Rpc(call, status)
}

/// `None` for NotFound, the response otherwise.
fn found<T>(
    call: &'static str,
    result: Result<tonic::Response<T>, tonic::Status>,
) -> Result<Option<T>, Failure> {
    match result {
        Ok(response) => Ok(Some(response.into_inner())),
        Err(status) if status.code() == Code::NotFound => Ok(None),
        Err(status) => Err(Failure::Rpc(call, status)),
    }
}

/// Merges the attributes of several objects (later ones win) and sets `id`.
fn state(parts: &[Value], id: &str) -> Value {
    let mut merged = BTreeMap::new();
    for part in parts {
        if let Value::Object(o) = part {
            merged.extend(o.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
    merged.insert("id".into(), Value::String(id.to_string()));
    Value::Object(merged)
}

/// A managed resource.
#[async_trait]
pub trait Resource: Send + Sync {
    /// Checks what can be checked without the server (types, enum names).
    fn validate(&self, config: &Value) -> Result<(), TfError>;
    /// Creates the resource; returns its id and the values only creation returns.
    async fn create(&self, c: &mut Clients, planned: &Value) -> Result<(String, Value), Failure>;
    /// The resource as the server holds it; `None` when it is gone.
    async fn read(&self, c: &mut Clients, id: &str) -> Result<Option<Value>, Failure>;
    async fn update(&self, c: &mut Clients, id: &str, prior: &Value, planned: &Value) -> Result<(), Failure>;
    async fn delete(&self, c: &mut Clients, id: &str) -> Result<(), Failure>;
}

/// A data source.
#[async_trait]
pub trait DataSource: Send + Sync {
    async fn read(&self, c: &mut Clients, config: &Value) -> Result<Value, Failure>;
}

/// The resource of a Terraform type name.
pub fn resource(name: &str) -> Option<&'static dyn Resource> {
    match name {
        "orgtrail_trail" => Some(&Trail),
        "orgtrail_account" => Some(&Account),
        "orgtrail_token" => Some(&Token),
        "orgtrail_alert_rule" => Some(&AlertRule),
        _ => None,
    }
}

/// The data source of a Terraform type name.
pub fn data_source(name: &str) -> Option<&'static dyn DataSource> {
    match name {
        "orgtrail_organization" => Some(&Organization),
        "orgtrail_accounts" => Some(&Accounts),
        "orgtrail_trail_status" => Some(&TrailStatus),
        _ => None,
    }
}

struct Trail;

impl Trail {
    /// Selectors, Insights, tags and logging: the parts of a trail that have their own RPCs.
    async fn apply_parts(
        &self,
        c: &mut Clients,
        arn: &str,
        prior: &Value,
        planned: &Value,
    ) -> Result<(), Failure> {
        if changed(prior, planned, "event_selectors") || changed(prior, planned, "advanced_event_selectors") {
            let mut request = pb::PutEventSelectorsRequest::from_tf(planned)?;
            // Neither configured (unknown: the server keeps its own): nothing to put.
            if !request.event_selectors.is_empty() || !request.advanced_event_selectors.is_empty() {
                request.trail_name = arn.to_string();
                c.trails.put_event_selectors(request).await.map_err(rpc("PutEventSelectors"))?;
            }
        }
        if changed(prior, planned, "insight_selectors") && planned.get("insight_selectors").is_known() {
            let mut request = pb::PutInsightSelectorsRequest::from_tf(planned)?;
            request.trail_name = arn.to_string();
            c.trails.put_insight_selectors(request).await.map_err(rpc("PutInsightSelectors"))?;
        }
        if changed(prior, planned, "tags") {
            let tags = |v: &Value| pb::Trail::from_tf(v).map(|t| t.tags);
            let (old, new) = (tags(prior)?, tags(planned)?);
            let removed: Vec<String> =
                old.iter().filter(|t| !new.iter().any(|n| n.key == t.key)).map(|t| t.key.clone()).collect();
            if !removed.is_empty() {
                let request = pb::RemoveTagsRequest { name: arn.to_string(), keys: removed };
                c.trails.remove_tags(request).await.map_err(rpc("RemoveTags"))?;
            }
            let added: Vec<pb::Tag> = new.into_iter().filter(|t| !old.contains(t)).collect();
            if !added.is_empty() {
                c.trails
                    .add_tags(pb::AddTagsRequest { name: arn.to_string(), tags: added })
                    .await
                    .map_err(rpc("AddTags"))?;
            }
        }
        if changed(prior, planned, "logging") {
            let name = arn.to_string();
            match planned.get("logging") {
                Value::Bool(true) => {
                    c.trails
                        .start_logging(pb::StartLoggingRequest { name })
                        .await
                        .map_err(rpc("StartLogging"))?;
                }
                Value::Bool(false) => {
                    c.trails
                        .stop_logging(pb::StopLoggingRequest { name })
                        .await
                        .map_err(rpc("StopLogging"))?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Resource for Trail {
    fn validate(&self, config: &Value) -> Result<(), TfError> {
        pb::CreateTrailRequest::from_tf(config)?;
        pb::PutEventSelectorsRequest::from_tf(config)?;
        pb::PutInsightSelectorsRequest::from_tf(config).map(drop)
    }

    async fn create(&self, c: &mut Clients, planned: &Value) -> Result<(String, Value), Failure> {
        let request = pb::CreateTrailRequest::from_tf(planned)?;
        let trail = c.trails.create_trail(request).await.map_err(rpc("CreateTrail"))?.into_inner();
        let arn = trail.trail_arn.clone();
        if let Err(failure) = self.apply_parts(c, &arn, &Value::Null, planned).await {
            // Leave nothing behind that Terraform does not know about.
            let _ = c.trails.delete_trail(pb::DeleteTrailRequest { name: arn }).await;
            return Err(failure);
        }
        Ok((trail.trail_arn, Value::Null))
    }

    async fn read(&self, c: &mut Clients, id: &str) -> Result<Option<Value>, Failure> {
        let name = id.to_string();
        let Some(trail) =
            found("GetTrail", c.trails.get_trail(pb::GetTrailRequest { name: name.clone() }).await)?
        else {
            return Ok(None);
        };
        let request = pb::GetEventSelectorsRequest { trail_name: name.clone() };
        let selectors =
            c.trails.get_event_selectors(request).await.map_err(rpc("GetEventSelectors"))?.into_inner();
        let request = pb::GetInsightSelectorsRequest { trail_name: name.clone() };
        let insights =
            c.trails.get_insight_selectors(request).await.map_err(rpc("GetInsightSelectors"))?.into_inner();
        let status = c
            .trails
            .get_trail_status(pb::GetTrailStatusRequest { name })
            .await
            .map_err(rpc("GetTrailStatus"))?;
        let mut logging = Value::Object(BTreeMap::new());
        logging.set("logging", Value::Bool(status.into_inner().is_logging));
        let parts = [selectors.to_tf(false), insights.to_tf(false), trail.to_tf(false), logging];
        Ok(Some(state(&parts, &trail.trail_arn)))
    }

    async fn update(&self, c: &mut Clients, id: &str, prior: &Value, planned: &Value) -> Result<(), Failure> {
        let mut request = pb::UpdateTrailRequest::from_change(prior, planned)?;
        request.name = id.to_string();
        if request != (pb::UpdateTrailRequest { name: id.to_string(), ..Default::default() }) {
            c.trails.update_trail(request).await.map_err(rpc("UpdateTrail"))?;
        }
        self.apply_parts(c, id, prior, planned).await
    }

    async fn delete(&self, c: &mut Clients, id: &str) -> Result<(), Failure> {
        let request = pb::DeleteTrailRequest { name: id.to_string() };
        found("DeleteTrail", c.trails.delete_trail(request).await).map(drop)
    }
}

struct Account;

#[async_trait]
impl Resource for Account {
    fn validate(&self, config: &Value) -> Result<(), TfError> {
        pb::UpdateAccountRequest::from_tf(config).map(drop)
    }

    async fn create(&self, c: &mut Clients, planned: &Value) -> Result<(String, Value), Failure> {
        let request = pb::RegisterAccountRequest::from_tf(planned)?;
        let account =
            c.accounts.register_account(request).await.map_err(rpc("RegisterAccount"))?.into_inner();
        let id = account.account_id;
        // Settings the registration does not take (status, collector) follow as an update.
        let mut registered = planned.clone();
        registered.set("status", Value::Null);
        registered.set("collector", Value::Null);
        self.update(c, &id, &registered, planned).await?;
        Ok((id, Value::Null))
    }

    async fn read(&self, c: &mut Clients, id: &str) -> Result<Option<Value>, Failure> {
        let request = pb::DescribeAccountRequest { account_id: id.to_string() };
        let account = found("DescribeAccount", c.accounts.describe_account(request).await)?;
        // A deregistered account is gone as far as its resource goes: a plan re-registers it.
        Ok(account
            .filter(|a| a.status != pb::AccountStatus::Removed as i32)
            .map(|a| state(&[a.to_tf(false)], &a.account_id)))
    }

    async fn update(&self, c: &mut Clients, id: &str, prior: &Value, planned: &Value) -> Result<(), Failure> {
        let mut request = pb::UpdateAccountRequest::from_change(prior, planned)?;
        request.account_id = id.to_string();
        if request != (pb::UpdateAccountRequest { account_id: id.to_string(), ..Default::default() }) {
            c.accounts.update_account(request).await.map_err(rpc("UpdateAccount"))?;
        }
        Ok(())
    }

    async fn delete(&self, c: &mut Clients, id: &str) -> Result<(), Failure> {
        let request = pb::DeregisterAccountRequest { account_id: id.to_string() };
        found("DeregisterAccount", c.accounts.deregister_account(request).await).map(drop)
    }
}

struct Token;

#[async_trait]
impl Resource for Token {
    fn validate(&self, config: &Value) -> Result<(), TfError> {
        pb::CreateTokenRequest::from_tf(config).map(drop)
    }

    async fn create(&self, c: &mut Clients, planned: &Value) -> Result<(String, Value), Failure> {
        let request = pb::CreateTokenRequest::from_tf(planned)?;
        let created = c.tokens.create_token(request).await.map_err(rpc("CreateToken"))?.into_inner();
        let id = created.token.as_ref().map(|t| t.token_id.clone()).unwrap_or_default();
        let mut secrets = created.to_tf(false);
        secrets.set("token", Value::Null);
        Ok((id, secrets))
    }

    async fn read(&self, c: &mut Clients, id: &str) -> Result<Option<Value>, Failure> {
        // Revoked and expired tokens are not listed: gone, as far as the resource goes.
        let mut next_token = String::new();
        loop {
            let request = pb::ListTokensRequest { page_size: 1000, next_token, include_inactive: false };
            let page = c.tokens.list_tokens(request).await.map_err(rpc("ListTokens"))?.into_inner();
            if let Some(token) = page.tokens.iter().find(|t| t.token_id == id) {
                return Ok(Some(state(&[token.to_tf(false)], id)));
            }
            if page.next_token.is_empty() {
                return Ok(None);
            }
            next_token = page.next_token;
        }
    }

    async fn update(&self, _: &mut Clients, _: &str, _: &Value, _: &Value) -> Result<(), Failure> {
        // Every attribute of a token forces a new one; nothing is updated in place.
        Ok(())
    }

    async fn delete(&self, c: &mut Clients, id: &str) -> Result<(), Failure> {
        let request = pb::RevokeTokenRequest { token_id: id.to_string() };
        found("RevokeToken", c.tokens.revoke_token(request).await).map(drop)
    }
}

struct AlertRule;

#[async_trait]
impl Resource for AlertRule {
    fn validate(&self, config: &Value) -> Result<(), TfError> {
        pb::CreateRuleRequest::from_tf(config).map(drop)
    }

    async fn create(&self, c: &mut Clients, planned: &Value) -> Result<(String, Value), Failure> {
        let request = pb::CreateRuleRequest::from_tf(planned)?;
        let rule = c.rules.create_rule(request).await.map_err(rpc("CreateRule"))?.into_inner();
        Ok((rule.name, Value::Null))
    }

    async fn read(&self, c: &mut Clients, id: &str) -> Result<Option<Value>, Failure> {
        let rule = found("GetRule", c.rules.get_rule(pb::GetRuleRequest { name: id.to_string() }).await)?;
        Ok(rule.map(|r| state(&[r.to_tf(false)], &r.name)))
    }

    async fn update(&self, c: &mut Clients, id: &str, prior: &Value, planned: &Value) -> Result<(), Failure> {
        let mut request = pb::UpdateRuleRequest::from_change(prior, planned)?;
        request.name = id.to_string();
        c.rules.update_rule(request).await.map_err(rpc("UpdateRule"))?;
        Ok(())
    }

    async fn delete(&self, c: &mut Clients, id: &str) -> Result<(), Failure> {
        found("DeleteRule", c.rules.delete_rule(pb::DeleteRuleRequest { name: id.to_string() }).await)
            .map(drop)
    }
}

struct Organization;

#[async_trait]
impl DataSource for Organization {
    async fn read(&self, c: &mut Clients, _: &Value) -> Result<Value, Failure> {
        let request = pb::DescribeOrganizationRequest {};
        let org =
            c.organizations.describe_organization(request).await.map_err(rpc("DescribeOrganization"))?;
        let org = org.into_inner();
        Ok(state(&[org.to_tf(false)], &org.id))
    }
}

struct Accounts;

#[async_trait]
impl DataSource for Accounts {
    async fn read(&self, c: &mut Clients, config: &Value) -> Result<Value, Failure> {
        let filter = pb::ListAccountsRequest::from_tf(config)?;
        let mut accounts = Vec::new();
        let mut next_token = String::new();
        loop {
            let request = pb::ListAccountsRequest { page_size: 1000, next_token, ..filter.clone() };
            let page = c.accounts.list_accounts(request).await.map_err(rpc("ListAccounts"))?.into_inner();
            accounts.extend(page.accounts);
            if page.next_token.is_empty() {
                break;
            }
            next_token = page.next_token;
        }
        let listed = pb::ListAccountsResponse { accounts, next_token: String::new() };
        let mut value = listed.to_tf(false);
        value.set("status", config.get("status").clone());
        Ok(value)
    }
}

struct TrailStatus;

#[async_trait]
impl DataSource for TrailStatus {
    async fn read(&self, c: &mut Clients, config: &Value) -> Result<Value, Failure> {
        let request = pb::GetTrailStatusRequest::from_tf(config)?;
        let status = c.trails.get_trail_status(request).await.map_err(rpc("GetTrailStatus"))?.into_inner();
        let mut value = state(&[status.to_tf(false)], &status.trail_arn);
        value.set("name", config.get("name").clone());
        Ok(value)
    }
}
