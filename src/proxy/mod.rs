//! The pingora `ProxyHttp` implementation: dispatch only, no business logic.
//!
//! ```text
//! request_filter          load the snapshot once; normalise the path;
//!                         local endpoint?  -> issuer::serve, respond, done
//!                         otherwise        -> guard::check: respond the denial, or go on
//! upstream_peer           the matched route's upstream, with its timeouts
//! upstream_request_filter normalised path; spoofable headers stripped (forward.rs),
//!                         X-Forwarded-*, identity headers added
//! upstream_response_filter  upstream latency
//! fail_to_proxy           502 / 504 with a JSON body
//! logging                 access line and request metrics
//! ```

use crate::client_addr;
use crate::counters::InFlight;
use crate::forward;
use crate::guard::{self, Allowed, Denied, Refused, Tables};
use crate::http_util::{self, Reply};
use crate::issuer;
use crate::metrics;
use crate::model::Route;
use crate::outcome::{Outcome, Reason};
use crate::path;
use crate::state::State;
use crate::token::IDENTITY_HEADERS;
use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::HttpModules;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::ErrorType;
use std::sync::{Arc, LazyLock};
use std::time::Instant;

mod failure;
pub use failure::ProxyFailure;

/// The route label of a request that matched none.
static NO_ROUTE: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(""));

pub struct Tollgate {
    pub state: Arc<State>,
}

pub struct Ctx {
    start: Instant,
    path: String,
    allowed: Option<Allowed>,
    /// The route a refused request matched, for the access log and metrics.
    refused_route: Option<Arc<Route>>,
    /// What happened, for the access log and metrics.
    outcome: Outcome,
    upstream_latency: Option<f64>,
    /// The CORS headers the response owes an allowed origin (routes with `cors`).
    cors: Option<guard::cors::Allow>,
    /// Counts the request in flight until the context is dropped, however the request ends.
    _in_flight: InFlight,
}

/// Longest a request waits for a remote realm's keys to be fetched again for its unknown kid.
const REFETCH_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Largest request header block accepted (all names and values), in bytes.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

fn header_bytes(req: &RequestHeader, raw: Option<&[u8]>) -> usize {
    match raw {
        Some(r) => r.len(),
        None => req
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum::<usize>(),
    }
}

/// Requests whose size or framing could be read two ways are refused before anything else:
/// an oversized header block (431), more than one Content-Length, Content-Length beside
/// Transfer-Encoding, or a transfer coding other than chunked (request smuggling, RFC 9112 §6).
fn framing_problem(req: &RequestHeader, raw: Option<&[u8]>) -> Option<Reply> {
    if header_bytes(req, raw) > MAX_HEADER_BYTES {
        return Some(Reply::error(431, "invalid_request", "request header fields too large"));
    }
    let mut cl_count = 0;
    for v in req.headers.get_all(http::header::CONTENT_LENGTH).iter() {
        cl_count += 1 + usize::from(v.as_bytes().contains(&b','));
    }
    let te: Vec<&http::HeaderValue> = req.headers.get_all(http::header::TRANSFER_ENCODING).iter().collect();
    // pingora drops Content-Length when Transfer-Encoding is present; the raw header still shows it.
    if !te.is_empty() && cl_count == 0 {
        let raw_cl = raw.is_some_and(|r| {
            r.split(|&b| b == b'\n')
                .any(|line| line.len() > 15 && line[..15].eq_ignore_ascii_case(b"content-length:"))
        });
        cl_count += usize::from(raw_cl);
    }
    if cl_count > 1 {
        return Some(Reply::error(400, "invalid_request", "more than one Content-Length"));
    }
    // One field is verified; a second could be what the upstream reads.
    if req.headers.get_all(http::header::AUTHORIZATION).iter().nth(1).is_some() {
        return Some(Reply::error(400, "invalid_request", "more than one Authorization"));
    }
    if !te.is_empty() && cl_count > 0 {
        return Some(Reply::error(
            400,
            "invalid_request",
            "Content-Length together with Transfer-Encoding",
        ));
    }
    if te.len() > 1
        || te
            .first()
            .is_some_and(|v| !v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"chunked"))
    {
        return Some(Reply::error(
            501,
            "invalid_request",
            "only Transfer-Encoding: chunked is supported",
        ));
    }
    None
}

