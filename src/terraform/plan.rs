//! How planned and new states are derived from the generated schema, for every resource alike.
//!
//! The state keeps the configuration's own representation of a value as long as the server still
//! holds what it held after the last apply (kept in the provider's private state): the server
//! canonicalizes (defaults filled in, sets reordered) and showing that as a change would be a
//! perpetual diff. When the server's value moved (a change outside Terraform), the server wins and
//! the next plan shows the drift.

use std::collections::BTreeMap;

use super::codegen::{Attr, Kind, Mode, Nesting};
use super::value::Value;

/// What a plan decided.
pub struct Planned {
    pub state: Value,
    /// Attributes whose change needs a new resource.
    pub requires_replace: Vec<String>,
}

/// The zero value of a top-level attribute that is left out (see `Mode::Optional`).
fn zero(attr: &Attr) -> Value {
    if attr.presence {
        return Value::Null;
    }
    match &attr.kind {
        Kind::Bool => Value::Bool(false),
        Kind::Number => Value::Number(0.0),
        Kind::String => Value::String(String::new()),
        Kind::List(_) | Kind::Nested(Nesting::List, _) => Value::List(Vec::new()),
        Kind::Set(_) | Kind::Nested(Nesting::Set, _) => Value::Set(Vec::new()),
        Kind::Map(_) => Value::Map(BTreeMap::new()),
        Kind::Nested(Nesting::Single, _) => Value::Null,
    }
}

fn default_of(attr: &Attr) -> Option<Value> {
    attr.default.as_deref().map(|d| match d {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        other => Value::String(other.to_string()),
    })
}

/// Plans a create (prior null) or an update; `config` is the configuration, `proposed` Terraform's
/// proposed new state (configuration merged with the prior state for computed attributes).
pub fn plan(attrs: &[Attr], prior: &Value, config: &Value, proposed: &Value) -> Planned {
    let create = prior.is_null();
    let mut state = if proposed.is_null() { config.clone() } else { proposed.clone() };
    for attr in attrs {
        let name = attr.name.as_str();
        let configured = !config.get(name).is_null();
        let value = match attr.mode {
            _ if configured => continue,
            Mode::Required => continue,
            Mode::Optional => default_of(attr).unwrap_or_else(|| zero(attr)),
            Mode::OptionalComputed | Mode::Computed if create => Value::Unknown,
            Mode::OptionalComputed | Mode::Computed => prior.get(name).clone(),
        };
        state.set(name, value);
    }
    let mut requires_replace = Vec::new();
    if !create {
        let changed =
            attrs.iter().any(|a| a.mode != Mode::Computed && state.get(&a.name) != prior.get(&a.name));
        for attr in attrs {
            let name = attr.name.as_str();
            if attr.force_new && state.get(name) != prior.get(name) {
                requires_replace.push(name.to_string());
            }
            let follows_server = match attr.mode {
                Mode::Computed => !attr.stable,
                Mode::OptionalComputed => config.get(name).is_null(),
                _ => false,
            };
            if changed && follows_server {
                state.set(name, Value::Unknown);
            }
        }
    }
    Planned { state, requires_replace }
}

/// The state after an apply: the plan, with what it left unknown taken from the server.
pub fn applied(attrs: &[Attr], planned: &Value, server: &Value) -> Value {
    let mut state = planned.clone();
    for attr in attrs {
        if !planned.get(&attr.name).is_known() {
            state.set(&attr.name, server.get(&attr.name).clone());
        }
    }
    state
}

