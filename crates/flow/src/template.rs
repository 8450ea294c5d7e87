//! `${...}` references in JSON: `${steps.split.output.parts}`, `${input.x}`,
//! `${event.data.key}`. A string that is one whole reference becomes the
//! value it names (any JSON type); a reference inside a longer string is
//! written into it as text. The path after `${` is a JSONPath without its
//! leading `$.` (RFC 9535, read by `serde_json_path`).

use serde_json::Value;
use serde_json_path::JsonPath;

use crate::{Error, Result};

/// `value` with every reference filled from `scope`.
pub fn fill(value: &Value, scope: &Value) -> Result<Value> {
    Ok(match value {
        Value::String(s) => fill_string(s, scope)?,
        Value::Array(items) => Value::Array(items.iter().map(|v| fill(v, scope)).collect::<Result<_>>()?),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| Ok((k.clone(), fill(v, scope)?))).collect::<Result<_>>()?)
        }
        other => other.clone(),
    })
}

/// The references `value` makes (their paths), to check them before a run.
pub fn references(value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    collect(value, &mut out);
    out
}

fn collect(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.extend(spans(s).into_iter().map(|(_, _, path)| path.to_string())),
        Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect(v, out)),
        _ => {}
    }
}

/// The `${path}` spans of `s`: start, end (exclusive) and the path.
fn spans(s: &str) -> Vec<(usize, usize, &str)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(start) = s[from..].find("${").map(|i| i + from) {
        let Some(end) = s[start..].find('}').map(|i| i + start) else { break };
        out.push((start, end + 1, s[start + 2..end].trim()));
        from = end + 1;
    }
    out
}

fn fill_string(s: &str, scope: &Value) -> Result<Value> {
    let spans = spans(s);
    if let [(0, end, path)] = spans.as_slice()
        && *end == s.len()
    {
        return lookup(path, scope);
    }
    let mut out = String::new();
    let mut at = 0;
    for (start, end, path) in spans {
        out.push_str(&s[at..start]);
        match lookup(path, scope)? {
            Value::String(text) => out.push_str(&text),
            other => out.push_str(&other.to_string()),
        }
        at = end;
    }
    out.push_str(&s[at..]);
    Ok(Value::String(out))
}

/// The value at `path` in `scope`; an error naming the path if there is none.
pub fn lookup(path: &str, scope: &Value) -> Result<Value> {
    let query = JsonPath::parse(&format!("$.{path}")).map_err(|e| {
        Error::Reference(format!("${{{path}}} is not a path (write it like steps.split.output.parts): {e}"))
    })?;
    match query.query(scope).all().as_slice() {
        [] => Err(Error::Reference(format!("${{{path}}} names nothing here"))),
        [one] => Ok((*one).clone()),
        many => Ok(Value::Array(many.iter().map(|v| (*v).clone()).collect())),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn whole_references_keep_their_type_and_inner_ones_become_text() {
        let scope = json!({"steps": {"split": {"output": {"parts": [1, 2, 3], "url": "s3://b/p"}}}, "input": {"n": 4}});
        let v = json!({"parts": "${steps.split.output.parts}", "n": "${ input.n }", "where": "${steps.split.output.url}/x",
                       "label": "n=${input.n}", "plain": 7});
        let filled = fill(&v, &scope).unwrap();
        assert_eq!(filled, json!({"parts": [1, 2, 3], "n": 4, "where": "s3://b/p/x", "label": "n=4", "plain": 7}));
        assert_eq!(fill(&json!("${steps.split.output.parts[1]}"), &scope).unwrap(), json!(2));
    }

    #[test]
    fn a_reference_to_nothing_says_which() {
        let err = fill(&json!({"x": "${steps.nope.output}"}), &json!({"steps": {}})).unwrap_err();
        assert!(err.to_string().contains("${steps.nope.output} names nothing"), "{err}");
        let err = fill(&json!("${steps..}"), &json!({})).unwrap_err();
        assert!(err.to_string().contains("is not a path"), "{err}");
    }

    #[test]
    fn references_are_listed() {
        let refs = references(&json!({"a": ["${steps.x.output}", "k=${input.k}"], "b": "none"}));
        assert_eq!(refs, vec!["steps.x.output", "input.k"]);
    }
}
