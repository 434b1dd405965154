//! The egress listener's pingora `ProxyHttp`: an app's plain-HTTP call, forwarded with a token.
//!
//! ```text
//! request_filter            framing; route by host and prefix (404); a token from the cache (503)
//! upstream_peer             the route's upstream and timeouts; after an upstream 401, a new token
//! upstream_request_filter   Authorization replaced; Host and an origin-form target set
//! upstream_response_filter  a 401 drops the token and fails the attempt, to be retried once
//! error_while_proxy         lets that retry through (pingora resends the buffered body)
//! fail_to_proxy             502 / 504 as on ingress; 503 when no token can be had
//! logging                   access line and tollgate_egress_requests_total
//! ```
//!
//! Hop-by-hop request fields are stripped by pingora's standard upstream request policy, as on
//! the ingress listener.

use super::cache::{Entry, Token};
use super::{routes, Shared};
use crate::counters::InFlight;
use crate::http_util::{self, Reply};
use crate::model::egress::EgressRoute;
use crate::outcome::EgressOutcome;
use crate::path;
use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::HttpModules;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::ErrorType;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The error a 401 fails an attempt with, so that pingora retries it.
const RETRY_401: &str = "egress_upstream_401";
/// The error of a retry that found no new token.
const NO_TOKEN: &str = "egress_no_token";
/// Largest request body a 401 is retried with: what pingora buffers for a retry.
pub const MAX_RETRY_BODY: u64 = 64 * 1024;

pub struct EgressProxy {
    pub shared: Arc<Shared>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// No 401 seen.
    No,
    /// A 401 dropped the token; the next attempt needs a new one.
    Pending,
    /// The one retry has been made.
    Done,
}

pub struct Ctx {
    start: Instant,
    path: String,
    route: Option<Arc<EgressRoute>>,
    entry: Option<Arc<Entry>>,
    token: Option<Arc<Token>>,
    retry: Retry,
    /// Until the next token fetch, when none could be had.
    retry_after: Option<Duration>,
    outcome: EgressOutcome,
    /// Counts the call in flight (the SIGTERM drain waits for it) until the context is dropped.
    _in_flight: InFlight,
}

/// Answers locally. An unread body closes the connection afterwards rather than being read.
async fn respond(session: &mut Session, reply: &Reply) -> Result<bool> {
    if !session.is_body_done() {
        session.set_keepalive(None);
    }
    http_util::send(session, reply).await?;
    Ok(true)
}

/// Whether a request that got a 401 can be sent again: no body, or one of at most
/// [`MAX_RETRY_BODY`] that pingora still holds whole.
fn retryable(session: &mut Session) -> bool {
    if session.retry_buffer_truncated() {
        return false;
    }
    if session.is_body_empty() {
        return true;
    }
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(n) => n <= MAX_RETRY_BODY,
        // Chunked: only if it has been read whole within the buffer.
        None => session.is_body_done(),
    }
}

fn no_token_reply(retry_after: Duration) -> Reply {
    Reply::error(
        503,
        "temporarily_unavailable",
        "no access token can be had for this call now: the token endpoint is failing or unreachable",
    )
    .header("retry-after", retry_after.as_secs().max(1).to_string())
}

impl EgressProxy {
    async fn refuse(&self, session: &mut Session, ctx: &mut Ctx, outcome: EgressOutcome, reply: Reply) -> Result<bool> {
        ctx.outcome = outcome;
        respond(session, &reply).await
    }
}

#[async_trait]
impl ProxyHttp for EgressProxy {
    type CTX = Ctx;

