//! Which egress route a call takes: the routes naming its host (an absolute-form target's
//! authority, else the Host header) if there are any, else the routes naming no host; among
//! those, the longest prefix on segment boundaries.

use crate::model::egress::EgressRoute;
use crate::model::prefix_matches;
use pingora::http::RequestHeader;
use std::sync::Arc;

/// The host a request is for, as sent: an absolute-form target's authority (what an
/// HTTP_PROXY client sends; pingora has checked that Host agrees with it), else the Host header.
pub fn request_host(req: &RequestHeader) -> Option<&str> {
    absolute_form(req.raw_path())
        .map(|(_, authority)| authority)
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
        .or_else(|| req.headers.get(http::header::HOST).and_then(|h| h.to_str().ok()))
}

/// The scheme and authority of an absolute-form request target (`http://host[:port]/path`);
/// pingora keeps them out of the parsed URI and leaves them in the raw target.
pub fn absolute_form(raw: &[u8]) -> Option<(&str, &str)> {
    let sep = raw.windows(3).take(16).position(|w| w == b"://")?;
    let scheme = std::str::from_utf8(&raw[..sep]).ok()?;
    if !scheme.bytes().all(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    let rest = &raw[sep + 3..];
    let end = rest.iter().position(|&b| b == b'/' || b == b'?').unwrap_or(rest.len());
    Some((scheme, std::str::from_utf8(&rest[..end]).ok()?))
}

/// The route for `host` (as sent) and the normalised `path`. A host that some route names is
/// served by those routes alone, never by a catch-all one: a call meant for one service never
/// goes, with a token, to another.
pub fn find<'r>(routes: &'r [Arc<EgressRoute>], host: Option<&str>, path: &str) -> Option<&'r Arc<EgressRoute>> {
    let named = |r: &&Arc<EgressRoute>| match (&r.host, host) {
        (Some(want), Some(got)) => host_matches(want, got),
        _ => false,
    };
    let longest = |with_host: bool| {
        routes
            .iter()
            .filter(|r| if with_host { named(r) } else { r.host.is_none() })
            .filter(|r| prefix_matches(&r.prefix, path))
            .max_by_key(|r| r.prefix.len())
    };
    if routes.iter().any(|r| named(&r)) {
        longest(true)
    } else {
        longest(false)
    }
}

/// Whether `got` (a Host value as sent) names `want` (a route's normalised host): names
/// compared without case and a trailing dot; a port compared only if the route gives one.
pub fn host_matches(want: &str, got: &str) -> bool {
    let (got_name, got_port) = split(got);
    let (want_name, want_port) = split(want);
    let got_name = got_name.strip_suffix('.').unwrap_or(got_name);
    got_name.eq_ignore_ascii_case(want_name) && want_port.is_none_or(|p| got_port == Some(p))
}

/// `name[:port]`, an IPv6 literal in brackets.
fn split(h: &str) -> (&str, Option<&str>) {
    let colon = match h.rfind(':') {
        Some(i) if !h[i..].contains(']') && (!h.starts_with('[') || h[..i].ends_with(']')) => i,
        _ => return (h, None),
    };
    (&h[..colon], Some(&h[colon + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::egress::{EgressUpstream, SourceKey, SourceKind, TokenSource};

    fn route(host: Option<&str>, prefix: &str) -> Arc<EgressRoute> {
        Arc::new(EgressRoute {
            label: format!("{}{prefix}", host.unwrap_or("*")),
            host: host.map(str::to_string),
            prefix: prefix.to_string(),
            upstream: EgressUpstream {
                host: "127.0.0.1".into(),
                port: 9,
                tls: false,
                host_header: http::HeaderValue::from_static("127.0.0.1:9"),
                addr: Default::default(),
            },
            source: Arc::new(TokenSource {
                key: SourceKey([0; 32]),
                client_id: "c".into(),
                kind: SourceKind::Local {
                    realm: "r".into(),
                    client: "c".into(),
                    scope: String::new(),
                },
            }),
            connect_timeout: std::time::Duration::from_secs(1),
            read_timeout: std::time::Duration::from_secs(1),
        })
    }

    #[test]
    fn a_named_host_takes_its_own_routes_only_and_the_longest_prefix_wins() {
        let routes = vec![
            route(None, "/"),
            route(None, "/api"),
            route(Some("orders.internal"), "/"),
            route(Some("orders.internal"), "/v2"),
            route(Some("billing.internal:8080"), "/"),
        ];
        let found = |host, path| find(&routes, host, path).map(|r| r.label.as_str());
        assert_eq!(found(Some("orders.internal"), "/x"), Some("orders.internal/"));
        assert_eq!(found(Some("Orders.Internal.:80"), "/v2/x"), Some("orders.internal/v2"));
        assert_eq!(found(Some("orders.internal"), "/v2x"), Some("orders.internal/"));
        assert_eq!(
            found(Some("billing.internal:8080"), "/x"),
            Some("billing.internal:8080/")
        );
        // Another port is another host: the catch-all routes.
        assert_eq!(found(Some("billing.internal:9090"), "/api/x"), Some("*/api"));
        assert_eq!(found(Some("127.0.0.1:15001"), "/"), Some("*/"));
        assert_eq!(found(None, "/api"), Some("*/api"));

        let named_only = vec![route(Some("orders.internal"), "/api")];
        assert!(find(&named_only, Some("orders.internal"), "/other").is_none());
        assert!(find(&named_only, Some("billing.internal"), "/api").is_none());
    }

    #[test]
    fn absolute_form_targets_give_their_scheme_and_authority() {
        assert_eq!(
            absolute_form(b"http://orders.internal/x?q=1"),
            Some(("http", "orders.internal"))
        );
        assert_eq!(absolute_form(b"HTTPS://[::1]:8443?q"), Some(("HTTPS", "[::1]:8443")));
        assert_eq!(absolute_form(b"http://h"), Some(("http", "h")));
        assert_eq!(absolute_form(b"/x/http://h/"), None);
        assert_eq!(absolute_form(b"/x"), None);
    }

    #[test]
    fn hosts_split_from_their_ports_ipv6_included() {
        assert_eq!(split("a.b:80"), ("a.b", Some("80")));
        assert_eq!(split("a.b"), ("a.b", None));
        assert_eq!(split("[::1]:8080"), ("[::1]", Some("8080")));
        assert_eq!(split("[::1]"), ("[::1]", None));
        assert!(host_matches("[::1]", "[::1]:15001"));
        assert!(!host_matches("[::1]:80", "[::1]:81"));
    }
}
