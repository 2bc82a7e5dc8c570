//! The enabled rules a worker evaluates, reloaded when the rules' version moves (checked at
//! most every [`CHECK_EVERY`], so a change reaches every worker within about a second).

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::sync::Mutex;

use crate::features::alerts::rules::{self, Definition, LoadedRule, Target, packs};
use crate::features::alerts::store::{self as store, StoredTarget};
use crate::store::StoreError;

pub const CHECK_EVERY: Duration = Duration::from_millis(500);

#[derive(Default)]
struct State {
    version: Option<i64>,
    checked_at: Option<Instant>,
    rules: Arc<Vec<LoadedRule>>,
}

#[derive(Default)]
pub struct RuleCache {
    state: Mutex<State>,
}

pub fn target(stored: &StoredTarget) -> Target {
    match (stored.target_kind.as_str(), &stored.webhook_url, &stored.webhook_secret) {
        ("webhook", Some(url), Some(secret)) => {
            Target::Webhook { url: url.clone(), sealed_secret: secret.clone() }
        }
        _ => Target::Log,
    }
}

pub fn stored_target(target: &Target) -> StoredTarget {
    match target {
        Target::Log => StoredTarget { target_kind: "log".into(), webhook_url: None, webhook_secret: None },
        Target::Webhook { url, sealed_secret } => StoredTarget {
            target_kind: "webhook".into(),
            webhook_url: Some(url.clone()),
            webhook_secret: Some(sealed_secret.clone()),
        },
    }
}

/// Every enabled rule and the rules of every enabled pack, compiled.
pub async fn load(pool: &PgPool) -> Result<Vec<LoadedRule>, StoreError> {
    let mut loaded = Vec::new();
    for rule in store::list(pool).await? {
        if !rule.enabled {
            continue;
        }
        let definition = match rule.kind.as_str() {
            "sigma" => Definition::SigmaYaml(rule.definition.clone()),
            _ => Definition::EventPattern(rule.definition.clone()),
        };
        // Rules are checked when written; one that no longer compiles (a newer server wrote it)
        // is skipped rather than stopping every other rule.
        let matcher = match definition.compile() {
            Ok(matcher) => matcher,
            Err(error) => {
                tracing::warn!(rule = %rule.name, %error, "rule does not compile; skipped");
                continue;
            }
        };
        loaded.push(LoadedRule {
            info: Arc::new(rules::rule_info(&rule.name, &rule.description, &matcher, None)),
            matcher,
            account_ids: rule.account_ids,
            regions: rule.regions,
            target: Arc::new(target(&rule.target)),
        });
    }
    for enabled in store::enabled_packs(pool).await? {
        if let Some(pack) = packs::find(&enabled.name) {
            loaded.extend(rules::pack_rules(pack, Arc::new(target(&enabled.target))));
        }
    }
    Ok(loaded)
}

impl RuleCache {
    /// The rules as last loaded, without asking Postgres.
    pub async fn cached(&self) -> Arc<Vec<LoadedRule>> {
        self.state.lock().await.rules.clone()
    }

    /// The current rules; asks Postgres for the version at most every [`CHECK_EVERY`].
    pub async fn current(&self, pool: &PgPool) -> Result<Arc<Vec<LoadedRule>>, StoreError> {
        let mut state = self.state.lock().await;
        if state.checked_at.is_some_and(|at| at.elapsed() < CHECK_EVERY) {
            return Ok(state.rules.clone());
        }
        let version = store::version(pool).await?;
        if state.version != Some(version) {
            let rules = load(pool).await?;
            tracing::info!(version, rules = rules.len(), "alert rules loaded");
            state.rules = Arc::new(rules);
            state.version = Some(version);
        }
        state.checked_at = Some(Instant::now());
        Ok(state.rules.clone())
    }
}
