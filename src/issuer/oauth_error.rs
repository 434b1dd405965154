//! OAuth 2.0 error responses (RFC 6749 §5.2, RFC 7009, RFC 7662): one enum, one renderer.

use crate::http_util::{quote, Reply};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OAuthError {
    InvalidRequest(String),
    /// `basic_realm`: Basic was used, so the 401 carries `WWW-Authenticate: Basic realm="R"`.
    InvalidClient {
        description: &'static str,
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
}

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
        }
    }

    pub fn reply(&self) -> Reply {
        let (status, description): (u16, String) = match self {
            OAuthError::InvalidRequest(d) => (400, d.clone()),
            OAuthError::InvalidClient { description, .. } => (401, (*description).into()),
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
            OAuthError::TooManyAttempts { retry_after } => reply = reply.header("retry-after", retry_after.to_string()),
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
