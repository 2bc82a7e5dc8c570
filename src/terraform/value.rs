//! Terraform values (cty) and their wire encodings: msgpack (DynamicValue) and JSON (stored state).
//!
//! Decoding is guided by the schema: msgpack and JSON both encode lists and sets as arrays and
//! objects and maps as maps, and only the schema says which. Unknown values are msgpack extension 0
//! (or 12, with refinements, which this provider ignores).

use std::collections::BTreeMap;

use super::codegen::{Attr, Kind, Nesting};

/// A Terraform value.
#[derive(Clone, Debug)]
pub enum Value {
    Null,
    /// Not known until apply.
    Unknown,
    Bool(bool),
    Number(f64),
    String(String),
    List(Vec<Value>),
    /// Order carries no meaning: two sets are equal when they hold the same elements.
    Set(Vec<Value>),
    Map(BTreeMap<String, Value>),
    Object(BTreeMap<String, Value>),
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        use Value::*;
        match (self, other) {
            (Null, Null) => true,
            // Unknown equals nothing, not even another unknown: it may become anything.
            (Unknown, _) | (_, Unknown) => false,
            (Bool(a), Bool(b)) => a == b,
            (Number(a), Number(b)) => a == b,
            (String(a), String(b)) => a == b,
            (List(a), List(b)) => a == b,
            (Set(a), Set(b)) => {
                a.len() == b.len() && a.iter().all(|x| b.contains(x)) && b.iter().all(|x| a.contains(x))
            }
            (Map(a), Map(b)) | (Object(a), Object(b)) => a == b,
            _ => false,
        }
    }
}

/// A value that does not fit its schema.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

