//! One fetch of a remote realm's keys: discovery (unless `jwks_uri` is set), then the JWKS, over
//! an HTTP client with TLS verified, timeouts, a size limit and no redirect to another scheme.

use crate::model::RemoteSettings;
use crate::outbound::{self, describe, BodyError};
use crate::token::jwk::{self, Parsed};
use std::time::Duration;

/// Largest discovery document or JWKS read.
pub const MAX_BODY: usize = 1024 * 1024;

/// Why a fetch failed, in words that quote nothing the issuer sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchError(pub String);

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A successful fetch: the keys, and the issuer's `Cache-Control: max-age` if it set one.
pub struct Got {
    pub parsed: Parsed,
    pub max_age: Option<Duration>,
    /// The JWKS URL the keys came from (found by discovery, or configured).
    pub jwks_uri: String,
}

/// The HTTP client of one remote realm: its CA (or the system roots), and redirects followed
/// only within the same scheme, at most 3.
pub fn client(settings: &RemoteSettings) -> Result<reqwest::Client, FetchError> {
    let redirect = reqwest::redirect::Policy::custom(|attempt| {
        let same_scheme = attempt
            .previous()
            .last()
            .is_some_and(|prev| prev.scheme() == attempt.url().scheme());
        if attempt.previous().len() > 3 {
            attempt.error("more than 3 redirects")
        } else if !same_scheme {
            attempt.error("redirect to another scheme")
        } else {
            attempt.follow()
        }
    });
    outbound::client(settings.ca_pem.as_deref(), redirect).map_err(FetchError)
}

/// Fetches the keys. `jwks_uri` is the one found by an earlier discovery, if any.
pub async fn keys(
    http: &reqwest::Client,
    settings: &RemoteSettings,
    jwks_uri: Option<&str>,
) -> Result<Got, FetchError> {
    let uri = match settings.jwks_uri.as_deref().or(jwks_uri) {
        Some(u) => u.to_string(),
        None => discover(http, &settings.issuer).await?,
    };
    let (body, max_age) = get(http, &uri).await?;
    let parsed = jwk::parse_jwks(&body, &settings.algorithms).map_err(|e| FetchError(format!("{uri}: {e}")))?;
    Ok(Got {
        parsed,
        max_age,
        jwks_uri: uri,
    })
}

/// The `jwks_uri` of `{issuer}/.well-known/openid-configuration` (OpenID Connect Discovery
/// 1.0 §4), whose `issuer` must be the configured one exactly (§4.3).
async fn discover(http: &reqwest::Client, issuer: &str) -> Result<String, FetchError> {
    let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
    let (body, _) = get(http, &url).await?;
    let doc: serde_json::Value =
        serde_json::from_slice(&body).map_err(|_| FetchError(format!("{url}: not a JSON document")))?;
    if doc.get("issuer").and_then(|v| v.as_str()) != Some(issuer) {
        return Err(FetchError(format!("{url}: its issuer is not {issuer:?}")));
    }
    let uri = doc
        .get("jwks_uri")
        .and_then(|v| v.as_str())
        .ok_or_else(|| FetchError(format!("{url}: no jwks_uri")))?;
    if !(uri.starts_with("https://") || uri.starts_with("http://")) {
        return Err(FetchError(format!("{url}: jwks_uri is not an http(s) URL")));
    }
    Ok(uri.to_string())
}

/// GET `url`: a 200 with a body of at most [`MAX_BODY`], and its `max-age`.
async fn get(http: &reqwest::Client, url: &str) -> Result<(Vec<u8>, Option<Duration>), FetchError> {
    let fail = |what: String| FetchError(format!("{url}: {what}"));
    let mut resp = http
        .get(url)
        .header(http::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| fail(describe(&e)))?;
    if resp.status() != reqwest::StatusCode::OK {
        return Err(fail(format!("answered {}", resp.status().as_u16())));
    }
    let max_age = resp
        .headers()
        .get(http::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(max_age);
    let body = outbound::body(&mut resp, MAX_BODY).await.map_err(|e| match e {
        BodyError::TooLarge => fail(format!("larger than {MAX_BODY} bytes")),
        BodyError::Failed(why) => fail(why),
    })?;
    Ok((body, max_age))
}

/// `max-age` of a `Cache-Control` value (`no-store`/`no-cache` read as zero).
pub fn max_age(value: &str) -> Option<Duration> {
    let mut age = None;
    for part in value.split(',').map(str::trim) {
        let lower = part.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(Duration::ZERO);
        }
        if let Some(v) = lower.strip_prefix("max-age=") {
            age = v.trim_matches('"').parse::<u64>().ok().map(Duration::from_secs);
        }
    }
    age
}

#[cfg(test)]
mod tests {
    use super::max_age;
    use std::time::Duration;

    #[test]
    fn cache_control_max_age() {
        assert_eq!(max_age("public, max-age=3600"), Some(Duration::from_secs(3600)));
        assert_eq!(
            max_age("max-age=\"60\", must-revalidate"),
            Some(Duration::from_secs(60))
        );
        assert_eq!(max_age("no-cache"), Some(Duration::ZERO));
        assert_eq!(max_age("private"), None);
        assert_eq!(max_age("max-age=x"), None);
    }
}
