//! Alert rules: what matches a record (EventBridge patterns, Sigma rules), the built-in packs,
//! and the rule set the worker evaluates. Pure: no I/O here (storage is `store::rules`,
//! evaluation in the pipeline is `pipeline::rules_tap`, delivery is `alerts`).

pub mod event;
pub mod glob;
pub mod packs;
pub mod pattern;
pub mod sigma;

use std::sync::Arc;

pub use event::Event;
use pattern::EventPattern;
use sigma::SigmaRule;

use crate::model::FieldError;

/// What a rule matches with, as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Definition {
    /// EventBridge pattern JSON.
    EventPattern(String),
    /// One Sigma rule, YAML.
    SigmaYaml(String),
}

impl Definition {
    /// Compiles the definition; errors name the field (`event_pattern.detail.eventName[0]: ...`).
    pub fn compile(&self) -> Result<Matcher, FieldError> {
        match self {
            Self::EventPattern(json) => EventPattern::parse(json)
                .map(Matcher::Pattern)
                .map_err(|e| FieldError::new(format!("event_pattern.{}", e.path), e.message)),
            Self::SigmaYaml(yaml) => SigmaRule::parse(yaml)
                .map(|rule| Matcher::Sigma(Box::new(rule)))
                .map_err(|e| FieldError::new("sigma_yaml", e.0)),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::EventPattern(_) => "event_pattern",
            Self::SigmaYaml(_) => "sigma",
        }
    }

    pub fn text(&self) -> &str {
        match self {
            Self::EventPattern(text) | Self::SigmaYaml(text) => text,
        }
    }
}

/// A compiled definition.
#[derive(Debug, Clone)]
pub enum Matcher {
    Pattern(EventPattern),
    Sigma(Box<SigmaRule>),
}

impl Matcher {
    pub fn matches(&self, event: &Event) -> bool {
        match self {
            Self::Pattern(pattern) => pattern.matches(event),
            Self::Sigma(rule) => rule.matches(event),
        }
    }
}

/// Where a rule's alerts go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One structured log line per alert.
    Log,
    /// An HTTPS POST, signed with HMAC-SHA256 under the target's secret (kept sealed by the
    /// master key).
    Webhook { url: String, sealed_secret: Vec<u8> },
}

/// What an alert says about the rule that raised it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RuleInfo {
    /// The rule's name (pack rules: `<pack>/<key>`).
    pub name: String,
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// The Sigma rule's `id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pack: Option<String>,
}

/// One rule ready to evaluate.
#[derive(Debug, Clone)]
pub struct LoadedRule {
    pub info: Arc<RuleInfo>,
    pub matcher: Matcher,
    /// Accounts whose records the rule sees; empty: all.
    pub account_ids: Vec<String>,
    /// Regions whose records the rule sees; empty: all.
    pub regions: Vec<String>,
    pub target: Arc<Target>,
}

impl LoadedRule {
    pub fn matches(&self, event: &Event) -> bool {
        let in_scope = |scope: &[String], field: &str| {
            scope.is_empty()
                || event
                    .record
                    .get(field)
                    .and_then(|v| v.as_str())
                    .is_some_and(|v| scope.iter().any(|s| s == v))
        };
        in_scope(&self.account_ids, "recipientAccountId")
            && in_scope(&self.regions, "awsRegion")
            && self.matcher.matches(event)
    }
}

/// Rule info for a definition: Sigma rules bring their own title, author, id and level.
pub fn rule_info(name: &str, description: &str, matcher: &Matcher, pack: Option<&str>) -> RuleInfo {
    match matcher {
        Matcher::Sigma(rule) => RuleInfo {
            name: name.to_owned(),
            title: rule.meta.title.clone(),
            author: rule.meta.author.clone(),
            id: rule.meta.id.clone(),
            level: rule.meta.level.clone(),
            description: if description.is_empty() {
                rule.meta.description.clone().unwrap_or_default()
            } else {
                description.to_owned()
            },
            pack: pack.map(str::to_owned),
        },
        Matcher::Pattern(_) => RuleInfo {
            name: name.to_owned(),
            title: name.to_owned(),
            description: description.to_owned(),
            pack: pack.map(str::to_owned),
            ..Default::default()
        },
    }
}

/// The rules of enabled packs, with the pack's target.
pub fn pack_rules(pack: &packs::Pack, target: Arc<Target>) -> Vec<LoadedRule> {
    pack.rules
        .iter()
        .filter_map(|rule| {
            // Pack patterns are constants checked by a unit test.
            let matcher = EventPattern::parse(rule.pattern).ok().map(Matcher::Pattern)?;
            Some(LoadedRule {
                info: Arc::new(RuleInfo {
                    name: format!("{}/{}", pack.name, rule.key),
                    title: rule.title.to_owned(),
                    description: pack.title.to_owned(),
                    pack: Some(pack.name.to_owned()),
                    ..Default::default()
                }),
                matcher,
                account_ids: Vec::new(),
                regions: Vec::new(),
                target: target.clone(),
            })
        })
        .collect()
}
