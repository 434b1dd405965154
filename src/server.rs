//! pingora wiring: the proxy service (plain and TLS listeners), the admin service, the egress
//! listener and its token refresher, the config watcher and the SIGTERM drain, all in one
//! pingora `Server`.

use crate::admin::Admin;
use crate::config::{self, LoadOptions, Snapshot};
use crate::counters::Counters;
use crate::proxy::Tollgate;
use crate::state::State;
use crate::transport::{bind_address, prebind, Bound, Capped, Endpoint, Prebound, ProxyService};
use async_trait::async_trait;
use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::{Acceptor, TlsSettings};
use pingora::proxy::HttpProxy;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long SIGTERM waits for in-flight requests before the process exits anyway.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// Load the config and run the sidecar until SIGTERM/SIGINT. Returns only on a start-up error.
pub fn run(config_path: &Path) -> Result<(), String> {
    let snap = config::load(config_path, LoadOptions::default()).map_err(|e| e.to_string())?;
    crate::logging::init(snap.server.log_format_json);
    let workers = Workers::of(&snap.server);
    let egress_listen = snap.egress.as_ref().map(|e| e.listen);
    let sockets = Sockets::bind(&snap.server, egress_listen, &workers)?;
    let at = sockets.addresses();
    let port = at.listen.or(at.tls).map(|a| a.port());
    // Default issuers name the port actually bound (a `:0` listener's is known only now).
    let snap: Snapshot = match port {
        Some(p) => snap.with_listen_port(p),
        None => snap,
    };
    for w in &snap.warnings {
        tracing::warn!("{w}");
    }
    let settings = snap.server.clone();
    let default_max = crate::transport::limits_at_start(settings.max_connections);
    let state = State::new(snap, config_path.to_path_buf(), port)?;

    let mut server = Server::new_with_opt_and_conf(None, pingora_conf(&settings, &workers));
    server.bootstrap();
    let tls = at.tls.map(|_| tls_acceptor(&settings)).transpose()?;
    let Sockets {
        listen,
        tls: tls_sockets,
        admin,
        egress,
    } = sockets;
    add_proxy_workers(&mut server, &state, &workers, (listen, tls_sockets, tls), default_max);
    if let Some(admin) = admin {
        add_admin(&mut server, &state, admin);
    }
    if let Some(egress) = egress {
        let conf = server.configuration.clone();
        server.add_services(crate::egress::services(
            &state,
            &conf,
            egress,
            workers.threads,
            default_max,
        ));
    }
    add_background(&mut server, &state);

    announce(&at, &state);
    // `run` returns after SIGINT's quick shutdown; the batched access lines go out before exit.
    server.run(RunArgs::default());
    crate::logging::flush();
    std::process::exit(0);
}

/// How the proxy's work is spread over threads.
///
/// Shared-nothing workers (nginx's and Envoy's model, the default): each is a single-threaded
/// runtime with its own listening sockets (SO_REUSEPORT; the kernel spreads connections) and its
/// own upstream connection pool, so a request never crosses threads and no socket is polled by
/// one thread for another (docs/performance-decisions.md). With work stealing, one
/// multi-threaded runtime serves everything.
struct Workers {
    /// Proxy services: one per worker, or one for all.
    services: usize,
    /// Each proxy service's thread count (`None`: pingora's `threads`).
    threads: Option<usize>,
    /// `server.threads`, or the number of cores.
    configured: usize,
    work_stealing: bool,
}

impl Workers {
    fn of(server: &config::ServerSettings) -> Workers {
        let configured = server
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2));
        let work_stealing = server.work_stealing;
        let (services, threads) = if work_stealing {
            (1, None)
        } else {
            (configured, Some(1))
        };
        Workers {
            services,
            threads,
            configured,
            work_stealing,
        }
    }
}

/// Every listening socket, bound before pingora starts (see [`bind_address`]).
struct Sockets {
    listen: Option<Bound>,
    tls: Option<Bound>,
    admin: Option<Bound>,
    egress: Option<Bound>,
}

