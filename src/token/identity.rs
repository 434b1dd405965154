//! Who a verified token speaks for, as the upstream is told.

use http::{HeaderName, HeaderValue};

/// The headers that tell the upstream who a request speaks for, in the order of
/// [`Identity::headers`].
pub const IDENTITY_HEADERS: [HeaderName; 5] = [
    HeaderName::from_static("x-auth-subject"),
    HeaderName::from_static("x-auth-client-id"),
    HeaderName::from_static("x-auth-realm"),
    HeaderName::from_static("x-auth-roles"),
    HeaderName::from_static("x-auth-scope"),
];

/// Who a verified token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub realm: String,
    pub subject: String,
    pub client_id: String,
    /// Realm roles as `role`, client roles as `client:role`, sorted.
    pub roles: Vec<String>,
    pub scope: String,
    pub audience: Vec<String>,
    pub jti: String,
    /// The grant chain (access and refresh tokens of one client_credentials grant).
    pub sid: String,
    pub exp: u64,
    pub iat: u64,
    pub nbf: Option<u64>,
    pub typ: String,
    /// The values of [`IDENTITY_HEADERS`], made once per token (the verified-token cache keeps
    /// them, so a request copies no claim); `None` if a claim cannot be a header value.
    pub headers: Option<[HeaderValue; 5]>,
    /// Every claim of the token, for route policies (claims, claim headers).
    pub claims: serde_json::Value,
}

impl Identity {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Fills in [`Identity::headers`] from the claims (the roles joined with ',').
    pub fn with_headers(mut self) -> Identity {
        let value = |s: &str| HeaderValue::from_str(s).ok();
        self.headers = (|| {
            Some([
                value(&self.subject)?,
                value(&self.client_id)?,
                value(&self.realm)?,
                value(&self.roles.join(","))?,
                value(&self.scope)?,
            ])
        })();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_headers_are_made_once_from_the_claims_or_not_at_all() {
        let id = |subject: &str| {
            Identity {
                realm: "demo".into(),
                subject: subject.into(),
                client_id: "orders".into(),
                roles: vec!["orders:write".into(), "reader".into()],
                scope: "profile email".into(),
                audience: vec![],
                jti: "j".into(),
                sid: "s".into(),
                exp: 1,
                iat: 0,
                nbf: None,
                typ: "Bearer".into(),
                headers: None,
                claims: serde_json::Value::Null,
            }
            .with_headers()
        };
        let values = id("service-account-orders")
            .headers
            .expect("plain claims are header values");
        let values: Vec<&str> = values.iter().map(|v| v.to_str().unwrap()).collect();
        assert_eq!(
            values,
            [
                "service-account-orders",
                "orders",
                "demo",
                "orders:write,reader",
                "profile email"
            ]
        );
        assert_eq!(id("a\nX-Injected: 1").headers, None);
        assert_eq!(
            id("tab\tis fine").headers.map(|h| h[0].clone()),
            Some(HeaderValue::from_static("tab\tis fine"))
        );
    }
}
