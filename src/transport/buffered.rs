//! A client stream with a small write buffer; stands in for the `L4BufferSettings` that
//! pingora's listener applies in `UninitializedStream::handshake` (pingora-core
//! `listeners/mod.rs`, through the crate-private `l4::stream::Stream::set_buffer`).
//!
//! Why: `ListenerConfig::l4_buffer` is pingora's way to size a client stream's buffers, but only
//! pingora's own accept loop applies it, and tollgate accepts with its own (`accept.rs`); a
//! stream from `Listener::accept` has no write buffer, so a response head and its body would
//! leave in separate sends. The read side stays unbuffered, as `L4BufferSettings { read: 0 }`
//! would leave it (docs/performance-decisions.md).
//!
//! On a pingora upgrade, re-check: the method list of every trait below (each method is
//! forwarded to the pingora stream, defaulted ones included, so a new one with a default would
//! silently not be); whether `Stream::set_buffer` or another way to size a stream's buffers has
//! become public (then this file can go); and `DEFAULT_L4_WRITE_BUFFER_SIZE`.

use async_trait::async_trait;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, TimingDigest, UniqueID,
    UniqueIDType, ALPN,
};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter, ReadBuf};

/// Bytes of a response gathered before they are written: pingora's default for its own client
/// streams (one TCP segment), so a response head and a small body leave in one `send`.
const WRITE_BUFFER: usize = pingora::listeners::DEFAULT_L4_WRITE_BUFFER_SIZE;

/// A client stream whose writes are gathered in a small buffer until flushed, as pingora's own
/// listener sets up its streams. Everything else is the pingora stream's.
#[derive(Debug)]
pub struct Buffered(BufWriter<L4Stream>);

impl Buffered {
    pub fn new(stream: L4Stream) -> Self {
        Buffered(BufWriter::with_capacity(WRITE_BUFFER, stream))
    }
}

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

impl Ssl for Buffered {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.0.get_ref().get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.0.get_ref().get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.0.get_ref().selected_alpn_proto()
    }
}

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
        (Buffered::new(server.into()), client)
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
        assert!(server.get_ssl_digest().is_none());
        assert!(server.selected_alpn_proto().is_none());
        let peer = client.local_addr().unwrap();
        let digest = SocketDigest::from_raw_fd(server.id());
        assert!(server.get_socket_digest().is_none());
        server.set_socket_digest(digest);
        let digest = server.get_socket_digest().expect("the digest set");
        assert_eq!(digest.peer_addr().and_then(|a| a.as_inet()).copied(), Some(peer));
        assert_eq!(server.get_timing_digest().len(), 1, "the L4 stream's timing");
        // try_peek leaves the bytes for the next read.
        client.write_all(b"GET").await.unwrap();
        let mut peeked = [0u8; 3];
        assert!(server.try_peek(&mut peeked).await.unwrap());
        let mut read = [0u8; 3];
        server.read_exact(&mut read).await.unwrap();
        assert_eq!((&peeked, &read), (b"GET", b"GET"));
    }
}