impl Value {
    /// The attribute `name` of an object; null when absent or when `self` is not an object.
    pub fn get(&self, name: &str) -> &Value {
        match self {
            Value::Object(o) => o.get(name).unwrap_or(&Value::Null),
            _ => &Value::Null,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn is_known(&self) -> bool {
        !matches!(self, Value::Unknown)
    }

    /// Whether the value holds an unknown anywhere.
    pub fn is_wholly_known(&self) -> bool {
        match self {
            Value::Unknown => false,
            Value::List(v) | Value::Set(v) => v.iter().all(Value::is_wholly_known),
            Value::Map(m) | Value::Object(m) => m.values().all(Value::is_wholly_known),
            _ => true,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// Sets attribute `name` of an object (no-op on other values).
    pub fn set(&mut self, name: &str, value: Value) {
        if let Value::Object(o) = self {
            o.insert(name.to_string(), value);
        }
    }
}

/// The cty type of a kind, as JSON (the schema's attribute `type`).
pub fn type_json(kind: &Kind) -> serde_json::Value {
    use serde_json::json;
    match kind {
        Kind::Bool => json!("bool"),
        Kind::Number => json!("number"),
        Kind::String => json!("string"),
        Kind::List(k) => json!(["list", type_json(k)]),
        Kind::Set(k) => json!(["set", type_json(k)]),
        Kind::Map(k) => json!(["map", type_json(k)]),
        Kind::Nested(nesting, attrs) => {
            let object = json!([
                "object",
                attrs.iter().map(|a| (a.name.clone(), type_json(&a.kind))).collect::<serde_json::Map<_, _>>()
            ]);
            match nesting {
                Nesting::Single => object,
                Nesting::List => json!(["list", object]),
                Nesting::Set => json!(["set", object]),
            }
        }
    }
}

// ---- msgpack ----

/// Decodes a msgpack DynamicValue of an object with these attributes.
pub fn from_msgpack(bytes: &[u8], attrs: &[Attr]) -> Result<Value, DecodeError> {
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    let raw =
        rmpv::decode::read_value(&mut &bytes[..]).map_err(|e| DecodeError(format!("bad msgpack: {e}")))?;
    object_from_msgpack(&raw, attrs, "")
}

fn object_from_msgpack(raw: &rmpv::Value, attrs: &[Attr], path: &str) -> Result<Value, DecodeError> {
    match raw {
        rmpv::Value::Nil => Ok(Value::Null),
        rmpv::Value::Ext(_, _) => Ok(Value::Unknown),
        rmpv::Value::Map(entries) => {
            let mut object = BTreeMap::new();
            for attr in attrs {
                let found =
                    entries.iter().find(|(k, _)| k.as_str() == Some(attr.name.as_str())).map(|(_, v)| v);
                let value = match found {
                    Some(v) => kind_from_msgpack(v, &attr.kind, &format!("{path}{}", attr.name))?,
                    None => Value::Null,
                };
                object.insert(attr.name.clone(), value);
            }
            Ok(Value::Object(object))
        }
        other => Err(DecodeError(format!("{path}: expected an object, got {other}"))),
    }
}

fn kind_from_msgpack(raw: &rmpv::Value, kind: &Kind, path: &str) -> Result<Value, DecodeError> {
    let bad = || DecodeError(format!("{path}: {raw} does not fit the attribute's type"));
    Ok(match (raw, kind) {
        (rmpv::Value::Nil, _) => Value::Null,
        (rmpv::Value::Ext(_, _), _) => Value::Unknown,
        (rmpv::Value::Boolean(b), Kind::Bool) => Value::Bool(*b),
        (rmpv::Value::Integer(n), Kind::Number) => Value::Number(n.as_f64().ok_or_else(bad)?),
        (rmpv::Value::F32(n), Kind::Number) => Value::Number(f64::from(*n)),
        (rmpv::Value::F64(n), Kind::Number) => Value::Number(*n),
        // cty sends numbers too large for msgpack as strings.
        (rmpv::Value::String(s), Kind::Number) => {
            Value::Number(s.as_str().and_then(|s| s.parse().ok()).ok_or_else(bad)?)
        }
        (rmpv::Value::String(s), Kind::String) => Value::String(s.as_str().ok_or_else(bad)?.to_string()),
        (rmpv::Value::Array(items), Kind::List(k) | Kind::Set(k)) => {
            let items = items
                .iter()
                .enumerate()
                .map(|(i, item)| kind_from_msgpack(item, k, &format!("{path}[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            if matches!(kind, Kind::Set(_)) { Value::Set(items) } else { Value::List(items) }
        }
        (rmpv::Value::Map(entries), Kind::Map(k)) => {
            let mut map = BTreeMap::new();
            for (key, value) in entries {
                let key = key.as_str().ok_or_else(bad)?;
                map.insert(key.to_string(), kind_from_msgpack(value, k, &format!("{path}.{key}"))?);
            }
            Value::Map(map)
        }
        (_, Kind::Nested(Nesting::Single, attrs)) => object_from_msgpack(raw, attrs, &format!("{path}."))?,
        (rmpv::Value::Array(items), Kind::Nested(nesting, attrs)) => {
            let items = items
                .iter()
                .enumerate()
                .map(|(i, item)| object_from_msgpack(item, attrs, &format!("{path}[{i}].")))
                .collect::<Result<Vec<_>, _>>()?;
            if *nesting == Nesting::Set { Value::Set(items) } else { Value::List(items) }
        }
        _ => return Err(bad()),
    })
}

/// Encodes a value as msgpack.
pub fn to_msgpack(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut out, &msgpack_value(value));
    out
}

fn msgpack_value(value: &Value) -> rmpv::Value {
    match value {
        Value::Null => rmpv::Value::Nil,
        Value::Unknown => rmpv::Value::Ext(0, vec![0]),
        Value::Bool(b) => rmpv::Value::Boolean(*b),
        Value::Number(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => rmpv::Value::from(*n as i64),
        Value::Number(n) => rmpv::Value::F64(*n),
        Value::String(s) => rmpv::Value::from(s.as_str()),
        Value::List(items) | Value::Set(items) => {
            rmpv::Value::Array(items.iter().map(msgpack_value).collect())
        }
        Value::Map(m) | Value::Object(m) => rmpv::Value::Map(
            m.iter().map(|(k, v)| (rmpv::Value::from(k.as_str()), msgpack_value(v))).collect(),
        ),
    }
}

// ---- JSON (stored state, private data) ----

/// Decodes the JSON form of an object with these attributes (unknowns cannot occur in JSON).
pub fn from_json(json: &serde_json::Value, attrs: &[Attr]) -> Result<Value, DecodeError> {
    object_from_json(json, attrs, "")
}

fn object_from_json(json: &serde_json::Value, attrs: &[Attr], path: &str) -> Result<Value, DecodeError> {
    match json {
        serde_json::Value::Null => Ok(Value::Null),
        serde_json::Value::Object(entries) => {
            let mut object = BTreeMap::new();
            for attr in attrs {
                let value = match entries.get(&attr.name) {
                    Some(v) => kind_from_json(v, &attr.kind, &format!("{path}{}", attr.name))?,
                    None => Value::Null,
                };
                object.insert(attr.name.clone(), value);
            }
            Ok(Value::Object(object))
        }
        other => Err(DecodeError(format!("{path}: expected an object, got {other}"))),
    }
}

fn kind_from_json(json: &serde_json::Value, kind: &Kind, path: &str) -> Result<Value, DecodeError> {
    use serde_json::Value as J;
    let bad = || DecodeError(format!("{path}: {json} does not fit the attribute's type"));
    Ok(match (json, kind) {
        (J::Null, _) => Value::Null,
        (J::Bool(b), Kind::Bool) => Value::Bool(*b),
        (J::Number(n), Kind::Number) => Value::Number(n.as_f64().ok_or_else(bad)?),
        (J::String(s), Kind::Number) => Value::Number(s.parse().map_err(|_| bad())?),
        (J::String(s), Kind::String) => Value::String(s.clone()),
        (J::Array(items), Kind::List(k) | Kind::Set(k)) => {
            let items =
                items.iter().map(|item| kind_from_json(item, k, path)).collect::<Result<Vec<_>, _>>()?;
            if matches!(kind, Kind::Set(_)) { Value::Set(items) } else { Value::List(items) }
        }
        (J::Object(entries), Kind::Map(k)) => Value::Map(
            entries
                .iter()
                .map(|(key, v)| Ok((key.clone(), kind_from_json(v, k, path)?)))
                .collect::<Result<BTreeMap<_, _>, DecodeError>>()?,
        ),
        (_, Kind::Nested(Nesting::Single, attrs)) => object_from_json(json, attrs, &format!("{path}."))?,
        (J::Array(items), Kind::Nested(nesting, attrs)) => {
            let items = items
                .iter()
                .map(|item| object_from_json(item, attrs, &format!("{path}.")))
                .collect::<Result<Vec<_>, _>>()?;
            if *nesting == Nesting::Set { Value::Set(items) } else { Value::List(items) }
        }
        _ => return Err(bad()),
    })
}

/// The JSON form of a known value (unknowns become null).
pub fn to_json(value: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        Value::Null | Value::Unknown => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Number(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => J::from(*n as i64),
        Value::Number(n) => serde_json::Number::from_f64(*n).map_or(J::Null, J::Number),
        Value::String(s) => J::String(s.clone()),
        Value::List(items) | Value::Set(items) => J::Array(items.iter().map(to_json).collect()),
        Value::Map(m) | Value::Object(m) => {
            J::Object(m.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::terraform::codegen::Mode;

    fn attr(name: &str, kind: Kind) -> Attr {
        Attr {
            name: name.into(),
            description: String::new(),
            kind,
            mode: Mode::Optional,
            sensitive: false,
            force_new: false,
            stable: false,
            write_only: false,
            default: None,
            presence: false,
        }
    }

    #[test]
    fn msgpack_round_trip_keeps_unknowns_sets_and_nesting() {
        let attrs = vec![
            attr("name", Kind::String),
            attr("count", Kind::Number),
            attr("tags", Kind::Map(Box::new(Kind::String))),
            attr("ids", Kind::Set(Box::new(Kind::String))),
            attr("nested", Kind::Nested(Nesting::Set, vec![attr("flag", Kind::Bool)])),
            attr("later", Kind::String),
        ];
        let mut o = BTreeMap::new();
        o.insert("name".into(), Value::String("t".into()));
        o.insert("count".into(), Value::Number(3.0));
        o.insert("tags".into(), Value::Map([("k".to_string(), Value::String("v".into()))].into()));
        o.insert("ids".into(), Value::Set(vec![Value::String("b".into()), Value::String("a".into())]));
        o.insert(
            "nested".into(),
            Value::Set(vec![Value::Object([("flag".to_string(), Value::Bool(true))].into())]),
        );
        o.insert("later".into(), Value::Unknown);
        let value = Value::Object(o);
        let decoded = from_msgpack(&to_msgpack(&value), &attrs).unwrap();
        assert!(matches!(decoded.get("later"), Value::Unknown));
        let mut reordered = decoded.clone();
        reordered.set("ids", Value::Set(vec![Value::String("a".into()), Value::String("b".into())]));
        reordered.set("later", Value::Null);
        let mut expected = value.clone();
        expected.set("later", Value::Null);
        assert_eq!(reordered, expected, "sets compare without order");
        assert_eq!(from_json(&to_json(&expected), &attrs).unwrap(), expected);
    }

    #[test]
    fn a_value_of_the_wrong_type_names_the_attribute() {
        let attrs = vec![attr("count", Kind::Number)];
        let bytes = to_msgpack(&Value::Object([("count".to_string(), Value::Bool(true))].into()));
        let err = from_msgpack(&bytes, &attrs).unwrap_err().to_string();
        assert!(err.starts_with("count:"), "{err}");
    }
}
