//! The OpenAPI document: generated from the handlers and the API types, then
//! made to say what *this* controller checks (which secrets it requires, its
//! limits), so that a client, or a fuzzer, can trust every word of it.

use serde_json::{Value, json};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::Options;
use crate::control_plane::{MAX_MEMORY_MB, MAX_RETRIES, MAX_SLOTS, MAX_TIMEOUT_SECS};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Volley",
        description = "Group invocation of burst-parallel jobs: one call starts N workers that start together, \
                       know their rank and talk directly. Errors are `{\"error\": {\"code\", \"message\"}}`."
    ),
    modifiers(&Secrets)
)]
struct Base;

/// The document before the controller's own settings are applied.
pub(super) fn base() -> utoipa::openapi::OpenApi {
    Base::openapi()
}

/// The three secrets a controller may require, each sent as `Authorization: Bearer ...`.
struct Secrets;

impl utoipa::Modify for Secrets {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        for (name, what) in [
            ("api_key", "A tenant's API key (its namespace scopes what it sees and runs)."),
            ("invoker_token", "The cluster's invoker token (only invokers hold it)."),
            ("metrics_key", "The key for /metrics."),
            ("session_token", "A program session's token (given when the session is opened)."),
        ] {
            let scheme = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some(what)).build();
            components.add_security_scheme(name, SecurityScheme::Http(scheme));
        }
    }
}

/// The document as this controller serves it: only the secrets it requires
/// are required, and its limits are the schema's.
pub(super) fn finish(doc: utoipa::openapi::OpenApi, opts: &Options) -> Value {
    let mut doc = serde_json::to_value(doc).unwrap_or_else(|_| json!({}));
    doc["info"]["version"] = json!(env!("CARGO_PKG_VERSION"));
    let required = [
        ("api_key", !opts.api_keys.is_empty()),
        ("invoker_token", opts.invoker_token.is_some()),
        ("metrics_key", opts.metrics_key.is_some()),
        ("session_token", true),
    ];
    if let Some(paths) = doc["paths"].as_object_mut() {
        for op in paths.values_mut().filter_map(Value::as_object_mut).flat_map(|p| p.values_mut()) {
            let Some(op) = op.as_object_mut() else { continue };
            let needed = op.get("security").and_then(Value::as_array).is_some_and(|reqs| {
                reqs.iter().any(|r| required.iter().any(|(name, on)| *on && r.get(*name).is_some()))
            });
            if !needed {
                op.remove("security");
            }
        }
    }
    if let Some(schemes) = doc.pointer_mut("/components/securitySchemes").and_then(Value::as_object_mut) {
        schemes.retain(|name, _| required.iter().any(|(n, on)| *on && n == name));
    }
    let limits = [
        ("/components/schemas/BurstRequest/properties/workers/minimum", json!(1)),
        ("/components/schemas/BurstRequest/properties/workers/maximum", json!(opts.max_workers)),
        ("/components/schemas/BurstRequest/properties/retries/maximum", json!(MAX_RETRIES)),
        ("/components/schemas/BurstRequest/properties/timeout_secs/exclusiveMinimum", json!(0)),
        ("/components/schemas/BurstRequest/properties/timeout_secs/maximum", json!(MAX_TIMEOUT_SECS)),
        ("/components/schemas/BurstRequest/properties/queue_timeout_secs/exclusiveMinimum", json!(0)),
        (
            "/components/schemas/BurstRequest/properties/queue_timeout_secs/maximum",
            json!(opts.max_queue_timeout.as_secs_f64()),
        ),
        ("/components/schemas/BurstRequest/properties/transport/enum", transports(opts)),
        ("/components/schemas/ErrorDetail/properties/code/enum", json!(crate::Error::CODES)),
        ("/components/schemas/Registration/properties/slots/maximum", json!(MAX_SLOTS)),
        ("/components/schemas/Registration/properties/memory_mb/maximum", json!(MAX_MEMORY_MB)),
        ("/components/schemas/BurstRequest/properties/memory_mb/maximum", json!(MAX_MEMORY_MB)),
    ];
    for (pointer, value) in limits {
        set(&mut doc, pointer, value);
    }
    // Each server-sent event: named `burst`, its data the burst as JSON (the
    // way OpenAPI 3.2 describes event streams; a tool that knows no better
    // reads it as a string).
    set(
        &mut doc,
        "/paths/~1v1~1bursts~1{id}~1events/get/responses/200/content/text~1event-stream/schema",
        json!({"type": "object", "required": ["data"], "properties": {
            "event": {"const": "burst"},
            "data": {"type": "string", "contentMediaType": "application/json",
                     "contentSchema": {"$ref": "#/components/schemas/Burst"}}}}),
    );
    if let Some(fixed) = doc.pointer_mut("/components/schemas/BurstRequest/properties/granularity/oneOf/0") {
        fixed["maximum"] = json!(opts.max_workers);
    }
    if let Some(schemas) = doc.pointer_mut("/components/schemas").and_then(Value::as_object_mut) {
        schemas.values_mut().for_each(close_single_key_variants);
        // Tagged enums that refuse unknown fields (`deny_unknown_fields`): each variant is closed.
        for name in ["Action", "Condition", "Op", "Kind"] {
            if let Some(variants) = schemas.get_mut(name).and_then(|s| s.get_mut("oneOf")).and_then(Value::as_array_mut)
            {
                variants.iter_mut().for_each(|v| v["additionalProperties"] = json!(false));
            }
        }
    }
    bound_integers(&mut doc);
    doc
}

/// Every integer the API reads is a signed 64-bit integer at most (see
/// `volley_proto::whole`); the generated schema of `usize` says no bound.
fn bound_integers(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let integer = match map.get("type") {
                Some(Value::String(t)) => t == "integer",
                Some(Value::Array(ts)) => ts.iter().any(|t| t == "integer"),
                _ => false,
            };
            if integer && !map.contains_key("maximum") {
                map.insert("maximum".into(), json!(i64::MAX));
            }
            map.values_mut().for_each(bound_integers);
        }
        Value::Array(items) => items.iter_mut().for_each(bound_integers),
        _ => {}
    }
}

/// An enum serde spells `{"variant": value}` accepts exactly that one key:
/// its variants' objects say so, or `{"error": 1, "aborted": "x"}` would pass
/// as the `aborted` variant.
fn close_single_key_variants(schema: &mut Value) {
    let Some(variants) = schema.get_mut("oneOf").and_then(Value::as_array_mut) else { return };
    for v in variants {
        let single = v.get("properties").and_then(Value::as_object).is_some_and(|p| p.len() == 1)
            && v.get("required").and_then(Value::as_array).is_some_and(|r| r.len() == 1);
        if single {
            v["additionalProperties"] = json!(false);
        }
    }
}

/// The transports this build can resolve (and `null`: the platform chooses).
fn transports(opts: &Options) -> Value {
    let mut names: Vec<Value> = volley_comm::TRANSPORTS
        .iter()
        .filter(|t| opts.brokers.transport(t, Default::default()).is_ok())
        .map(|t| json!(t))
        .collect();
    names.push(Value::Null);
    Value::Array(names)
}

/// Sets the value at a JSON pointer (`~1` is `/`), making the objects on the way.
fn set(doc: &mut Value, pointer: &str, value: Value) {
    let mut at = doc;
    for key in pointer.trim_start_matches('/').split('/').map(|k| k.replace("~1", "/").replace("~0", "~")) {
        if !at.is_object() {
            *at = json!({});
        }
        let Some(object) = at.as_object_mut() else { return };
        at = object.entry(key).or_insert(Value::Null);
    }
    *at = value;
}
