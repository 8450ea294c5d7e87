//! Choice rules: which `Next` a `Choice` state takes. A rule compares the
//! value at `Variable` with a literal or with the value at another path
//! (`...Path` operators), or combines rules (`And`, `Or`, `Not`).

use serde_json::Value;

use super::paths::select;
use crate::matching::glob;

const OPERATORS: &[&str] = &[
    "StringEquals",
    "StringLessThan",
    "StringGreaterThan",
    "StringLessThanEquals",
    "StringGreaterThanEquals",
    "StringMatches",
    "NumericEquals",
    "NumericLessThan",
    "NumericGreaterThan",
    "NumericLessThanEquals",
    "NumericGreaterThanEquals",
    "BooleanEquals",
    "TimestampEquals",
    "TimestampLessThan",
    "TimestampGreaterThan",
    "TimestampLessThanEquals",
    "TimestampGreaterThanEquals",
    "IsNull",
    "IsPresent",
    "IsNumeric",
    "IsString",
    "IsBoolean",
    "IsTimestamp",
];

/// Checks a top-level rule (it must have `Next`) or a nested one (it must not).
pub fn check(rule: &Value, top: bool) -> Result<(), String> {
    let Value::Object(map) = rule else { return Err(format!("a choice rule must be an object, not {rule}")) };
    match (top, map.get("Next")) {
        (true, Some(Value::String(_))) => {}
        (true, _) => return Err("a choice rule needs Next (the state it leads to)".into()),
        (false, Some(_)) => return Err("a rule inside And, Or or Not has no Next".into()),
        (false, None) => {}
    }
    let ops: Vec<&String> = map.keys().filter(|k| !matches!(k.as_str(), "Next" | "Variable" | "Comment")).collect();
    let [op] = ops.as_slice() else {
        return Err(format!("a choice rule takes exactly one operator, found {}", ops.len()));
    };
    match op.as_str() {
        "And" | "Or" => match &map[op.as_str()] {
            Value::Array(rules) if !rules.is_empty() => rules.iter().try_for_each(|r| check(r, false)),
            _ => Err(format!("{op} takes a non-empty list of rules")),
        },
        "Not" => check(&map["Not"], false),
        name => {
            let base = name.strip_suffix("Path").unwrap_or(name);
            if !OPERATORS.contains(&base) {
                return Err(format!("unknown choice operator {name}"));
            }
            match map.get("Variable") {
                Some(Value::String(v)) => super::paths::check(&Some(Value::String(v.clone())), false),
                _ => Err(format!("{name} needs a Variable (a path)")),
            }
        }
    }
}

/// Whether `rule` holds for `input`.
pub fn holds(rule: &Value, input: &Value, context: &Value) -> Result<bool, String> {
    let map = rule.as_object().ok_or("a choice rule must be an object")?;
    if let Some(Value::Array(rules)) = map.get("And") {
        for r in rules {
            if !holds(r, input, context)? {
                return Ok(false);
            }
        }
        return Ok(true);
    }
    if let Some(Value::Array(rules)) = map.get("Or") {
        for r in rules {
            if holds(r, input, context)? {
                return Ok(true);
            }
        }
        return Ok(false);
    }
    if let Some(r) = map.get("Not") {
        return Ok(!holds(r, input, context)?);
    }
    let variable = map.get("Variable").and_then(Value::as_str).ok_or("a rule needs a Variable")?;
    let (op, operand) = map
        .iter()
        .find(|(k, _)| !matches!(k.as_str(), "Next" | "Variable" | "Comment"))
        .ok_or("a rule needs an operator")?;
    let value = select(variable, input, context).ok();
    let (op, operand) = match op.strip_suffix("Path") {
        Some(base) if base != "Is" => {
            let path = operand.as_str().ok_or(format!("{op} takes a path"))?;
            (base, select(path, input, context)?)
        }
        _ => (op.as_str(), operand.clone()),
    };
    let want = |b: &Value| b.as_bool().unwrap_or(false);
    Ok(match op {
        "IsPresent" => value.is_some() == want(&operand),
        "IsNull" => value.as_ref().is_some_and(Value::is_null) == want(&operand),
        "IsNumeric" => value.as_ref().is_some_and(Value::is_number) == want(&operand),
        "IsString" => value.as_ref().is_some_and(Value::is_string) == want(&operand),
        "IsBoolean" => value.as_ref().is_some_and(Value::is_boolean) == want(&operand),
        "IsTimestamp" => value.as_ref().and_then(Value::as_str).is_some_and(is_timestamp) == want(&operand),
        _ => {
            let Some(value) = value else { return Ok(false) };
            compare(op, &value, &operand)?
        }
    })
}

