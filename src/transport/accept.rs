//! The proxy workers' listening service; stands in for pingora's listening `Service`
//! (pingora-core `services/listening.rs`: `start_service` and its accept loop `run_endpoint`,
//! which spawns each connection as `timeout(60 s, handshake)` then `handle_event`).
//!
//! Why, each with a test or a measurement behind it:
//! - the connection limit is taken as a connection is accepted, before its TLS handshake
//!   (`tls_handshakes_in_progress_count_towards_max_connections`): pingora's loop offers no hook
//!   there but the bool-only `ConnectionFilter`, which cannot give a place back when the
//!   connection ends;
//! - pingora's spawned future keeps room for a TLS handshake in progress for the life of every
//!   connection, TLS or not; here the handshake runs in an allocation of its own, freed when it
//!   ends (docs/performance-decisions.md).
//!
//! The streams are still pingora's (`Listener::accept`, the `Acceptor`'s handshake), so requests
//! are served as pingora would serve them. On a pingora upgrade, re-check against
//! `run_endpoint`: the handshake timeout (60 s), the pause after EMFILE, what `Listener::accept`
//! sets on a stream (socket digest, peer address) and what `ListenerEndpoint::accept` sets
//! besides (TCP_NODELAY, copied here); that `UninitializedStream::handshake` still applies
//! `L4BufferSettings` that [`super::buffered`] mirrors; and the `Service` trait's methods.

use super::buffered::Buffered;
use super::capped::Capped;
use crate::counters::Connection;
use async_trait::async_trait;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::listeners::tls::Acceptor;
use pingora::protocols::l4::listener::Listener;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::Stream;
use pingora::server::{ListenFds, ShutdownWatch};
use pingora::services::Service as ServiceTrait;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// How long a TLS handshake may take, as in pingora's listener.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// One listening socket, bound before pingora starts, and its TLS acceptor if it speaks TLS.
pub struct Endpoint {
    pub socket: std::net::TcpListener,
    pub tls: Option<Arc<Acceptor>>,
}

/// A pingora service that accepts on its endpoints and serves each connection with `app`.
/// `threads`: the service's thread count (1 for a proxy worker, `None` for pingora's setting).
pub struct ProxyService<A> {
    pub name: String,
    pub app: Arc<Capped<A>>,
    pub endpoints: Vec<Endpoint>,
    pub threads: Option<usize>,
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> ServiceTrait for ProxyService<A> {
    async fn start_service(&mut self, _fds: Option<ListenFds>, shutdown: ShutdownWatch, _per_fd: usize) {
        let mut loops = Vec::new();
        for endpoint in self.endpoints.drain(..) {
            match tokio::net::TcpListener::from_std(endpoint.socket) {
                Ok(listener) => loops.push(tokio::spawn(accept_loop(
                    self.app.clone(),
                    Listener::from(listener),
                    endpoint.tls,
                    shutdown.clone(),
                ))),
                Err(e) => tracing::error!("{}: cannot listen: {e}", self.name),
            }
        }
        for l in loops {
            let _ = l.await;
        }
        self.app.app.cleanup().await;
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn threads(&self) -> Option<usize> {
        self.threads
    }
}

/// Accepts until shutdown. A connection over the limit is closed at once, before its handshake.
async fn accept_loop<A>(
    app: Arc<Capped<A>>,
    listener: Listener,
    tls: Option<Arc<Acceptor>>,
    mut shutdown: ShutdownWatch,
) where
    A: HttpServerApp + Send + Sync + 'static,
{
    loop {
        let accepted = tokio::select! {
            biased;
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return;
                }
                continue;
            }
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok(stream) => {
                // Dropping a refused stream closes it before anything is read from it.
                let Some(slot) = app.admit() else { continue };
                tokio::spawn(serve(app.clone(), stream, tls.clone(), shutdown.clone(), slot));
            }
            Err(e) => {
                tracing::error!("accept() failed: {e}");
                if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
                    // accept() fails at once while no descriptor is free: wait for some to close.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

/// How a connection starts: its stream, or the TLS handshake that makes it.
enum Start {
    Plain(Stream),
    Tls(Pin<Box<dyn Future<Output = pingora::Result<Stream>> + Send>>),
}

/// One connection, from its TLS handshake (if any) to its end. `slot` is its place under the
/// connection limit, given back when the future ends.
///
/// The stream is boxed, or moved into the boxed handshake, before the future is made, so the
/// task holds a pointer to it rather than the 376-byte stream itself: an async fn keeps room
/// for every argument and for any local it borrows for the whole of its life
/// (docs/performance-decisions.md).
fn serve<A>(
    app: Arc<Capped<A>>,
    mut l4: L4Stream,
    tls: Option<Arc<Acceptor>>,
    shutdown: ShutdownWatch,
    slot: Connection,
) -> impl Future<Output = ()> + Send + 'static
where
    A: HttpServerApp + Send + Sync + 'static,
{
    if let Err(e) = l4.set_nodelay() {
        tracing::debug!("TCP_NODELAY not set: {e}");
    }
    let stream = Buffered::new(l4);
    let start = match tls {
        None => Start::Plain(Box::new(stream)),
        // Boxed, so the handshake's state is freed when it ends instead of sizing the task.
        Some(acceptor) => Start::Tls(Box::pin(async move {
            let tls = acceptor.tls_handshake(stream).await?;
            Ok(Box::new(tls) as Stream)
        })),
    };
    async move {
        let _slot = slot;
        let stream = match start {
            Start::Plain(stream) => stream,
            Start::Tls(handshake) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!("TLS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    tracing::debug!("TLS handshake not done in {HANDSHAKE_TIMEOUT:?}; connection closed");
                    return;
                }
            },
        };
        app.serve(stream, &shutdown).await;
    }
}
