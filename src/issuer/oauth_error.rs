//! OAuth 2.0 error responses (RFC 6749 §5.2, RFC 7009, RFC 7662): one enum, one renderer.

use crate::http_util::{quote, Reply};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OAuthError {
    InvalidRequest(String),
    /// Every client-authentication failure, with one description whatever went wrong, so
    /// the answer never tells a client id that exists from one that does not. `basic_realm`:
    /// Basic was used, so the 401 carries `WWW-Authenticate: Basic realm="R"`.
    InvalidClient {
        basic_realm: Option<String>,
    },
    InvalidGrant(&'static str),
    UnauthorizedClient(&'static str),
    UnsupportedGrantType(String),
    InvalidScope(String),
    UnsupportedMediaType,
    MethodNotAllowed(&'static str),
    RealmNotFound,
    PayloadTooLarge(usize),
    TooManyAttempts {
        retry_after: u64,
    },
    RequestTimeout,
    ServerError(&'static str),
    /// Something tollgate needs to decide is busy or unreachable (RFC 6749 §5.2's
    /// `temporarily_unavailable`): 503 with `Retry-After`.
    TemporarilyUnavailable {
        description: &'static str,
        retry_after: u64,
    },
}

/// The description of every `invalid_client` (Keycloak's wording).
pub const INVALID_CLIENT: &str = "Invalid client or Invalid client credentials";

impl OAuthError {
    /// The `error` code, also the metrics label.
    pub fn code(&self) -> &'static str {
        match self {
            OAuthError::InvalidRequest(_) | OAuthError::UnsupportedMediaType | OAuthError::PayloadTooLarge(_) => {
                "invalid_request"
            }
            OAuthError::InvalidClient { .. } => "invalid_client",
            OAuthError::InvalidGrant(_) => "invalid_grant",
            OAuthError::UnauthorizedClient(_) => "unauthorized_client",
            OAuthError::UnsupportedGrantType(_) => "unsupported_grant_type",
            OAuthError::InvalidScope(_) => "invalid_scope",
            OAuthError::MethodNotAllowed(_) => "method_not_allowed",
            OAuthError::RealmNotFound => "not_found",
            OAuthError::TooManyAttempts { .. } => "slow_down",
            OAuthError::RequestTimeout => "request_timeout",
            OAuthError::ServerError(_) => "server_error",
            OAuthError::TemporarilyUnavailable { .. } => "temporarily_unavailable",
        }
    }

    pub fn reply(&self) -> Reply {
        let (status, description): (u16, String) = match self {
            OAuthError::InvalidRequest(d) => (400, d.clone()),
            OAuthError::InvalidClient { .. } => (401, INVALID_CLIENT.into()),
            OAuthError::InvalidGrant(d) => (400, (*d).into()),
            OAuthError::UnauthorizedClient(d) => (400, (*d).into()),
            OAuthError::UnsupportedGrantType(g) => (400, format!("grant type {:?} is not supported", clip(g))),
            OAuthError::InvalidScope(s) => (400, format!("scope {:?} is not allowed for this client", clip(s))),
            OAuthError::UnsupportedMediaType => (400, "Content-Type must be application/x-www-form-urlencoded".into()),
            OAuthError::MethodNotAllowed(_) => (405, "method not allowed".into()),
            OAuthError::RealmNotFound => (404, "Realm does not exist".into()),
            OAuthError::PayloadTooLarge(max) => (413, format!("request body larger than {max} bytes")),
            OAuthError::TooManyAttempts { .. } => (429, "too many failed authentication attempts; retry later".into()),
            OAuthError::RequestTimeout => (408, "request body not received in time".into()),
            OAuthError::ServerError(d) => (500, (*d).into()),
            OAuthError::TemporarilyUnavailable { description, .. } => (503, (*description).into()),
        };
        let mut reply = Reply::error(status, self.code(), &description).no_store();
        match self {
            OAuthError::InvalidClient {
                basic_realm: Some(realm),
                ..
            } => {
                reply = reply.header("www-authenticate", format!("Basic realm={}", quote(realm)));
            }
            OAuthError::MethodNotAllowed(allow) => reply = reply.header("allow", *allow),
            OAuthError::TooManyAttempts { retry_after } | OAuthError::TemporarilyUnavailable { retry_after, .. } => {
                reply = reply.header("retry-after", retry_after.to_string())
            }
            _ => {}
        }
        reply
    }
}

/// Echo at most 64 characters of what a client sent.
fn clip(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn header<'r>(r: &'r Reply, name: &str) -> Option<&'r str> {
        r.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    fn body(r: &Reply) -> Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn every_error_is_json_with_no_store() {
        let all = [
            OAuthError::InvalidRequest("x".into()),
            OAuthError::InvalidClient { basic_realm: None },
            OAuthError::InvalidGrant("x"),
            OAuthError::UnauthorizedClient("x"),
            OAuthError::UnsupportedGrantType("password".into()),
            OAuthError::InvalidScope("admin".into()),
            OAuthError::UnsupportedMediaType,
            OAuthError::MethodNotAllowed("POST"),
            OAuthError::RealmNotFound,
            OAuthError::PayloadTooLarge(10),
            OAuthError::TooManyAttempts { retry_after: 7 },
            OAuthError::RequestTimeout,
            OAuthError::ServerError("x"),
            OAuthError::TemporarilyUnavailable {
                description: "busy",
                retry_after: 1,
            },
        ];
        let statuses: Vec<u16> = all.iter().map(|e| e.reply().status).collect();
        assert_eq!(
            statuses,
            [400, 401, 400, 400, 400, 400, 400, 405, 404, 413, 429, 408, 500, 503]
        );
        for e in &all {
            let r = e.reply();
            assert_eq!(header(&r, "cache-control"), Some("no-store"), "{e:?}");
            assert_eq!(header(&r, "content-type"), Some("application/json"), "{e:?}");
            let v = body(&r);
            assert_eq!(v["error"], e.code(), "{e:?}");
            assert!(v["error_description"].is_string(), "{e:?}");
        }
    }

    #[test]
    fn invalid_client_is_one_answer_with_a_basic_challenge_when_basic_was_used() {
        let plain = OAuthError::InvalidClient { basic_realm: None }.reply();
        assert_eq!(body(&plain)["error_description"], INVALID_CLIENT);
        assert_eq!(header(&plain, "www-authenticate"), None);
        let basic = OAuthError::InvalidClient {
            basic_realm: Some("de\"mo".into()),
        }
        .reply();
        assert_eq!(plain.body, basic.body, "the same body either way");
        assert_eq!(header(&basic, "www-authenticate"), Some(r#"Basic realm="de\"mo""#));
    }

    #[test]
    fn retry_after_allow_and_clipped_echoes() {
        let r = OAuthError::TooManyAttempts { retry_after: 42 }.reply();
        assert_eq!((r.status, header(&r, "retry-after")), (429, Some("42")));
        assert_eq!(body(&r)["error"], "slow_down");
        let r = OAuthError::TemporarilyUnavailable {
            description: "busy",
            retry_after: 3,
        }
        .reply();
        assert_eq!((r.status, header(&r, "retry-after")), (503, Some("3")));
        assert_eq!(body(&r)["error"], "temporarily_unavailable");
        let r = OAuthError::MethodNotAllowed("POST").reply();
        assert_eq!(header(&r, "allow"), Some("POST"));
        let long = "s".repeat(500);
        let r = OAuthError::InvalidScope(long).reply();
        let d = body(&r)["error_description"].as_str().unwrap().to_string();
        assert!(d.len() < 140, "{d}");
    }
}
