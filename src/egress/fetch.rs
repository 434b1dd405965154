//! The OAuth 2.0 token-endpoint client: a client-credentials request (RFC 6749 §4.4) with
//! client_secret_basic, client_secret_post or private_key_jwt (RFC 7523), over an HTTP client
//! with TLS verified, timeouts, a size limit and no redirects.

use super::source::{clip, parse_response, Obtained, SourceError};
use crate::model::egress::{ClientAuth, RemoteSource};
use crate::outbound::{self, describe, BodyError};
use crate::token::SigningKey;

/// Largest token response read.
const MAX_BODY: usize = 64 * 1024;
/// Lifetime of a client assertion: long enough for clock skew, short for a replay.
const ASSERTION_LIFETIME: u64 = 60;

/// The HTTP client of one token source. Redirects are refused: a redirected POST would carry
/// the client's credentials to wherever the redirect points.
pub fn client(source: &RemoteSource) -> Result<reqwest::Client, String> {
    outbound::client(source.ca_pem.as_deref(), reqwest::redirect::Policy::none())
}

/// One client-credentials request to `source`'s token endpoint.
pub async fn token(http: &reqwest::Client, source: &RemoteSource) -> Result<Obtained, SourceError> {
    let url = source.token_endpoint.as_str();
    let mut form: Vec<(&str, String)> = vec![("grant_type", "client_credentials".into())];
    for (name, value) in [
        ("scope", &source.scope),
        ("audience", &source.audience),
        ("resource", &source.resource),
    ] {
        if let Some(v) = value {
            form.push((name, v.clone()));
        }
    }
    let mut req = http.post(url).header(http::header::ACCEPT, "application/json");
    match &source.auth {
        ClientAuth::SecretBasic(secret) => {
            req = req.header(http::header::AUTHORIZATION, basic(&source.client_id, secret.expose()));
        }
        ClientAuth::SecretPost(secret) => {
            form.push(("client_id", source.client_id.clone()));
            form.push(("client_secret", secret.expose().to_string()));
        }
        ClientAuth::PrivateKeyJwt(key) => {
            let assertion = assertion(key, &source.client_id, url)
                .map_err(|e| SourceError::Refused(format!("client assertion not signed: {e}")))?;
            form.push(("client_id", source.client_id.clone()));
            form.push((
                "client_assertion_type",
                crate::issuer::client_auth::JWT_BEARER.to_string(),
            ));
            form.push(("client_assertion", assertion));
        }
    }
    let fail = |what: String| SourceError::Unavailable(format!("{url}: {what}"));
    let mut resp = req.form(&form).send().await.map_err(|e| fail(describe(&e)))?;
    let status = resp.status();
    let body = outbound::body(&mut resp, MAX_BODY).await.map_err(|e| match e {
        BodyError::TooLarge => fail(format!(
            "answered {} with a body over {MAX_BODY} bytes",
            status.as_u16()
        )),
        BodyError::Failed(why) => fail(why),
    })?;
    if status != reqwest::StatusCode::OK {
        let what = format!("answered {}{}", status.as_u16(), error_code(&body));
        return Err(match status.as_u16() {
            400..=499 if status != reqwest::StatusCode::TOO_MANY_REQUESTS => {
                SourceError::Refused(format!("{url}: {what}"))
            }
            _ => fail(what),
        });
    }
    parse_response(&body).map_err(|e| SourceError::Refused(format!("{url}: {e}")))
}

/// ` (error "code")` from an RFC 6749 §5.2 error body, if it has one; never its description,
/// which some servers fill with what the client sent.
fn error_code(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error")?.as_str().map(clip))
        .filter(|c| c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .map(|c| format!(" ({c})"))
        .unwrap_or_default()
}

/// `Basic base64(id:secret)`, both form-urlencoded first (RFC 6749 §2.3.1), marked sensitive.
fn basic(id: &str, secret: &str) -> http::HeaderValue {
    use base64::Engine;
    let pair = format!("{}:{}", form_encode(id), form_encode(secret));
    let text = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair));
    let mut v = http::HeaderValue::from_str(&text).unwrap_or(http::HeaderValue::from_static(""));
    v.set_sensitive(true);
    v
}

/// application/x-www-form-urlencoded encoding of one value.
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A private_key_jwt client assertion for `audience` (the token endpoint URL, RFC 7523 §3).
fn assertion(key: &SigningKey, client_id: &str, audience: &str) -> Result<String, String> {
    let now = crate::http_util::now();
    let claims = serde_json::json!({
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "jti": crate::issuer::claims::random_id(),
        "iat": now,
        "exp": now + ASSERTION_LIFETIME,
    });
    key.sign(claims.to_string().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_encoded_before_base64() {
        use base64::Engine;
        let v = basic("svc a", "p@ss:w/rd");
        assert!(v.is_sensitive());
        let b64 = v.to_str().unwrap().strip_prefix("Basic ").unwrap();
        let pair = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
        assert_eq!(pair, b"svc+a:p%40ss%3Aw%2Frd");
    }

    #[test]
    fn an_error_body_yields_its_code_only() {
        let body = br#"{"error":"invalid_client","error_description":"secret s3cr3t is wrong"}"#;
        assert_eq!(error_code(body), " (invalid_client)");
        assert_eq!(error_code(br#"{"error":"<script>"}"#), "");
        assert_eq!(error_code(b"oops"), "");
    }

    #[test]
    fn an_assertion_names_the_client_and_the_endpoint() {
        let pem = crate::token::keys::generate_pem(jsonwebtoken::Algorithm::ES256).unwrap();
        let key = SigningKey::from_pem("k1", jsonwebtoken::Algorithm::ES256, pem.as_bytes()).unwrap();
        let jwt = assertion(&key, "svc-a", "https://idp/token").unwrap();
        let claims: serde_json::Value = jsonwebtoken::dangerous::insecure_decode_claims(&jwt).unwrap();
        assert_eq!(claims["iss"], "svc-a");
        assert_eq!(claims["sub"], "svc-a");
        assert_eq!(claims["aud"], "https://idp/token");
        assert!(claims["exp"].as_u64().unwrap() <= crate::http_util::now() + ASSERTION_LIFETIME);
        assert_eq!(jsonwebtoken::decode_header(&jwt).unwrap().kid.as_deref(), Some("k1"));
    }
}
