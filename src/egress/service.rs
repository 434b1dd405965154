//! The egress listener's pingora services (one proxy worker per ingress proxy worker, each on
//! its own socket bound at start) and the background refresher that keeps tokens fresh, follows
//! reloads and resolves upstream names again.

use super::cache::TokenCache;
use super::proxy::EgressProxy;
use super::Shared;
use crate::config::Snapshot;
use crate::state::State;
use crate::transport::{Bound, Capped, Endpoint, ProxyService};
use async_trait::async_trait;
use pingora::apps::HttpServerOptions;
use pingora::server::configuration::ServerConf;
use pingora::server::ShutdownWatch;
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::ServiceWithDependents;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the refresher looks at the cache and the served config.
const TICK: Duration = Duration::from_millis(250);
/// How often upstream names are resolved again.
const RESOLVE_EVERY: Duration = Duration::from_secs(10);
/// Longest one resolution may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The egress services for `server.add_services`: a proxy worker on each socket of `bound`
/// (`threads` apiece, as the ingress workers), and the token refresher.
pub fn services(
    state: &Arc<State>,
    conf: &Arc<ServerConf>,
    bound: Bound,
    threads: Option<usize>,
    default_max: usize,
) -> Vec<Box<dyn ServiceWithDependents>> {
    let shared = Arc::new(Shared {
        state: state.clone(),
        cache: TokenCache::default(),
    });
    let mut out: Vec<Box<dyn ServiceWithDependents>> = Vec::new();
    let many = bound.sockets.len() > 1;
    for (i, socket) in bound.sockets.into_iter().enumerate() {
        let mut app = pingora::proxy::http_proxy(conf, EgressProxy { shared: shared.clone() });
        let mut opts = HttpServerOptions::default();
        opts.keepalive_request_limit = Some(10_000);
        app.server_options = Some(opts);
        out.push(Box::new(ProxyService {
            name: if many { format!("egress-{i}") } else { "egress".into() },
            app: Arc::new(Capped {
                app: Arc::new(app),
                state: state.clone(),
                default_max,
            }),
            endpoints: vec![Endpoint { socket, tls: None }],
            threads,
        }));
    }
    out.push(Box::new(background_service("egress tokens", Refresher { shared })));
    out
}

/// Keeps the cache in step with the served config, refreshes due tokens, and resolves upstream
/// names again.
struct Refresher {
    shared: Arc<Shared>,
}

#[async_trait]
impl BackgroundService for Refresher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let shared = &self.shared;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut seen: Option<Arc<Snapshot>> = None;
        let mut resolve_at = Instant::now() + RESOLVE_EVERY;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let snap = shared.state.config.load_full();
            if seen.as_ref().is_none_or(|s| !Arc::ptr_eq(s, &snap)) {
                let routes = snap.egress.as_ref().map_or(&[][..], |e| &e.routes[..]);
                shared.cache.keep_only(routes);
                seen = Some(snap.clone());
            }
            shared.cache.tick(&shared.state);
            if Instant::now() >= resolve_at {
                resolve_at = Instant::now() + RESOLVE_EVERY;
                tokio::spawn(resolve_names(snap));
            }
        }
    }
}

/// Resolves every upstream name of `snap`'s egress routes again; a failure keeps the last address.
async fn resolve_names(snap: Arc<Snapshot>) {
    let Some(egress) = &snap.egress else { return };
    for route in egress.routes.iter().filter(|r| r.upstream.is_name()) {
        let u = &route.upstream;
        let found = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((u.host.as_str(), u.port))).await;
        match found {
            Ok(Ok(addrs)) => {
                let addrs: Vec<SocketAddr> = addrs.collect();
                if let Some(a) = crate::config::egress::pick(&addrs) {
                    if u.addr.load().as_deref() != Some(&a) {
                        tracing::info!(route = %route.label, upstream = %u.host, addr = %a, "egress upstream resolved");
                        u.addr.store(Some(Arc::new(a)));
                    }
                }
            }
            Ok(Err(e)) => {
                tracing::debug!(route = %route.label, upstream = %u.host, "egress upstream does not resolve: {e}")
            }
            Err(_) => tracing::debug!(route = %route.label, upstream = %u.host, "egress upstream resolution timed out"),
        }
    }
}
