//! How a state's input becomes its output: `InputPath`, `Parameters`,
//! `ResultSelector`, `ResultPath`, `OutputPath`. Paths are JSONPath (RFC 9535,
//! read by `serde_json_path`); `$$` reads the context object (execution,
//! state, map item). A `ResultPath` is a reference path (`$`, `$.a.b`,
//! `$.a[0]`, `$['a']`): it names one place, which is written.

use serde_json::{Map, Value};
use serde_json_path::JsonPath;

use super::model::MaybePath;

/// The values a path selects: one value, or a list when it selects several.
pub fn select(path: &str, input: &Value, context: &Value) -> Result<Value, String> {
    let (target, path) = match path.strip_prefix("$$") {
        Some(rest) => (context, format!("${rest}")),
        None => (input, path.to_string()),
    };
    let query = JsonPath::parse(&path).map_err(|e| format!("{path} is not a JSONPath: {e}"))?;
    let found = query.query(target).all();
    match found.as_slice() {
        [] => Err(format!("{path} selects nothing in {}", short(target))),
        [one] => Ok((*one).clone()),
        many => Ok(Value::Array(many.iter().map(|v| (*v).clone()).collect())),
    }
}

fn short(v: &Value) -> String {
    let text = v.to_string();
    if text.len() > 200 { format!("{}...", &text[..text.floor_char_boundary(200)]) } else { text }
}

/// `InputPath` or `OutputPath` applied: absent passes everything, `null` passes `{}`.
pub fn filter(path: &MaybePath, value: &Value, context: &Value) -> Result<Value, String> {
    match path {
        None => Ok(value.clone()),
        Some(Value::Null) => Ok(Value::Object(Map::new())),
        Some(Value::String(p)) => select(p, value, context),
        Some(other) => Err(format!("a path must be a string or null, not {other}")),
    }
}

/// A payload template (`Parameters`, `ResultSelector`): keys ending in `.$`
/// take the value their path selects; everything else is copied.
pub fn template(template: &Value, input: &Value, context: &Value) -> Result<Value, String> {
    Ok(match template {
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, value) in map {
                match key.strip_suffix(".$") {
                    Some(name) => {
                        let Value::String(path) = value else {
                            return Err(format!("{key} must be a path (a string), not {value}"));
                        };
                        let value = if super::intrinsics::is_call(path) {
                            super::intrinsics::evaluate(path, input, context)?
                        } else {
                            select(path, input, context)?
                        };
                        out.insert(name.to_string(), value);
                    }
                    None => {
                        out.insert(key.clone(), self::template(value, input, context)?);
                    }
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| self::template(v, input, context)).collect::<Result<_, _>>()?)
        }
        other => other.clone(),
    })
}

/// `ResultPath` applied: absent: the result is the output; `null`: the input
/// is; a reference path: the result is written there in the input.
pub fn place(path: &MaybePath, input: &Value, result: Value) -> Result<Value, String> {
    let path = match path {
        None => return Ok(result),
        Some(Value::Null) => return Ok(input.clone()),
        Some(Value::String(p)) => p,
        Some(other) => return Err(format!("ResultPath must be a string or null, not {other}")),
    };
    let segments = reference(path)?;
    if segments.is_empty() {
        return Ok(result);
    }
    let mut output = input.clone();
    let mut at = &mut output;
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        at = match segment {
            Segment::Key(k) => {
                if !at.is_object() {
                    *at = Value::Object(Map::new());
                }
                let map = at.as_object_mut().ok_or("not an object")?;
                if last {
                    map.insert(k.clone(), result);
                    return Ok(output);
                }
                map.entry(k.clone()).or_insert(Value::Null)
            }
            Segment::Index(n) => {
                let Some(list) = at.as_array_mut() else {
                    return Err(format!("ResultPath {path}: [{n}] is not in a list"));
                };
                let Some(slot) = list.get_mut(*n) else {
                    return Err(format!("ResultPath {path}: the list has no item {n}"));
                };
                if last {
                    *slot = result;
                    return Ok(output);
                }
                slot
            }
        };
    }
    Ok(output)
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// The places a reference path names, from the root: `$.a.b[0]` → a, b, 0.
fn reference(path: &str) -> Result<Vec<Segment>, String> {
    let bad = || format!("{path} is not a reference path (like $, $.a.b, $.a[0] or $['a']): it must name one place");
    let mut rest = path.strip_prefix('$').ok_or_else(bad)?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let name = &r[..end];
            if name.is_empty() || name.contains(['*', '?', '@', '$']) {
                return Err(bad());
            }
            out.push(Segment::Key(name.into()));
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix("['") {
            let end = r.find("']").ok_or_else(bad)?;
            out.push(Segment::Key(r[..end].into()));
            rest = &r[end + 2..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').ok_or_else(bad)?;
            out.push(Segment::Index(r[..end].parse().map_err(|_| bad())?));
            rest = &r[end + 1..];
        } else {
            return Err(bad());
        }
    }
    Ok(out)
}

