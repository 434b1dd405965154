//! pingora wiring: the proxy service (plain and TLS listeners), the admin service, the config
//! watcher and the SIGTERM drain, all in one pingora `Server`.

use crate::admin::Admin;
use crate::config::{self, LoadOptions, Snapshot};
use crate::proxy::{Tollgate, IN_FLIGHT};
use crate::state::State;
use async_trait::async_trait;
use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{L4BufferSettings, ListenerConfig, TcpSocketOptions, DEFAULT_L4_WRITE_BUFFER_SIZE};
use pingora::proxy::HttpProxy;
use pingora::server::configuration::ServerConf;
use pingora::server::ListenFds;
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;
use pingora::services::Service as ServiceTrait;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How long SIGTERM waits for in-flight requests before the process exits anyway.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// A port-0 address becomes a concrete free port, so the issuer and the startup line can name it.
/// Every address is bound once here without SO_REUSEPORT: a port another process holds (another
/// tollgate included, whose workers use SO_REUSEPORT) fails start-up instead of being shared.
fn concrete(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    TcpListener::bind(addr)?.local_addr()
}

/// Load the config and run the sidecar until SIGTERM/SIGINT. Returns only on a start-up error.
pub fn run(config_path: &Path) -> Result<(), String> {
    let first = config::load(config_path, LoadOptions::default()).map_err(|e| e.to_string())?;
    crate::logging::init(first.server.log_format_json);
    let resolve = |key: &str, a: Option<SocketAddr>| a.map(concrete).transpose().map_err(|e| format!("{key}: {e}"));
    let listen = resolve("server.listen", first.server.listen)?;
    let tls_listen = resolve("server.tls_listen", first.server.tls_listen)?;
    let admin = resolve("server.admin_listen", first.server.admin_listen)?;
    let port = listen.or(tls_listen).map(|a| a.port());
    // Load again with the concrete port so default issuers name it.
    let snap: Snapshot = config::load(config_path, LoadOptions { listen_port: port }).map_err(|e| e.to_string())?;
    for w in &snap.warnings {
        tracing::warn!("{w}");
    }
    let settings = snap.server.clone();
    let state = State::new(snap, config_path.to_path_buf(), port);

    let conf_threads = settings
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2));
    let conf = ServerConf {
        // Per-worker mode runs each proxy worker, the admin service and the background tasks on
        // one thread apiece.
        threads: if settings.work_stealing { conf_threads } else { 1 },
        grace_period_seconds: Some(DRAIN_LIMIT.as_secs()),
        graceful_shutdown_timeout_seconds: Some(1),
        upstream_keepalive_pool_size: 512,
        work_stealing: settings.work_stealing,
        ca_file: settings
            .upstream_ca_file
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned()),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let workers = conf_threads;
    let server_conf = server.configuration.clone();
    let build = |name: String| -> Result<_, String> {
        let mut proxy =
            pingora::proxy::http_proxy_service_with_name(&server_conf, Tollgate { state: state.clone() }, &name);
        if let Some(app) = proxy.app_logic_mut() {
            let mut opts = HttpServerOptions::default();
            opts.h2c = true;
            opts.keepalive_request_limit = Some(10_000);
            app.server_options = Some(opts);
        }
        // pingora gives each downstream connection a 64 KiB read buffer; 16 KiB streams bodies
        // just as well and keeps 1,000 idle keep-alive connections from costing 64 MB.
        let l4 = || L4BufferSettings::new(16 * 1024, DEFAULT_L4_WRITE_BUFFER_SIZE);
        // Each worker binds its own socket on the shared port; the kernel spreads connections.
        let mut sock = TcpSocketOptions::default();
        sock.so_reuseport = Some(!settings.work_stealing);
        if let Some(a) = listen {
            proxy.add_listener(
                ListenerConfig::tcp(a.to_string())
                    .tcp_socket_options(sock.clone())
                    .l4_buffer(l4()),
            );
        }
        if let Some(a) = tls_listen {
            let cert = settings
                .tls_cert
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            let key = settings
                .tls_key
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut tls =
                TlsSettings::intermediate(&cert, &key).map_err(|e| format!("server.tls_cert/tls_key: {e}"))?;
            tls.enable_h2();
            proxy.add_listener(
                ListenerConfig::tcp(a.to_string())
                    .tls(tls)
                    .tcp_socket_options(sock)
                    .l4_buffer(l4()),
            );
        }
        Ok(proxy)
    };
    if settings.work_stealing {
        // One multi-threaded runtime shared by every connection; idle threads steal work.
        let proxy = build("tollgate".into())?;
        server.add_service(proxy);
    } else {
        // Shared-nothing workers (nginx's and Envoy's model): each is a single-threaded runtime
        // with its own listening socket (SO_REUSEPORT) and its own upstream connection pool, so a
        // request never crosses threads and no socket is polled by one thread for another.
        for i in 0..workers {
            let proxy = build(format!("tollgate-{i}"))?;
            server.add_service(Worker(proxy));
        }
    }
    if let Some(a) = admin {
        let mut svc = Service::new("admin".to_string(), Admin { state: state.clone() });
        svc.add_tcp(&a.to_string());
        server.add_service(svc);
    }
    server.add_service(background_service("config watcher", Watch { state: state.clone() }));
    server.add_service(background_service("drain", Drain));

    let show = |a: Option<SocketAddr>| a.map(|a| a.to_string()).unwrap_or_else(|| "-".into());
    // A stable line that scripts and tests read to learn the ports.
    println!(
        "tollgate listening http={} tls={} admin={}",
        show(listen),
        show(tls_listen),
        show(admin)
    );
    tracing::info!(http = %show(listen), tls = %show(tls_listen), admin = %show(admin), config_hash = %state.config.load().hash, "tollgate starting");
    server.run_forever();
}

/// A proxy worker of the shared-nothing model: pingora's listening service on one thread, binding
/// its own listener sockets instead of taking them from pingora's shared fd table (which would
/// hand every worker the first worker's socket).
struct Worker(Service<HttpProxy<Tollgate>>);

#[async_trait]
impl ServiceTrait for Worker {
    async fn start_service(&mut self, _fds: Option<ListenFds>, shutdown: ShutdownWatch, listeners_per_fd: usize) {
        self.0.start_service(None, shutdown, listeners_per_fd).await
    }

    fn name(&self) -> &str {
        self.0.name()
    }

    fn threads(&self) -> Option<usize> {
        Some(1)
    }
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
struct Drain;

#[async_trait]
impl BackgroundService for Drain {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        if shutdown.changed().await.is_err() {
            return;
        }
        tracing::info!("shutting down: draining requests in flight");
        // Give the listeners a moment to stop accepting before counting.
        tokio::time::sleep(Duration::from_millis(50)).await;
        while IN_FLIGHT.load(Ordering::Relaxed) > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::info!("drained; exiting");
        crate::logging::flush();
        std::process::exit(0);
    }
}
