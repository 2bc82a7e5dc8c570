//! `orgtrail rules ...`: alert rules, the built-in packs and the dead letters.

use std::path::PathBuf;

use anyhow::Context;

use super::call_error;
use super::output::{self, Output};
use crate::client::Clients;
use crate::proto::v1 as pb;

#[derive(Debug, clap::Subcommand)]
pub enum RulesCommand {
    /// Create a rule from an event pattern or a Sigma rule file.
    Create(CreateArgs),
    /// List the rules.
    List,
    /// Show one rule.
    Get { name: String },
    /// Change a rule (only what is given).
    Update(UpdateArgs),
    /// Delete a rule.
    Delete { name: String },
    /// List the built-in packs and whether they are enabled.
    Packs,
    /// Enable a built-in pack (cis-aws-foundations-4, trail-tampering).
    EnablePack(PackArgs),
    /// Disable a built-in pack.
    DisablePack { name: String },
    /// Import a Sigma rule file (YAML) as a rule named after the file unless --name is given.
    ImportSigma(ImportArgs),
    /// Alerts given up on after the last delivery attempt, newest first.
    DeadLetters {
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: i32,
    },
}

#[derive(Debug, clap::Args)]
pub struct TargetArgs {
    /// Send alerts to this https:// URL (JSON POST signed with HMAC-SHA256); default: a log line.
    #[arg(long)]
    pub webhook_url: Option<String>,
    /// Environment variable holding the webhook's HMAC secret (16 to 256 characters).
    #[arg(long, default_value = "ORGTRAIL_WEBHOOK_SECRET")]
    pub webhook_secret_env: String,
}