/// Checks a path when the machine is read: a JSONPath (or a reference path for `ResultPath`).
pub fn check(path: &MaybePath, is_result: bool) -> Result<(), String> {
    match path {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(p)) if is_result => reference(p).map(drop),
        Some(Value::String(p)) => {
            let p = p.strip_prefix('$').map(|r| format!("${}", r.strip_prefix('$').unwrap_or(r))).unwrap_or(p.clone());
            JsonPath::parse(&p).map(drop).map_err(|e| format!("{p} is not a JSONPath: {e}"))
        }
        Some(other) => Err(format!("a path must be a string or null, not {other}")),
    }
}

/// Checks a payload template's `.$` keys.
pub fn check_template(template: &Value) -> Result<(), String> {
    match template {
        Value::Object(map) => {
            for (key, value) in map {
                if key.ends_with(".$") {
                    match value {
                        Value::String(p) if super::intrinsics::is_call(p) => {
                            super::intrinsics::check(p).map_err(|e| format!("{key}: {e}"))?
                        }
                        Value::String(p) => check(&Some(Value::String(p.clone())), false)?,
                        other => return Err(format!("{key} must be a path (a string), not {other}")),
                    }
                } else {
                    check_template(value)?;
                }
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(check_template),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_five_fields_move_data_as_the_language_says() {
        let input = json!({"a": {"b": [1, 2]}, "n": 3});
        let ctx = json!({"Execution": {"Id": "r1"}});
        assert_eq!(filter(&Some(json!("$.a")), &input, &ctx).unwrap(), json!({"b": [1, 2]}));
        assert_eq!(filter(&Some(Value::Null), &input, &ctx).unwrap(), json!({}));
        assert_eq!(filter(&None, &input, &ctx).unwrap(), input);
        let params = json!({"x.$": "$.a.b[1]", "fixed": 1, "id.$": "$$.Execution.Id", "deep": {"n.$": "$.n"}});
        assert_eq!(template(&params, &input, &ctx).unwrap(), json!({"x": 2, "fixed": 1, "id": "r1", "deep": {"n": 3}}));
        assert_eq!(place(&Some(json!("$.out.r")), &input, json!(9)).unwrap()["out"], json!({"r": 9}));
        assert_eq!(place(&Some(json!("$.a.b[0]")), &input, json!(7)).unwrap()["a"]["b"], json!([7, 2]));
        assert_eq!(place(&None, &input, json!(5)).unwrap(), json!(5));
        assert_eq!(place(&Some(Value::Null), &input, json!(5)).unwrap(), input);
        assert!(select("$.missing", &input, &ctx).unwrap_err().contains("selects nothing"));
        assert!(check(&Some(json!("$.a[*]")), true).is_err(), "a ResultPath names one place");
        assert!(check(&Some(json!("$.a[")), false).is_err());
        assert!(check_template(&json!({"v.$": "States.Format('{}', $.a)"})).is_ok());
        assert!(check_template(&json!({"v.$": "States.JsonPatch($.a, $.a)"})).unwrap_err().contains("v.$"));
        let filled = template(&json!({"s.$": "States.Format('{}-{}', $.n, $$.Execution.Id)"}), &input, &ctx).unwrap();
        assert_eq!(filled, json!({"s": "3-r1"}));
    }
}
