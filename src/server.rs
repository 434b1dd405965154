//! pingora wiring: the proxy service (plain and TLS listeners), the admin service, the config
//! watcher and the SIGTERM drain, all in one pingora `Server`.

use crate::admin::Admin;
use crate::config::{self, LoadOptions, Snapshot};
use crate::counters::Counters;
use crate::proxy::Tollgate;
use crate::state::State;
use crate::transport::{bind_address, prebind, Bound, Capped, Endpoint, Prebound, ProxyService};
use async_trait::async_trait;
use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How long SIGTERM waits for in-flight requests before the process exits anyway.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// Load the config and run the sidecar until SIGTERM/SIGINT. Returns only on a start-up error.
pub fn run(config_path: &Path) -> Result<(), String> {
    let first = config::load(config_path, LoadOptions::default()).map_err(|e| e.to_string())?;
    crate::logging::init(first.server.log_format_json);
    let conf_threads = first
        .server
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2));
    let work_stealing = first.server.work_stealing;
    // Shared-nothing workers (nginx's and Envoy's model): each is a single-threaded runtime with
    // its own listening sockets (SO_REUSEPORT; the kernel spreads connections) and its own
    // upstream connection pool, so a request never crosses threads and no socket is polled by
    // one thread for another. With work stealing, one multi-threaded runtime serves everything.
    let (services, threads) = if work_stealing {
        (1, None)
    } else {
        (conf_threads, Some(1))
    };
    let reuseport = !work_stealing;
    let bound = |key: &str, a: Option<SocketAddr>, count: usize, reuseport: bool| {
        a.map(|a| bind_address(key, a, count, reuseport)).transpose()
    };
    let mut listen_sockets = bound("server.listen", first.server.listen, services, reuseport)?;
    let mut tls_sockets = bound("server.tls_listen", first.server.tls_listen, services, reuseport)?;
    let mut admin_socket = bound("server.admin_listen", first.server.admin_listen, 1, false)?;
    let listen = listen_sockets.as_ref().map(|b| b.addr);
    let tls_listen = tls_sockets.as_ref().map(|b| b.addr);
    let admin = admin_socket.as_ref().map(|b| b.addr);
    let port = listen.or(tls_listen).map(|a| a.port());
    // Load again with the concrete port so default issuers name it.
    let snap: Snapshot = config::load(config_path, LoadOptions { listen_port: port }).map_err(|e| e.to_string())?;
    for w in &snap.warnings {
        tracing::warn!("{w}");
    }
    let settings = snap.server.clone();
    let default_max = crate::transport::limits_at_start(settings.max_connections);
    let state = State::new(snap, config_path.to_path_buf(), port);

    let conf = ServerConf {
        // Per-worker mode runs each proxy worker, the admin service and the background tasks on
        // one thread apiece.
        threads: if work_stealing { conf_threads } else { 1 },
        grace_period_seconds: Some(DRAIN_LIMIT.as_secs()),
        graceful_shutdown_timeout_seconds: Some(1),
        upstream_keepalive_pool_size: 512,
        work_stealing,
        ca_file: settings
            .upstream_ca_file
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned()),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let server_conf = server.configuration.clone();
    let tls = match tls_listen {
        None => None,
        Some(_) => {
            let path = |p: &Option<std::path::PathBuf>| {
                p.as_ref().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default()
            };
            let mut tls = TlsSettings::intermediate(&path(&settings.tls_cert), &path(&settings.tls_key))
                .map_err(|e| format!("server.tls_cert/tls_key: {e}"))?;
            tls.enable_h2();
            Some(Arc::new(tls.build()))
        }
    };
    let take = |b: &mut Option<Bound>| b.as_mut().and_then(|b| b.sockets.pop());
    for i in 0..services {
        let mut app = pingora::proxy::http_proxy(&server_conf, Tollgate { state: state.clone() });
        let mut opts = HttpServerOptions::default();
        opts.h2c = true;
        opts.keepalive_request_limit = Some(10_000);
        app.server_options = Some(opts);
        let mut endpoints = Vec::new();
        if let Some(socket) = take(&mut listen_sockets) {
            endpoints.push(Endpoint { socket, tls: None });
        }
        if let Some(socket) = take(&mut tls_sockets) {
            endpoints.push(Endpoint {
                socket,
                tls: tls.clone(),
            });
        }
        server.add_service(ProxyService {
            name: if work_stealing {
                "tollgate".into()
            } else {
                format!("tollgate-{i}")
            },
            app: Arc::new(Capped {
                app: Arc::new(app),
                state: state.clone(),
                default_max,
            }),
            endpoints,
            threads,
        });
    }
    if let (Some(a), Some(socket)) = (admin, take(&mut admin_socket)) {
        let mut svc = Service::new("admin".to_string(), Admin { state: state.clone() });
        svc.add_tcp(&a.to_string());
        let fds = prebind(a, socket);
        server.add_service(Prebound {
            svc,
            fds,
            threads: None,
        });
    }
    server.add_service(background_service("config watcher", Watch { state: state.clone() }));
    server.add_service(background_service(
        "drain",
        Drain {
            counters: state.counters.clone(),
        },
    ));

    let show = |a: Option<SocketAddr>| a.map(|a| a.to_string()).unwrap_or_else(|| "-".into());
    // A stable line that scripts and tests read to learn the ports.
    println!(
        "tollgate listening http={} tls={} admin={}",
        show(listen),
        show(tls_listen),
        show(admin)
    );
    tracing::info!(http = %show(listen), tls = %show(tls_listen), admin = %show(admin), config_hash = %state.config.load().hash, "tollgate starting");
    // `run` returns after SIGINT's quick shutdown; the batched access lines go out before exit.
    server.run(RunArgs::default());
    crate::logging::flush();
    std::process::exit(0);
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