impl TargetArgs {
    fn target(&self) -> anyhow::Result<Option<pb::AlertTarget>> {
        let Some(url) = &self.webhook_url else {
            return Ok(None);
        };
        let secret = std::env::var(&self.webhook_secret_env).unwrap_or_default();
        Ok(Some(pb::AlertTarget { r#type: "webhook".into(), url: url.clone(), secret, secret_set: false }))
    }
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    pub name: String,
    /// EventBridge event pattern (JSON text, or @FILE).
    #[arg(long, conflicts_with = "sigma")]
    pub event_pattern: Option<String>,
    /// Sigma rule file (YAML).
    #[arg(long)]
    pub sigma: Option<PathBuf>,
    #[arg(long, default_value = "")]
    pub description: String,
    /// Create it disabled.
    #[arg(long)]
    pub disabled: bool,
    /// Only events of this account (repeat for several).
    #[arg(long = "account-id")]
    pub account_ids: Vec<String>,
    /// Only events of this region (repeat for several).
    #[arg(long = "region")]
    pub regions: Vec<String>,
    #[command(flatten)]
    pub target: TargetArgs,
}

#[derive(Debug, clap::Args)]
pub struct UpdateArgs {
    pub name: String,
    #[arg(long, conflicts_with = "sigma")]
    pub event_pattern: Option<String>,
    #[arg(long)]
    pub sigma: Option<PathBuf>,
    #[arg(long)]
    pub description: Option<String>,
    #[arg(long, conflicts_with = "disable")]
    pub enable: bool,
    #[arg(long)]
    pub disable: bool,
    #[command(flatten)]
    pub target: TargetArgs,
}

#[derive(Debug, clap::Args)]
pub struct PackArgs {
    pub name: String,
    #[command(flatten)]
    pub target: TargetArgs,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    pub file: PathBuf,
    /// Rule name; default: the file name without its extension.
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub target: TargetArgs,
}

fn read(path: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn pattern_text(value: &str) -> anyhow::Result<String> {
    match value.strip_prefix('@') {
        Some(path) => read(&PathBuf::from(path)),
        None => Ok(value.to_owned()),
    }
}

pub async fn run(mut clients: Clients, command: RulesCommand, format: Output) -> anyhow::Result<()> {
    let rules = &mut clients.rules;
    match command {
        RulesCommand::Create(args) => {
            let definition = match (&args.event_pattern, &args.sigma) {
                (Some(pattern), _) => {
                    pb::create_rule_request::Definition::EventPattern(pattern_text(pattern)?)
                }
                (None, Some(path)) => pb::create_rule_request::Definition::SigmaYaml(read(path)?),
                (None, None) => anyhow::bail!("give --event-pattern or --sigma"),
            };
            let rule = rules
                .create_rule(pb::CreateRuleRequest {
                    name: args.name,
                    description: args.description,
                    enabled: Some(!args.disabled),
                    definition: Some(definition),
                    account_ids: args.account_ids,
                    regions: args.regions,
                    target: args.target.target()?,
                })
                .await
                .map_err(call_error)?
                .into_inner();
            show_rule(&rule, format)
        }
        RulesCommand::ImportSigma(args) => {
            let name = match args.name {
                Some(name) => name,
                None => args
                    .file
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .context("the file has no name to name the rule after; give --name")?,
            };
            let rule = rules
                .create_rule(pb::CreateRuleRequest {
                    name,
                    definition: Some(pb::create_rule_request::Definition::SigmaYaml(read(&args.file)?)),
                    enabled: Some(true),
                    target: args.target.target()?,
                    ..Default::default()
                })
                .await
                .map_err(call_error)?
                .into_inner();
            show_rule(&rule, format)
        }
        RulesCommand::List => {
            let list = rules.list_rules(pb::ListRulesRequest {}).await.map_err(call_error)?.into_inner();
            if format == Output::Json {
                return output::json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .rules
                .iter()
                .map(|r| {
                    vec![
                        r.name.clone(),
                        if r.enabled { "yes" } else { "no" }.into(),
                        kind(r).into(),
                        r.target.as_ref().map(|t| t.r#type.clone()).unwrap_or_default(),
                        r.title.clone(),
                    ]
                })
                .collect();
            output::table(&["NAME", "ENABLED", "KIND", "TARGET", "TITLE"], &rows);
            Ok(())
        }
        RulesCommand::Get { name } => {
            let rule = rules.get_rule(pb::GetRuleRequest { name }).await.map_err(call_error)?.into_inner();
            show_rule(&rule, format)
        }
        RulesCommand::Update(args) => {
            let definition = match (&args.event_pattern, &args.sigma) {
                (Some(pattern), _) => {
                    Some(pb::update_rule_request::Definition::EventPattern(pattern_text(pattern)?))
                }
                (None, Some(path)) => Some(pb::update_rule_request::Definition::SigmaYaml(read(path)?)),
                (None, None) => None,
            };
            let rule = rules
                .update_rule(pb::UpdateRuleRequest {
                    name: args.name,
                    description: args.description,
                    enabled: super::flag_pair(args.enable, args.disable),
                    definition,
                    account_ids: None,
                    regions: None,
                    target: args.target.target()?,
                })
                .await
                .map_err(call_error)?
                .into_inner();
            show_rule(&rule, format)
        }
        RulesCommand::Delete { name } => {
            rules.delete_rule(pb::DeleteRuleRequest { name: name.clone() }).await.map_err(call_error)?;
            if format == Output::Json {
                return output::json(&serde_json::json!({ "deleted": name }));
            }
            println!("rule {name} deleted");
            Ok(())
        }
        RulesCommand::Packs => {
            let packs =
                rules.list_rule_packs(pb::ListRulePacksRequest {}).await.map_err(call_error)?.into_inner();
            if format == Output::Json {
                return output::json(&packs);
            }
            let rows: Vec<Vec<String>> = packs
                .packs
                .iter()
                .map(|p| {
                    vec![
                        p.name.clone(),
                        if p.enabled { "yes" } else { "no" }.into(),
                        p.rules.len().to_string(),
                        p.target.as_ref().map(|t| t.r#type.clone()).unwrap_or_else(|| "-".into()),
                        p.title.clone(),
                    ]
                })
                .collect();
            output::table(&["NAME", "ENABLED", "RULES", "TARGET", "TITLE"], &rows);
            Ok(())
        }
        RulesCommand::EnablePack(args) => {
            let pack = rules
                .enable_rule_pack(pb::EnableRulePackRequest {
                    name: args.name,
                    target: args.target.target()?,
                })
                .await
                .map_err(call_error)?
                .into_inner();
            show_pack(&pack, format)
        }
        RulesCommand::DisablePack { name } => {
            let pack = rules
                .disable_rule_pack(pb::DisableRulePackRequest { name })
                .await
                .map_err(call_error)?
                .into_inner();
            show_pack(&pack, format)
        }
        RulesCommand::DeadLetters { limit } => {
            let letters = rules
                .list_dead_letters(pb::ListDeadLettersRequest { page_size: limit, next_token: String::new() })
                .await
                .map_err(call_error)?
                .into_inner();
            if format == Output::Json {
                return output::json(&letters);
            }
            let rows: Vec<Vec<String>> = letters
                .dead_letters
                .iter()
                .map(|l| {
                    vec![
                        l.id.to_string(),
                        l.rule_name.clone(),
                        output::or_dash(&l.url),
                        l.attempts.to_string(),
                        output::time(&l.failed_at),
                        l.last_error.clone(),
                    ]
                })
                .collect();
            output::table(&["ID", "RULE", "URL", "ATTEMPTS", "FAILED_AT", "LAST_ERROR"], &rows);
            Ok(())
        }
    }
}

fn kind(rule: &pb::Rule) -> &'static str {
    match rule.definition {
        Some(pb::rule::Definition::SigmaYaml(_)) => "sigma",
        _ => "event_pattern",
    }
}

fn show_rule(rule: &pb::Rule, format: Output) -> anyhow::Result<()> {
    if format == Output::Json {
        return output::json(rule);
    }
    let target = rule.target.clone().unwrap_or_default();
    output::fields(&[
        ("name", rule.name.clone()),
        ("title", rule.title.clone()),
        ("author", output::or_dash(&rule.author)),
        ("level", output::or_dash(&rule.level)),
        ("enabled", rule.enabled.to_string()),
        ("kind", kind(rule).into()),
        (
            "target",
            if target.url.is_empty() { target.r#type } else { format!("{} {}", target.r#type, target.url) },
        ),
        ("accounts", if rule.account_ids.is_empty() { "all".into() } else { rule.account_ids.join(",") }),
        ("regions", if rule.regions.is_empty() { "all".into() } else { rule.regions.join(",") }),
        ("updated_at", output::time(&rule.updated_at)),
    ]);
    Ok(())
}

fn show_pack(pack: &pb::RulePack, format: Output) -> anyhow::Result<()> {
    if format == Output::Json {
        return output::json(pack);
    }
    output::fields(&[
        ("name", pack.name.clone()),
        ("enabled", pack.enabled.to_string()),
        ("rules", pack.rules.len().to_string()),
        ("target", pack.target.as_ref().map(|t| t.r#type.clone()).unwrap_or_else(|| "-".into())),
    ]);
    Ok(())
}
