//! EventBridge event patterns over CloudTrail records.
//!
//! What is accepted (EventBridge's content filtering, on the envelope [`Event`] builds):
//! top-level `source`, `detail-type`, `account`, `region`, `time`, `id` and `detail` (the record);
//! nested objects; leaf arrays of exact values (strings, numbers, booleans, `null`) and of the
//! operators `prefix`, `suffix` (each also as `{"equals-ignore-case": ...}`), `equals-ignore-case`,
//! `wildcard` (`*`, `\*` for a literal star), `anything-but` (values, or `prefix` / `suffix` /
//! `wildcard` / `equals-ignore-case`), `exists`, `numeric` (`=`, `<`, `<=`, `>`, `>=`, at most
//! one bound of each side) and `$or` at any object level. A field whose value is an array matches
//! when any element matches. `cidr` is not supported (it names the feature in the error).

use serde_json::{Map, Value};

use super::event::Event;
use super::glob::{Glob, Part};

/// A bad pattern: where (`detail.eventName[0]`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PatternError {
    pub path: String,
    pub message: String,
}

fn error(path: &str, message: impl Into<String>) -> PatternError {
    PatternError { path: path.to_owned(), message: message.into() }
}

/// A compiled event pattern.
#[derive(Debug, Clone)]
pub struct EventPattern {
    root: ObjectPattern,
}

#[derive(Debug, Clone)]
struct ObjectPattern {
    fields: Vec<(String, FieldPattern)>,
    /// Each `$or`: one of its patterns must match.
    any_of: Vec<Vec<ObjectPattern>>,
}

#[derive(Debug, Clone)]
enum FieldPattern {
    Nested(ObjectPattern),
    /// One of these must match the field's value (or one element of it).
    Conditions(Vec<Condition>),
}

#[derive(Debug, Clone)]
enum Condition {
    Exact(Value),
    /// prefix, suffix, wildcard and equals-ignore-case: string values only.
    Text(Glob),
    AnythingBut(Vec<NotCondition>),
    Numeric {
        lower: Option<(f64, bool)>,
        upper: Option<(f64, bool)>,
    },
    Exists(bool),
}

#[derive(Debug, Clone)]
enum NotCondition {
    Exact(Value),
    Text(Glob),
}

impl EventPattern {
    /// Parses and checks a pattern given as JSON text.
    pub fn parse(json: &str) -> Result<Self, PatternError> {
        let value: Value =
            serde_json::from_str(json).map_err(|e| error("(pattern)", format!("not JSON: {e}")))?;
        Self::from_value(&value)
    }

    pub fn from_value(value: &Value) -> Result<Self, PatternError> {
        let Value::Object(object) = value else {
            return Err(error("(pattern)", "must be a JSON object"));
        };
        Ok(Self { root: object_pattern("", object)? })
    }

