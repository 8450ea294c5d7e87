//! Who is calling: API keys map to namespaces (a tenant sees only its own
//! bursts and deployed functions); invokers present the cluster's invoker token.
//! With no keys configured (a controller on loopback), everyone is `default`.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::control_plane::ControlPlane;
use crate::error::Error;

/// The namespace of a user request.
pub(crate) struct Caller(pub(crate) String);

/// The token a request to a program session brings (checked by the session).
pub(crate) struct SessionToken(pub(crate) Option<String>);

/// An invoker's request (checked against the invoker token, if one is set).
pub(crate) struct InvokerCaller;

/// The namespace of requests when the controller has no API keys.
pub(crate) const DEFAULT_NAMESPACE: &str = "default";

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").map(str::trim)
}

/// Compares secrets without leaking how much of them matched through timing.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl FromRequestParts<Arc<ControlPlane>> for Caller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, core: &Arc<ControlPlane>) -> Result<Self, Error> {
        let keys = &core.opts.api_keys;
        if keys.is_empty() {
            return Ok(Caller(DEFAULT_NAMESPACE.into()));
        }
        let Some(given) = bearer(parts) else {
            return Err(Error::Unauthorized(
                "this controller requires an API key: pass --api-key or set VOLLEY_API_KEY (header Authorization: Bearer KEY)".into(),
            ));
        };
        keys.iter()
            .find(|(key, _)| same(key, given))
            .map(|(_, namespace)| Caller(namespace.clone()))
            .ok_or_else(|| Error::Unauthorized("the API key is not valid for this controller".into()))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for SessionToken {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        Ok(SessionToken(bearer(parts).map(String::from)))
    }
}

impl FromRequestParts<Arc<ControlPlane>> for InvokerCaller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, core: &Arc<ControlPlane>) -> Result<Self, Error> {
        match &core.opts.invoker_token {
            None => Ok(InvokerCaller),
            Some(token) if bearer(parts).is_some_and(|given| same(given, token)) => Ok(InvokerCaller),
            Some(_) => Err(Error::Unauthorized(
                "invoker endpoints need the cluster's invoker token (--invoker-token / VOLLEY_INVOKER_TOKEN)".into(),
            )),
        }
    }
}

/// A scrape of `/metrics` (checked against the metrics key, if one is set).
pub(crate) struct MetricsCaller;

impl FromRequestParts<Arc<ControlPlane>> for MetricsCaller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, core: &Arc<ControlPlane>) -> Result<Self, Error> {
        match &core.opts.metrics_key {
            None => Ok(MetricsCaller),
            Some(key) if bearer(parts).is_some_and(|given| same(given, key)) => Ok(MetricsCaller),
            Some(_) => Err(Error::Unauthorized(
                "/metrics needs the controller's metrics key (Authorization: Bearer KEY; see --metrics-key)".into(),
            )),
        }
    }
}

/// Shortest API key, invoker token or metrics key accepted: 32 characters
/// (128 bits or more of a random hex or base64 string).
pub const MIN_SECRET_LEN: usize = 32;

/// Keys are required whenever the controller can be reached from other hosts.
pub(crate) fn check_exposure(listen: &std::net::SocketAddr, opts: &crate::Options) -> Result<(), Error> {
    if listen.ip().is_loopback() {
        return Ok(());
    }
    if opts.api_keys.is_empty() || opts.invoker_token.is_none() {
        return Err(Error::BadRequest(format!(
            "the controller listens on {listen}, beyond loopback: give it API keys (--api-keys FILE) and an invoker token (--invoker-token)"
        )));
    }
    if opts.tls.is_none() && !opts.insecure_plain_http {
        return Err(Error::BadRequest(format!(
            "the controller listens on {listen}, beyond loopback, in plain HTTP: API keys and the invoker token would \
             cross the network in clear; give it a certificate (--tls-cert FILE --tls-key FILE; `volley certificates` \
             makes a CA and one), or pass --insecure-plain-http on a private network you trust"
        )));
    }
    Ok(())
}

