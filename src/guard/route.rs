//! Routes: built from `[[routes]]` at load, matched by longest prefix on segment boundaries.

use crate::config::file::{FileConfig, RouteFile};
use crate::config::Checker;
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
    pub prefix: String,
    /// None: every method.
    pub methods: Option<Vec<http::Method>>,
    pub realm: String,
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
}

impl Route {
    pub(crate) fn build(
        c: &mut Checker,
        key: &str,
        rf: &RouteFile,
        f: &FileConfig,
        default_realm: Option<&str>,
    ) -> Option<Route> {
        let before = c.problems.len();
        let trimmed = if rf.prefix.len() > 1 {
            rf.prefix.trim_end_matches('/')
        } else {
            rf.prefix.as_str()
        };
        let prefix = match crate::guard::path::normalise(trimmed) {
            Ok(p) if trimmed.starts_with('/') && p == trimmed => p,
            _ => {
                c.problem(
                    format!("{key}.prefix"),
                    format!(
                        "{:?} must be a normalised absolute path like \"/api/orders\"",
                        rf.prefix
                    ),
                );
                String::new()
            }
        };
        let methods = rf.methods.as_ref().map(|list| {
            list.iter()
                .filter_map(|m| match http::Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                    Ok(m) => Some(m),
                    Err(_) => {
                        c.problem(format!("{key}.methods"), format!("{m:?} is not an HTTP method"));
                        None
                    }
                })
                .collect::<Vec<_>>()
        });
        let realm = match rf.realm.as_deref().or(default_realm) {
            None => {
                c.problem(format!("{key}.realm"), "required (there is no server.default_realm)");
                String::new()
            }
            Some(r) => r.to_string(),
        };
        let realm_file = f.realms.get(&realm);
        if realm_file.is_none() && !realm.is_empty() {
            c.problem(format!("{key}.realm"), format!("no realm named {realm:?}"));
        }
        if let Some(rfile) = realm_file {
            for (field, list) in [("roles", &rf.roles), ("any_roles", &rf.any_roles)] {
                for r in list {
                    let ok = match r.split_once(':') {
                        None => rfile.roles.contains(r),
                        Some((client, role)) => match rfile.client_roles.get(client) {
                            Some(declared) => declared.iter().any(|d| d == role),
                            None => {
                                c.warnings.push(format!("{key}.{field}: client role {r:?} names client {client:?}, which declares no roles in client_roles; accepted as is"));
                                true
                            }
                        },
                    };
                    if !ok {
                        c.problem(
                            format!("{key}.{field}"),
                            format!("{r:?} is not a role of realm {realm:?}"),
                        );
                    }
                }
            }
        }
        if rf.public && (!rf.roles.is_empty() || !rf.any_roles.is_empty() || rf.audience.is_some()) {
            c.problem(key, "a public route cannot also require roles or an audience");
        }
        let upstream = match parse_upstream(&rf.upstream).and_then(resolve) {
            Ok(u) => Some(u),
            Err(reason) => {
                c.problem(format!("{key}.upstream"), reason);
                None
            }
        };
        let connect_timeout = c.duration(
            &format!("{key}.connect_timeout"),
            rf.connect_timeout.as_deref(),
            Duration::from_secs(2),
        );
        let read_timeout = c.duration(
            &format!("{key}.read_timeout"),
            rf.read_timeout.as_deref(),
            Duration::from_secs(30),
        );
        if c.problems.len() > before {
            return None;
        }
        let upstream = upstream?;
        Some(Route {
            prefix,
            methods,
            realm,
            roles: rf.roles.clone(),
            any_roles: rf.any_roles.clone(),
            audience: rf.audience.clone(),
            public: rf.public,
            upstream,
            forward_token: rf.forward_token.unwrap_or(true),
            connect_timeout,
            read_timeout,
        })
    }

    pub fn allows_method(&self, m: &http::Method) -> bool {
        match &self.methods {
            None => true,
            Some(list) => list.iter().any(|x| x == m) || (m == http::Method::HEAD && list.contains(&http::Method::GET)),
        }
    }
}

/// The parts of an `upstream` value: (authority, tls, host for SNI).
fn parse_upstream(s: &str) -> Result<(String, bool, String), String> {
    let (tls, rest) = match s.split_once("://") {
        None => (false, s),
        Some(("https", rest)) => (true, rest),
        Some(("http", rest)) => (false, rest),
        Some((scheme, _)) => return Err(format!("scheme {scheme:?} is not http or https")),
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?} needs a port, like \"127.0.0.1:9000\""))?;
    let port: u16 = port.parse().map_err(|_| format!("{s:?}: {port:?} is not a port"))?;
    if host.is_empty() || rest.contains('/') {
        return Err(format!("{s:?} is not host:port"));
    }
    let sni = host.trim_start_matches('[').trim_end_matches(']').to_string();
    Ok((format!("{host}:{port}"), tls, sni))
}

fn resolve((authority, tls, sni): (String, bool, String)) -> Result<Upstream, String> {
    use std::net::ToSocketAddrs;
    let addrs: Vec<std::net::SocketAddr> = authority
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {authority:?}: {e}"))?
        .collect();
    // IPv4 first, as Envoy's V4_PREFERRED: `localhost` should mean 127.0.0.1 where both exist.
    let addr = addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("{authority:?} resolves to no address"))?;
    Ok(Upstream {
        addr,
        authority,
        tls,
        sni,
    })
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

    #[test]
    fn upstream_forms() {
        let u = parse_upstream("127.0.0.1:9000").and_then(resolve).unwrap();
        assert_eq!((u.addr.to_string().as_str(), u.tls), ("127.0.0.1:9000", false));
        let (authority, tls, sni) = parse_upstream("https://api.internal:8443").unwrap();
        assert_eq!(
            (authority.as_str(), tls, sni.as_str()),
            ("api.internal:8443", true, "api.internal")
        );
        assert!(parse_upstream("ftp://x:1").is_err());
        assert!(parse_upstream("nohost").is_err());
        assert!(parse_upstream("h:notaport").is_err());
    }
}