    pub fn matches(&self, event: &Event) -> bool {
        self.root.matches(&|key| event.envelope_field(key))
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

fn object_pattern(path: &str, object: &Map<String, Value>) -> Result<ObjectPattern, PatternError> {
    if object.is_empty() {
        return Err(error(if path.is_empty() { "(pattern)" } else { path }, "must name at least one field"));
    }
    let mut pattern = ObjectPattern { fields: Vec::new(), any_of: Vec::new() };
    for (key, value) in object {
        let here = join(path, key);
        if key == "$or" {
            let Value::Array(alternatives) = value else {
                return Err(error(&here, "must be an array of patterns"));
            };
            if alternatives.is_empty() {
                return Err(error(&here, "must not be empty"));
            }
            let mut compiled = Vec::new();
            for (i, alternative) in alternatives.iter().enumerate() {
                let at = format!("{here}[{i}]");
                let Value::Object(inner) = alternative else {
                    return Err(error(&at, "must be an object"));
                };
                compiled.push(object_pattern(path, inner).map_err(|e| relocate(e, path, &at))?);
            }
            pattern.any_of.push(compiled);
            continue;
        }
        let field = match value {
            Value::Object(inner) => FieldPattern::Nested(object_pattern(&here, inner)?),
            Value::Array(items) => {
                if items.is_empty() {
                    return Err(error(&here, "must list at least one value"));
                }
                let conditions = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| condition(&format!("{here}[{i}]"), item))
                    .collect::<Result<_, _>>()?;
                FieldPattern::Conditions(conditions)
            }
            _ => return Err(error(&here, "must be an array of values or an object")),
        };
        pattern.fields.push((key.clone(), field));
    }
    Ok(pattern)
}

/// Errors inside a `$or` alternative name the alternative.
fn relocate(error: PatternError, base: &str, at: &str) -> PatternError {
    let rest = error.path.strip_prefix(base).unwrap_or(&error.path).trim_start_matches('.');
    let path = if rest.is_empty() || rest == "(pattern)" { at.to_owned() } else { format!("{at}.{rest}") };
    PatternError { path, message: error.message }
}

fn single_operator<'a>(
    path: &str,
    object: &'a Map<String, Value>,
) -> Result<(&'a str, &'a Value), PatternError> {
    let mut entries = object.iter();
    match (entries.next(), entries.next()) {
        (Some((key, value)), None) => Ok((key.as_str(), value)),
        _ => Err(error(path, "an operator object must have exactly one key")),
    }
}

fn string<'a>(path: &str, value: &'a Value, what: &str) -> Result<&'a str, PatternError> {
    value.as_str().ok_or_else(|| error(path, format!("{what} takes a string")))
}

fn condition(path: &str, item: &Value) -> Result<Condition, PatternError> {
    let object = match item {
        Value::Object(object) => object,
        Value::Array(_) => return Err(error(path, "nested arrays are not allowed")),
        scalar => return Ok(Condition::Exact(scalar.clone())),
    };
    let (operator, operand) = single_operator(path, object)?;
    let here = format!("{path}.{operator}");
    match operator {
        "prefix" | "suffix" => Ok(Condition::Text(affix(&here, operator, operand)?)),
        "equals-ignore-case" => {
            Ok(Condition::Text(Glob::literal(string(&here, operand, "equals-ignore-case")?, true)))
        }
        "wildcard" => Ok(Condition::Text(wildcard(&here, string(&here, operand, "wildcard")?)?)),
        "exists" => match operand {
            Value::Bool(exists) => Ok(Condition::Exists(*exists)),
            _ => Err(error(&here, "exists takes true or false")),
        },
        "numeric" => numeric(&here, operand),
        "anything-but" => anything_but(&here, operand),
        "cidr" => Err(error(&here, "cidr matching is not supported")),
        other => Err(error(path, format!("unknown operator {other:?}"))),
    }
}

fn affix(path: &str, operator: &str, operand: &Value) -> Result<Glob, PatternError> {
    let (text, ignore_case) = match operand {
        Value::String(text) => (text.as_str(), false),
        Value::Object(inner) => {
            let (key, value) = single_operator(path, inner)?;
            if key != "equals-ignore-case" {
                return Err(error(
                    path,
                    format!("{operator} takes a string or {{\"equals-ignore-case\": string}}"),
                ));
            }
            (string(&format!("{path}.{key}"), value, "equals-ignore-case")?, true)
        }
        _ => return Err(error(path, format!("{operator} takes a string"))),
    };
    let text = Part::Text(text.to_owned());
    let parts = if operator == "prefix" { vec![text, Part::Any] } else { vec![Part::Any, text] };
    Ok(Glob::new(&parts, ignore_case))
}

