//! The API's paths, as the client calls them (the server declares the same
//! paths on its handlers; the tests walk the served document against them).

pub const HEALTHZ: &str = "/healthz";
pub const METRICS: &str = "/metrics";
pub const OPENAPI: &str = "/v1/openapi.json";
pub const BURSTS: &str = "/v1/bursts";
pub const FUNCTIONS: &str = "/v1/functions";
pub const INVOKERS: &str = "/v1/invokers";

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
