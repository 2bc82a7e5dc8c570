//! RuleService: alert rules, the built-in packs and the dead letters.

use tonic::{Request, Response};

use super::auth::{Action, Caller, authorize};
use super::error::{ApiError, ApiResult};
use super::{Ctx, convert};
use crate::features::alerts::rules::{Definition, packs};
use crate::features::alerts::store::{self as store, RuleFields, StoredRule, StoredTarget};
use crate::model::{AccountId, FieldError, Region};
use crate::proto::v1 as pb;

pub struct RuleApi {
    ctx: Ctx,
}

impl RuleApi {
    pub fn new(ctx: Ctx) -> Self {
        Self { ctx }
    }

    /// A target from the request: unset means log; a webhook's secret is sealed by the master
    /// key. `current` keeps a stored secret when the request leaves it empty.
    fn target(
        &self,
        field: &str,
        target: Option<&pb::AlertTarget>,
        current: Option<&StoredTarget>,
    ) -> Result<StoredTarget, ApiError> {
        let log = StoredTarget { target_kind: "log".into(), webhook_url: None, webhook_secret: None };
        let Some(target) = target else {
            return Ok(log);
        };
        match target.r#type.as_str() {
            "" | "log" => Ok(log),
            "webhook" => {
                let url = webhook_url(&format!("{field}.url"), &target.url)?;
                let sealed = if target.secret.is_empty() {
                    match current.and_then(|c| c.webhook_secret.clone()) {
                        Some(sealed) => sealed,
                        None => {
                            return Err(ApiError::invalid(
                                &format!("{field}.secret"),
                                "a webhook needs a secret",
                            ));
                        }
                    }
                } else {
                    let length = target.secret.chars().count();
                    if !(16..=256).contains(&length) {
                        return Err(ApiError::invalid(
                            &format!("{field}.secret"),
                            "must be 16 to 256 characters",
                        ));
                    }
                    let Some(master_key) = self.ctx.master_key.as_ref() else {
                        return Err(ApiError::FailedPrecondition(
                            "webhook secrets are sealed by the master key: set master_key in the server's config"
                                .into(),
                        ));
                    };
                    master_key
                        .encrypt(target.secret.as_bytes())
                        .map_err(|e| ApiError::Internal(format!("cannot seal the webhook secret: {e}")))?
                };
                Ok(StoredTarget {
                    target_kind: "webhook".into(),
                    webhook_url: Some(url),
                    webhook_secret: Some(sealed),
                })
            }
            other => Err(ApiError::invalid(
                &format!("{field}.type"),
                format!("must be log or webhook, got {other:?}"),
            )),
        }
    }
}

fn webhook_url(field: &str, url: &str) -> Result<String, ApiError> {
    let uri: http::Uri = url.parse().map_err(|_| ApiError::invalid(field, "is not a URL"))?;
    if uri.scheme_str() != Some("https") {
        return Err(ApiError::invalid(field, "must be an https:// URL"));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(ApiError::invalid(field, "has no host"));
    }
    Ok(url.to_owned())
}

fn rule_name(name: &str) -> Result<String, FieldError> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(name.to_owned())
    } else {
        Err(FieldError::new("name", "must be 1 to 128 of A-Z a-z 0-9 . _ -"))
    }
}

fn description(text: &str) -> Result<String, FieldError> {
    if text.len() > 1024 {
        return Err(FieldError::new("description", "must be at most 1024 bytes"));
    }
    Ok(text.to_owned())
}

fn scope(
    field: &str,
    values: &[String],
    check: fn(&str, &str) -> Result<(), FieldError>,
) -> Result<Vec<String>, FieldError> {
    let mut out = Vec::new();
    for (i, value) in values.iter().enumerate() {
        check(&format!("{field}[{i}]"), value)?;
        if !out.contains(value) {
            out.push(value.clone());
        }
    }
    Ok(out)
}

fn account(field: &str, value: &str) -> Result<(), FieldError> {
    AccountId::parse(field, value).map(drop)
}

fn region(field: &str, value: &str) -> Result<(), FieldError> {
    Region::parse(field, value).map(drop)
}

fn definition_of(event_pattern: Option<&str>, sigma_yaml: Option<&str>) -> Option<Definition> {
    match (event_pattern, sigma_yaml) {
        (Some(pattern), _) => Some(Definition::EventPattern(pattern.to_owned())),
        (None, Some(yaml)) => Some(Definition::SigmaYaml(yaml.to_owned())),
        (None, None) => None,
    }
}

fn stored_definition(rule: &StoredRule) -> Definition {
    match rule.kind.as_str() {
        "sigma" => Definition::SigmaYaml(rule.definition.clone()),
        _ => Definition::EventPattern(rule.definition.clone()),
    }
}

fn target_out(target: &StoredTarget) -> pb::AlertTarget {
    pb::AlertTarget {
        r#type: target.target_kind.clone(),
        url: target.webhook_url.clone().unwrap_or_default(),
        secret: String::new(),
        secret_set: target.webhook_secret.is_some(),
    }
}