/// The addresses bound, port 0 made concrete.
struct Addresses {
    listen: Option<SocketAddr>,
    tls: Option<SocketAddr>,
    admin: Option<SocketAddr>,
    egress: Option<SocketAddr>,
}

impl Sockets {
    /// The proxy's and the egress listener's addresses once per worker (SO_REUSEPORT unless work
    /// stealing), the admin's once.
    fn bind(server: &config::ServerSettings, egress: Option<SocketAddr>, workers: &Workers) -> Result<Sockets, String> {
        let reuseport = !workers.work_stealing;
        let bound = |key: &str, a: Option<SocketAddr>, count: usize, reuseport: bool| {
            a.map(|a| bind_address(key, a, count, reuseport)).transpose()
        };
        Ok(Sockets {
            listen: bound("server.listen", server.listen, workers.services, reuseport)?,
            tls: bound("server.tls_listen", server.tls_listen, workers.services, reuseport)?,
            admin: bound("server.admin_listen", server.admin_listen, 1, false)?,
            egress: bound("egress.listen", egress, workers.services, reuseport)?,
        })
    }

    fn addresses(&self) -> Addresses {
        let addr = |b: &Option<Bound>| b.as_ref().map(|b| b.addr);
        Addresses {
            listen: addr(&self.listen),
            tls: addr(&self.tls),
            admin: addr(&self.admin),
            egress: addr(&self.egress),
        }
    }
}

/// pingora's own settings: threads, the SIGTERM grace period, the upstream pool and CA.
fn pingora_conf(settings: &config::ServerSettings, workers: &Workers) -> ServerConf {
    ServerConf {
        // Per-worker mode runs each proxy worker, the admin service and the background tasks on
        // one thread apiece.
        threads: if workers.work_stealing { workers.configured } else { 1 },
        grace_period_seconds: Some(DRAIN_LIMIT.as_secs()),
        graceful_shutdown_timeout_seconds: Some(1),
        upstream_keepalive_pool_size: 512,
        work_stealing: workers.work_stealing,
        ca_file: settings
            .upstream_ca_file
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned()),
        ..ServerConf::default()
    }
}

/// The TLS listener's acceptor: Mozilla's intermediate settings, with HTTP/2 by ALPN.
fn tls_acceptor(settings: &config::ServerSettings) -> Result<Arc<Acceptor>, String> {
    let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
    let mut tls = TlsSettings::intermediate(&path(&settings.tls_cert), &path(&settings.tls_key))
        .map_err(|e| format!("server.tls_cert/tls_key: {e}"))?;
    tls.enable_h2();
    Ok(Arc::new(tls.build()))
}

/// The plain and TLS listening sockets of the proxy, and the TLS acceptor.
type ProxySockets = (Option<Bound>, Option<Bound>, Option<Arc<Acceptor>>);

/// One proxy service per worker (or one for all), each with its own app and upstream pool.
fn add_proxy_workers(
    server: &mut Server,
    state: &Arc<State>,
    workers: &Workers,
    sockets: ProxySockets,
    default_max: usize,
) {
    let (mut plain, mut tls_sockets, tls) = sockets;
    let take = |b: &mut Option<Bound>| b.as_mut().and_then(|b| b.sockets.pop());
    let server_conf = server.configuration.clone();
    for i in 0..workers.services {
        let mut endpoints = Vec::new();
        if let Some(socket) = take(&mut plain) {
            endpoints.push(Endpoint { socket, tls: None });
        }
        if let Some(socket) = take(&mut tls_sockets) {
            endpoints.push(Endpoint {
                socket,
                tls: tls.clone(),
            });
        }
        server.add_service(ProxyService {
            name: if workers.work_stealing {
                "tollgate".into()
            } else {
                format!("tollgate-{i}")
            },
            app: Arc::new(Capped {
                app: Arc::new(proxy_app(&server_conf, state)),
                state: state.clone(),
                default_max,
            }),
            endpoints,
            threads: workers.threads,
        });
    }
}

