//! The building blocks the generated conversions (`generated.rs`) are made of: proto field ↔
//! Terraform value, with errors that name the attribute.
//!
//! Nested objects render a proto3 zero value ("" / false / 0 / empty) as null, because in a
//! configuration a left-out nested attribute is null and means the same thing; top-level attributes
//! keep the zero value, which the plan fills in as the default.

use std::collections::BTreeMap;

use super::value::Value;

/// A configuration value the API cannot take, with the attribute path it was found at.
#[derive(Debug, Clone, PartialEq)]
pub struct TfError {
    /// Attribute names from the top, outermost first.
    pub path: Vec<String>,
    pub message: String,
}

impl TfError {
    pub fn new(attribute: &str, message: impl Into<String>) -> Self {
        Self { path: vec![attribute.to_string()], message: message.into() }
    }

    /// The same error one level further out.
    fn within(mut self, attribute: &str) -> Self {
        self.path.insert(0, attribute.to_string());
        self
    }
}

impl std::fmt::Display for TfError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.join("."), self.message)
    }
}

/// A proto message that converts to and from a Terraform object.
pub trait TfMessage: Sized {
    fn to_tf(&self, nested: bool) -> Value;
    fn from_tf(v: &Value) -> Result<Self, TfError>;
}

/// An update request built from what changed between the prior state and the plan.
pub trait TfUpdate: Sized {
    fn from_change(prior: &Value, planned: &Value) -> Result<Self, TfError>;
}

/// A proto scalar.
pub trait TfScalar: Sized + Default + PartialEq {
    fn to_value(&self) -> Value;
    fn from_value(v: &Value) -> Result<Self, String>;

    fn to_tf(&self, nested: bool) -> Value {
        if nested && *self == Self::default() { Value::Null } else { self.to_value() }
    }
}

impl TfScalar for String {
    fn to_value(&self) -> Value {
        Value::String(self.clone())
    }
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::String(s) => Ok(s.clone()),
            _ => Err("expected a string".into()),
        }
    }
}

impl TfScalar for bool {
    fn to_value(&self) -> Value {
        Value::Bool(*self)
    }
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Bool(b) => Ok(*b),
            _ => Err("expected a bool".into()),
        }
    }
}

macro_rules! integer {
    ($($t:ty),*) => {$(
        impl TfScalar for $t {
            fn to_value(&self) -> Value {
                Value::Number(*self as f64)
            }
            fn from_value(v: &Value) -> Result<Self, String> {
                match v {
                    Value::Number(n) if n.fract() == 0.0 && *n >= <$t>::MIN as f64 && *n <= <$t>::MAX as f64 => {
                        Ok(*n as $t)
                    }
                    Value::Number(n) => Err(format!("{n} is not a whole number from {} to {}", <$t>::MIN, <$t>::MAX)),
                    _ => Err("expected a number".into()),
                }
            }
        }
    )*};
}
integer!(i32, u32, i64, u64);

impl TfScalar for f64 {
    fn to_value(&self) -> Value {
        Value::Number(*self)
    }
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Number(n) => Ok(*n),
            _ => Err("expected a number".into()),
        }
    }
}

/// The attribute's value, or None when it is null or not yet known.
fn present<'v>(v: &'v Value, name: &str) -> Option<&'v Value> {
    match v.get(name) {
        Value::Null | Value::Unknown => None,
        other => Some(other),
    }
}

fn items<'v>(value: &'v Value, name: &str) -> Result<&'v [Value], TfError> {
    match value {
        Value::List(items) | Value::Set(items) => Ok(items),
        _ => Err(TfError::new(name, "expected a list or set")),
    }
}

fn collection(items: Vec<Value>, nested: bool, ordered: bool) -> Value {
    if nested && items.is_empty() {
        Value::Null
    } else if ordered {
        Value::List(items)
    } else {
        Value::Set(items)
    }
}

pub fn scalar_from_tf<T: TfScalar>(v: &Value, name: &str) -> Result<Option<T>, TfError> {
    present(v, name).map(|x| T::from_value(x).map_err(|e| TfError::new(name, e))).transpose()
}

pub fn scalars_to_tf<T: TfScalar>(values: &[T], nested: bool, ordered: bool) -> Value {
    collection(values.iter().map(T::to_value).collect(), nested, ordered)
}

