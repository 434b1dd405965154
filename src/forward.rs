//! What the upstream is told besides the identity: which client headers are dropped because a
//! framework behind tollgate would read them as something tollgate never checked, and the
//! `X-Forwarded-*` fields nginx and Envoy operators expect.

use crate::client_addr::{self, TrustedProxies};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use std::net::IpAddr;

/// Headers frameworks route or dispatch on (Symfony, IIS and Laminas take the path from the
/// first two; Spring, Rails, Express and others the method from the rest): always dropped, so a
/// route's path and method rules are the ones the upstream obeys.
const ROUTING_HEADERS: [&str; 5] = [
    "x-original-url",
    "x-rewrite-url",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Headers that speak for the hops before tollgate: believed only from a trusted proxy.
const HOP_HEADERS: [&str; 2] = ["forwarded", "x-real-ip"];

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Headers tollgate may add to a forwarded request.
pub const ADDED: usize = 4;

/// The connection a request came over, as far as forwarding cares.
#[derive(Debug, Clone, Copy)]
pub struct Hop<'a> {
    /// The peer address, if the connection is over IP.
    pub peer: Option<IpAddr>,
    pub tls: bool,
    pub trusted: &'a TrustedProxies,
    /// `server.underscores_in_headers`.
    pub keep_underscores: bool,
}

impl Hop<'_> {
    fn peer_trusted(&self) -> bool {
        self.peer.is_some_and(|p| self.trusted.contains(p))
    }
}

/// Whether a client header named `name` (lower case, as `http` keeps names) is dropped before
/// the request goes upstream. `peer_trusted`: it came from a proxy in `server.trusted_proxies`.
pub fn drops(name: &str, peer_trusted: bool, keep_underscores: bool) -> bool {
    if name.contains('_') {
        // CGI, WSGI and Rack read `_` and `-` alike: kept names must not stand in for one
        // tollgate strips or sets.
        if !keep_underscores {
            return true;
        }
        return drops(&name.replace('_', "-"), false, false);
    }
    name.starts_with("x-auth-")
        || ROUTING_HEADERS.contains(&name)
        || (!peer_trusted && (name.starts_with("x-forwarded-") || HOP_HEADERS.contains(&name)))
}

/// Removes the client headers [`drops`] names, then sets `X-Forwarded-For` (the peer appended
/// to what a trusted proxy sent, else the peer alone), `X-Real-IP` (the client address),
/// `X-Forwarded-Proto` and `X-Forwarded-Host` (kept when a trusted proxy set them).
pub fn apply(headers: &mut HeaderMap, hop: &Hop, authority: Option<&str>) -> Result<(), http::header::MaxSizeReached> {
    let trusted = hop.peer_trusted();
    let dropped: Vec<HeaderName> = headers
        .keys()
        .filter(|k| drops(k.as_str(), trusted, hop.keep_underscores))
        .cloned()
        .collect();
    for name in &dropped {
        headers.remove(name);
    }
    headers.try_reserve(ADDED + crate::token::IDENTITY_HEADERS.len())?;
    if let Some(peer) = hop.peer {
        let peer = peer.to_canonical();
        let client = if trusted {
            client_addr::resolve(
                peer,
                hop.trusted,
                headers.get_all(&X_FORWARDED_FOR).iter().map(|v| v.as_bytes()),
            )
        } else {
            peer
        };
        let peer_text = IpText::new(peer);
        let xff = if trusted {
            let mut chain = String::new();
            for v in headers.get_all(&X_FORWARDED_FOR) {
                if let Ok(v) = v.to_str() {
                    chain.push_str(v.trim());
                    chain.push_str(", ");
                }
            }
            chain.push_str(peer_text.as_str());
            HeaderValue::from_str(&chain)
        } else {
            HeaderValue::from_str(peer_text.as_str())
        };
        if let Ok(v) = xff {
            headers.try_insert(X_FORWARDED_FOR, v)?;
        }
        let client_text = if client == peer { peer_text } else { IpText::new(client) };
        if let Ok(v) = HeaderValue::from_str(client_text.as_str()) {
            headers.try_insert(X_REAL_IP, v)?;
        }
    }
    // From an untrusted peer they were dropped above.
    if !trusted || !headers.contains_key(&X_FORWARDED_PROTO) {
        let proto = HeaderValue::from_static(if hop.tls { "https" } else { "http" });
        headers.try_insert(X_FORWARDED_PROTO, proto)?;
    }
    if !trusted || !headers.contains_key(&X_FORWARDED_HOST) {
        let host = headers
            .get(http::header::HOST)
            .cloned()
            .or_else(|| authority.and_then(|a| HeaderValue::from_str(a).ok()));
        if let Some(host) = host {
            headers.try_insert(X_FORWARDED_HOST, host)?;
        }
    }
    Ok(())
}