/// A pingora HTTP proxy app around [`Tollgate`]: cleartext HTTP/2 on, at most 10,000 requests
/// per client connection.
fn proxy_app(server_conf: &Arc<ServerConf>, state: &Arc<State>) -> HttpProxy<Tollgate> {
    let mut app = pingora::proxy::http_proxy(server_conf, Tollgate { state: state.clone() });
    let mut opts = HttpServerOptions::default();
    opts.h2c = true;
    opts.keepalive_request_limit = Some(10_000);
    app.server_options = Some(opts);
    app
}

/// The admin port, served by pingora's listening service on the socket bound at start.
fn add_admin(server: &mut Server, state: &Arc<State>, mut admin: Bound) {
    let Some(socket) = admin.sockets.pop() else { return };
    let mut svc = Service::new("admin".to_string(), Admin { state: state.clone() });
    svc.add_tcp(&admin.addr.to_string());
    server.add_service(Prebound {
        svc,
        fds: prebind(admin.addr, socket),
        threads: None,
    });
}

/// The config watcher and the SIGTERM drain.
fn add_background(server: &mut Server, state: &Arc<State>) {
    server.add_service(background_service("config watcher", Watch { state: state.clone() }));
    server.add_service(background_service(
        "drain",
        Drain {
            counters: state.counters.clone(),
        },
    ));
    server.add_service(background_service(
        "remote keys",
        crate::remote::Engines { state: state.clone() },
    ));
    if let Some(store) = &state.shared {
        state.rate_limits.share();
        server.add_service(background_service(
            "shared store",
            Follow {
                store: store.clone(),
                state: state.clone(),
            },
        ));
    }
}

/// Keeps the revocation mirror current and syncs the shared rate-limit buckets, off the
/// request path, until shutdown.
struct Follow {
    store: Arc<crate::store::redis::RedisStore>,
    state: Arc<State>,
}

#[async_trait]
impl BackgroundService for Follow {
    async fn start(&self, shutdown: ShutdownWatch) {
        let mut stop = shutdown.clone();
        let follow = self.store.clone().follow(async move {
            let _ = stop.changed().await;
        });
        let sync = async {
            let mut tick = tokio::time::interval(crate::guard::ratelimit::SYNC_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                self.state.rate_limits.sync(&self.store).await;
            }
        };
        let mut stop = shutdown;
        tokio::select! {
            _ = follow => {}
            _ = sync => {}
            _ = stop.changed() => {}
        }
    }
}

/// Prints the listening line, which scripts and tests read to learn the ports, and logs it.
fn announce(at: &Addresses, state: &State) {
    let show = |a: Option<SocketAddr>| a.map(|a| a.to_string()).unwrap_or_else(|| "-".into());
    let (http, tls, admin, egress) = (show(at.listen), show(at.tls), show(at.admin), show(at.egress));
    println!("tollgate listening http={http} tls={tls} admin={admin} egress={egress}");
    tracing::info!(%http, %tls, %admin, %egress, config_hash = %state.config.load().hash, "tollgate starting");
}

struct Watch {
    state: Arc<State>,
}

#[async_trait]
impl BackgroundService for Watch {
    async fn start(&self, shutdown: ShutdownWatch) {
        config::watch::run(self.state.clone(), shutdown).await;
    }
}

/// On graceful shutdown pingora stops accepting, then waits its whole grace period; this exits
/// as soon as the requests in flight are done instead.
struct Drain {
    counters: Arc<Counters>,
}

#[async_trait]
impl BackgroundService for Drain {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        if shutdown.changed().await.is_err() {
            return;
        }
        tracing::info!("shutting down: draining requests in flight");
        // Give the listeners a moment to stop accepting before counting.
        tokio::time::sleep(Duration::from_millis(50)).await;
        while self.counters.in_flight() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::info!("drained; exiting");
        crate::logging::flush();
        std::process::exit(0);
    }
}