fn is_timestamp(s: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

fn compare(op: &str, value: &Value, operand: &Value) -> Result<bool, String> {
    use std::cmp::Ordering::*;
    let ordering = if let Some(kind) = op.strip_prefix("String") {
        let (Some(a), Some(b)) = (value.as_str(), operand.as_str()) else { return Ok(false) };
        if kind == "Matches" {
            return Ok(glob(b, a));
        }
        (kind, a.cmp(b))
    } else if let Some(kind) = op.strip_prefix("Numeric") {
        let (Some(a), Some(b)) = (value.as_f64(), operand.as_f64()) else { return Ok(false) };
        (kind, a.partial_cmp(&b).unwrap_or(Less))
    } else if let Some(kind) = op.strip_prefix("Timestamp") {
        let parse = |v: &Value| v.as_str().and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok());
        let (Some(a), Some(b)) = (parse(value), parse(operand)) else { return Ok(false) };
        (kind, a.cmp(&b))
    } else if op == "BooleanEquals" {
        return Ok(value.as_bool().is_some() && value.as_bool() == operand.as_bool());
    } else {
        return Err(format!("unknown choice operator {op}"));
    };
    Ok(match ordering {
        ("Equals", o) => o == Equal,
        ("LessThan", o) => o == Less,
        ("GreaterThan", o) => o == Greater,
        ("LessThanEquals", o) => o != Greater,
        ("GreaterThanEquals", o) => o != Less,
        (k, _) => return Err(format!("unknown comparison {k}")),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn rules_compare_combine_and_are_checked() {
        let input = json!({"n": 5, "s": "abc", "flag": true, "limit": 10, "t": "2026-12-01T10:00:00Z"});
        let ctx = json!({});
        let h = |r: Value| holds(&r, &input, &ctx).unwrap();
        assert!(h(json!({"Variable": "$.n", "NumericLessThan": 6})));
        assert!(h(json!({"Variable": "$.n", "NumericLessThanPath": "$.limit"})));
        assert!(!h(json!({"Variable": "$.n", "NumericGreaterThanEquals": 6})));
        assert!(h(json!({"Variable": "$.s", "StringMatches": "a*"})));
        assert!(h(
            json!({"And": [{"Variable": "$.flag", "BooleanEquals": true}, {"Not": {"Variable": "$.s", "StringEquals": "x"}}]})
        ));
        assert!(h(
            json!({"Or": [{"Variable": "$.gone", "IsPresent": true}, {"Variable": "$.t", "TimestampGreaterThan": "2026-01-01T00:00:00Z"}]})
        ));
        assert!(h(json!({"Variable": "$.gone", "IsPresent": false})));
        assert!(!h(json!({"Variable": "$.gone", "NumericEquals": 1})), "a missing variable compares false");
        assert!(check(&json!({"Variable": "$.n", "NumericEquals": 1, "Next": "A"}), true).is_ok());
        assert!(check(&json!({"Variable": "$.n", "NumericEquals": 1}), true).unwrap_err().contains("Next"));
        assert!(check(&json!({"Variable": "$.n", "Almost": 1, "Next": "A"}), true).unwrap_err().contains("Almost"));
        assert!(check(&json!({"And": [{"Variable": "$.n", "IsNull": true, "Next": "B"}], "Next": "A"}), true).is_err());
    }
}
