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
use crate::guard::{self, Allowed, Denied, Refused, Tables};
use crate::http_util::{self, Reply};
use crate::issuer;
use crate::metrics;
use crate::model::Route;
use crate::outcome::{Outcome, Reason};
use crate::path;
use crate::state::State;
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
mod local;
mod upstream;

pub use failure::ProxyFailure;
pub(crate) use local::framing;
pub use local::MAX_HEADER_BYTES;
use local::{respond, respond_and_close};
pub(crate) use upstream::{http_peer, is_target};

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

/// The issuer endpoint `path` names, unless its realm is remote (a remote realm serves no
/// endpoints here: its paths are routed like any other).
fn local_endpoint<'p>(snap: &crate::config::Snapshot, path: &'p str) -> Option<issuer::Local<'p>> {
    issuer::match_path(path).filter(|l| l.realm.and_then(|r| snap.realm(r)).is_none_or(|r| !r.is_remote()))
}

impl Tollgate {
    /// Serves an issuer endpoint: its outcome and its answer.
    async fn serve_local(
        &self,
        session: &mut Session,
        snap: &crate::config::Snapshot,
        local: &issuer::Local<'_>,
    ) -> (Outcome, Reply) {
        let peer = client_addr::of_request(session, &snap.server.trusted_proxies)
            .map(|a| a.to_string())
            .unwrap_or_default();
        match issuer::serve(&self.state, snap, session, local, &peer).await {
            Ok(reply) => (Outcome::Served(local.endpoint), reply),
            Err(e) => (Outcome::OAuth(e.code()), e.reply()),
        }
    }

    /// The guard's decision on the request for `path`. A token whose kid a remote realm lacks
    /// waits briefly for that realm's keys to be fetched again, then is decided on them.
    async fn verdict(
        &self,
        session: &Session,
        path: &str,
        authorization: Option<&[u8]>,
        snap: Arc<crate::config::Snapshot>,
    ) -> Result<Allowed, Refused> {
        let method = &session.req_header().method;
        let tables = Tables {
            cache: &self.state.token_cache,
            store: &*self.state.store,
            limits: &self.state.rate_limits,
        };
        let mut verdict = guard::check(tables, &snap, method, path, authorization, http_util::now());
        if let Err(Refused { refetch: Some(rx), .. }) = &mut verdict {
            let _ = tokio::time::timeout(REFETCH_WAIT, rx.changed()).await;
            let snap = self.state.config.load_full();
            verdict = guard::check(tables, &snap, method, path, authorization, http_util::now());
        }
        verdict
    }

    /// Notes the CORS headers the response owes an allowed origin, and answers a preflight on a
    /// route with CORS here (no token, never upstream).
    fn cors(&self, session: &Session, ctx: &mut Ctx, snap: &crate::config::Snapshot, origin: bool) -> Option<Reply> {
        if !origin {
            return None;
        }
        let req = session.req_header();
        let route = snap.routes.find(&ctx.path)?;
        ctx.cors = guard::cors::allow(route, &req.headers);
        let reply = guard::cors::preflight(route, &req.method, &req.headers)?;
        ctx.outcome = Outcome::Preflight;
        ctx.refused_route = Some(route.clone());
        Some(reply)
    }
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
        // A stalled request body is cut off rather than held open.
        session.set_read_timeout(Some(snap.server.client_timeout));
        let raw = session.as_downstream().as_http1().map(|h| h.get_headers_raw_bytes());
        let fields = match framing(session.req_header(), raw.as_deref()) {
            Ok(fields) => fields,
            Err(reply) => {
                ctx.outcome = Outcome::BadRequest;
                return respond_and_close(session, &reply).await;
            }
        };
        ctx.path = match path::normalise(session.req_header().uri.path()) {
            Ok(p) => p,
            Err(e) => {
                return self
                    .deny(session, ctx, Refused::from(Denied::BadPath(e.describe())))
                    .await
            }
        };
        if let Some(local) = local_endpoint(&snap, &ctx.path) {
            let (outcome, reply) = self.serve_local(session, &snap, &local).await;
            ctx.outcome = outcome;
            return respond(session, &reply).await;
        }
        if let Some(reply) = self.cors(session, ctx, &snap, fields.origin) {
            return respond(session, &reply).await;
        }
        let authorization = fields.authorization.map(|v| v.as_bytes());
        match self.verdict(session, &ctx.path, authorization, snap).await {
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
        match &ctx.allowed {
            Some(allowed) => Ok(Box::new(upstream::peer(&allowed.route))),
            None => Error::e_explain(ErrorType::InternalError, "no route decided"),
        }
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        up: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        match &ctx.allowed {
            Some(allowed) => upstream::prepare(session, up, allowed, &ctx.path, &self.state.config.load()),
            None => Ok(()),
        }
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
        if crate::logging::Access::enabled() {
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
        }
        self.state.metrics.request(route, ctx.outcome, ctx.upstream_latency);
    }
}