/// Refuses a configuration that would weaken authentication, saying what to change.
pub(crate) fn check_config(opts: &crate::Options) -> Result<(), Error> {
    let refuse = |m: String| Err(Error::BadRequest(m));
    for (key, namespace) in &opts.api_keys {
        if key.len() < MIN_SECRET_LEN {
            return refuse(format!(
                "the API key of namespace {namespace:?} has {} characters; use at least {MIN_SECRET_LEN} (e.g. `openssl rand -hex 32`)",
                key.len()
            ));
        }
    }
    let is_api_key = |secret: &str| opts.api_keys.keys().any(|k| same(k, secret));
    if !opts.api_keys.is_empty() && opts.invoker_token.is_none() {
        return refuse(
            "API keys are configured but no invoker token: anyone who reaches the controller could register as an invoker \
             and receive other tenants' bursts; give --invoker-token (or let `volley up`/`volley controller` generate one)"
                .into(),
        );
    }
    for (name, secret) in [("invoker token", &opts.invoker_token), ("metrics key", &opts.metrics_key)] {
        let Some(secret) = secret else { continue };
        if secret.len() < MIN_SECRET_LEN {
            return refuse(format!(
                "the {name} has {} characters; use at least {MIN_SECRET_LEN} (e.g. `openssl rand -hex 32`)",
                secret.len()
            ));
        }
        if is_api_key(secret) {
            return refuse(format!(
                "the {name} is also an API key: a tenant holding that key could act as it; give it a secret of its own"
            ));
        }
    }
    if let (Some(token), Some(metrics)) = (&opts.invoker_token, &opts.metrics_key)
        && same(token, metrics)
    {
        return refuse(
            "the metrics key equals the invoker token: whoever scrapes metrics could register as an invoker; give each its own secret"
                .into(),
        );
    }
    Ok(())
}

/// Reads an API key file: one `namespace key` pair per line; `#` starts a comment.
/// A key must have at least [`MIN_SECRET_LEN`] characters and belong to one namespace.
pub fn parse_keys(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut keys: Vec<(String, String)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        let (namespace, key) = match (words.next(), words.next(), words.next()) {
            (Some(namespace), Some(key), None) => (namespace, key),
            _ => return Err(format!("line {}: expected `namespace key`", n + 1)),
        };
        if key.len() < MIN_SECRET_LEN {
            return Err(format!(
                "line {}: the key has {} characters; use at least {MIN_SECRET_LEN} (e.g. `openssl rand -hex 32`)",
                n + 1,
                key.len()
            ));
        }
        if let Some((_, other)) = keys.iter().find(|(k, _)| k == key) {
            return Err(if other == namespace {
                format!("line {}: the key of namespace {namespace:?} is listed twice; remove one line", n + 1)
            } else {
                format!(
                    "line {}: this key is already the key of namespace {other:?}; a key must belong to one namespace, give {namespace:?} a key of its own",
                    n + 1
                )
            });
        }
        keys.push((key.to_string(), namespace.to_string()));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn key_files_are_read_and_checked() {
        let keys = parse_keys(&format!("# tenants\nteam-a {A}\n\nteam-b {B} # ci\n")).unwrap();
        assert_eq!(keys, vec![(A.into(), "team-a".into()), (B.into(), "team-b".into())]);
        assert!(parse_keys("team-a short").unwrap_err().contains("at least 32"));
        assert!(parse_keys(&format!("team-a {}", &A[..31])).unwrap_err().contains("31 characters"));
        assert!(parse_keys("just-one-word").unwrap_err().contains("namespace key"));
    }

    #[test]
    fn a_key_belongs_to_one_namespace() {
        let err = parse_keys(&format!("team-a {A}\nteam-b {A}\n")).unwrap_err();
        assert!(err.contains("line 2") && err.contains("\"team-a\""), "{err}");
        let err = parse_keys(&format!("team-a {A}\nteam-a {A}\n")).unwrap_err();
        assert!(err.contains("listed twice"), "{err}");
    }

    fn options(keys: &[(&str, &str)], token: Option<&str>, metrics: Option<&str>) -> crate::Options {
        crate::Options {
            api_keys: keys.iter().map(|(k, n)| (k.to_string(), n.to_string())).collect(),
            invoker_token: token.map(String::from),
            metrics_key: metrics.map(String::from),
            ..Default::default()
        }
    }

    #[test]
    fn configurations_that_weaken_auth_are_refused() {
        let token = "tttttttttttttttttttttttttttttttttttt";
        let metrics = "mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm";
        assert!(check_config(&options(&[], None, None)).is_ok(), "no keys: loopback, one tenant");
        assert!(check_config(&options(&[(A, "a")], Some(token), Some(metrics))).is_ok());
        let refused = |o: crate::Options| check_config(&o).unwrap_err().to_string();
        assert!(refused(options(&[(A, "a")], None, None)).contains("no invoker token"));
        assert!(refused(options(&[("short-key", "a")], Some(token), None)).contains("at least 32"));
        assert!(refused(options(&[(A, "a")], Some("short"), None)).contains("invoker token has 5"));
        assert!(refused(options(&[(A, "a")], Some(A), None)).contains("invoker token is also an API key"));
        assert!(refused(options(&[(A, "a")], Some(token), Some(A))).contains("metrics key is also an API key"));
        assert!(refused(options(&[(A, "a")], Some(token), Some(token))).contains("equals the invoker token"));
        assert!(refused(options(&[], None, Some("short"))).contains("metrics key has 5"));
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "abcd"));
    }
}
