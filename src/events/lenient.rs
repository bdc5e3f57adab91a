//! Forgiving accessors for Google's JSON payloads.
//!
//! Real Google payloads mix key casing (`incident_id` next to `conditionThreshold`), send int64
//! values as strings or numbers interchangeably, and omit default values. Decoders in this module
//! read fields through these helpers so each oddity is handled once, in one place, and so no
//! decoder ever indexes or unwraps untrusted JSON.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// Looks `key` up in `obj`, falling back to the other casing (`snake_case` ⇄ `lowerCamelCase`).
/// A JSON `null` counts as absent.
pub(crate) fn field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    let present = |k: &str| obj.get(k).filter(|v| !v.is_null());
    present(key).or_else(|| {
        let other = if key.contains('_') {
            snake_to_camel(key)
        } else {
            camel_to_snake(key)
        };
        if other == key { None } else { present(&other) }
    })
}

/// The object stored under `key` (either casing), if it is an object.
pub(crate) fn object<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Map<String, Value>> {
    field(obj, key).and_then(Value::as_object)
}

/// The value under `key` as text: strings as-is, numbers and booleans in their JSON spelling.
pub(crate) fn text(obj: &Map<String, Value>, key: &str) -> Option<String> {
    field(obj, key).and_then(scalar_text)
}

/// Like [`text`], but trimmed and `None` when empty.
pub(crate) fn non_empty_text(obj: &Map<String, Value>, key: &str) -> Option<String> {
    text(obj, key)
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// A scalar JSON value as text; objects, arrays and null have none.
pub(crate) fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// An integer from a JSON number (fractions truncated) or a numeric string (int64 on the wire).
pub(crate) fn integer(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite())
                .map(saturating_f64_to_i64)
        }),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i64>().ok().or_else(|| {
                s.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(saturating_f64_to_i64)
            })
        }
        _ => None,
    }
}

fn saturating_f64_to_i64(f: f64) -> i64 {
    // `as` saturates at the i64 bounds and truncates the fraction: exactly what is wanted here.
    f as i64
}

/// A string-to-string map from a JSON object; scalar values are converted to text, others
/// (objects, arrays, null) are skipped. Anything but an object gives an empty map.
pub(crate) fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| scalar_text(v).map(|v| (k.clone(), v)))
                .collect()
        })
        .unwrap_or_default()
}

fn snake_to_camel(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut upper = false;
    for c in s.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn camel_to_snake(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn field_falls_back_to_other_casing() {
        let o = obj(json!({"incidentId": "a", "started_at": 5, "nul": null}));
        assert_eq!(text(&o, "incident_id").as_deref(), Some("a"));
        assert_eq!(field(&o, "startedAt"), Some(&json!(5)));
        assert_eq!(field(&o, "nul"), None);
        assert_eq!(field(&o, "missing"), None);
    }

    #[test]
    fn integers_from_numbers_and_strings() {
        assert_eq!(integer(&json!(12)), Some(12));
        assert_eq!(integer(&json!("365415247865")), Some(365_415_247_865));
        assert_eq!(integer(&json!(1.9)), Some(1));
        assert_eq!(integer(&json!("1e3")), Some(1000));
        assert_eq!(integer(&json!(1e300)), Some(i64::MAX));
        assert_eq!(integer(&json!("seven")), None);
        assert_eq!(integer(&json!(null)), None);
    }

    #[test]
    fn string_map_keeps_scalars() {
        let m = string_map(Some(
            &json!({"a": "x", "b": 2, "c": true, "d": {}, "e": null}),
        ));
        assert_eq!(m.len(), 3);
        assert_eq!(m["b"], "2");
        assert!(string_map(Some(&json!([1]))).is_empty());
        assert!(string_map(None).is_empty());
    }
}