/// An address as text, on the stack: IPv4 digits written directly, IPv6 through `Display`.
/// Every proxied request formats its peer; `Display` costs a few times more (docs/performance-decisions.md).
#[derive(Clone, Copy)]
struct IpText {
    buf: [u8; 45],
    len: usize,
}

impl IpText {
    fn new(ip: IpAddr) -> IpText {
        use std::io::Write;
        let mut t = IpText { buf: [0; 45], len: 0 };
        match ip {
            IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        t.push(b'.');
                    }
                    if octet >= 100 {
                        t.push(b'0' + octet / 100);
                    }
                    if octet >= 10 {
                        t.push(b'0' + octet / 10 % 10);
                    }
                    t.push(b'0' + octet % 10);
                }
            }
            IpAddr::V6(v6) => {
                // The longest IPv6 text, an IPv4-mapped form, is 45 bytes.
                let mut w = &mut t.buf[..];
                let _ = write!(w, "{v6}");
                t.len = 45 - w.len();
            }
        }
        t
    }

    fn push(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    fn as_str(&self) -> &str {
        // Only ASCII digits, '.', ':' and hex letters are written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    fn all(h: &HeaderMap, name: &str) -> Vec<String> {
        h.get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn addresses_as_text_match_display() {
        for ip in [
            "0.0.0.0",
            "9.10.99.100",
            "255.255.255.255",
            "127.0.0.1",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:255.255.255.255",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(IpText::new(ip).as_str(), ip.to_string());
        }
    }

    #[test]
    fn underscores_routing_and_identity_headers_are_dropped() {
        for name in [
            "x_auth_roles",
            "x-auth_roles",
            "my_header",
            "x-auth-roles",
            "x-original-url",
            "x-rewrite-url",
            "x-http-method-override",
            "x-http-method",
            "x-method-override",
        ] {
            assert!(drops(name, true, false), "{name}");
        }
        for name in [
            "x-request-id",
            "authorization",
            "content-type",
            "x-authz",
            "x-forwarded-for",
        ] {
            assert!(!drops(name, true, false), "{name}");
        }
    }

    #[test]
    fn kept_underscore_names_never_stand_in_for_stripped_or_set_ones() {
        assert!(!drops("my_header", false, true));
        for name in [
            "x_auth_roles",
            "x_original_url",
            "x_http_method_override",
            "x_forwarded_for",
            "x_real_ip",
        ] {
            assert!(drops(name, true, true), "{name}");
        }
    }

    #[test]
    fn hop_headers_are_believed_only_from_a_trusted_peer() {
        for name in [
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-forwarded-host",
            "x-forwarded-prefix",
            "forwarded",
            "x-real-ip",
        ] {
            assert!(drops(name, false, false), "{name}");
            assert!(!drops(name, true, false), "{name}");
        }
    }

    #[test]
    fn forwarded_headers_from_a_client() {
        let none = TrustedProxies::default();
        let hop = Hop {
            peer: Some("198.51.100.7".parse().unwrap()),
            tls: true,
            trusted: &none,
            keep_underscores: false,
        };
        let mut h = map(&[
            ("host", "api.example.com"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-real-ip", "6.6.6.6"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "evil.example"),
            ("forwarded", "for=6.6.6.6"),
            ("x_auth_roles", "admin"),
            ("x-original-url", "/admin"),
        ]);
        apply(&mut h, &hop, None).unwrap();
        assert_eq!(all(&h, "x-forwarded-for"), ["198.51.100.7"]);
        assert_eq!(all(&h, "x-real-ip"), ["198.51.100.7"]);
        assert_eq!(all(&h, "x-forwarded-proto"), ["https"]);
        assert_eq!(all(&h, "x-forwarded-host"), ["api.example.com"]);
        for gone in ["forwarded", "x_auth_roles", "x-original-url"] {
            assert!(!h.contains_key(gone), "{gone}");
        }
    }

    #[test]
    fn forwarded_headers_from_a_trusted_proxy() {
        let trusted = TrustedProxies::parse(&["10.0.0.0/8".into()]).unwrap();
        let hop = Hop {
            peer: Some("10.0.0.2".parse().unwrap()),
            tls: false,
            trusted: &trusted,
            keep_underscores: false,
        };
        let mut h = map(&[
            ("x-forwarded-for", "6.6.6.6, 203.0.113.9"),
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=203.0.113.9"),
        ]);
        apply(&mut h, &hop, Some("api.example.com:8443")).unwrap();
        assert_eq!(all(&h, "x-forwarded-for"), ["6.6.6.6, 203.0.113.9, 10.0.0.1, 10.0.0.2"]);
        assert_eq!(all(&h, "x-real-ip"), ["203.0.113.9"]);
        assert_eq!(
            all(&h, "x-forwarded-proto"),
            ["https"],
            "a trusted proxy's scheme is kept"
        );
        assert_eq!(
            all(&h, "x-forwarded-host"),
            ["api.example.com:8443"],
            "from the HTTP/2 authority"
        );
        assert_eq!(all(&h, "forwarded"), ["for=203.0.113.9"]);
    }
}