fn rule_out(rule: &StoredRule) -> pb::Rule {
    let definition = stored_definition(rule);
    let info = definition
        .compile()
        .ok()
        .map(|m| crate::features::alerts::rules::rule_info(&rule.name, &rule.description, &m, None));
    let info = info.unwrap_or_default();
    pb::Rule {
        name: rule.name.clone(),
        description: rule.description.clone(),
        enabled: rule.enabled,
        definition: Some(match definition {
            Definition::EventPattern(text) => pb::rule::Definition::EventPattern(text),
            Definition::SigmaYaml(text) => pb::rule::Definition::SigmaYaml(text),
        }),
        account_ids: rule.account_ids.clone(),
        regions: rule.regions.clone(),
        target: Some(target_out(&rule.target)),
        title: if info.title.is_empty() { rule.name.clone() } else { info.title },
        author: info.author.unwrap_or_default(),
        level: info.level.unwrap_or_default(),
        sigma_id: info.id.unwrap_or_default(),
        created_at: Some(convert::timestamp(rule.created_at)),
        updated_at: Some(convert::timestamp(rule.updated_at)),
    }
}

fn pack_out(pack: &packs::Pack, enabled: Option<&store::EnabledPack>) -> pb::RulePack {
    pb::RulePack {
        name: pack.name.to_owned(),
        title: pack.title.to_owned(),
        description: pack.description.to_owned(),
        enabled: enabled.is_some(),
        rules: pack
            .rules
            .iter()
            .map(|r| pb::PackRule {
                key: r.key.to_owned(),
                title: r.title.to_owned(),
                event_pattern: r.pattern.to_owned(),
            })
            .collect(),
        target: enabled.map(|e| target_out(&e.target)),
        enabled_at: enabled.map(|e| convert::timestamp(e.enabled_at)),
    }
}

fn find_pack(name: &str) -> Result<&'static packs::Pack, ApiError> {
    packs::find(name).ok_or_else(|| {
        let known: Vec<&str> = packs::PACKS.iter().map(|p| p.name).collect();
        ApiError::NotFound(format!("rule pack {name} not found (built-in packs: {})", known.join(", ")))
    })
}

#[tonic::async_trait]
impl pb::rule_service_server::RuleService for RuleApi {
    async fn create_rule(&self, request: Request<pb::CreateRuleRequest>) -> ApiResult<pb::Rule> {
        let caller = Caller::of(&request)?;
        authorize(&caller, Action::Administer)?;
        let input = request.into_inner();
        let name = rule_name(&input.name)?;
        let definition = match &input.definition {
            Some(pb::create_rule_request::Definition::EventPattern(p)) => definition_of(Some(p), None),
            Some(pb::create_rule_request::Definition::SigmaYaml(y)) => definition_of(None, Some(y)),
            None => None,
        }
        .ok_or_else(|| ApiError::invalid("event_pattern", "set event_pattern or sigma_yaml"))?;
        definition.compile()?;
        let fields = RuleFields {
            name,
            description: description(&input.description)?,
            enabled: input.enabled.unwrap_or(true),
            kind: definition.kind(),
            definition: definition.text().to_owned(),
            account_ids: scope("account_ids", &input.account_ids, account)?,
            regions: scope("regions", &input.regions, region)?,
            target: self.target("target", input.target.as_ref(), None)?,
        };
        let rule = store::create(&self.ctx.pool, &fields).await?;
        tracing::info!(rule = %rule.name, kind = rule.kind, "rule created");
        Ok(Response::new(rule_out(&rule)))
    }

    async fn get_rule(&self, request: Request<pb::GetRuleRequest>) -> ApiResult<pb::Rule> {
        let caller = Caller::of(&request)?;
        authorize(&caller, Action::ReadRules)?;
        let rule = store::get(&self.ctx.pool, &request.get_ref().name).await?;
        Ok(Response::new(rule_out(&rule)))
    }

    async fn list_rules(&self, request: Request<pb::ListRulesRequest>) -> ApiResult<pb::ListRulesResponse> {
        let caller = Caller::of(&request)?;
        authorize(&caller, Action::ReadRules)?;
        let rules = store::list(&self.ctx.pool).await?;
        Ok(Response::new(pb::ListRulesResponse { rules: rules.iter().map(rule_out).collect() }))
    }

