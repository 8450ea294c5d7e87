//! Who is calling: API keys map to namespaces (a tenant sees only its own
//! bursts and deployed functions); invokers present the cluster's invoker token.
//! With no keys configured (a controller on loopback), everyone is `default`.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::core::Core;
use crate::error::Error;

/// The namespace of a user request.
pub(crate) struct Caller(pub(crate) String);

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

impl FromRequestParts<Arc<Core>> for Caller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, core: &Arc<Core>) -> Result<Self, Error> {
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

impl FromRequestParts<Arc<Core>> for InvokerCaller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, core: &Arc<Core>) -> Result<Self, Error> {
        match &core.opts.invoker_token {
            None => Ok(InvokerCaller),
            Some(token) if bearer(parts).is_some_and(|given| same(given, token)) => Ok(InvokerCaller),
            Some(_) => Err(Error::Unauthorized(
                "invoker endpoints need the cluster's invoker token (--invoker-token / VOLLEY_INVOKER_TOKEN)".into(),
            )),
        }
    }
}

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
    Ok(())
}

/// Reads an API key file: one `namespace key` pair per line; `#` starts a comment.
pub fn parse_keys(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some(namespace), Some(key), None) if key.len() >= 16 => {
                keys.push((key.to_string(), namespace.to_string()))
            }
            (Some(_), Some(_), None) => {
                return Err(format!("line {}: the key must have at least 16 characters", n + 1));
            }
            _ => return Err(format!("line {}: expected `namespace key`", n + 1)),
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_are_read_and_checked() {
        let keys = parse_keys("# tenants\nteam-a aaaaaaaaaaaaaaaa\n\nteam-b bbbbbbbbbbbbbbbbbbbb # ci\n").unwrap();
        assert_eq!(
            keys,
            vec![("aaaaaaaaaaaaaaaa".into(), "team-a".into()), ("bbbbbbbbbbbbbbbbbbbb".into(), "team-b".into())]
        );
        assert!(parse_keys("team-a short").unwrap_err().contains("16 characters"));
        assert!(parse_keys("just-one-word").unwrap_err().contains("namespace key"));
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "abcd"));
    }
}
