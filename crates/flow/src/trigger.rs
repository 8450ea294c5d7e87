//! Triggers users make (`POST /v1/triggers`): checked whole before they listen.

use volley_proto::flow::{Action, Trigger, TriggerRequest};

use crate::{Error, Result, condition, template};

/// Most actions one trigger may take.
pub const MAX_ACTIONS: usize = 16;

/// The trigger `request` asks for in `namespace`, or where it is wrong.
pub fn make(namespace: &str, request: TriggerRequest) -> Result<Trigger> {
    let TriggerRequest { id, matcher, condition, actions, context, once } = request;
    let name_ok =
        !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !name_ok {
        return Err(Error::invalid("id", format!("{id:?} must be 1 to 64 characters from A-Z a-z 0-9 - _")));
    }
    if matcher.kind.is_empty() {
        return Err(Error::invalid("match.type", "name the event type the trigger listens to"));
    }
    condition::check(&condition)?;
    if actions.is_empty() || actions.len() > MAX_ACTIONS {
        return Err(Error::invalid("actions", format!("a trigger takes 1 to {MAX_ACTIONS} actions")));
    }
    for (i, action) in actions.iter().enumerate() {
        check_action(action).map_err(|message| Error::invalid(format!("actions[{i}]"), message))?;
    }
    Ok(Trigger {
        id,
        namespace: namespace.into(),
        run: None,
        matcher,
        condition,
        actions,
        context,
        once,
        fired: 0,
        error: None,
    })
}

fn check_action(action: &Action) -> std::result::Result<(), String> {
    let templated = match action {
        Action::Advance { .. } => {
            return Err("advance moves workflow runs; only a workflow's own triggers take it".into());
        }
        Action::Webhook { url } => {
            if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() > 2048 {
                return Err(format!("webhook url {url:?} must be an http:// or https:// address"));
            }
            return Ok(());
        }
        Action::StartBurst { request, .. } => serde_json::to_value(request).unwrap_or_default(),
        Action::Emit { event } => {
            crate::check_fields(event).map_err(|e| format!("emit: {e}"))?;
            serde_json::to_value(event).unwrap_or_default()
        }
        Action::StartRun { input, .. } => input.clone(),
    };
    // A trigger's templates read the event and its context, nothing else.
    for path in template::references(&templated) {
        if !(path.starts_with("event") || path.starts_with("context")) {
            return Err(format!(
                "${{{path}}} names neither the event nor the context (write ${{event...}} or ${{context...}})"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn request(actions: serde_json::Value) -> TriggerRequest {
        serde_json::from_value(json!({"id": "t", "match": {"type": "x"}, "actions": actions})).unwrap()
    }

    #[test]
    fn a_trigger_is_checked_whole() {
        let ok =
            make("ns", request(json!([{"kind": "emit", "event": {"id": "${event.id}", "source": "s", "type": "y"}}])));
        assert_eq!(ok.unwrap().namespace, "ns");
        let advance = make("ns", request(json!([{"kind": "advance", "run": "r", "step": "s"}])));
        assert!(advance.unwrap_err().to_string().contains("only a workflow's own"));
        let hook = make("ns", request(json!([{"kind": "webhook", "url": "file:///etc/passwd"}])));
        assert!(hook.unwrap_err().to_string().starts_with("actions[0]"));
        let stray =
            make("ns", request(json!([{"kind": "emit", "event": {"id": "${steps.a}", "source": "s", "type": "y"}}])));
        assert!(stray.unwrap_err().to_string().contains("neither the event nor the context"));
        let nameless = make("ns", request(json!([{"kind": "emit", "event": {"id": "i", "source": "", "type": "y"}}])));
        assert!(nameless.unwrap_err().to_string().contains("source"), "an emitted event needs a source");
        let wide = "é".repeat(512);
        let long = make("ns", request(json!([{"kind": "emit", "event": {"id": "i", "source": wide, "type": "y"}}])));
        assert!(long.is_ok(), "512 characters are allowed, whatever their bytes");
        let none = make("ns", request(json!([])));
        assert!(none.is_err());
        let mut bad = request(json!([{"kind": "webhook", "url": "http://x"}]));
        bad.condition = volley_proto::flow::Condition::Predicate { path: "$$$".into(), equals: None };
        assert!(make("ns", bad).unwrap_err().to_string().contains("JSONPath"));
    }
}
