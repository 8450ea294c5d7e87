//! The OpenAPI 3.1 document of the HTTP API, served at `/v1/openapi.json`.
//! Written by hand from one table of routes, which the API's tests also walk,
//! so a route cannot be added without being documented.

use serde_json::{Value, json};

/// Every public route: method, path, summary, request schema, response schema.
pub(crate) const ROUTES: &[(&str, &str, &str, Option<&str>, &str)] = &[
    ("get", "/healthz", "Liveness: `ok`", None, "Text"),
    ("get", "/metrics", "Prometheus text: bursts, invokers, slots", None, "Text"),
    ("get", "/v1/openapi.json", "This document", None, "Object"),
    ("get", "/v1/functions", "Built-in functions and those deployed in your namespace", None, "FunctionList"),
    ("get", "/v1/functions/{name}", "One function", None, "Function"),
    (
        "put",
        "/v1/functions/{name}",
        "Deploy a function: the binary is the body (`?description=`)",
        Some("Binary"),
        "Function",
    ),
    ("delete", "/v1/functions/{name}", "Delete a deployed function", None, "Empty"),
    ("post", "/v1/bursts", "Start a burst", Some("BurstRequest"), "Burst"),
    ("get", "/v1/bursts", "Your bursts, newest first (`?limit=`)", None, "BurstList"),
    ("get", "/v1/bursts/{id}", "One burst with every worker's result and times", None, "Burst"),
    ("get", "/v1/bursts/{id}/wait", "The burst once it has ended, or as it is after `?timeout_ms=`", None, "Burst"),
    ("get", "/v1/bursts/{id}/events", "Server-sent events: the burst's progress until it ends", None, "EventStream"),
    ("post", "/v1/bursts/{id}/cancel", "Cancel a queued or running burst", None, "Burst"),
    ("get", "/v1/bursts/{id}/logs", "What each pack process printed", None, "BurstLogs"),
    ("get", "/v1/invokers", "Invokers, their capacity and status", None, "InvokerList"),
    ("post", "/v1/invokers", "Invoker: register (needs the invoker token)", Some("Registration"), "Registered"),
    (
        "get",
        "/v1/invokers/{id}/commands",
        "Invoker: long poll for commands; the heartbeat (`?wait_ms=&warm=`)",
        None,
        "Object",
    ),
    ("post", "/v1/invokers/{id}/events", "Invoker: report events", Some("Object"), "Object"),
    ("get", "/v1/blobs/{digest}", "Invoker: a deployed binary by SHA-256", None, "Binary"),
];

fn schema_ref(name: &str) -> Value {
    match name {
        "Text" => json!({"type": "string"}),
        "Binary" => json!({"type": "string", "format": "binary"}),
        "Empty" => json!({}),
        "Object" => json!({"type": "object"}),
        "EventStream" => json!({"type": "string", "description": "text/event-stream of `burst` events (Burst JSON)"}),
        "FunctionList" => json!({"type": "array", "items": {"$ref": "#/components/schemas/Function"}}),
        "BurstList" => json!({"type": "array", "items": {"$ref": "#/components/schemas/Burst"}}),
        "InvokerList" => json!({"type": "array", "items": {"type": "object"}}),
        other => json!({"$ref": format!("#/components/schemas/{other}")}),
    }
}

fn content_type(schema: &str) -> &'static str {
    match schema {
        "Text" => "text/plain",
        "Binary" => "application/octet-stream",
        "EventStream" => "text/event-stream",
        _ => "application/json",
    }
}

/// The whole document.
pub(crate) fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for (method, path, summary, request, response) in ROUTES {
        let mut op = json!({
            "summary": summary,
            "responses": {
                "200": {"description": "success", "content": {content_type(response): {"schema": schema_ref(response)}}},
                "default": {"description": "an error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            }
        });
        if let Some(req) = request {
            op["requestBody"] = json!({"required": true, "content": {content_type(req): {"schema": schema_ref(req)}}});
        }
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if !params.is_empty() {
            op["parameters"] = Value::Array(params);
        }
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[*method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Volley", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Group invocation of burst-parallel jobs. Send `Authorization: Bearer KEY` when the controller has API keys."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas(),
        },
        "security": [{"bearer": []}],
        "paths": paths,
    })
}

fn schemas() -> Value {
    json!({
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string", "enum": ["bad_request", "not_found", "conflict", "insufficient_capacity", "unauthorized", "store_unavailable"]},
                           "message": {"type": "string"}}}}},
        "BurstRequest": {"type": "object", "required": ["function", "workers"], "additionalProperties": false, "properties": {
            "function": {"type": "string"},
            "workers": {"type": "integer", "minimum": 1},
            "granularity": {"oneOf": [{"type": "integer", "minimum": 1}, {"const": "auto"}]},
            "transport": {"type": "string", "enum": volley_comm::TRANSPORTS},
            "params": {},
            "worker_params": {"type": "array"},
            "timeout_secs": {"type": "number", "exclusiveMinimum": 0},
            "queue_timeout_secs": {"type": "number", "exclusiveMinimum": 0},
            "memory_mb": {"type": "integer", "minimum": 0},
            "retries": {"type": "integer", "minimum": 0, "maximum": 10}}},
        "Burst": {"type": "object", "properties": {
            "id": {"type": "string"}, "namespace": {"type": "string"},
            "request": {"$ref": "#/components/schemas/BurstRequest"},
            "state": {"type": "string", "enum": ["queued", "starting", "running", "succeeded", "failed", "cancelled"]},
            "error": {"type": ["string", "null"]}, "transport": {"type": ["string", "null"]},
            "submitted_at": {"type": "integer", "description": "µs since the Unix epoch"},
            "placed_at": {"type": ["integer", "null"]}, "running_at": {"type": ["integer", "null"]},
            "finished_at": {"type": ["integer", "null"]}, "start_spread_us": {"type": ["integer", "null"]},
            "attempt": {"type": "integer"}, "attempt_errors": {"type": "array", "items": {"type": "string"}},
            "packs": {"type": "array", "items": {"type": "object"}},
            "workers": {"type": "array", "items": {"type": "object", "properties": {
                "rank": {"type": "integer"}, "pack": {"type": ["integer", "null"]},
                "started_at": {"type": ["integer", "null"]}, "finished_at": {"type": ["integer", "null"]},
                "result": {}, "error": {"type": ["string", "null"]}}}}}},
        "BurstLogs": {"type": "object", "properties": {"packs": {"type": "array", "items": {"type": "object", "properties": {
            "pack": {"type": "integer"}, "stdout": {"type": "string"}, "stderr": {"type": "string"}, "truncated": {"type": "boolean"}}}}}},
        "Function": {"type": "object", "properties": {
            "name": {"type": "string"}, "namespace": {"type": "string"}, "kind": {"type": "string", "enum": ["builtin", "deployed"]},
            "description": {"type": "string"}, "digest": {"type": "string"}, "size_bytes": {"type": "integer"},
            "deployed_at": {"type": "integer"}}},
        "Registration": {"type": "object", "required": ["name", "host", "slots", "memory_mb"], "properties": {
            "name": {"type": "string"}, "host": {"type": "string"}, "slots": {"type": "integer"}, "memory_mb": {"type": "integer"}}},
        "Registered": {"type": "object", "properties": {"invoker_id": {"type": "string"}, "heartbeat_ms": {"type": "integer"}}},
    })
}
