//! Whether a trigger fires on an event, and what it remembers.
//!
//! The context of a join is `{"count": n}`, plus `"keys": [...]` when it
//! counts distinct values. Each event reaches a trigger at most once (the
//! event log drops a repeated id), so a plain count is exact.

use serde_json::{Value, json};
use serde_json_path::JsonPath;
use volley_proto::flow::{CloudEvent, Condition, Trigger};

use crate::{Error, Result};

/// Applies `event` to `trigger` (which must match it): updates the context
/// and says whether the trigger fires now.
pub fn apply(trigger: &mut Trigger, event: &CloudEvent) -> Result<bool> {
    let fail = |message: String| Error::Condition { trigger: trigger.id.clone(), message };
    // Made only when a JSONPath needs it: a plain count joins without copying the event.
    let scope = || json!({"event": event, "context": trigger.context});
    let fires = match &trigger.condition {
        Condition::Always => true,
        Condition::Predicate { path, equals } => {
            let found = query(path, &scope()).map_err(fail)?;
            match equals {
                None => !found.is_empty(),
                Some(want) => found.iter().any(|v| v == want),
            }
        }
        Condition::Join { count, count_from, key, among } => {
            let target = match (count, count_from) {
                (Some(n), _) => *n,
                (None, Some(path)) => {
                    let found = query(path, &scope()).map_err(fail)?;
                    found.first().and_then(Value::as_u64).ok_or_else(|| {
                        fail(format!("count_from {path} selects no whole number in {}", trigger.context))
                    })?
                }
                (None, None) => return Err(fail("a join needs a count or count_from".into())),
            };
            let key = match key {
                None => None,
                Some(path) => {
                    let found = query(path, &scope()).map_err(fail)?;
                    let Some(k) = found.into_iter().next() else {
                        return Err(fail(format!("the join key {path} selects nothing in event {}", event.id)));
                    };
                    if among.as_ref().is_some_and(|a| !a.contains(&k)) {
                        return Ok(false);
                    }
                    Some(k)
                }
            };
            // The context is moved out and back: a long join's keys are not copied per event.
            let mut context = match std::mem::take(&mut trigger.context) {
                Value::Object(map) => map,
                _ => serde_json::Map::new(),
            };
            let counted = match key {
                None => true,
                Some(k) => {
                    let keys = context.entry("keys").or_insert_with(|| json!([]));
                    match keys.as_array_mut() {
                        Some(ks) if !ks.contains(&k) => {
                            ks.push(k);
                            true
                        }
                        _ => false,
                    }
                }
            };
            let before = context.get("count").and_then(Value::as_u64).unwrap_or(0);
            let now = if counted { before + 1 } else { before };
            context.insert("count".into(), json!(now));
            trigger.context = Value::Object(context);
            // Fires once, when the count reaches the target.
            counted && now == target
        }
    };
    if fires {
        trigger.fired += 1;
    }
    Ok(fires)
}

/// The values `path` (a JSONPath) selects in `scope`.
fn query(path: &str, scope: &Value) -> std::result::Result<Vec<Value>, String> {
    let p = JsonPath::parse(path).map_err(|e| format!("{path} is not a JSONPath: {e}"))?;
    Ok(p.query(scope).all().into_iter().cloned().collect())
}

/// Checks a condition's paths when the trigger is made, so that a bad one is
/// refused then rather than failing on every event.
pub fn check(condition: &Condition) -> Result<()> {
    let paths: Vec<&String> = match condition {
        Condition::Always => Vec::new(),
        Condition::Predicate { path, .. } => vec![path],
        Condition::Join { count, count_from, key, .. } => {
            if count.is_none() && count_from.is_none() {
                return Err(Error::invalid("condition", "a join needs a count or count_from"));
            }
            count_from.iter().chain(key.iter()).collect()
        }
    };
    for path in paths {
        JsonPath::parse(path).map_err(|e| Error::invalid("condition", format!("{path} is not a JSONPath: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use volley_proto::flow::Match;

    use super::*;

    fn trigger(condition: Condition, context: Value) -> Trigger {
        Trigger {
            id: "t".into(),
            namespace: "default".into(),
            run: None,
            matcher: Match { kind: "done".into(), source: None, subject: None },
            condition,
            actions: Vec::new(),
            context,
            once: false,
            fired: 0,
            error: None,
        }
    }

    fn event(id: &str, subject: &str, data: Value) -> CloudEvent {
        CloudEvent::new(id, "test", "done", Some(subject.into()), data)
    }

    #[test]
    fn a_join_fires_once_when_the_count_is_reached() {
        let mut t = trigger(Condition::Join { count: Some(3), count_from: None, key: None, among: None }, Value::Null);
        let fired: Vec<bool> =
            (0..5).map(|i| apply(&mut t, &event(&i.to_string(), "s", Value::Null)).unwrap()).collect();
        assert_eq!(fired, vec![false, false, true, false, false]);
        assert_eq!(t.fired, 1);
        assert_eq!(t.context["count"], 5);
    }

    #[test]
    fn a_keyed_join_counts_distinct_wanted_keys() {
        let among = Some(vec![json!("run/r/a"), json!("run/r/b")]);
        let cond = Condition::Join { count: Some(2), count_from: None, key: Some("$.event.subject".into()), among };
        let mut t = trigger(cond, Value::Null);
        assert!(!apply(&mut t, &event("1", "run/r/a", Value::Null)).unwrap());
        assert!(!apply(&mut t, &event("2", "run/r/a", Value::Null)).unwrap(), "the same key twice counts once");
        assert!(!apply(&mut t, &event("3", "run/r/c", Value::Null)).unwrap(), "a key not among those wanted");
        assert!(apply(&mut t, &event("4", "run/r/b", Value::Null)).unwrap());
    }

    #[test]
    fn a_join_may_read_its_count_from_the_context() {
        let cond =
            Condition::Join { count: None, count_from: Some("$.context.expected".into()), key: None, among: None };
        let mut t = trigger(cond, json!({"expected": 2}));
        assert!(!apply(&mut t, &event("1", "s", Value::Null)).unwrap());
        assert!(apply(&mut t, &event("2", "s", Value::Null)).unwrap());
        let mut bad = trigger(
            Condition::Join { count: None, count_from: Some("$.context.missing".into()), key: None, among: None },
            json!({}),
        );
        let err = apply(&mut bad, &event("1", "s", Value::Null)).unwrap_err().to_string();
        assert!(err.contains("selects no whole number"), "{err}");
    }

    #[test]
    fn predicates_select_or_compare() {
        let mut t = trigger(Condition::Predicate { path: "$.event.data.size".into(), equals: None }, Value::Null);
        assert!(apply(&mut t, &event("1", "s", json!({"size": 3}))).unwrap());
        assert!(!apply(&mut t, &event("2", "s", json!({"other": 3}))).unwrap());
        let mut t =
            trigger(Condition::Predicate { path: "$.event.data.state".into(), equals: Some(json!("ok")) }, Value::Null);
        assert!(apply(&mut t, &event("1", "s", json!({"state": "ok"}))).unwrap());
        assert!(!apply(&mut t, &event("2", "s", json!({"state": "bad"}))).unwrap());
    }

    #[test]
    fn bad_paths_are_refused_when_the_trigger_is_made() {
        let err = check(&Condition::Predicate { path: "event.data".into(), equals: None }).unwrap_err();
        assert!(err.to_string().contains("is not a JSONPath"), "{err}");
        assert!(check(&Condition::Join { count: None, count_from: None, key: None, among: None }).is_err());
    }
}
