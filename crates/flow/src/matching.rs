//! Which triggers an event is for.

use volley_proto::flow::{CloudEvent, Match};

/// Whether `event` is one `m` listens to.
pub fn matches(m: &Match, event: &CloudEvent) -> bool {
    m.kind == event.kind
        && m.source.as_ref().is_none_or(|s| *s == event.source)
        && m.subject.as_ref().is_none_or(|pattern| event.subject.as_deref().is_some_and(|s| glob(pattern, s)))
}

/// Whether `text` fits `pattern`, where `*` stands for any run of characters.
pub fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else { return false };
    let middle: Vec<&str> = parts.collect();
    let Some((last, middle)) = middle.split_last() else { return rest.is_empty() };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_any_run_of_characters() {
        assert!(glob("run/r1/*", "run/r1/sort"));
        assert!(!glob("run/r1/*", "run/r2/sort"));
        assert!(glob("*", ""));
        assert!(glob("a*c*e", "abcde"));
        assert!(!glob("a*c*e", "abcd"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exactly"));
        assert!(glob("*.csv", "x.csv") && !glob("*.csv", "x.csv.gz"));
    }

    #[test]
    fn type_source_and_subject_must_all_fit() {
        let e = CloudEvent::new("1", "app", "upload", Some("data/a.csv".into()), serde_json::Value::Null);
        let m = |kind: &str, source: Option<&str>, subject: Option<&str>| Match {
            kind: kind.into(),
            source: source.map(String::from),
            subject: subject.map(String::from),
        };
        assert!(matches(&m("upload", None, None), &e));
        assert!(matches(&m("upload", Some("app"), Some("data/*")), &e));
        assert!(!matches(&m("upload", Some("other"), None), &e));
        assert!(!matches(&m("delete", None, None), &e));
        assert!(!matches(&m("upload", None, Some("logs/*")), &e));
    }
}
