//! Sigma rules for CloudTrail (`logsource: {product: aws, service: cloudtrail}`).
//!
//! Supported: named selections (a map is AND over its fields, a list of maps is OR, a list of
//! values is OR, or AND with `|all`), `null` values, wildcards `*` / `?` (`\` escapes them),
//! the modifiers `contains`, `startswith`, `endswith`, `all`, `cased`, `re` (with `i`, `m`, `s`),
//! `exists` and `fieldref` (alone or with `contains` / `startswith` / `endswith`), and conditions
//! with `and`, `or`, `not`, parentheses, `1 of x*`, `any of x*`, `all of x*` and `... of them`; a
//! list of conditions is their OR. Field names are dotted paths into nested objects.
//!
//! Matching follows Sigma's case-insensitivity for ASCII letters (`|cased` and `|re` are
//! case-sensitive). A field's value compares as text: strings as they are, numbers and booleans as
//! JSON spells them, objects and arrays as their compact JSON (so `requestParameters|contains: x`
//! searches the whole object); `null` and absent fields match only `null` / `exists: false`; a path
//! does not descend into arrays. This is how the SQLite backend of pySigma reads a record flattened
//! into columns, which the conformance test checks on the shared rules and records.
//!
//! Refused with a reason naming the feature: other log sources, correlation rules, aggregations
//! (`| count()`, `timeframe`), keyword (fieldless) detections, other modifiers (`cidr`, `base64`,
//! `windash`, `gt`, ... ), multi-document collections, and regular expressions the `regex` crate
//! cannot compile (look-around, back-references).

use serde_json::{Map, Value};

use super::event::{Event, text_of};
use super::glob::{Glob, Part};

/// Why a Sigma rule was not loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SigmaError(pub String);

fn reject<T>(message: impl Into<String>) -> Result<T, SigmaError> {
    Err(SigmaError(message.into()))
}

/// What an alert carries about the rule (DRL 1.1 asks alerts to carry the author).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SigmaMeta {
    pub title: String,
    pub id: Option<String>,
    pub author: Option<String>,
    pub level: Option<String>,
    pub description: Option<String>,
    pub status: Option<String>,
}

/// A loaded Sigma rule.
#[derive(Debug, Clone)]
pub struct SigmaRule {
    pub meta: SigmaMeta,
    detections: Vec<Detection>,
    condition: Expr,
}

#[derive(Debug, Clone)]
struct Detection {
    name: String,
    /// OR over alternatives, AND within one.
    alternatives: Vec<Vec<FieldMatch>>,
}

#[derive(Debug, Clone)]
struct FieldMatch {
    path: Vec<String>,
    test: FieldTest,
}

#[derive(Debug, Clone)]
enum FieldTest {
    Exists(bool),
    Values { values: Vec<ValueTest>, all: bool },
    FieldRef { other: Vec<String>, mode: Affix },
}

#[derive(Debug, Clone)]
enum ValueTest {
    Null,
    Glob(Glob),
    Regex(regex::Regex),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Affix {
    Whole,
    Start,
    End,
    Contains,
}

#[derive(Debug, Clone)]
enum Expr {
    Detection(usize),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
}

impl SigmaRule {
    /// Loads one rule from YAML text.
    pub fn parse(yaml: &str) -> Result<Self, SigmaError> {
        let documents = yaml_rust2::YamlLoader::load_from_str(yaml)
            .map_err(|e| SigmaError(format!("not valid YAML: {e}")))?;
        let document = match documents.as_slice() {
            [one] => one,
            [] => return reject("the document is empty"),
            _ => {
                return reject(
                    "multi-document Sigma collections are not supported; import one rule per file",
                );
            }
        };
        let value = to_json(document)?;
        let Value::Object(rule) = value else {
            return reject("a Sigma rule is a YAML mapping");
        };
        Self::from_map(&rule)
    }