    /// No downstream modules (pingora's default is a disabled compression module).
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    fn new_ctx(&self) -> Ctx {
        crate::transport::head_read();
        Ctx {
            start: Instant::now(),
            path: String::new(),
            route: None,
            entry: None,
            token: None,
            retry: Retry::No,
            retry_after: None,
            outcome: EgressOutcome::Unset,
            _in_flight: self.shared.state.counters.request(),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let snap = self.shared.state.config.load_full();
        let raw = session.as_downstream().as_http1().map(|h| h.get_headers_raw_bytes());
        if let Err(reply) = crate::proxy::framing(session.req_header(), raw.as_deref()) {
            ctx.outcome = EgressOutcome::BadRequest;
            session.set_keepalive(None);
            http_util::send(session, &reply).await?;
            return Ok(true);
        }
        session.set_read_timeout(Some(snap.server.client_timeout));
        let req = session.req_header();
        if req.method == http::Method::CONNECT {
            let reply = Reply::error(
                405,
                "invalid_request",
                "CONNECT is not supported: send plain http:// calls, tollgate makes the TLS connection",
            );
            return self.refuse(session, ctx, EgressOutcome::BadRequest, reply).await;
        }
        if routes::absolute_form(req.raw_path()).is_some_and(|(s, _)| !s.eq_ignore_ascii_case("http")) {
            let reply = Reply::error(
                400,
                "invalid_request",
                "only http:// targets: tollgate makes the TLS connection to the upstream",
            );
            return self.refuse(session, ctx, EgressOutcome::BadRequest, reply).await;
        }
        let raw = match req.uri.path() {
            "" => "/",
            p => p,
        };
        ctx.path = match path::normalise(raw) {
            Ok(p) => p,
            Err(e) => {
                let reply = Reply::error(400, "invalid_request", e.describe());
                return self.refuse(session, ctx, EgressOutcome::BadRequest, reply).await;
            }
        };
        let routes = snap.egress.as_ref().map_or(&[][..], |e| &e.routes[..]);
        let Some(route) = routes::find(routes, routes::request_host(req), &ctx.path) else {
            let reply = Reply::error(404, "not_found", "no egress route for this host and path");
            return self.refuse(session, ctx, EgressOutcome::NoRoute, reply).await;
        };
        let entry = self.shared.cache.entry(route);
        ctx.route = Some(route.clone());
        match entry.token(&self.shared.state).await {
            Ok(t) => ctx.token = Some(t),
            Err(none) => {
                return self
                    .refuse(session, ctx, EgressOutcome::NoToken, no_token_reply(none.retry_after))
                    .await
            }
        }
        ctx.entry = Some(entry);
        ctx.outcome = EgressOutcome::Sent;
        Ok(false)
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let Some(route) = ctx.route.clone() else {
            return Error::e_explain(ErrorType::InternalError, "no egress route decided");
        };
        if ctx.retry == Retry::Pending {
            ctx.retry = Retry::Done;
            ctx.outcome = EgressOutcome::Retried;
            let Some(entry) = &ctx.entry else {
                return Error::e_explain(ErrorType::InternalError, "no token source");
            };
            match entry.token(&self.shared.state).await {
                Ok(t) => ctx.token = Some(t),
                Err(none) => {
                    ctx.retry_after = Some(none.retry_after);
                    return Error::e_explain(ErrorType::Custom(NO_TOKEN), "no new token for the retry after a 401");
                }
            }
        }
        let u = &route.upstream;
        let Some(addr) = u.addr.load_full() else {
            return Err(Error::explain(ErrorType::ConnectNoRoute, "the upstream's name does not resolve").into_up());
        };
        let peer = crate::proxy::http_peer(*addr, u.tls, u.host.clone(), route.connect_timeout, route.read_timeout);
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        up: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let (Some(route), Some(token)) = (&ctx.route, &ctx.token) else {
            return Error::e_explain(ErrorType::InternalError, "no egress token");
        };
        // Whatever the app sent is replaced; Proxy-Authorization was meant for this proxy.
        up.remove_header(&http::header::AUTHORIZATION);
        up.remove_header(&http::header::PROXY_AUTHORIZATION);
        up.remove_header("proxy-connection");
        up.insert_header(http::header::AUTHORIZATION, token.header.clone())?;
        up.insert_header(http::header::HOST, route.upstream.host_header.clone())?;
        // The upstream gets the origin-form of the path that was routed (an HTTP_PROXY client
        // sends the absolute form); most targets already are, and are sent on as they came.
        let query = session.req_header().uri.query();
        if !crate::proxy::is_target(up.raw_path(), &ctx.path, query) {
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

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if resp.status != http::StatusCode::UNAUTHORIZED {
            return Ok(());
        }
        let (Some(entry), Some(token)) = (&ctx.entry, &ctx.token) else {
            return Ok(());
        };
        let fresh = entry.unauthorized(token);
        if fresh && ctx.retry == Retry::No && retryable(session) {
            ctx.retry = Retry::Pending;
            return Error::e_explain(
                ErrorType::Custom(RETRY_401),
                "the upstream answered 401; retrying with a new token",
            );
        }
        Ok(())
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Ctx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        if ctx.retry == Retry::Pending && *e.etype() == ErrorType::Custom(RETRY_401) {
            // Any method: the upstream refused the request, it did not act on it.
            e.set_retry(!session.retry_buffer_truncated());
        } else if !session.req_header().method.is_idempotent() || session.retry_buffer_truncated() {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        use ErrorType::*;
        let (code, error, description) = match (e.esource(), e.etype()) {
            (_, Custom(NO_TOKEN)) => (503, "", ""),
            (_, Custom(RETRY_401)) => (
                502,
                "bad_gateway",
                "the upstream refused the token and the call could not be retried",
            ),
            (_, ConnectNoRoute) => (502, "bad_gateway", "the upstream's name does not resolve"),
            (_, HTTPStatus(c)) => (*c, "proxy_error", "request failed"),
            (ErrorSource::Downstream, ReadTimedout) => (408, "request_timeout", "request body not received in time"),
            (ErrorSource::Downstream, ReadError | WriteError | ConnectionClosed | WriteTimedout) => (0, "", ""),
            (ErrorSource::Downstream, _) => (400, "invalid_request", "malformed request"),
            (_, ConnectTimedout | ReadTimedout | WriteTimedout) => {
                (504, "upstream_timeout", "the upstream did not answer in time")
            }
            (ErrorSource::Upstream, _) => (502, "bad_gateway", "the upstream is unreachable or failed"),
            _ => (500, "server_error", "internal error"),
        };
        ctx.outcome = EgressOutcome::of_failure(code);
        if code > 0 {
            let reply = match code {
                503 => no_token_reply(ctx.retry_after.unwrap_or(Duration::from_secs(1))),
                _ => Reply::error(code, error, description),
            };
            session.set_keepalive(None);
            let _ = http_util::send(session, &reply).await;
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let route = ctx.route.as_deref().map_or("", |r| r.label.as_str());
        if crate::logging::Access::enabled() {
            crate::logging::Access {
                method: session.req_header().method.as_str(),
                path: &ctx.path,
                route,
                status,
                client_id: ctx.route.as_deref().map_or("", |r| r.source.client_id.as_str()),
                outcome: ctx.outcome.as_str(),
                latency_us: ctx.start.elapsed().as_micros() as u64,
            }
            .log();
        }
        super::metrics::request(&self.shared.state.metrics, route, status);
    }
}
