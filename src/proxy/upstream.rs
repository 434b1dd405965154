//! The request the upstream gets: its peer, identity and forwarding headers, the authorised path.

use crate::client_addr;
use crate::config::Snapshot;
use crate::forward;
use crate::guard::{self, Allowed};
use crate::model::Route;
use crate::token::IDENTITY_HEADERS;
use pingora::http::RequestHeader;
use pingora::prelude::*;
use pingora::proxy::Session;
use pingora::upstreams::peer::HttpPeer;
use pingora::ErrorType;

/// The allowed route's upstream, with its timeouts.
pub fn peer(r: &Route) -> HttpPeer {
    let u = &r.upstream;
    http_peer(u.addr, u.tls, u.sni.clone(), r.connect_timeout, r.read_timeout)
}

/// A peer at `addr` with the timeouts every proxied request has: `connect` to connect (twice
/// that with the TLS handshake), `read` for each read and write, a minute idle in the pool.
pub fn http_peer(
    addr: std::net::SocketAddr,
    tls: bool,
    sni: String,
    connect: std::time::Duration,
    read: std::time::Duration,
) -> HttpPeer {
    let mut peer = HttpPeer::new(addr, tls, sni);
    peer.options.connection_timeout = Some(connect);
    peer.options.total_connection_timeout = Some(connect * 2);
    peer.options.read_timeout = Some(read);
    peer.options.write_timeout = Some(read);
    peer.options.idle_timeout = Some(std::time::Duration::from_secs(60));
    peer
}

/// Rewrites `up`, pingora's copy of the request, into what the upstream of `allowed` gets; the
/// forwarding rules are the live config's (`snap`): a reload since the request was decided
/// changes only which hop headers are believed, never the route.
pub fn prepare(
    session: &Session,
    up: &mut RequestHeader,
    allowed: &Allowed,
    path: &str,
    snap: &Snapshot,
) -> Result<()> {
    // pingora's copy of the request keeps its header map sized to the client's headers, with
    // a second map beside it for the names' original case; adding the identity headers grew
    // and rehashed both (docs/performance-decisions.md). The request is taken apart instead:
    // one map, grown once. Header names therefore reach the upstream in lower case, as
    // HTTP/2 and Envoy send them (field names are case-insensitive, RFC 9110 §5.1).
    let identity = match allowed.identity.as_deref().map(|id| id.headers.as_ref()) {
        Some(None) => return Error::e_explain(ErrorType::InvalidHTTPHeader, "identity not representable as headers"),
        values => values.flatten(),
    };
    let server = &snap.server;
    let hop = forward::Hop {
        peer: client_addr::peer_ip(session),
        tls: session.digest().is_some_and(|d| d.ssl_digest.is_some()),
        trusted: &server.trusted_proxies,
        keep_underscores: server.underscores_in_headers,
    };
    let authority = session.req_header().uri.authority().map(|a| a.as_str());
    let mut parts: http::request::Parts = std::mem::replace(up, empty_request()).into();
    let headers = &mut parts.headers;
    let forwarded = forward::apply(headers, &hop, authority);
    if !allowed.route.forward_token {
        headers.remove(http::header::AUTHORIZATION);
    }
    claim_headers(headers, &snap.claim_header_names, allowed);
    let added = forwarded.and_then(|()| identity.map_or(Ok(()), |values| add_identity(headers, values)));
    // The request is whole again before anything can fail.
    *up = RequestHeader::from(parts);
    added.map_err(|_| Error::explain(ErrorType::InvalidHTTPHeader, "too many request headers"))?;
    // The upstream gets exactly the path that was authorised. Most targets are already in
    // that form, and are sent on as they came.
    let query = session.req_header().uri.query();
    if !is_target(up.raw_path(), path, query) {
        let target = match query {
            Some(q) => format!("{}?{q}", path),
            None => path.to_string(),
        };
        let uri = target
            .parse::<http::Uri>()
            .map_err(|_| Error::explain(ErrorType::InvalidHTTPHeader, "bad target"))?;
        up.set_uri(uri);
    }
    Ok(())
}

/// A request with no headers, to stand in while the upstream request is taken apart; it
/// allocates nothing.
fn empty_request() -> RequestHeader {
    RequestHeader::from(http::Request::new(()).into_parts().0)
}

/// Adds the identity headers to `headers`, making room for all of them at once.
fn add_identity(
    headers: &mut http::HeaderMap,
    values: &[http::HeaderValue; 5],
) -> Result<(), http::header::MaxSizeReached> {
    headers.try_reserve(IDENTITY_HEADERS.len())?;
    for (name, value) in IDENTITY_HEADERS.into_iter().zip(values) {
        headers.try_insert(name, value.clone())?;
    }
    Ok(())
}

/// Strips every claim-header name a route of the config uses, then adds the allowed route's
/// own from the token's claims.
fn claim_headers(headers: &mut http::HeaderMap, names: &[http::HeaderName], allowed: &Allowed) {
    for name in names {
        headers.remove(name);
    }
    if let (Some(policy), Some(id)) = (&allowed.route.policy, &allowed.identity) {
        for (name, value) in guard::policy::claim_headers(policy, id) {
            headers.insert(name, value);
        }
    }
}

/// Whether the request target `raw` is already `path`, with `query` after it if there is one
/// (the egress listener checks its targets the same way).
pub fn is_target(raw: &[u8], path: &str, query: Option<&str>) -> bool {
    let Some(rest) = raw.strip_prefix(path.as_bytes()) else {
        return false;
    };
    match query {
        None => rest.is_empty(),
        Some(q) => rest.strip_prefix(b"?") == Some(q.as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_sent_on_as_it_came_only_when_it_is_the_authorised_path() {
        assert!(is_target(b"/api/x", "/api/x", None));
        assert!(is_target(b"/api/x?a=1", "/api/x", Some("a=1")));
        assert!(is_target(b"/api/x?", "/api/x", Some("")));
        assert!(!is_target(b"/api/./x", "/api/x", None));
        assert!(!is_target(b"/api/x?a=1", "/api/x", None));
        assert!(!is_target(b"/api/x", "/api/x", Some("")));
        assert!(!is_target(b"/api/x/", "/api/x", None));
        assert!(!is_target(b"http://h/api/x", "/api/x", None));
        assert!(!is_target(b"/api/%78", "/api/x", None));
    }
}
