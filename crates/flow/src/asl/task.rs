//! What a `Task` state runs: `volley:function:NAME` is one worker of a
//! function, `volley:burst:NAME?workers=N&granularity=G&transport=T` a burst
//! of it. The state's effective input becomes every worker's parameters; the
//! result is the worker's result (a function) or every worker's, in rank
//! order (a burst). `arn:...:function:NAME` (a Lambda ARN) reads as
//! `volley:function:NAME`, so a published definition needs only its
//! resources pointed at deployed functions.

use serde_json::Value;

/// A task to run, as the engine turns it into a burst.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRequest {
    pub function: String,
    pub workers: usize,
    pub granularity: Option<usize>,
    pub transport: Option<String>,
    pub params: Value,
    pub timeout_secs: Option<f64>,
    /// A burst: the result is the list of every worker's result.
    pub burst: bool,
}

/// Most workers a Task's burst may ask for (the controller's own limit still applies).
const MAX_WORKERS: usize = 100_000;

/// The task `resource` names, with `params` as its input.
pub fn request(resource: &str, params: Value, timeout_secs: Option<f64>) -> Result<TaskRequest, String> {
    let (kind, rest) = parse(resource)?;
    let (name, query) = rest.split_once('?').unwrap_or((rest, ""));
    let mut task = TaskRequest {
        function: name.into(),
        workers: 1,
        granularity: None,
        transport: None,
        params,
        timeout_secs,
        burst: kind == "burst",
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').ok_or(format!("{resource}: {pair} is not key=value"))?;
        let number = || value.parse::<usize>().map_err(|_| format!("{resource}: {key} must be a whole number"));
        match (kind, key) {
            ("burst", "workers") => task.workers = number()?,
            ("burst", "granularity") => task.granularity = Some(number()?),
            ("burst", "transport") => task.transport = Some(value.into()),
            _ => {
                return Err(format!(
                    "{resource}: {key} is not a setting of a {kind} (workers, granularity, transport)"
                ));
            }
        }
    }
    if !(1..=MAX_WORKERS).contains(&task.workers) || task.granularity.is_some_and(|g| g == 0 || g > task.workers) {
        return Err(format!("{resource}: workers must be 1 to {MAX_WORKERS} and granularity 1 to workers"));
    }
    Ok(task)
}

/// `(function|burst, the rest)` of a resource.
fn parse(resource: &str) -> Result<(&'static str, &str), String> {
    if let Some(rest) = resource.strip_prefix("volley:function:") {
        return named("function", rest, resource);
    }
    if let Some(rest) = resource.strip_prefix("volley:burst:") {
        return named("burst", rest, resource);
    }
    if resource.starts_with("arn:")
        && let Some((_, name)) = resource.split_once(":function:")
    {
        // A Lambda ARN may end in a version or alias: `NAME:$LATEST`.
        return named("function", name.split(':').next().unwrap_or(name), resource);
    }
    Err(format!(
        "Resource {resource:?} is not a Volley task: write volley:function:NAME or volley:burst:NAME?workers=N"
    ))
}

fn named<'a>(kind: &'static str, rest: &'a str, resource: &str) -> Result<(&'static str, &'a str), String> {
    let name = rest.split('?').next().unwrap_or("");
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(format!("{resource}: the function name must be 1 or more of A-Z a-z 0-9 - _"));
    }
    Ok((kind, rest))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn resources_name_functions_and_bursts() {
        let t = request("volley:burst:terasort?workers=8&granularity=4", json!({"x": 1}), Some(60.0)).unwrap();
        assert_eq!((t.function.as_str(), t.workers, t.granularity, t.burst), ("terasort", 8, Some(4), true));
        let f = request("volley:function:hello", json!(null), None).unwrap();
        assert_eq!((f.workers, f.burst), (1, false));
        let arn = request("arn:aws:lambda:us-east-1:123456789012:function:hello:$LATEST", json!(null), None).unwrap();
        assert_eq!(arn.function, "hello");
        assert!(
            request("arn:aws:states:::sqs:sendMessage", json!(null), None).unwrap_err().contains("not a Volley task")
        );
        assert!(request("volley:function:hello?workers=2", json!(null), None).unwrap_err().contains("not a setting"));
        assert!(request("volley:burst:x?workers=2&granularity=3", json!(null), None).is_err());
    }
}
