//! A pingora listening service started on sockets tollgate bound itself; wraps pingora's
//! `Service` trait (pingora-core `services/mod.rs`) around a `services::listening::Service`.
//!
//! Why: pingora's own fd table belongs to its `Server` and cannot be filled from outside, and
//! `ListenerEndpointBuilder::listen` takes a socket from whatever table `start_service` is given
//! instead of binding. [`Prebound`] hands the inner service a table of its own, made by
//! [`super::bind::prebind`], so the admin port is served by pingora's accept loop on the
//! socket bound at start.
//!
//! On a pingora upgrade, re-check: the `Service` trait's method list (every method is forwarded
//! here, so a new one with a default would silently not be); and that a listening service still
//! looks its address up in the `fds` argument of `start_service` before binding.

use async_trait::async_trait;
use pingora::server::{ListenFds, RuntimeOpts, ShutdownWatch};
use pingora::services::listening::Service;
use pingora::services::Service as ServiceTrait;
use std::time::Duration;

/// A listening service that takes its sockets from `fds` instead of pingora's shared table.
/// `threads` overrides the service's thread count when set.
pub struct Prebound<A> {
    pub svc: Service<A>,
    pub fds: ListenFds,
    pub threads: Option<usize>,
}

#[async_trait]
impl<A> ServiceTrait for Prebound<A>
where
    Service<A>: ServiceTrait,
    A: Send + Sync + 'static,
{
    async fn start_service(&mut self, _fds: Option<ListenFds>, shutdown: ShutdownWatch, listeners_per_fd: usize) {
        self.svc
            .start_service(Some(self.fds.clone()), shutdown, listeners_per_fd)
            .await
    }

    fn name(&self) -> &str {
        self.svc.name()
    }

    fn threads(&self) -> Option<usize> {
        self.threads.or_else(|| self.svc.threads())
    }

    fn runtime_opts_override(&self, global: &RuntimeOpts) -> Option<RuntimeOpts> {
        self.svc.runtime_opts_override(global)
    }

    fn on_startup_delay(&self, time_waited: Duration) {
        self.svc.on_startup_delay(time_waited)
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        self.svc.listen_addresses()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{bind_address, prebind};
    use pingora::apps::http_app::ServeHttp;
    use pingora::protocols::http::ServerSession;
    use std::io::{Read, Write};
    use std::sync::Arc;

    struct Answer;

    #[async_trait]
    impl ServeHttp for Answer {
        async fn response(&self, _session: &mut ServerSession) -> http::Response<Vec<u8>> {
            http::Response::builder()
                .header("content-length", 2)
                .body(b"ok".to_vec())
                .unwrap_or_default()
        }
    }

    #[test]
    fn every_service_method_is_the_inner_services_unless_overridden() {
        let mut svc = Service::new("admin".to_string(), Answer);
        svc.add_tcp("127.0.0.1:9");
        svc.threads = Some(3);
        let opts = RuntimeOpts {
            enable_alt_timer: true,
            ..RuntimeOpts::default()
        };
        svc.set_runtime_opts_override(Arc::new(move |_| Some(opts.clone())));
        let fds = Arc::new(parking_lot::Mutex::new(pingora::server::Fds::new()));
        let wrapped = Prebound {
            svc,
            fds,
            threads: None,
        };
        assert_eq!(wrapped.name(), "admin");
        assert_eq!(wrapped.threads(), Some(3));
        assert_eq!(wrapped.listen_addresses(), Some(vec!["127.0.0.1:9".to_string()]));
        let over = wrapped.runtime_opts_override(&RuntimeOpts::default());
        assert!(over.is_some_and(|o| o.enable_alt_timer));
        wrapped.on_startup_delay(Duration::from_millis(1));
        let wrapped = Prebound {
            threads: Some(1),
            ..wrapped
        };
        assert_eq!(wrapped.threads(), Some(1), "the wrapper's own thread count wins");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_service_serves_on_the_socket_bound_before_it_started() {
        let bound = bind_address("admin", "127.0.0.1:0".parse().unwrap(), 1, false).unwrap();
        let addr = bound.addr;
        let socket = bound.sockets.into_iter().next().unwrap();
        let mut svc = Service::new("admin".to_string(), Answer);
        svc.add_tcp(&addr.to_string());
        let mut wrapped = Prebound {
            svc,
            fds: prebind(addr, socket),
            threads: None,
        };
        let (down, shutdown) = tokio::sync::watch::channel(false);
        // No table of pingora's is given: the socket can only come from the wrapper's own.
        let running = tokio::spawn(async move { wrapped.start_service(None, shutdown, 1).await });
        let answer = tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut got = String::new();
            s.read_to_string(&mut got).unwrap();
            got
        })
        .await
        .unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("ok"), "{answer}");
        down.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), running)
            .await
            .unwrap()
            .unwrap();
    }
}