impl Tollgate {
    async fn deny(&self, session: &mut Session, ctx: &mut Ctx, refused: Refused) -> Result<bool> {
        let Refused { route, denied, .. } = refused;
        let reason = denied.reason();
        ctx.outcome = Outcome::Denied(reason);
        let m = &self.state.metrics;
        if let (Reason::RateLimited, Some(r)) = (reason, &route) {
            let labels = metrics::RouteLabel {
                route: r.prefix.clone(),
            };
            m.rate_limited.get_or_create(&labels).inc();
        }
        ctx.refused_route = route;
        m.denials.get_or_create(&metrics::DenialLabel { reason }).inc();
        let reply = guard::cors::decorate(denied.reply(), ctx.cors.as_ref());
        respond(session, &reply).await
    }
}

impl Tollgate {
    /// Notes the CORS headers the response owes an allowed origin, and answers a preflight on a
    /// route with CORS here (no token, never upstream).
    fn cors(&self, session: &Session, ctx: &mut Ctx, snap: &crate::config::Snapshot) -> Option<Reply> {
        let req = session.req_header();
        if !req.headers.contains_key(http::header::ORIGIN) {
            return None;
        }
        let route = snap.routes.find(&ctx.path)?;
        ctx.cors = guard::cors::allow(route, &req.headers);
        let reply = guard::cors::preflight(route, &req.method, &req.headers)?;
        ctx.outcome = Outcome::Preflight;
        ctx.refused_route = Some(route.clone());
        Some(reply)
    }
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

/// Whether the request target `raw` is already `path`, with `query` after it if there is one.
fn is_target(raw: &[u8], path: &str, query: Option<&str>) -> bool {
    let Some(rest) = raw.strip_prefix(path.as_bytes()) else {
        return false;
    };
    match query {
        None => rest.is_empty(),
        Some(q) => rest.strip_prefix(b"?") == Some(q.as_bytes()),
    }
}

/// The largest unread request body that is read and dropped after a local reply to keep the
/// connection open (nginx discards request bodies the same way); anything larger closes it.
const DISCARD_LIMIT: u64 = 64 * 1024;

/// Whether the unread body of `req` may be read and dropped after the reply: a declared
/// `Content-Length` within [`DISCARD_LIMIT`], no `Transfer-Encoding`, and no
/// `Expect: 100-continue` (such a client may never send the body it announced).
fn discardable_body(req: &RequestHeader) -> bool {
    let h = &req.headers;
    if h.contains_key(http::header::TRANSFER_ENCODING) || h.contains_key(http::header::EXPECT) {
        return false;
    }
    let mut lengths = h.get_all(http::header::CONTENT_LENGTH).iter();
    match (lengths.next(), lengths.next()) {
        (Some(v), None) => std::str::from_utf8(v.as_bytes())
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|n| n <= DISCARD_LIMIT),
        _ => false,
    }
}

/// Answer locally. A body not yet read stays unread until the reply is out; then pingora reads
/// and drops it if it is small (bounded by `client_timeout`), else the connection closes, so a
/// client that is not trusted yet cannot make tollgate read an unbounded body.
async fn respond(session: &mut Session, reply: &Reply) -> Result<bool> {
    if !session.is_body_done() {
        // After a 408 the client has stalled mid-body; waiting for the rest would stall again.
        if reply.status != 408 && discardable_body(session.req_header()) {
            // pingora closes a connection answered before its body is read unless told not to.
            session.set_close_on_response_before_downstream_finish(false);
        } else {
            session.set_keepalive(None);
        }
    }
    http_util::send(session, reply).await?;
    Ok(true)
}