/// EventBridge wildcards: `*` any run, `\*` a literal star, `\\` a backslash; `**` is refused.
fn wildcard(path: &str, text: &str) -> Result<Glob, PatternError> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped @ ('*' | '\\')) => literal.push(escaped),
                _ => return Err(error(path, "a backslash must be followed by * or \\")),
            },
            '*' => {
                if chars.peek() == Some(&'*') {
                    return Err(error(path, "consecutive wildcard characters are not allowed"));
                }
                if !literal.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut literal)));
                }
                parts.push(Part::Any);
            }
            other => literal.push(other),
        }
    }
    if !literal.is_empty() {
        parts.push(Part::Text(literal));
    }
    Ok(Glob::new(&parts, false))
}

fn numeric(path: &str, operand: &Value) -> Result<Condition, PatternError> {
    let Value::Array(items) = operand else {
        return Err(error(path, "numeric takes an array like [\">\", 0, \"<=\", 5]"));
    };
    if items.is_empty() || items.len() % 2 != 0 || items.len() > 4 {
        return Err(error(path, "numeric takes one or two (operator, number) pairs"));
    }
    let (mut lower, mut upper) = (None, None);
    for (i, pair) in items.chunks(2).enumerate() {
        let at = format!("{path}[{}]", i * 2);
        let operator = pair[0].as_str().ok_or_else(|| error(&at, "expected an operator string"))?;
        let number =
            pair[1].as_f64().ok_or_else(|| error(&format!("{path}[{}]", i * 2 + 1), "expected a number"))?;
        let (slot, bound) = match operator {
            "=" if items.len() == 2 => {
                return Ok(Condition::Numeric { lower: Some((number, true)), upper: Some((number, true)) });
            }
            ">" => (&mut lower, (number, false)),
            ">=" => (&mut lower, (number, true)),
            "<" => (&mut upper, (number, false)),
            "<=" => (&mut upper, (number, true)),
            "=" => return Err(error(&at, "= cannot be combined with another bound")),
            other => return Err(error(&at, format!("unknown numeric operator {other:?}"))),
        };
        if slot.replace(bound).is_some() {
            return Err(error(&at, "at most one lower and one upper bound"));
        }
    }
    if let (Some((low, _)), Some((high, _))) = (lower, upper)
        && low > high
    {
        return Err(error(path, "the lower bound is above the upper bound"));
    }
    Ok(Condition::Numeric { lower, upper })
}

fn anything_but(path: &str, operand: &Value) -> Result<Condition, PatternError> {
    let excluded = match operand {
        Value::String(_) | Value::Number(_) | Value::Bool(_) | Value::Null => {
            vec![NotCondition::Exact(operand.clone())]
        }
        Value::Array(items) => {
            if items.is_empty() {
                return Err(error(path, "must list at least one value"));
            }
            let mut excluded = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(_) | Value::Number(_) | Value::Bool(_) | Value::Null => {
                        excluded.push(NotCondition::Exact(item.clone()))
                    }
                    _ => return Err(error(&format!("{path}[{i}]"), "must be a string or a number")),
                }
            }
            excluded
        }
        Value::Object(inner) => {
            let (operator, value) = single_operator(path, inner)?;
            let here = format!("{path}.{operator}");
            let texts: Vec<&str> = match value {
                Value::String(text) => vec![text.as_str()],
                Value::Array(items) if !items.is_empty() => items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| string(&format!("{here}[{i}]"), item, operator))
                    .collect::<Result<_, _>>()?,
                _ => return Err(error(&here, format!("{operator} takes a string or an array of strings"))),
            };
            let mut excluded = Vec::new();
            for text in texts {
                let glob = match operator {
                    "prefix" => Glob::new(&[Part::Text(text.to_owned()), Part::Any], false),
                    "suffix" => Glob::new(&[Part::Any, Part::Text(text.to_owned())], false),
                    "equals-ignore-case" => Glob::literal(text, true),
                    "wildcard" => wildcard(&here, text)?,
                    other => return Err(error(path, format!("anything-but cannot take {other:?}"))),
                };
                excluded.push(NotCondition::Text(glob));
            }
            excluded
        }
    };
    Ok(Condition::AnythingBut(excluded))
}