    fn from_map(rule: &Map<String, Value>) -> Result<Self, SigmaError> {
        if rule.contains_key("correlation") {
            return reject("correlation rules are not supported (each alert matches one record)");
        }
        let title = match rule.get("title") {
            Some(Value::String(title)) if !title.trim().is_empty() => title.clone(),
            _ => return reject("title: a Sigma rule needs a title"),
        };
        check_logsource(rule.get("logsource"))?;
        let Some(Value::Object(detection)) = rule.get("detection") else {
            return reject("detection: a Sigma rule needs a detection mapping");
        };
        if detection.contains_key("timeframe") {
            return reject("detection.timeframe: aggregations over time are not supported");
        }
        let mut detections = Vec::new();
        for (name, definition) in detection {
            if name == "condition" {
                continue;
            }
            detections.push(Detection { name: name.clone(), alternatives: alternatives(name, definition)? });
        }
        let condition = match detection.get("condition") {
            Some(Value::String(text)) => parse_condition(text, &detections)?,
            Some(Value::Array(texts)) if !texts.is_empty() => {
                let mut any = Vec::new();
                for text in texts {
                    let Value::String(text) = text else {
                        return reject("detection.condition: conditions are strings");
                    };
                    any.push(parse_condition(text, &detections)?);
                }
                Expr::Or(any)
            }
            _ => return reject("detection.condition: a Sigma rule needs a condition"),
        };
        let text = |key: &str| match rule.get(key) {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        Ok(Self {
            meta: SigmaMeta {
                title,
                id: text("id"),
                author: text("author"),
                level: text("level"),
                description: text("description"),
                status: text("status"),
            },
            detections,
            condition,
        })
    }

    pub fn matches(&self, event: &Event) -> bool {
        self.eval(&self.condition, event)
    }

    fn eval(&self, expr: &Expr, event: &Event) -> bool {
        match expr {
            Expr::Detection(index) => self.detections[*index].matches(event),
            Expr::And(all) => all.iter().all(|e| self.eval(e, event)),
            Expr::Or(any) => any.iter().any(|e| self.eval(e, event)),
            Expr::Not(inner) => !self.eval(inner, event),
        }
    }
}

fn check_logsource(logsource: Option<&Value>) -> Result<(), SigmaError> {
    let field = |name: &str| logsource.and_then(|l| l.get(name)).and_then(Value::as_str);
    let product = field("product").unwrap_or_default();
    let service = field("service").unwrap_or_default();
    if !product.eq_ignore_ascii_case("aws") || !service.eq_ignore_ascii_case("cloudtrail") {
        return reject(format!(
            "logsource: only product aws, service cloudtrail is supported (got product {product:?}, service {service:?})"
        ));
    }
    if let Some(category) = field("category") {
        return reject(format!("logsource.category: {category:?} is not a CloudTrail log source"));
    }
    Ok(())
}

fn to_json(yaml: &yaml_rust2::Yaml) -> Result<Value, SigmaError> {
    use yaml_rust2::Yaml;
    Ok(match yaml {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::Real(text) => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Array(items) => Value::Array(items.iter().map(to_json).collect::<Result<_, _>>()?),
        Yaml::Hash(hash) => {
            let mut map = Map::new();
            for (key, value) in hash {
                let key = match key {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    _ => return reject("mapping keys must be strings"),
                };
                map.insert(key, to_json(value)?);
            }
            Value::Object(map)
        }
        Yaml::Alias(_) => return reject("YAML aliases are not supported"),
        Yaml::BadValue => return reject("a YAML value could not be read"),
    })
}

fn alternatives(name: &str, definition: &Value) -> Result<Vec<Vec<FieldMatch>>, SigmaError> {
    match definition {
        Value::Object(fields) => Ok(vec![field_matches(name, fields)?]),
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
            items.iter().filter_map(Value::as_object).map(|fields| field_matches(name, fields)).collect()
        }
        Value::Array(items) if items.is_empty() => {
            reject(format!("detection.{name}: an empty list matches nothing"))
        }
        _ => reject(format!(
            "detection.{name}: keyword (fieldless) detections are not supported; name the field to search"
        )),
    }
}

fn field_matches(name: &str, fields: &Map<String, Value>) -> Result<Vec<FieldMatch>, SigmaError> {
    let mut matches = Vec::new();
    for (key, value) in fields {
        let at = format!("detection.{name}.{key}");
        let mut pieces = key.split('|');
        let field = pieces.next().unwrap_or_default();
        if field.is_empty() {
            return reject(format!("{at}: keyword (fieldless) detections are not supported; name the field"));
        }
        let path: Vec<String> = field.split('.').map(str::to_owned).collect();
        let modifiers: Vec<&str> = pieces.collect();
        matches.push(FieldMatch { path, test: field_test(&at, &modifiers, value)? });
    }
    Ok(matches)
}

#[derive(Default)]
struct Modifiers {
    affix: Option<Affix>,
    all: bool,
    cased: bool,
    regex: bool,
    regex_flags: String,
    exists: bool,
    fieldref: bool,
}

fn field_test(at: &str, names: &[&str], value: &Value) -> Result<FieldTest, SigmaError> {
    let mut modifiers = Modifiers::default();
    for name in names {
        let affix = match *name {
            "contains" => Some(Affix::Contains),
            "startswith" => Some(Affix::Start),
            "endswith" => Some(Affix::End),
            "all" => {
                modifiers.all = true;
                None
            }
            "cased" => {
                modifiers.cased = true;
                None
            }
            "re" => {
                modifiers.regex = true;
                None
            }
            "i" | "ignorecase" if modifiers.regex => {
                modifiers.regex_flags.push('i');
                None
            }
            "m" | "multiline" if modifiers.regex => {
                modifiers.regex_flags.push('m');
                None
            }
            "s" | "dotall" if modifiers.regex => {
                modifiers.regex_flags.push('s');
                None
            }
            "exists" => {
                modifiers.exists = true;
                None
            }
            "fieldref" => {
                modifiers.fieldref = true;
                None
            }
            other => return reject(format!("{at}: the modifier |{other} is not supported")),
        };
        if let Some(affix) = affix
            && modifiers.affix.replace(affix).is_some()
        {
            return reject(format!("{at}: only one of |contains, |startswith, |endswith"));
        }
    }
    if modifiers.exists {
        return match value {
            Value::Bool(exists) if names.len() == 1 => Ok(FieldTest::Exists(*exists)),
            _ => reject(format!("{at}: |exists takes true or false and no other modifier")),
        };
    }
    let values: Vec<&Value> = match value {
        Value::Array(items) if items.is_empty() => {
            return reject(format!("{at}: an empty list matches nothing"));
        }
        Value::Array(items) => items.iter().collect(),
        Value::Object(_) => return reject(format!("{at}: a value cannot be a mapping")),
        one => vec![one],
    };
    if modifiers.fieldref {
        if modifiers.regex || modifiers.cased || modifiers.all || values.len() != 1 {
            return reject(format!(
                "{at}: |fieldref takes one field name, with at most |contains, |startswith or |endswith"
            ));
        }
        let Some(other) = values[0].as_str() else {
            return reject(format!("{at}: |fieldref takes a field name"));
        };
        return Ok(FieldTest::FieldRef {
            other: other.split('.').map(str::to_owned).collect(),
            mode: modifiers.affix.unwrap_or(Affix::Whole),
        });
    }
    let mut tests = Vec::new();
    for value in values {
        let text = match value {
            Value::Null => {
                tests.push(ValueTest::Null);
                continue;
            }
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return reject(format!("{at}: list items must be plain values")),
        };
        if modifiers.regex {
            if modifiers.affix.is_some() {
                return reject(format!(
                    "{at}: |re cannot be combined with |contains, |startswith or |endswith"
                ));
            }
            let pattern = if modifiers.regex_flags.is_empty() {
                text
            } else {
                format!("(?{}){text}", modifiers.regex_flags)
            };
            let regex = regex::Regex::new(&pattern).map_err(|e| {
                SigmaError(format!("{at}: the regular expression is not supported by this engine: {e}"))
            })?;
            tests.push(ValueTest::Regex(regex));
            continue;
        }
        let mut parts = sigma_string(&text);
        match modifiers.affix {
            Some(Affix::Contains) => {
                if parts.first() != Some(&Part::Any) {
                    parts.insert(0, Part::Any);
                }
                if parts.last() != Some(&Part::Any) {
                    parts.push(Part::Any);
                }
            }
            Some(Affix::Start) => {
                if parts.last() != Some(&Part::Any) {
                    parts.push(Part::Any);
                }
            }
            Some(Affix::End) => {
                if parts.first() != Some(&Part::Any) {
                    parts.insert(0, Part::Any);
                }
            }
            Some(Affix::Whole) | None => {}
        }
        tests.push(ValueTest::Glob(Glob::new(&parts, !modifiers.cased)));
    }
    Ok(FieldTest::Values { values: tests, all: modifiers.all })
}

/// A Sigma string: `*` and `?` are wildcards; a backslash escapes `*`, `?` and itself and is
/// literal before anything else.
fn sigma_string(text: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some(&escaped @ ('*' | '?' | '\\')) => {
                    literal.push(escaped);
                    chars.next();
                }
                _ => literal.push('\\'),
            },
            '*' | '?' => {
                if !literal.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut literal)));
                }
                parts.push(if c == '*' { Part::Any } else { Part::One });
            }
            other => literal.push(other),
        }
    }
    if !literal.is_empty() || parts.is_empty() {
        parts.push(Part::Text(literal));
    }
    parts
}

