//! The token issuer: which local endpoint a path names, reading its body, and answering it.

pub mod claims;
pub mod client_auth;
pub mod endpoints;
pub mod form;
pub mod grant;
pub mod oauth_error;
pub mod secret_check;
pub mod shared_counter;
pub mod throttle;

use crate::config::Snapshot;
use crate::http_util::Reply;
use crate::model::{Keys, Realm};
use crate::state::State;
use crate::token::{Expect, Identity, KeySet, TokenError};
use http::Method;
use oauth_error::OAuthError;
use pingora::proxy::Session;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Token,
    Certs,
    Discovery,
    Introspect,
    Revoke,
}

impl Endpoint {
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::Token => "token",
            Endpoint::Certs => "certs",
            Endpoint::Discovery => "discovery",
            Endpoint::Introspect => "introspect",
            Endpoint::Revoke => "revoke",
        }
    }

    fn is_post(self) -> bool {
        matches!(self, Endpoint::Token | Endpoint::Introspect | Endpoint::Revoke)
    }
}

/// A local endpoint: `None` realm means the default realm (`/token`).
#[derive(Debug, PartialEq, Eq)]
pub struct Local<'p> {
    pub realm: Option<&'p str>,
    pub endpoint: Endpoint,
}

/// Does the (normalised) `path` name one of the realm endpoints?
pub fn match_path(path: &str) -> Option<Local<'_>> {
    if path == "/token" {
        return Some(Local {
            realm: None,
            endpoint: Endpoint::Token,
        });
    }
    let rest = path
        .strip_prefix("/auth")
        .filter(|r| r.starts_with("/realms/"))
        .unwrap_or(path);
    let rest = rest.strip_prefix("/realms/")?;
    let (realm, tail) = rest.split_once('/')?;
    let endpoint = match tail {
        "protocol/openid-connect/token" => Endpoint::Token,
        "protocol/openid-connect/certs" => Endpoint::Certs,
        ".well-known/openid-configuration" => Endpoint::Discovery,
        "protocol/openid-connect/token/introspect" => Endpoint::Introspect,
        "protocol/openid-connect/revoke" => Endpoint::Revoke,
        _ => return None,
    };
    Some(Local {
        realm: Some(realm),
        endpoint,
    })
}

/// Answer a local endpoint; the caller renders an error with [`OAuthError::reply`].
/// `peer` is the client's address as `server.trusted_proxies` resolves it.
pub async fn serve(
    state: &State,
    snap: &Snapshot,
    session: &mut Session,
    local: &Local<'_>,
    peer: &str,
) -> Result<Reply, OAuthError> {
    let result = serve_inner(state, snap, session, local, peer).await;
    if let Err(e) = &result {
        if local.endpoint.is_post() {
            let realm = local.realm.or(snap.default_realm.as_deref()).unwrap_or("");
            let labels = crate::metrics::TokenErrorLabel {
                realm: realm.to_string(),
                endpoint: local.endpoint.label(),
                error: e.code(),
            };
            state.metrics.token_errors.get_or_create(&labels).inc();
        }
    }
    result
}