impl ObjectPattern {
    fn matches<'a>(&self, get: &dyn Fn(&str) -> Option<&'a Value>) -> bool {
        self.fields.iter().all(|(key, field)| field.matches(get(key)))
            && self.any_of.iter().all(|alternatives| alternatives.iter().any(|p| p.matches(get)))
    }

    fn matches_value(&self, value: &Value) -> bool {
        match value {
            Value::Object(object) => self.matches(&|key| object.get(key)),
            Value::Array(items) => items.iter().any(|item| self.matches_value(item)),
            _ => false,
        }
    }
}

impl FieldPattern {
    fn matches(&self, value: Option<&Value>) -> bool {
        match self {
            Self::Nested(pattern) => value.is_some_and(|v| pattern.matches_value(v)),
            Self::Conditions(conditions) => conditions.iter().any(|c| c.matches(value)),
        }
    }
}

impl Condition {
    fn matches(&self, value: Option<&Value>) -> bool {
        match (self, value) {
            (Self::Exists(exists), value) => *exists == value.is_some_and(|v| !v.is_object()),
            (_, None) => false,
            (_, Some(Value::Array(items))) => items.iter().any(|item| self.matches_leaf(item)),
            (_, Some(leaf)) => self.matches_leaf(leaf),
        }
    }

    fn matches_leaf(&self, value: &Value) -> bool {
        match self {
            Self::Exact(expected) => same_value(expected, value),
            Self::Text(glob) => value.as_str().is_some_and(|text| glob.matches(text)),
            Self::AnythingBut(excluded) => {
                !value.is_object() && !excluded.iter().any(|not| not.excludes(value))
            }
            Self::Numeric { lower, upper } => value.as_f64().is_some_and(|n| {
                lower.is_none_or(|(bound, inclusive)| if inclusive { n >= bound } else { n > bound })
                    && upper.is_none_or(|(bound, inclusive)| if inclusive { n <= bound } else { n < bound })
            }),
            Self::Exists(_) => true,
        }
    }
}

impl NotCondition {
    fn excludes(&self, value: &Value) -> bool {
        match self {
            Self::Exact(expected) => same_value(expected, value),
            // A non-string is "anything but" a string pattern only if it is a string at all.
            Self::Text(glob) => value.as_str().is_none_or(|text| glob.matches(text)),
        }
    }
}