impl Detection {
    fn matches(&self, event: &Event) -> bool {
        self.alternatives.iter().any(|fields| fields.iter().all(|f| f.matches(event)))
    }
}

impl FieldMatch {
    fn matches(&self, event: &Event) -> bool {
        let text = event.at_path(&self.path).and_then(text_of);
        match &self.test {
            FieldTest::Exists(exists) => *exists == text.is_some(),
            FieldTest::Values { values, all } => {
                let one = |test: &ValueTest| match test {
                    ValueTest::Null => text.is_none(),
                    ValueTest::Glob(glob) => text.as_deref().is_some_and(|t| glob.matches(t)),
                    ValueTest::Regex(regex) => text.as_deref().is_some_and(|t| regex.is_match(t)),
                };
                if *all { values.iter().all(one) } else { values.iter().any(one) }
            }
            FieldTest::FieldRef { other, mode } => {
                let (Some(text), Some(other)) = (text, event.at_path(other).and_then(text_of)) else {
                    return false;
                };
                let parts = match mode {
                    Affix::Whole => vec![Part::Text(other.into_owned())],
                    Affix::Start => vec![Part::Text(other.into_owned()), Part::Any],
                    Affix::End => vec![Part::Any, Part::Text(other.into_owned())],
                    Affix::Contains => vec![Part::Any, Part::Text(other.into_owned()), Part::Any],
                };
                Glob::new(&parts, true).matches(&text)
            }
        }
    }
}

