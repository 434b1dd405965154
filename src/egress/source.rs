//! One token from a token source: minted in process for a realm served here (the token
//! endpoint's own code, no network hop), or fetched from a remote token endpoint.

use super::fetch;
use crate::model::egress::{SourceKind, TokenSource};
use crate::secret::Secret;
use crate::state::State;
use serde::Deserialize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A token as obtained, and how long it lives from the moment it was asked for.
#[derive(Debug)]
pub struct Obtained {
    pub access_token: Secret,
    pub lifetime: Duration,
}

/// Why no token was obtained, in words that quote no secret and nothing the endpoint sent
/// beyond its status and OAuth error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceError {
    /// The endpoint could not be reached or failed (network, timeout, 5xx, 429): worth retrying.
    Unavailable(String),
    /// The endpoint refused the request (4xx: credentials, scope, client): retried too, since
    /// the config or the endpoint may change, but a sign of misconfiguration.
    Refused(String),
}

impl SourceError {
    /// The `result` label of `tollgate_egress_token_fetches_total`.
    pub fn label(&self) -> &'static str {
        match self {
            SourceError::Unavailable(_) => "error",
            SourceError::Refused(_) => "refused",
        }
    }

    pub fn describe(&self) -> &str {
        match self {
            SourceError::Unavailable(s) | SourceError::Refused(s) => s,
        }
    }
}

/// Shortest token lifetime accepted: a shorter one would be refreshed on every request.
pub const MIN_LIFETIME: Duration = Duration::from_secs(1);

/// Gets a token from `source`. `http` is the source's HTTP client (remote sources only).
pub async fn obtain(
    state: &State,
    source: &TokenSource,
    http: Option<&reqwest::Client>,
) -> Result<Obtained, SourceError> {
    match &source.kind {
        SourceKind::Local { realm, client, scope } => mint(state, realm, client, scope),
        SourceKind::Remote(remote) => {
            let http = http.ok_or_else(|| SourceError::Unavailable("no HTTP client".into()))?;
            fetch::token(http, remote).await
        }
    }
}

/// A token of a realm served here, signed by the issuer's own code.
fn mint(state: &State, realm: &str, client: &str, scope: &str) -> Result<Obtained, SourceError> {
    let snap = state.config.load();
    let gone = || SourceError::Refused(format!("realm {realm:?} or its client {client:?} is no longer served"));
    let realm = snap.realm(realm).filter(|r| !r.is_remote()).ok_or_else(gone)?;
    let client = realm.clients.get(client).ok_or_else(gone)?;
    let body = crate::issuer::grant::issue(realm, client, scope, "127.0.0.1", crate::http_util::now(), None)
        .map_err(|e| SourceError::Refused(format!("minting failed: {}", e.code())))?;
    let parsed = parse_response(body.as_bytes()).map_err(SourceError::Refused)?;
    super::metrics::minted(&state.metrics, &realm.name, &client.id);
    Ok(parsed)
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    token_type: Option<String>,
    expires_in: Option<serde_json::Value>,
}

/// The token and its lifetime from an RFC 6749 §5.1 response body. The lifetime is the sooner
/// of `expires_in` and, for a JWT, its `exp`: `expires_in` counts whole seconds from when the
/// issuer answered, and `exp` may come sooner by the fraction of a second the issuer rounded off.
pub fn parse_response(body: &[u8]) -> Result<Obtained, String> {
    let r: TokenResponse = serde_json::from_slice(body).map_err(|_| "the token response is not JSON".to_string())?;
    let token = r
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or("the token response has no access_token")?;
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the access_token holds characters a header cannot carry".into());
    }
    if let Some(kind) = r.token_type.as_deref() {
        if !kind.eq_ignore_ascii_case("bearer") {
            return Err(format!("token_type {:?} is not Bearer", clip(kind)));
        }
    }
    let expires_in = match &r.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_f64(),
        // Some servers send it as a string.
        Some(serde_json::Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|s| s.is_finite() && *s >= 0.0);
    let exp = jwt_exp(&token).map(|exp| exp - unix_now());
    let lifetime = match (expires_in, exp) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) => a,
        (None, Some(b)) => b,
        (None, None) => return Err("the token response has no expires_in and the token no exp".into()),
    };
    let lifetime = Duration::try_from_secs_f64(lifetime).unwrap_or_default();
    if lifetime < MIN_LIFETIME {
        return Err(format!(
            "the token lives {:.1}s, too short to use",
            lifetime.as_secs_f64()
        ));
    }
    Ok(Obtained {
        access_token: Secret::new(token),
        lifetime,
    })
}

/// The `exp` claim of a compact JWS, read without checking it: only to know when to refresh.
fn jwt_exp(token: &str) -> Option<f64> {
    use base64::Engine;
    let mut parts = token.split('.');
    let (_, claims, _) = (parts.next()?, parts.next()?, parts.next()?);
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get("exp")?.as_f64()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// At most 40 characters of what an endpoint sent, without control characters.
pub fn clip(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(exp: f64) -> String {
        use base64::Engine;
        let b = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!("{}.{}.sig", b(r#"{"alg":"none"}"#), b(&format!(r#"{{"exp":{exp}}}"#)))
    }

    #[test]
    fn the_lifetime_is_the_sooner_of_expires_in_and_exp() {
        let token = jwt((unix_now() + 100.0).floor());
        let body = format!(r#"{{"access_token":"{token}","expires_in":300,"token_type":"Bearer"}}"#);
        let o = parse_response(body.as_bytes()).unwrap();
        assert!((98..=100).contains(&o.lifetime.as_secs()), "{:?}", o.lifetime);
        assert_eq!(o.access_token.expose(), token);
        let opaque = parse_response(br#"{"access_token":"abc","expires_in":"60","token_type":"bearer"}"#).unwrap();
        assert_eq!(opaque.lifetime, Duration::from_secs(60));
        assert_eq!(format!("{:?}", opaque.access_token), "***");
    }

    #[test]
    fn unusable_responses_are_refused_without_quoting_the_token() {
        for (body, why) in [
            (&br#"{"expires_in":60}"#[..], "no access_token"),
            (br#"{"access_token":"abc"}"#, "no expires_in"),
            (br#"{"access_token":"abc","expires_in":0}"#, "too short"),
            (br#"{"access_token":"a b","expires_in":60}"#, "header"),
            (
                br#"{"access_token":"abc","expires_in":60,"token_type":"DPoP"}"#,
                "not Bearer",
            ),
            (b"<html>", "not JSON"),
        ] {
            let e = parse_response(body).unwrap_err();
            assert!(e.contains(why), "{e}");
            assert!(!e.contains("abc"), "{e}");
        }
        let expired = jwt(unix_now() - 10.0);
        let body = format!(r#"{{"access_token":"{expired}","expires_in":300}}"#);
        assert!(parse_response(body.as_bytes()).unwrap_err().contains("too short"));
    }
}