/// JSON equality with numbers compared by value (`5` matches `5.0`).
fn same_value(expected: &Value, value: &Value) -> bool {
    match (expected, value) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (a, b) => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(record: &str) -> Event {
        Event::parse(record).unwrap()
    }

    fn matches(pattern: &str, record: &str) -> bool {
        EventPattern::parse(pattern).unwrap().matches(&event(record))
    }

    fn rejects(pattern: &str) -> String {
        EventPattern::parse(pattern).unwrap_err().to_string()
    }

    const STOP: &str = r#"{"eventSource":"cloudtrail.amazonaws.com","eventName":"StopLogging","eventType":"AwsApiCall",
        "awsRegion":"us-east-1","recipientAccountId":"111122223333","errorCode":null,
        "userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::111122223333:assumed-role/Admin/alice"},
        "requestParameters":{"name":"main-trail","count":5},"resources":[{"type":"AWS::CloudTrail::Trail","ARN":"arn:a"},{"type":"X","ARN":"arn:b"}],
        "tags":["red","blue"]}"#;

    #[test]
    fn exact_strings_numbers_and_null() {
        assert!(matches(r#"{"detail":{"eventName":["StopLogging","DeleteTrail"]}}"#, STOP));
        assert!(!matches(r#"{"detail":{"eventName":["stoplogging"]}}"#, STOP));
        assert!(matches(r#"{"detail":{"requestParameters":{"count":[5]}}}"#, STOP));
        assert!(matches(r#"{"detail":{"requestParameters":{"count":[5.0]}}}"#, STOP));
        assert!(!matches(r#"{"detail":{"requestParameters":{"count":["5"]}}}"#, STOP));
        assert!(matches(r#"{"detail":{"errorCode":[null]}}"#, STOP));
        assert!(!matches(r#"{"detail":{"errorMessage":[null]}}"#, STOP));
    }

    #[test]
    fn envelope_source_and_detail_type() {
        assert!(matches(
            r#"{"source":["aws.cloudtrail"],"detail-type":["AWS API Call via CloudTrail"],"account":["111122223333"],"region":["us-east-1"]}"#,
            STOP
        ));
        assert!(!matches(r#"{"source":["aws.s3"]}"#, STOP));
    }

    #[test]
    fn prefix_and_suffix_with_and_without_case() {
        assert!(matches(r#"{"detail":{"eventName":[{"prefix":"Stop"}]}}"#, STOP));
        assert!(!matches(r#"{"detail":{"eventName":[{"prefix":"stop"}]}}"#, STOP));
        assert!(matches(r#"{"detail":{"eventName":[{"prefix":{"equals-ignore-case":"stop"}}]}}"#, STOP));
        assert!(matches(r#"{"detail":{"eventName":[{"suffix":"Logging"}]}}"#, STOP));
        assert!(matches(r#"{"detail":{"eventName":[{"suffix":{"equals-ignore-case":"LOGGING"}}]}}"#, STOP));
        assert!(!matches(r#"{"detail":{"eventName":[{"suffix":"Trail"}]}}"#, STOP));
    }

    #[test]
    fn anything_but_values_prefix_suffix() {
        assert!(matches(r#"{"detail":{"eventName":[{"anything-but":"StartLogging"}]}}"#, STOP));
        assert!(!matches(r#"{"detail":{"eventName":[{"anything-but":["StopLogging","X"]}]}}"#, STOP));
        assert!(!matches(r#"{"detail":{"eventName":[{"anything-but":{"prefix":"Stop"}}]}}"#, STOP));
        assert!(matches(r#"{"detail":{"eventName":[{"anything-but":{"suffix":"Trail"}}]}}"#, STOP));
        assert!(!matches(
            r#"{"detail":{"eventName":[{"anything-but":{"equals-ignore-case":"STOPLOGGING"}}]}}"#,
            STOP
        ));
        assert!(!matches(r#"{"detail":{"eventName":[{"anything-but":{"wildcard":"Stop*"}}]}}"#, STOP));
        assert!(matches(r#"{"detail":{"requestParameters":{"count":[{"anything-but":[1,2]}]}}}"#, STOP));
        // Anything-but needs the field.
        assert!(!matches(r#"{"detail":{"errorMessage":[{"anything-but":"x"}]}}"#, STOP));
    }

    #[test]
    fn exists_true_and_false() {
        assert!(matches(r#"{"detail":{"eventName":[{"exists":true}]}}"#, STOP));
        assert!(matches(r#"{"detail":{"errorMessage":[{"exists":false}]}}"#, STOP));
        assert!(!matches(r#"{"detail":{"eventName":[{"exists":false}]}}"#, STOP));
        assert!(matches(r#"{"detail":{"userIdentity":{"invokedBy":[{"exists":false}]}}}"#, STOP));
        // Only leaves exist for EventBridge.
        assert!(!matches(r#"{"detail":{"requestParameters":[{"exists":true}]}}"#, STOP));
    }

    #[test]
    fn numeric_ranges() {
        assert!(matches(r#"{"detail":{"requestParameters":{"count":[{"numeric":[">",0,"<=",5]}]}}}"#, STOP));
        assert!(!matches(r#"{"detail":{"requestParameters":{"count":[{"numeric":[">",0,"<",5]}]}}}"#, STOP));
        assert!(matches(r#"{"detail":{"requestParameters":{"count":[{"numeric":["=",5]}]}}}"#, STOP));
        assert!(matches(r#"{"detail":{"requestParameters":{"count":[{"numeric":[">=",5]}]}}}"#, STOP));
        assert!(!matches(r#"{"detail":{"eventName":[{"numeric":[">",0]}]}}"#, STOP));
    }

    #[test]
    fn equals_ignore_case_and_wildcard() {
        assert!(matches(r#"{"detail":{"eventName":[{"equals-ignore-case":"STOPLOGGING"}]}}"#, STOP));
        assert!(matches(
            r#"{"detail":{"userIdentity":{"arn":[{"wildcard":"arn:aws:sts::*:assumed-role/Admin/*"}]}}}"#,
            STOP
        ));
        assert!(!matches(r#"{"detail":{"userIdentity":{"arn":[{"wildcard":"arn:aws:iam::*"}]}}}"#, STOP));
        assert!(!matches(r#"{"detail":{"eventName":[{"wildcard":"Stop\\*"}]}}"#, STOP));
        assert!(matches(r#"{"detail":{"eventName":[{"wildcard":"Stop\\*"}]}}"#, r#"{"eventName":"Stop*"}"#));
    }

    #[test]
    fn or_at_any_level() {
        let pattern = r#"{"detail":{"$or":[{"errorCode":[{"suffix":"UnauthorizedOperation"}]},{"eventName":[{"prefix":"Stop"}]}]}}"#;
        assert!(matches(pattern, STOP));
        assert!(!matches(pattern, r#"{"eventName":"StartLogging"}"#));
        assert!(matches(r#"{"$or":[{"source":["aws.s3"]},{"source":["aws.cloudtrail"]}]}"#, STOP));
    }

    #[test]
    fn arrays_in_the_event_match_any_element() {
        assert!(matches(r#"{"detail":{"tags":["blue"]}}"#, STOP));
        assert!(!matches(r#"{"detail":{"tags":["green"]}}"#, STOP));
        assert!(matches(r#"{"detail":{"resources":{"type":["X"]}}}"#, STOP));
        assert!(matches(r#"{"detail":{"resources":{"ARN":[{"prefix":"arn:b"}]}}}"#, STOP));
    }

    #[test]
    fn bad_patterns_name_the_path() {
        assert_eq!(
            rejects(r#"{"detail":{"eventName":"StopLogging"}}"#),
            "detail.eventName: must be an array of values or an object"
        );
        assert_eq!(
            rejects(r#"{"detail":{"eventName":[{"prefx":"S"}]}}"#),
            "detail.eventName[0]: unknown operator \"prefx\""
        );
        assert_eq!(
            rejects(r#"{"detail":{"eventName":["a",{"prefix":1}]}}"#),
            "detail.eventName[1].prefix: prefix takes a string"
        );
        assert_eq!(
            rejects(r#"{"detail":{"x":[{"numeric":[">",1,">",2]}]}}"#),
            "detail.x[0].numeric[2]: at most one lower and one upper bound"
        );
        assert_eq!(
            rejects(r#"{"detail":{"x":[{"wildcard":"a**b"}]}}"#),
            "detail.x[0].wildcard: consecutive wildcard characters are not allowed"
        );
        assert_eq!(
            rejects(r#"{"detail":{"x":[{"cidr":"10.0.0.0/8"}]}}"#),
            "detail.x[0].cidr: cidr matching is not supported"
        );
        assert_eq!(
            rejects(r#"{"detail":{"$or":[{"a":["x"]},{"b":"y"}]}}"#),
            "detail.$or[1].b: must be an array of values or an object"
        );
        assert_eq!(rejects(r#"{"detail":{"x":[]}}"#), "detail.x: must list at least one value");
        assert_eq!(rejects("[]"), "(pattern): must be a JSON object");
        assert_eq!(rejects("{}"), "(pattern): must name at least one field");
    }
}