pub fn list_from_tf<T: TfScalar>(v: &Value, name: &str) -> Result<Option<Vec<T>>, TfError> {
    let Some(value) = present(v, name) else { return Ok(None) };
    items(value, name)?
        .iter()
        .map(|x| T::from_value(x).map_err(|e| TfError::new(name, e)))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

pub fn message_from_tf<M: TfMessage>(v: &Value, name: &str) -> Result<Option<M>, TfError> {
    present(v, name).map(|x| M::from_tf(x).map_err(|e| e.within(name))).transpose()
}

pub fn messages_to_tf<M: TfMessage>(values: &[M], nested: bool, ordered: bool) -> Value {
    collection(values.iter().map(|m| m.to_tf(true)).collect(), nested, ordered)
}

pub fn messages_from_tf<M: TfMessage>(v: &Value, name: &str) -> Result<Option<Vec<M>>, TfError> {
    let Some(value) = present(v, name) else { return Ok(None) };
    items(value, name)?
        .iter()
        .map(|x| M::from_tf(x).map_err(|e| e.within(name)))
        .collect::<Result<_, _>>()
        .map(Some)
}

pub fn enum_to_tf(n: i32, name_of: impl Fn(i32) -> Option<&'static str>, nested: bool) -> Value {
    match name_of(n) {
        _ if nested && n == 0 => Value::Null,
        Some(name) => Value::String(name.to_string()),
        None => Value::String(n.to_string()),
    }
}

pub fn enums_to_tf(
    values: &[i32],
    name_of: impl Fn(i32) -> Option<&'static str>,
    nested: bool,
    ordered: bool,
) -> Value {
    collection(values.iter().map(|n| enum_to_tf(*n, &name_of, false)).collect(), nested, ordered)
}

fn parse_enum(x: &Value, name: &str, parse: &impl Fn(&str) -> Option<i32>) -> Result<i32, TfError> {
    let text = x.as_str().ok_or_else(|| TfError::new(name, "expected a string"))?;
    parse(text).ok_or_else(|| TfError::new(name, format!("{text:?} is not one of the values listed for it")))
}

pub fn enum_from_tf(
    v: &Value,
    name: &str,
    parse: impl Fn(&str) -> Option<i32>,
) -> Result<Option<i32>, TfError> {
    present(v, name).map(|x| parse_enum(x, name, &parse)).transpose()
}

pub fn enums_from_tf(
    v: &Value,
    name: &str,
    parse: impl Fn(&str) -> Option<i32>,
) -> Result<Option<Vec<i32>>, TfError> {
    let Some(value) = present(v, name) else { return Ok(None) };
    items(value, name)?.iter().map(|x| parse_enum(x, name, &parse)).collect::<Result<_, _>>().map(Some)
}

pub fn map_to_tf(entries: impl Iterator<Item = (String, String)>, nested: bool) -> Value {
    let map: BTreeMap<String, Value> = entries.map(|(k, v)| (k, Value::String(v))).collect();
    if nested && map.is_empty() { Value::Null } else { Value::Map(map) }
}

pub fn map_from_tf(v: &Value, name: &str) -> Result<Option<Vec<(String, String)>>, TfError> {
    let Some(value) = present(v, name) else { return Ok(None) };
    let Value::Map(map) = value else { return Err(TfError::new(name, "expected a map of strings")) };
    map.iter()
        .map(|(k, x)| String::from_value(x).map(|s| (k.clone(), s)).map_err(|e| TfError::new(name, e)))
        .collect::<Result<_, _>>()
        .map(Some)
}

pub fn timestamp_to_tf(t: Option<&pbjson_types::Timestamp>) -> Value {
    let Some(t) = t else { return Value::Null };
    match chrono::DateTime::from_timestamp(t.seconds, t.nanos.clamp(0, 999_999_999) as u32) {
        Some(time) => Value::String(time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        None => Value::Null,
    }
}

pub fn timestamp_from_tf(v: &Value, name: &str) -> Result<Option<pbjson_types::Timestamp>, TfError> {
    let Some(text) = scalar_from_tf::<String>(v, name)? else { return Ok(None) };
    let time = chrono::DateTime::parse_from_rfc3339(&text)
        .map_err(|e| TfError::new(name, format!("{text:?} is not an RFC 3339 time: {e}")))?;
    Ok(Some(pbjson_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }))
}

/// Whether the attribute differs between the prior state and the plan (sets compare without order).
pub fn changed(prior: &Value, planned: &Value, name: &str) -> bool {
    prior.get(name) != planned.get(name)
}