async fn serve_inner(
    state: &State,
    snap: &Snapshot,
    session: &mut Session,
    local: &Local<'_>,
    peer: &str,
) -> Result<Reply, OAuthError> {
    let realm_name = local
        .realm
        .or(snap.default_realm.as_deref())
        .ok_or(OAuthError::RealmNotFound)?;
    let realm = snap
        .realm(realm_name)
        .filter(|r| !r.is_remote())
        .ok_or(OAuthError::RealmNotFound)?;
    let method = session.req_header().method.clone();
    if !local.endpoint.is_post() {
        if method != Method::GET && method != Method::HEAD {
            return Err(OAuthError::MethodNotAllowed("GET, HEAD"));
        }
        return Ok(match local.endpoint {
            Endpoint::Certs => endpoints::jwks(realm),
            _ => endpoints::discovery(realm),
        });
    }
    if method != Method::POST {
        return Err(OAuthError::MethodNotAllowed("POST"));
    }
    let content_type = session
        .req_header()
        .headers
        .get(http::header::CONTENT_TYPE)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let mime = content_type
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if !mime.eq_ignore_ascii_case(b"application/x-www-form-urlencoded") {
        return Err(OAuthError::UnsupportedMediaType);
    }
    let body = read_body(session, snap.server.max_form_body, snap.server.client_timeout).await?;
    let authorization = session
        .req_header()
        .headers
        .get(http::header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    let req = endpoints::Request {
        authorization,
        body: &body,
        peer,
        now: crate::http_util::now(),
    };
    match local.endpoint {
        Endpoint::Token => endpoints::token(state, snap, realm, &req).await,
        Endpoint::Introspect => endpoints::introspect(state, snap, realm, &req).await,
        _ => endpoints::revoke(state, snap, realm, &req).await,
    }
}

/// The keys a realm that issues tokens verifies its own with (none for a remote realm).
pub fn own_keys(realm: &Realm) -> &KeySet {
    static NONE: std::sync::OnceLock<KeySet> = std::sync::OnceLock::new();
    match &realm.keys {
        Keys::Local { verify, .. } => verify,
        _ => NONE.get_or_init(KeySet::default),
    }
}

/// Verifies a token this realm issued (introspection, revocation, refresh).
pub fn verify_own(realm: &Realm, token: &str, now: u64, expect: Expect) -> Result<Identity, TokenError> {
    crate::token::verify(own_keys(realm), &realm.rules(), token, now, expect).map(|v| v.identity)
}

/// Read the whole request body, refusing more than `max` bytes and a client that stalls.
async fn read_body(session: &mut Session, max: usize, timeout: std::time::Duration) -> Result<Vec<u8>, OAuthError> {
    if let Some(len) = session.req_header().headers.get(http::header::CONTENT_LENGTH) {
        let declared: Option<usize> = std::str::from_utf8(len.as_bytes())
            .ok()
            .and_then(|s| s.trim().parse().ok());
        match declared {
            Some(n) if n > max => return Err(OAuthError::PayloadTooLarge(max)),
            Some(_) => {}
            None => return Err(OAuthError::InvalidRequest("malformed Content-Length".into())),
        }
    }
    let mut body = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let chunk = tokio::time::timeout_at(deadline, session.read_request_body())
            .await
            .map_err(|_| OAuthError::RequestTimeout)?
            .map_err(|e| match e.etype() {
                // pingora's own per-read timeout (also client_timeout) may fire first.
                pingora::ErrorType::ReadTimedout => OAuthError::RequestTimeout,
                _ => OAuthError::InvalidRequest("could not read the request body".into()),
            })?;
        let Some(chunk) = chunk else { break };
        if body.len() + chunk.len() > max {
            return Err(OAuthError::PayloadTooLarge(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_paths() {
        let t = |p| match_path(p);
        assert_eq!(
            t("/token"),
            Some(Local {
                realm: None,
                endpoint: Endpoint::Token
            })
        );
        assert_eq!(
            t("/realms/demo/protocol/openid-connect/token").map(|l| l.endpoint),
            Some(Endpoint::Token)
        );
        assert_eq!(
            t("/auth/realms/demo/protocol/openid-connect/token").unwrap().realm,
            Some("demo")
        );
        assert_eq!(
            t("/realms/demo/protocol/openid-connect/certs").map(|l| l.endpoint),
            Some(Endpoint::Certs)
        );
        assert_eq!(
            t("/realms/demo/.well-known/openid-configuration").map(|l| l.endpoint),
            Some(Endpoint::Discovery)
        );
        assert_eq!(
            t("/realms/demo/protocol/openid-connect/token/introspect").map(|l| l.endpoint),
            Some(Endpoint::Introspect)
        );
        assert_eq!(
            t("/realms/demo/protocol/openid-connect/revoke").map(|l| l.endpoint),
            Some(Endpoint::Revoke)
        );
        assert_eq!(t("/realms/demo/other"), None);
        assert_eq!(t("/api/token"), None);
        assert_eq!(t("/auth/token"), None);
    }
}