// --- conditions ---------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Open,
    Close,
}

fn tokens(text: &str) -> Result<Vec<Token>, SigmaError> {
    let mut tokens = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        match c {
            '(' | ')' | ' ' | '\t' | '\n' | '\r' => {
                if !word.is_empty() {
                    tokens.push(Token::Word(std::mem::take(&mut word)));
                }
                match c {
                    '(' => tokens.push(Token::Open),
                    ')' => tokens.push(Token::Close),
                    _ => {}
                }
            }
            '|' => return reject("detection.condition: aggregations (| count() ...) are not supported"),
            other => word.push(other),
        }
    }
    if !word.is_empty() {
        tokens.push(Token::Word(word));
    }
    Ok(tokens)
}

struct ConditionParser<'a> {
    tokens: Vec<Token>,
    at: usize,
    detections: &'a [Detection],
}

fn parse_condition(text: &str, detections: &[Detection]) -> Result<Expr, SigmaError> {
    let mut parser = ConditionParser { tokens: tokens(text)?, at: 0, detections };
    let expr = parser.or()?;
    if parser.at != parser.tokens.len() {
        return reject(format!("detection.condition: unexpected {:?} in {text:?}", parser.tokens[parser.at]));
    }
    Ok(expr)
}

fn keyword(token: Option<&Token>, word: &str) -> bool {
    matches!(token, Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
}

impl ConditionParser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn or(&mut self) -> Result<Expr, SigmaError> {
        let mut any = vec![self.and()?];
        while keyword(self.peek(), "or") {
            self.at += 1;
            any.push(self.and()?);
        }
        Ok(if any.len() == 1 { any.remove(0) } else { Expr::Or(any) })
    }

    fn and(&mut self) -> Result<Expr, SigmaError> {
        let mut all = vec![self.not()?];
        while keyword(self.peek(), "and") {
            self.at += 1;
            all.push(self.not()?);
        }
        Ok(if all.len() == 1 { all.remove(0) } else { Expr::And(all) })
    }

    fn not(&mut self) -> Result<Expr, SigmaError> {
        if keyword(self.peek(), "not") {
            self.at += 1;
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, SigmaError> {
        let token = self.peek().cloned();
        self.at += 1;
        match token {
            Some(Token::Open) => {
                let inner = self.or()?;
                if self.peek() != Some(&Token::Close) {
                    return reject("detection.condition: a parenthesis is not closed");
                }
                self.at += 1;
                Ok(inner)
            }
            Some(Token::Word(word)) => {
                if keyword(self.peek(), "of") {
                    self.at += 1;
                    let Some(Token::Word(target)) = self.peek().cloned() else {
                        return reject(format!(
                            "detection.condition: `{word} of` needs a name pattern or `them`"
                        ));
                    };
                    self.at += 1;
                    return self.quantified(&word, &target);
                }
                if ["and", "or", "not", "of"].iter().any(|k| word.eq_ignore_ascii_case(k)) {
                    return reject(format!("detection.condition: unexpected `{word}`"));
                }
                match self.detections.iter().position(|d| d.name == word) {
                    Some(index) => Ok(Expr::Detection(index)),
                    None => reject(format!("detection.condition: no detection named {word:?}")),
                }
            }
            Some(Token::Close) => reject("detection.condition: unexpected `)`"),
            None => reject("detection.condition: the condition ends too early"),
        }
    }

    fn quantified(&self, quantifier: &str, target: &str) -> Result<Expr, SigmaError> {
        let pattern = Glob::new(&sigma_string(target), false);
        let chosen: Vec<Expr> = self
            .detections
            .iter()
            .enumerate()
            .filter(
                |(_, d)| if target == "them" { !d.name.starts_with('_') } else { pattern.matches(&d.name) },
            )
            .map(|(i, _)| Expr::Detection(i))
            .collect();
        if chosen.is_empty() {
            return reject(format!("detection.condition: no detection matches {target:?}"));
        }
        match quantifier {
            "1" | "any" => Ok(Expr::Or(chosen)),
            "all" => Ok(Expr::And(chosen)),
            other => reject(format!("detection.condition: `{other} of` is not supported (only 1, any, all)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(detection: &str) -> Result<SigmaRule, SigmaError> {
        SigmaRule::parse(&format!(
            "title: Test rule\nid: 0e5c0d4e-1\nauthor: Someone\nlevel: high\nlogsource:\n  product: aws\n  service: cloudtrail\ndetection:\n{detection}"
        ))
    }

    fn matches(detection: &str, record: &str) -> bool {
        rule(detection).unwrap().matches(&Event::parse(record).unwrap())
    }

    const LOGIN: &str = r#"{"eventSource":"signin.amazonaws.com","eventName":"ConsoleLogin","errorCode":null,
        "userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/Alice"},
        "additionalEventData":{"MFAUsed":"No"},"responseElements":{"ConsoleLogin":"Success"},
        "requestParameters":{"userName":"alice","layers":["arn:one"],"enable":false},"userAgent":"Mozilla S3 Browser 9"}"#;

    #[test]
    fn map_is_and_list_is_or_case_insensitive() {
        assert!(matches(
            "  sel:\n    eventName: consolelogin\n    additionalEventData.MFAUsed: 'NO'\n  condition: sel",
            LOGIN
        ));
        assert!(!matches("  sel:\n    eventName: ConsoleLogin\n    eventSource: x\n  condition: sel", LOGIN));
        assert!(matches("  sel:\n    eventName:\n      - A\n      - ConsoleLogin\n  condition: sel", LOGIN));
        assert!(matches(
            "  sel:\n    - eventName: A\n    - eventSource: signin.amazonaws.com\n  condition: sel",
            LOGIN
        ));
    }

    #[test]
    fn modifiers_contains_startswith_endswith_all_cased() {
        assert!(matches("  sel:\n    userAgent|contains: 's3 browser'\n  condition: sel", LOGIN));
        assert!(matches("  sel:\n    eventName|startswith: console\n  condition: sel", LOGIN));
        assert!(matches("  sel:\n    eventName|endswith: LOGIN\n  condition: sel", LOGIN));
        assert!(matches(
            "  sel:\n    userAgent|contains|all:\n      - Mozilla\n      - Browser\n  condition: sel",
            LOGIN
        ));
        assert!(!matches(
            "  sel:\n    userAgent|contains|all:\n      - Mozilla\n      - Chrome\n  condition: sel",
            LOGIN
        ));
        assert!(!matches("  sel:\n    eventName|cased: consolelogin\n  condition: sel", LOGIN));
        assert!(matches("  sel:\n    eventName|cased|startswith: Console\n  condition: sel", LOGIN));
    }

    #[test]
    fn wildcards_and_escapes() {
        assert!(matches("  sel:\n    eventName: 'Console*'\n  condition: sel", LOGIN));
        assert!(matches("  sel:\n    eventName: 'Console?ogin'\n  condition: sel", LOGIN));
        assert!(!matches("  sel:\n    eventName: 'Console\\*'\n  condition: sel", LOGIN));
        assert!(matches(
            "  sel:\n    eventName: 'Console\\*'\n  condition: sel",
            r#"{"eventName":"Console*"}"#
        ));
        assert!(matches("  sel:\n    errorMessage|contains: '*'\n  condition: not sel", LOGIN));
    }

    #[test]
    fn null_exists_and_nested_fields() {
        assert!(matches("  sel:\n    errorCode: null\n  condition: sel", LOGIN));
        assert!(matches("  sel:\n    missing: null\n  condition: sel", LOGIN));
        assert!(!matches("  sel:\n    eventName: null\n  condition: sel", LOGIN));
        assert!(matches("  sel:\n    userIdentity.type|exists: true\n  condition: sel", LOGIN));
        assert!(matches("  sel:\n    userIdentity.invokedBy|exists: false\n  condition: sel", LOGIN));
        assert!(matches("  sel:\n    responseElements.ConsoleLogin: success\n  condition: sel", LOGIN));
    }

    #[test]
    fn objects_arrays_and_booleans_compare_as_json_text() {
        assert!(matches(
            "  sel:\n    requestParameters|contains: '\"userName\":\"alice\"'\n  condition: sel",
            LOGIN
        ));
        assert!(matches("  sel:\n    requestParameters.layers|contains: 'arn:one'\n  condition: sel", LOGIN));
        assert!(matches("  sel:\n    requestParameters.enable: 'false'\n  condition: sel", LOGIN));
    }

    #[test]
    fn regex_and_fieldref() {
        assert!(matches("  sel:\n    userIdentity.arn|re: ':user/A.+'\n  condition: sel", LOGIN));
        assert!(!matches("  sel:\n    userIdentity.arn|re: ':user/a.+'\n  condition: sel", LOGIN));
        assert!(matches("  sel:\n    userIdentity.arn|re|i: ':user/a.+'\n  condition: sel", LOGIN));
        assert!(matches(
            "  sel:\n    userIdentity.arn|fieldref|endswith: requestParameters.userName\n  condition: sel",
            LOGIN
        ));
        assert!(!matches(
            "  sel:\n    userIdentity.arn|fieldref: requestParameters.userName\n  condition: sel",
            LOGIN
        ));
    }

    #[test]
    fn conditions_and_or_not_parentheses_and_quantifiers() {
        let d = "  sel_a:\n    eventName: ConsoleLogin\n  sel_b:\n    eventName: Other\n  filter:\n    userIdentity.type: Root\n";
        assert!(matches(&format!("{d}  condition: 1 of sel_* and not filter"), LOGIN));
        assert!(!matches(&format!("{d}  condition: all of sel_*"), LOGIN));
        assert!(matches(&format!("{d}  condition: (sel_b or sel_a) and not (filter or sel_b)"), LOGIN));
        assert!(matches(&format!("{d}  condition: 1 of them"), LOGIN));
        assert!(!matches(&format!("{d}  condition: all of them"), LOGIN));
        assert!(matches(&format!("{d}  condition: not sel_b and sel_a"), LOGIN));
        assert!(matches(&format!("{d}  condition:\n    - sel_b\n    - sel_a"), LOGIN));
    }

    #[test]
    fn metadata_is_carried() {
        let rule = rule("  sel:\n    eventName: X\n  condition: sel").unwrap();
        assert_eq!(rule.meta.title, "Test rule");
        assert_eq!(rule.meta.author.as_deref(), Some("Someone"));
        assert_eq!(rule.meta.level.as_deref(), Some("high"));
        assert_eq!(rule.meta.id.as_deref(), Some("0e5c0d4e-1"));
    }

    #[test]
    fn unsupported_features_are_rejected_with_a_reason() {
        let reason = |d: &str| rule(d).unwrap_err().0;
        assert!(
            reason("  sel:\n    sourceIPAddress|cidr: 10.0.0.0/8\n  condition: sel")
                .contains("|cidr is not supported")
        );
        assert!(reason("  sel:\n    - foo\n    - bar\n  condition: sel").contains("keyword"));
        assert!(reason("  sel:\n    a: b\n  condition: sel | count() > 5").contains("aggregations"));
        assert!(reason("  sel:\n    a: b\n  condition: other").contains("no detection named"));
        assert!(reason("  sel:\n    a|re: '(?<=x)y'\n  condition: sel").contains("regular expression"));
        assert!(reason("  sel:\n    a: b\n  timeframe: 5m\n  condition: sel").contains("timeframe"));
        let other_source = SigmaRule::parse(
            "title: t\nlogsource:\n  product: windows\ndetection:\n  sel:\n    a: b\n  condition: sel",
        );
        assert!(other_source.unwrap_err().0.contains("logsource"));
    }
}
