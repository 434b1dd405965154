//! Routes as validated from `[[routes]]`, matched by longest prefix on segment boundaries.

use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Upstream {
    /// Resolved once, when the config loads (a reload resolves again).
    pub addr: std::net::SocketAddr,
    /// host:port as written.
    pub authority: String,
    pub tls: bool,
    /// Host name for SNI and certificate checks (TLS upstreams).
    pub sni: String,
}

#[derive(Debug)]
pub struct Route {
    /// Normalised: starts with '/', no trailing '/' (except the root route "/").
    pub prefix: Arc<str>,
    /// None: every method.
    pub methods: Option<Vec<http::Method>>,
    /// The realm named in `WWW-Authenticate`: the first of `realms`.
    pub realm: String,
    /// Realms whose tokens the route takes; with several, the token's `iss` picks one.
    pub realms: Vec<String>,
    /// All of these ("role" or "client:role").
    pub roles: Vec<String>,
    /// At least one of these (when not empty).
    pub any_roles: Vec<String>,
    pub audience: Option<String>,
    pub public: bool,
    pub upstream: Upstream,
    pub forward_token: bool,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// Scopes, claims, claim headers, rate limit and CORS; `None` when the route has none.
    pub policy: Option<Box<Policy>>,
}

/// What a route asks of a token beyond roles, and how it treats browser callers.
#[derive(Debug, Default)]
pub struct Policy {
    /// All of these in the token's `scope`.
    pub scopes: Vec<String>,
    /// Each claim must equal one of its values.
    pub claims: Vec<(ClaimPath, Vec<String>)>,
    /// Extra identity headers: (header name, claim).
    pub claim_headers: Vec<(http::HeaderName, ClaimPath)>,
    pub rate_limit: Option<Rate>,
    pub cors: Option<Cors>,
}

/// A claim as the config names it: `name` whole (a top-level claim may hold dots, as URL-shaped
/// names do), and its `.`-separated parts, the path through nested objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath {
    pub name: String,
    pub parts: Vec<String>,
}

impl ClaimPath {
    pub fn new(name: &str) -> ClaimPath {
        ClaimPath {
            name: name.to_string(),
            parts: name.split('.').map(str::to_string).collect(),
        }
    }
}

/// A rate as a token bucket: `per` requests per `period`, bursting up to `per`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per: u32,
    pub period: Duration,
}

#[derive(Debug)]
pub struct Cors {
    /// Allowed origins, lower-cased; empty with `any`.
    pub origins: Vec<String>,
    pub any: bool,
    pub methods: String,
    pub headers: String,
    pub max_age: Duration,
    pub credentials: bool,
}

impl Cors {
    /// The `Access-Control-Allow-Origin` value for `origin`, if it is allowed.
    pub fn allow(&self, origin: &str) -> Option<String> {
        if self.any && !self.credentials {
            return Some("*".into());
        }
        let lower = origin.to_ascii_lowercase();
        (self.any || self.origins.contains(&lower)).then(|| origin.to_string())
    }
}

impl Route {
    pub fn allows_method(&self, m: &http::Method) -> bool {
        match &self.methods {
            None => true,
            Some(list) => list.iter().any(|x| x == m) || (m == http::Method::HEAD && list.contains(&http::Method::GET)),
        }
    }
}

/// Routes sorted longest prefix first.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Arc<Route>>,
}

impl RouteTable {
    pub fn new(mut routes: Vec<Route>) -> Self {
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        RouteTable {
            routes: routes.into_iter().map(Arc::new).collect(),
        }
    }

    /// The route with the longest prefix that `path` (already normalised) falls under.
    pub fn find(&self, path: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| prefix_matches(&r.prefix, path))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.routes.iter()
    }
}

/// `/api/orders` matches `/api/orders` and `/api/orders/...`, never `/api/ordersX`.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_matches_on_segment_boundaries() {
        assert!(prefix_matches("/api/orders", "/api/orders"));
        assert!(prefix_matches("/api/orders", "/api/orders/"));
        assert!(prefix_matches("/api/orders", "/api/orders/7"));
        assert!(!prefix_matches("/api/orders", "/api/ordersx"));
        assert!(!prefix_matches("/api/orders", "/api"));
        assert!(prefix_matches("/", "/anything"));
    }
}