/// The state after a refresh: each attribute the server still holds as it was after the last apply
/// (`private`) keeps its prior representation; attributes the server never returns keep their prior
/// value; the rest come from the server.
pub fn refreshed(attrs: &[Attr], prior: &Value, private: Option<&Value>, server: &Value) -> Value {
    let mut state = server.clone();
    let Value::Object(returned) = server else { return state };
    for attr in attrs {
        let name = attr.name.as_str();
        let unchanged = private.is_some_and(|p| {
            matches!(p, Value::Object(o) if o.contains_key(name)) && p.get(name) == server.get(name)
        });
        if !returned.contains_key(name) || attr.write_only || unchanged {
            state.set(name, prior.get(name).clone());
        }
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(name: &str, kind: Kind, mode: Mode) -> Attr {
        Attr {
            name: name.into(),
            description: String::new(),
            kind,
            mode,
            sensitive: false,
            force_new: false,
            stable: false,
            write_only: false,
            default: None,
            presence: false,
        }
    }

    fn object(pairs: &[(&str, Value)]) -> Value {
        Value::Object(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
    }

    fn s(text: &str) -> Value {
        Value::String(text.into())
    }

    fn attrs() -> Vec<Attr> {
        let mut name = attr("name", Kind::String, Mode::Required);
        name.force_new = true;
        name.stable = true;
        let selector =
            Kind::Nested(Nesting::Set, vec![attr("read_write_type", Kind::String, Mode::Optional)]);
        vec![
            name,
            attr("prefix", Kind::String, Mode::Optional),
            attr("region", Kind::String, Mode::OptionalComputed),
            attr("selectors", selector, Mode::OptionalComputed),
            attr("updated", Kind::String, Mode::Computed),
        ]
    }

    #[test]
    fn create_fills_zero_values_and_leaves_server_values_unknown() {
        let config = object(&[("name", s("t")), ("prefix", Value::Null), ("region", Value::Null)]);
        let planned = plan(&attrs(), &Value::Null, &config, &config);
        assert_eq!(planned.state.get("prefix"), &s(""));
        assert!(!planned.state.get("region").is_known());
        assert!(!planned.state.get("updated").is_known());
        assert!(planned.requires_replace.is_empty());
    }

    #[test]
    fn an_unchanged_configuration_plans_the_prior_state() {
        let sel = |rw: &str| object(&[("read_write_type", s(rw))]);
        let prior = object(&[
            ("name", s("t")),
            ("prefix", s("")),
            ("region", s("us-east-1")),
            ("selectors", Value::Set(vec![sel("ReadOnly"), sel("WriteOnly")])),
            ("updated", s("2026-11-24T00:00:00Z")),
        ]);
        let config = object(&[
            ("name", s("t")),
            ("prefix", Value::Null),
            ("region", Value::Null),
            ("selectors", Value::Set(vec![sel("WriteOnly"), sel("ReadOnly")])),
            ("updated", Value::Null),
        ]);
        let mut proposed = prior.clone();
        proposed.set("selectors", config.get("selectors").clone());
        let planned = plan(&attrs(), &prior, &config, &proposed);
        assert_eq!(planned.state, prior, "reordered set elements are no change");
    }

    #[test]
    fn a_change_makes_server_values_unknown_and_a_new_name_replaces() {
        let prior = object(&[("name", s("t")), ("prefix", s("")), ("region", s("r")), ("updated", s("x"))]);
        let config = object(&[("name", s("u")), ("prefix", s("p"))]);
        let mut proposed = prior.clone();
        proposed.set("name", s("u"));
        proposed.set("prefix", s("p"));
        let planned = plan(&attrs(), &prior, &config, &proposed);
        assert_eq!(planned.requires_replace, vec!["name".to_string()]);
        assert!(!planned.state.get("updated").is_known());
        assert!(!planned.state.get("region").is_known());
    }

    #[test]
    fn refresh_keeps_the_configured_form_until_the_server_value_moves() {
        let attrs = attrs();
        let prior = object(&[("name", s("t")), ("selectors", Value::Set(vec![]))]);
        let server_then = object(&[("name", s("t")), ("selectors", Value::Set(vec![s("canonical")]))]);
        let same = refreshed(&attrs, &prior, Some(&server_then), &server_then);
        assert_eq!(same.get("selectors"), &Value::Set(vec![]));
        let server_now = object(&[("name", s("t")), ("selectors", Value::Set(vec![s("other")]))]);
        let drifted = refreshed(&attrs, &prior, Some(&server_then), &server_now);
        assert_eq!(drifted.get("selectors"), &Value::Set(vec![s("other")]));
    }
}
