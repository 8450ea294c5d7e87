//! The API's paths, as the client calls them (the server declares the same
//! paths on its handlers; the tests walk the served document against them).

pub const HEALTHZ: &str = "/healthz";
pub const METRICS: &str = "/metrics";
pub const OPENAPI: &str = "/v1/openapi.json";
pub const BURSTS: &str = "/v1/bursts";
pub const FUNCTIONS: &str = "/v1/functions";
pub const INVOKERS: &str = "/v1/invokers";
pub const WORKFLOWS: &str = "/v1/workflows";
pub const RUNS: &str = "/v1/runs";
pub const EVENTS: &str = "/v1/events";
pub const TRIGGERS: &str = "/v1/triggers";
pub const TIMERS: &str = "/v1/timers";
pub const SOURCES: &str = "/v1/sources";
pub const SESSIONS: &str = "/v1/sessions";

/// Every path the client calls, as the API's document spells it (a test
/// checks each against the document a controller serves).
pub const TEMPLATES: &[&str] = &[
    HEALTHZ,
    METRICS,
    OPENAPI,
    BURSTS,
    "/v1/bursts/{id}",
    "/v1/bursts/{id}/wait",
    "/v1/bursts/{id}/events",
    "/v1/bursts/{id}/cancel",
    "/v1/bursts/{id}/logs",
    FUNCTIONS,
    "/v1/functions/{name}",
    "/v1/blobs/{digest}",
    INVOKERS,
    "/v1/invokers/{id}/commands",
    "/v1/invokers/{id}/events",
    WORKFLOWS,
    "/v1/workflows/{name}",
    RUNS,
    "/v1/runs/{id}",
    "/v1/runs/{id}/wait",
    "/v1/runs/{id}/cancel",
    EVENTS,
    TRIGGERS,
    "/v1/triggers/{id}",
    TIMERS,
    "/v1/timers/{id}",
    SOURCES,
    "/v1/sources/{id}",
    SESSIONS,
    "/v1/sessions/{id}",
    "/v1/sessions/{id}/renew",
    "/v1/sessions/{id}/ops",
];

pub fn burst(id: &str) -> String {
    format!("{BURSTS}/{id}")
}

pub fn burst_wait(id: &str) -> String {
    format!("{BURSTS}/{id}/wait")
}

pub fn burst_events(id: &str) -> String {
    format!("{BURSTS}/{id}/events")
}

pub fn burst_cancel(id: &str) -> String {
    format!("{BURSTS}/{id}/cancel")
}

pub fn burst_logs(id: &str) -> String {
    format!("{BURSTS}/{id}/logs")
}

pub fn function(name: &str) -> String {
    format!("{FUNCTIONS}/{name}")
}

pub fn blob(digest: &str) -> String {
    format!("/v1/blobs/{digest}")
}

pub fn invoker_commands(id: &str) -> String {
    format!("{INVOKERS}/{id}/commands")
}

pub fn invoker_events(id: &str) -> String {
    format!("{INVOKERS}/{id}/events")
}

pub fn invoker_leave(id: &str) -> String {
    format!("{INVOKERS}/{id}/leave")
}

pub fn invoker_drain(id: &str) -> String {
    format!("{INVOKERS}/{id}/drain")
}

pub fn workflow(name: &str) -> String {
    format!("{WORKFLOWS}/{name}")
}

pub fn trigger(id: &str) -> String {
    format!("{TRIGGERS}/{id}")
}

pub fn timer(id: &str) -> String {
    format!("{TIMERS}/{id}")
}

pub fn source(id: &str) -> String {
    format!("{SOURCES}/{id}")
}

pub fn run(id: &str) -> String {
    format!("{RUNS}/{id}")
}

pub fn run_wait(id: &str) -> String {
    format!("{RUNS}/{id}/wait")
}

pub fn run_cancel(id: &str) -> String {
    format!("{RUNS}/{id}/cancel")
}

pub fn session(id: &str) -> String {
    format!("{SESSIONS}/{id}")
}

pub fn session_renew(id: &str) -> String {
    format!("{SESSIONS}/{id}/renew")
}

pub fn session_ops(id: &str) -> String {
    format!("{SESSIONS}/{id}/ops")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_templates_are_the_paths_the_client_makes() {
        let made = [
            burst("{id}"),
            burst_wait("{id}"),
            burst_events("{id}"),
            burst_cancel("{id}"),
            burst_logs("{id}"),
            function("{name}"),
            blob("{digest}"),
            invoker_commands("{id}"),
            invoker_events("{id}"),
            workflow("{name}"),
            run("{id}"),
            run_wait("{id}"),
            run_cancel("{id}"),
            trigger("{id}"),
            timer("{id}"),
            source("{id}"),
            session("{id}"),
            session_renew("{id}"),
            session_ops("{id}"),
        ];
        for path in made {
            assert!(TEMPLATES.contains(&path.as_str()), "{path} is not in TEMPLATES");
        }
    }
}