    async fn update_rule(&self, request: Request<pb::UpdateRuleRequest>) -> ApiResult<pb::Rule> {
        let caller = Caller::of(&request)?;
        authorize(&caller, Action::Administer)?;
        let input = request.into_inner();
        let current = store::get(&self.ctx.pool, &input.name).await?;
        let definition = match &input.definition {
            Some(pb::update_rule_request::Definition::EventPattern(p)) => definition_of(Some(p), None),
            Some(pb::update_rule_request::Definition::SigmaYaml(y)) => definition_of(None, Some(y)),
            None => None,
        }
        .unwrap_or_else(|| stored_definition(&current));
        definition.compile()?;
        let fields = RuleFields {
            name: current.name.clone(),
            description: match &input.description {
                Some(text) => description(text)?,
                None => current.description.clone(),
            },
            enabled: input.enabled.unwrap_or(current.enabled),
            kind: definition.kind(),
            definition: definition.text().to_owned(),
            account_ids: match &input.account_ids {
                Some(list) => scope("account_ids", &list.values, account)?,
                None => current.account_ids.clone(),
            },
            regions: match &input.regions {
                Some(list) => scope("regions", &list.values, region)?,
                None => current.regions.clone(),
            },
            target: match &input.target {
                Some(target) => self.target("target", Some(target), Some(&current.target))?,
                None => current.target.clone(),
            },
        };
        let rule = store::replace(&self.ctx.pool, &current.name, &fields).await?;
        tracing::info!(rule = %rule.name, enabled = rule.enabled, "rule updated");
        Ok(Response::new(rule_out(&rule)))
    }

    async fn delete_rule(
        &self,
        request: Request<pb::DeleteRuleRequest>,
    ) -> ApiResult<pb::DeleteRuleResponse> {
        let caller = Caller::of(&request)?;
        authorize(&caller, Action::Administer)?;
        store::delete(&self.ctx.pool, &request.get_ref().name).await?;
        tracing::info!(rule = %request.get_ref().name, "rule deleted");
        Ok(Response::new(pb::DeleteRuleResponse {}))
    }

    async fn list_rule_packs(
        &self,
        request: Request<pb::ListRulePacksRequest>,
    ) -> ApiResult<pb::ListRulePacksResponse> {
        let caller = Caller::of(&request)?;
        authorize(&caller, Action::ReadRules)?;
        let enabled = store::enabled_packs(&self.ctx.pool).await?;
        let packs = packs::PACKS
            .iter()
            .map(|pack| pack_out(pack, enabled.iter().find(|e| e.name == pack.name)))
            .collect();
        Ok(Response::new(pb::ListRulePacksResponse { packs }))
    }

    async fn enable_rule_pack(&self, request: Request<pb::EnableRulePackRequest>) -> ApiResult<pb::RulePack> {
        let caller = Caller::of(&request)?;
        authorize(&caller, Action::Administer)?;
        let input = request.into_inner();
        let pack = find_pack(&input.name)?;
        let current = store::enabled_packs(&self.ctx.pool).await?.into_iter().find(|e| e.name == pack.name);
        let target = self.target("target", input.target.as_ref(), current.as_ref().map(|c| &c.target))?;
        store::enable_pack(&self.ctx.pool, pack.name, &target).await?;
        tracing::info!(pack = pack.name, target = %target.target_kind, "rule pack enabled");
        let enabled = store::enabled_packs(&self.ctx.pool).await?;
        Ok(Response::new(pack_out(pack, enabled.iter().find(|e| e.name == pack.name))))
    }

    async fn disable_rule_pack(
        &self,
        request: Request<pb::DisableRulePackRequest>,
    ) -> ApiResult<pb::RulePack> {
        let caller = Caller::of(&request)?;
        authorize(&caller, Action::Administer)?;
        let pack = find_pack(&request.get_ref().name)?;
        store::disable_pack(&self.ctx.pool, pack.name).await?;
        tracing::info!(pack = pack.name, "rule pack disabled");
        Ok(Response::new(pack_out(pack, None)))
    }

    async fn list_dead_letters(
        &self,
        request: Request<pb::ListDeadLettersRequest>,
    ) -> ApiResult<pb::ListDeadLettersResponse> {
        let caller = Caller::of(&request)?;
        authorize(&caller, Action::ReadRules)?;
        let input = request.into_inner();
        let limit = crate::store::page::size(input.page_size)?;
        let before = crate::store::page::decode(&input.next_token)?
            .map(|key| {
                key.parse::<i64>()
                    .map_err(|_| FieldError::new("next_token", "is not a token returned by this API"))
            })
            .transpose()?;
        let mut letters = store::dead_letters(&self.ctx.pool, before, limit + 1).await?;
        let next_token = if letters.len() as i64 > limit {
            letters.truncate(limit as usize);
            letters.last().map(|l| crate::store::page::encode(&l.id.to_string())).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListDeadLettersResponse {
            dead_letters: letters
                .into_iter()
                .map(|l| pb::DeadLetter {
                    id: l.id,
                    rule_name: l.rule_name,
                    target_type: l.target_kind,
                    url: l.webhook_url.unwrap_or_default(),
                    body: l.body,
                    attempts: l.attempts,
                    last_error: l.last_error,
                    created_at: Some(convert::timestamp(l.created_at)),
                    failed_at: Some(convert::timestamp(l.failed_at)),
                })
                .collect(),
            next_token,
        }))
    }
}