/// Answer a request whose framing is in doubt and close the connection: what follows its head
/// cannot be trusted to be the next request.
async fn respond_and_close(session: &mut Session, reply: &Reply) -> Result<bool> {
    session.set_keepalive(None);
    http_util::send(session, reply).await?;
    Ok(true)
}

#[async_trait]
impl ProxyHttp for Tollgate {
    type CTX = Ctx;

    /// No downstream modules. pingora's default is a response-compression module switched off
    /// (level 0), which still builds a context and runs two boxed filter calls per request;
    /// tollgate does not compress responses.
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    fn new_ctx(&self) -> Ctx {
        // pingora makes the context as soon as the request head is in.
        crate::transport::head_read();
        Ctx {
            start: Instant::now(),
            path: String::new(),
            allowed: None,
            refused_route: None,
            outcome: Outcome::Unset,
            upstream_latency: None,
            cors: None,
            _in_flight: self.state.counters.request(),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        // One reference for the request's decisions; what outlives them (the route, the
        // identity) is held by `Allowed`.
        let snap = self.state.config.load_full();
        let raw = session.as_downstream().as_http1().map(|h| h.get_headers_raw_bytes());
        if let Some(reply) = framing_problem(session.req_header(), raw.as_deref()) {
            ctx.outcome = Outcome::BadRequest;
            return respond_and_close(session, &reply).await;
        }
        // A stalled request body is cut off rather than held open.
        session.set_read_timeout(Some(snap.server.client_timeout));
        ctx.path = match path::normalise(session.req_header().uri.path()) {
            Ok(p) => p,
            Err(e) => {
                let refused = Refused {
                    route: None,
                    denied: Denied::BadPath(e.describe()),
                    refetch: None,
                };
                return self.deny(session, ctx, refused).await;
            }
        };
        // A remote realm serves no endpoints here: its paths are routed like any other.
        let local = issuer::match_path(&ctx.path)
            .filter(|l| l.realm.and_then(|r| snap.realm(r)).is_none_or(|r| !r.is_remote()));
        if let Some(local) = local {
            let peer = client_addr::of_request(session, &snap.server.trusted_proxies)
                .map(|a| a.to_string())
                .unwrap_or_default();
            let result = issuer::serve(&self.state, &snap, session, &local, &peer).await;
            ctx.outcome = match &result {
                Ok(_) => Outcome::Served(local.endpoint),
                Err(e) => Outcome::OAuth(e.code()),
            };
            return respond(session, &result.unwrap_or_else(|e| e.reply())).await;
        }
        if let Some(reply) = self.cors(session, ctx, &snap) {
            return respond(session, &reply).await;
        }
        let authorization = session
            .req_header()
            .headers
            .get(http::header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        let method = session.req_header().method.clone();
        let tables = Tables {
            cache: &self.state.token_cache,
            store: &*self.state.store,
            limits: &self.state.rate_limits,
        };
        let mut verdict = guard::check(tables, &snap, &method, &ctx.path, authorization, http_util::now());
        if let Err(Refused { refetch: Some(rx), .. }) = &mut verdict {
            // A kid the remote realm lacks: its keys are being fetched again; wait briefly.
            let _ = tokio::time::timeout(REFETCH_WAIT, rx.changed()).await;
            let snap = self.state.config.load_full();
            let authorization = session
                .req_header()
                .headers
                .get(http::header::AUTHORIZATION)
                .map(|v| v.as_bytes());
            verdict = guard::check(tables, &snap, &method, &ctx.path, authorization, http_util::now());
        }
        match verdict {
            Ok(allowed) => {
                ctx.outcome = match allowed.identity {
                    Some(_) => Outcome::Allowed,
                    None => Outcome::Public,
                };
                ctx.allowed = Some(allowed);
                Ok(false)
            }
            Err(refused) => self.deny(session, ctx, refused).await,
        }
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let Some(allowed) = &ctx.allowed else {
            return Error::e_explain(ErrorType::InternalError, "no route decided");
        };
        let u = &allowed.route.upstream;
        let mut peer = HttpPeer::new(u.addr, u.tls, u.sni.clone());
        let r = &allowed.route;
        peer.options.connection_timeout = Some(r.connect_timeout);
        peer.options.total_connection_timeout = Some(r.connect_timeout * 2);
        peer.options.read_timeout = Some(r.read_timeout);
        peer.options.write_timeout = Some(r.read_timeout);
        peer.options.idle_timeout = Some(std::time::Duration::from_secs(60));
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        up: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let Some(allowed) = &ctx.allowed else { return Ok(()) };
        // pingora's copy of the request keeps its header map sized to the client's headers, with
        // a second map beside it for the names' original case; adding the identity headers grew
        // and rehashed both (docs/performance-decisions.md). The request is taken apart instead:
        // one map, grown once. Header names therefore reach the upstream in lower case, as
        // HTTP/2 and Envoy send them (field names are case-insensitive, RFC 9110 §5.1).
        let identity = match allowed.identity.as_deref().map(|id| id.headers.as_ref()) {
            Some(None) => {
                return Error::e_explain(ErrorType::InvalidHTTPHeader, "identity not representable as headers")
            }
            values => values.flatten(),
        };
        // The forwarding rules of the live config: a reload since request_filter changes only
        // which hop headers are believed, never the route decided.
        let snap = self.state.config.load();
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
        claim_headers(headers, &self.state.config.load().claim_header_names, allowed);
        let added = forwarded.and_then(|()| identity.map_or(Ok(()), |values| add_identity(headers, values)));
        // The request is whole again before anything can fail.
        *up = RequestHeader::from(parts);
        added.map_err(|_| Error::explain(ErrorType::InvalidHTTPHeader, "too many request headers"))?;
        // The upstream gets exactly the path that was authorised. Most targets are already in
        // that form, and are sent on as they came.
        let query = session.req_header().uri.query();
        if !is_target(up.raw_path(), &ctx.path, query) {
            let target = match query {
                Some(q) => format!("{}?{q}", ctx.path),
                None => ctx.path.clone(),
            };
            let uri = target
                .parse::<http::Uri>()
                .map_err(|_| Error::explain(ErrorType::InvalidHTTPHeader, "bad target"))?;
            up.set_uri(uri);
        }
        Ok(())
    }

    async fn upstream_response_filter(&self, _s: &mut Session, r: &mut ResponseHeader, ctx: &mut Ctx) -> Result<()> {
        ctx.upstream_latency = Some(ctx.start.elapsed().as_secs_f64());
        if let Some(allow) = &ctx.cors {
            r.insert_header("access-control-allow-origin", allow.origin.as_str())?;
            if allow.credentials {
                r.insert_header("access-control-allow-credentials", "true")?;
            }
            r.append_header("vary", "Origin")?;
        }
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let failure = ProxyFailure::of(e);
        ctx.outcome = failure.outcome;
        if let Some(reply) = failure.reply() {
            session.set_keepalive(None);
            let _ = http_util::send(session, &reply).await;
        }
        FailToProxy {
            error_code: failure.status,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        let status = session.response_written().map(|r| r.status.as_u16()).unwrap_or(0);
        let route = match (&ctx.allowed, &ctx.refused_route) {
            (Some(a), _) => &a.route.prefix,
            (None, Some(r)) => &r.prefix,
            (None, None) => &NO_ROUTE,
        };
        crate::logging::Access {
            method: session.req_header().method.as_str(),
            path: &ctx.path,
            route,
            status,
            client_id: ctx
                .allowed
                .as_ref()
                .and_then(|a| a.identity.as_deref())
                .map_or("", |i| i.client_id.as_str()),
            outcome: ctx.outcome.as_str(),
            latency_us: ctx.start.elapsed().as_micros() as u64,
        }
        .log();
        self.state.metrics.request(route, ctx.outcome, ctx.upstream_latency);
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
