//! The proxy's listeners: tollgate's own accept loop in front of [`Capped`].
//!
//! pingora's listening service spawns each accepted connection as a task whose future has room
//! for a TLS handshake in progress (~8.8 KB, `bench/README.md`), kept for the life of the
//! connection, TLS or not, and a connection counts towards nothing until its handshake is done.
//! Here a connection takes its place under `server.max_connections` as it is accepted, its task
//! holds only what serving it needs, and a TLS handshake runs in an allocation of its own that is
//! freed when the handshake ends. The streams are pingora's (`Listener::accept`, the
//! `Acceptor`'s handshake), so requests are served exactly as before.

use crate::connections::{Capped, Slot};
use async_trait::async_trait;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::listeners::tls::Acceptor;
use pingora::protocols::l4::listener::Listener;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream, TimingDigest,
    UniqueID, UniqueIDType,
};
use pingora::server::{ListenFds, ShutdownWatch};
use pingora::services::Service as ServiceTrait;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter, ReadBuf};

/// How long a TLS handshake may take, as in pingora's listener.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// Bytes of a response gathered before they are written: pingora's default for its own client
/// streams (one TCP segment), so a response head and a small body leave in one `send`.
const WRITE_BUFFER: usize = pingora::listeners::DEFAULT_L4_WRITE_BUFFER_SIZE;

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

/// One connection, from its TLS handshake (if any) to its end. `_slot` is its place under the
/// connection limit, given back when this returns.
async fn serve<A>(
    app: Arc<Capped<A>>,
    mut l4: L4Stream,
    tls: Option<Arc<Acceptor>>,
    shutdown: ShutdownWatch,
    _slot: Slot,
) where
    A: HttpServerApp + Send + Sync + 'static,
{
    if let Err(e) = l4.set_nodelay() {
        tracing::debug!("TCP_NODELAY not set: {e}");
    }
    let stream = Buffered(BufWriter::with_capacity(WRITE_BUFFER, l4));
    let stream: Stream = match tls {
        None => Box::new(stream),
        Some(acceptor) => {
            // Boxed, so the handshake's state is freed when it ends instead of sizing the task.
            let handshake = Box::pin(async move { acceptor.tls_handshake(stream).await });
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                Ok(Ok(tls)) => Box::new(tls),
                Ok(Err(e)) => {
                    tracing::debug!("TLS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    tracing::debug!("TLS handshake not done in {HANDSHAKE_TIMEOUT:?}; connection closed");
                    return;
                }
            }
        }
    };
    app.serve(stream, &shutdown).await;
}

/// A client stream whose writes are gathered in a small buffer until flushed, as pingora's own
/// listener sets up its streams (their buffer sizes are not settable from outside pingora).
/// Everything else is the pingora stream's.
#[derive(Debug)]
struct Buffered(BufWriter<L4Stream>);

impl Drop for Buffered {
    fn drop(&mut self) {
        // Like pingora's stream: a last try to send what is buffered, without waiting.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let _ = Pin::new(&mut self.0).poll_flush(&mut cx);
    }
}

impl AsyncRead for Buffered {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Buffered {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for Buffered {
    async fn shutdown(&mut self) {
        // Flushes the buffer, then shuts the socket's write side.
        if let Err(e) = AsyncWriteExt::shutdown(&mut self.0).await {
            tracing::debug!("connection shutdown: {e}");
        }
    }
}

impl UniqueID for Buffered {
    fn id(&self) -> UniqueIDType {
        self.0.get_ref().id()
    }
}

impl Ssl for Buffered {}

#[async_trait]
impl Peek for Buffered {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.0.get_mut().try_peek(buf).await
    }
}

impl GetTimingDigest for Buffered {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.0.get_ref().get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.0.get_ref().get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.0.get_ref().get_write_pending_time()
    }
}

impl GetProxyDigest for Buffered {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.0.get_ref().get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.0.get_mut().set_proxy_digest(digest)
    }
}

impl GetSocketDigest for Buffered {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.0.get_ref().get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.0.get_mut().set_socket_digest(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A [`Buffered`] server end of a real loopback connection, and its client end.
    async fn pair() -> (Buffered, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (Buffered(BufWriter::with_capacity(WRITE_BUFFER, server.into())), client)
    }

    /// What has reached `client`, waiting up to 200 ms for the first byte.
    async fn arrived(client: &mut tokio::net::TcpStream) -> Vec<u8> {
        let mut buf = vec![0u8; 4096];
        match tokio::time::timeout(Duration::from_millis(200), client.read(&mut buf)).await {
            Ok(n) => buf[..n.unwrap()].to_vec(),
            Err(_) => Vec::new(),
        }
    }

    #[tokio::test]
    async fn writes_are_gathered_until_flushed_and_sent_when_dropped() {
        let (mut server, mut client) = pair().await;
        server.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
        server.write_all(b"content-length: 2\r\n\r\n").await.unwrap();
        assert_eq!(arrived(&mut client).await, b"", "sent before the flush");
        server.write_all(b"ok").await.unwrap();
        server.flush().await.unwrap();
        assert_eq!(
            arrived(&mut client).await,
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
        );

        // A write larger than the buffer goes out at once.
        let big = vec![b'x'; WRITE_BUFFER * 2];
        server.write_all(&big).await.unwrap();
        let mut got = Vec::new();
        while got.len() < big.len() {
            let more = arrived(&mut client).await;
            assert!(!more.is_empty(), "only {} of {} bytes sent", got.len(), big.len());
            got.extend(more);
        }

        server.write_all(b"last").await.unwrap();
        drop(server);
        assert_eq!(arrived(&mut client).await, b"last");
    }

    #[tokio::test]
    async fn the_stream_answers_for_its_socket() {
        let (mut server, mut client) = pair().await;
        assert!(server.id() > 0, "the socket's descriptor");
        assert!(server.get_ssl().is_none());
        // try_peek leaves the bytes for the next read.
        client.write_all(b"GET").await.unwrap();
        let mut peeked = [0u8; 3];
        assert!(server.try_peek(&mut peeked).await.unwrap());
        let mut read = [0u8; 3];
        server.read_exact(&mut read).await.unwrap();
        assert_eq!((&peeked, &read), (b"GET", b"GET"));
    }
}
