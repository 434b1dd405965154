//! Client connections: the limit (`server.max_connections`), the open-files limit, and which
//! protocol a new connection is served with.
//!
//! Every proxy worker's app is wrapped in [`Capped`]. Its listener (`crate::listener`) asks
//! [`Capped::admit`] for a place as it accepts a connection, before any TLS handshake, so the
//! count covers the client connections open across all workers, and a new one is closed at once
//! when the count is at the limit, the way Envoy's listener connection limit does. A connection
//! holds ~8 KB while idle and ~30 KB with a request in flight, its upstream side included
//! (bench/README.md), so without a bound, clients that open connections and send nothing would
//! grow memory until the open-files limit. The admin listener is not counted, so `/metrics` and
//! the probes still answer when the proxy is full.
//!
//! [`Capped`] also tells HTTP/1 from HTTP/2 itself and runs an HTTP/1 connection's requests
//! directly. pingora's own dispatch sniffs cleartext HTTP/2 by waiting for 24 bytes with no time
//! limit, so a whole request shorter than that (`GET / HTTP/1.0` and a blank line) got no answer,
//! and a client that connected and sent nothing held its connection, and a place under
//! `max_connections`, for ever. Here the sniff stops as soon as the bytes cannot be the HTTP/2
//! preface and waits at most 60 s; HTTP/2 connections still go through
//! pingora's dispatch. Between requests an HTTP/1 connection, cleartext or TLS, holds only its
//! stream, its task and the 2 KB buffer its next request is read into (`next_request`).

use crate::config::DEFAULT_MAX_CONNECTIONS;
use crate::state::State;
use bytes::BytesMut;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Client connections open now, over every proxy worker.
pub static OPEN: AtomicUsize = AtomicUsize::new(0);

/// When the last "limit reached" warning was logged (seconds since the epoch).
static LAST_WARNING: AtomicU64 = AtomicU64::new(0);

/// At most one warning per this many seconds while connections are being refused.
const WARN_EVERY_SECS: u64 = 10;

/// How long a connection may stay silent before it is closed: before its first request, and
/// between requests when kept alive (pingora's keep-alive, in the seconds it takes).
const IDLE_SECS: u64 = 60;

/// [`IDLE_SECS`] as a duration.
const IDLE_TIMEOUT: Duration = Duration::from_secs(IDLE_SECS);

/// The buffer a kept-alive connection's next request is read into while waiting for it, and
/// which pingora then parses it from and keeps while the request is served. Half of pingora's
/// own 4 KB: a request with a bearer token is ~1 KB, nginx starts with 1 KB
/// (`client_header_buffer_size`), and a longer head grows the buffer as pingora reads the rest.
/// 1,000 connections hold ~2 MB less, busy or idle (bench/README.md).
const HEAD_BUFFER: usize = 2048;

/// What a cleartext HTTP/2 client sends first (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How a new connection is served.
#[derive(Debug, PartialEq, Eq)]
enum Protocol {
    /// HTTP/1.x, by [`serve_http1`].
    Http1,
    /// HTTP/2 (ALPN or the cleartext preface) or another ALPN protocol: pingora's own dispatch.
    Pingora,
}

/// Decides how to serve `stream` from its ALPN (TLS) or, when cleartext HTTP/2 is on, from as
/// few of its first bytes as tell the two apart; the bytes stay in the stream. `None`: the
/// client sent nothing within `wait`, or closed, or the read failed; the connection is dropped.
async fn protocol(stream: &mut Stream, h2c: bool, wait: Duration) -> Option<Protocol> {
    if stream.get_ssl_digest().is_some() {
        return Some(match stream.selected_alpn_proto() {
            Some(ALPN::H2 | ALPN::Custom(_)) => Protocol::Pingora,
            _ => Protocol::Http1,
        });
    }
    if !h2c {
        return Some(Protocol::Http1);
    }
    // Most HTTP/1 requests part from the preface at their first or second byte. Peeking at a
    // doubling length, a request only waits for bytes that could still be the preface's, so a
    // short request is never held waiting for bytes its client will not send.
    for len in [1, 2, 4, 8, 16, H2_PREFACE.len()] {
        let mut buf = [0u8; H2_PREFACE.len()];
        let buf = &mut buf[..len];
        match tokio::time::timeout(wait, stream.try_peek(buf)).await {
            Ok(Ok(true)) => {}
            // A stream that cannot peek is served as pingora would: HTTP/1.
            Ok(Ok(false)) => return Some(Protocol::Http1),
            Ok(Err(e)) => {
                tracing::debug!("connection closed before its first request: {e}");
                return None;
            }
            Err(_) => {
                tracing::debug!("connection closed: nothing received in {wait:?}");
                return None;
            }
        }
        if buf != &H2_PREFACE[..len] {
            return Some(Protocol::Http1);
        }
    }
    Some(Protocol::Pingora)
}

/// Serves an HTTP/1 connection's requests one after another, as pingora's dispatch does for
/// HTTP/1: a 60 s keep-alive, and the app's limit of requests per connection. Each request's head
/// must arrive whole within `server.client_timeout` of its first byte (see [`within_head_timeout`]).
async fn serve_http1<A>(app: &Arc<A>, stream: Stream, shutdown: &ShutdownWatch, state: &State)
where
    A: HttpServerApp + Send + Sync + 'static,
{
    let head = Arc::new(AtomicBool::new(false));
    let mut session = ServerSession::new_http1(stream);
    session.set_keepalive(if *shutdown.borrow() { None } else { Some(IDLE_SECS) });
    session.set_keepalive_reuses_remaining(app.server_options().and_then(|o| o.keepalive_request_limit));
    loop {
        let head_timeout = state.config.load().server.client_timeout;
        let reused = within_head_timeout(app.process_new_http(session, shutdown), &head, head_timeout).await;
        let Some((mut stream, settings)) = reused.map(|r| r.consume()) else {
            return;
        };
        let Some(first) = next_request(&mut stream, shutdown).await else {
            return;
        };
        session = ServerSession::new_http1(stream);
        if let Some(settings) = settings {
            settings.apply_to_session(&mut session);
        }
        // pingora parses these before reading the stream again (the API it uses to carry
        // pipelined bytes from one request to the next).
        session.set_pipelined_prefix(first);
    }
}

tokio::task_local! {
    /// Set once the head of the HTTP/1 request in progress on this task has been read whole.
    static HEAD_READ: Arc<AtomicBool>;
}

/// Tells the connection's dispatch that the request head in progress has been read whole, so
/// its deadline no longer applies. Called as pingora makes the request's context; does nothing
/// outside `serve_http1` (HTTP/2 streams).
pub fn head_read() {
    let _ = HEAD_READ.try_with(|read| read.store(true, Ordering::Relaxed));
}

/// Runs one request, and drops it (closing the connection) if its head is not read whole within
/// `timeout`. pingora's own header timeout restarts with every read, so a client sending a byte
/// every 59 s held its connection for ever; nginx's `client_header_timeout` bounds the whole head
/// the same way. The deadline no longer applies once the head is in: bodies and upstreams have
/// timeouts of their own.
async fn within_head_timeout<F, R>(request: F, head: &Arc<AtomicBool>, timeout: Duration) -> Option<R>
where
    F: std::future::Future<Output = Option<R>>,
{
    head.store(false, Ordering::Relaxed);
    let due = tokio::time::Instant::now() + timeout;
    let request = HEAD_READ.scope(head.clone(), request);
    tokio::pin!(request);
    // A kept-alive connection starts a request once it is readable, so the head is nearly always
    // read whole in the first poll, and the deadline is made only when it is not: a tokio timer
    // earlier than the runtime's next wake-up costs a write to its eventfd when it is armed.
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(request.as_mut().poll(cx))).await;
    if let std::task::Poll::Ready(reused) = first {
        return reused;
    }
    if head.load(Ordering::Relaxed) {
        return request.await;
    }
    let deadline = tokio::time::sleep_until(due);
    tokio::pin!(deadline);
    let mut armed = true;
    loop {
        tokio::select! {
            biased;
            reused = &mut request => return reused,
            _ = &mut deadline, if armed => {
                if !head.load(Ordering::Relaxed) {
                    tracing::debug!("request head not received whole in {timeout:?}; connection closed");
                    return None;
                }
                armed = false;
            }
        }
    }
}

/// Waits on a kept-alive connection until the client sends its next request, holding only the
/// stream and a [`HEAD_BUFFER`]: pingora's request future and HTTP session (~16 KB) are made
/// when there is a request to serve. Returns the buffer with the first bytes of the request,
/// read in the same system call that ended the wait, for pingora to parse before it reads again
/// (a head of up to 2 KB takes no other read) and to keep as its request-head buffer.
/// `None`: close the connection (idle past the keep-alive, closed by the client, an error, or
/// the server shutting down).
///
/// The keep-alive is one of pingora's timers (10 ms resolution, shared by the connections that
/// expire in the same 10 ms), not tokio's: arming a tokio timer due before the runtime's next
/// wake-up writes to the runtime's eventfd, which happened for about a quarter of requests.
async fn next_request(stream: &mut Stream, shutdown: &ShutdownWatch) -> Option<BytesMut> {
    use pingora::prelude::fast_timeout::fast_timeout;
    use tokio::io::AsyncReadExt;
    let mut head = BytesMut::with_capacity(HEAD_BUFFER);
    let mut shutdown = shutdown.clone();
    tokio::select! {
        biased;
        read = fast_timeout(IDLE_TIMEOUT, stream.read_buf(&mut head)) => match read {
            Ok(Ok(n)) if n > 0 => Some(head),
            _ => None,
        },
        _ = shutdown.wait_for(|down| *down) => None,
    }
}

/// A proxy app whose connections count against `server.max_connections` (read from the live
/// config, so a reload changes it for new connections), or `default_max` when it is not set.
pub struct Capped<A> {
    pub app: Arc<A>,
    pub state: Arc<State>,
    pub default_max: usize,
}

/// The limit when `server.max_connections` is not set: [`DEFAULT_MAX_CONNECTIONS`], or what an
/// open-files limit of `open_files` can hold with a client and an upstream socket per
/// connection and a few dozen descriptors to spare (HAProxy derives its `maxconn` the same way).
fn default_max(open_files: u64) -> usize {
    let fit = open_files.saturating_sub(RESERVED_FDS) / 2;
    (fit.max(1) as usize).min(DEFAULT_MAX_CONNECTIONS)
}

/// Descriptors kept for listeners, config and key files, logs and the admin port.
const RESERVED_FDS: u64 = 64;

/// Open files that `max` connections can need: a client and an upstream socket each.
fn fds_needed(max: usize) -> u64 {
    max as u64 * 2 + RESERVED_FDS
}

/// At start: raises the open-files limit, says when it constrains the connection limit, and
/// returns the limit to use while `server.max_connections` is not set.
pub fn limits_at_start(configured: Option<usize>) -> usize {
    let open_files = match raise_open_files_limit() {
        Ok((before, after)) => {
            if after > before {
                tracing::info!("open-files limit (RLIMIT_NOFILE) raised from {before} to its hard limit {after}");
            }
            after
        }
        Err(e) => {
            tracing::warn!("could not read or raise the open-files limit: {e}");
            1024
        }
    };
    let default = default_max(open_files);
    match configured {
        Some(max) if fds_needed(max) > open_files => tracing::warn!(
            "server.max_connections = {max} can need {} open files (a client and an upstream socket each); the open-files limit is {open_files}",
            fds_needed(max)
        ),
        None if default < DEFAULT_MAX_CONNECTIONS => tracing::info!(
            "client connections limited to {default} by the open-files limit ({open_files}); set server.max_connections to choose"
        ),
        _ => {}
    }
    default
}

/// Holds one slot of the count; gives it back when the connection ends, however it ends.
pub struct Slot;

impl Slot {
    /// Takes a slot unless `max` are taken.
    fn take(max: usize) -> Option<Slot> {
        OPEN.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .ok()
            .map(|_| Slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<A: HttpServerApp + Send + Sync + 'static> Capped<A> {
    /// A place under the connection limit for a connection just accepted, or `None` (counted and
    /// warned about) when the limit is reached.
    pub fn admit(&self) -> Option<Slot> {
        let max = self
            .state
            .config
            .load()
            .server
            .max_connections
            .unwrap_or(self.default_max);
        let slot = Slot::take(max);
        if slot.is_none() {
            self.state.metrics.inc("tollgate_connections_refused_total", &[]);
            warn_limit_reached(max);
        }
        slot
    }

    /// Serves a connection (its TLS handshake done) until it closes.
    pub async fn serve(&self, stream: Stream, shutdown: &ShutdownWatch) {
        let mut next = Some(stream);
        while let Some(stream) = next.take() {
            next = self.dispatch(stream, shutdown).await;
        }
    }

    /// HTTP/1 to [`serve_http1`], the rest to pingora's dispatch, which may hand the stream back
    /// for its next request.
    async fn dispatch(&self, mut stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let h2c = self.app.server_options().is_some_and(|o| o.h2c);
        match protocol(&mut stream, h2c, IDLE_TIMEOUT).await? {
            Protocol::Http1 => {
                serve_http1(&self.app, stream, shutdown, &self.state).await;
                None
            }
            Protocol::Pingora => ServerApp::process_new(&self.app, stream, shutdown).await,
        }
    }
}

fn warn_limit_reached(max: usize) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let last = LAST_WARNING.load(Ordering::Relaxed);
    if now >= last + WARN_EVERY_SECS
        && LAST_WARNING
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
            max_connections = max,
            "client connection limit reached; closing new connections (see tollgate_connections_refused_total)"
        );
    }
}

/// Raises the soft open-files limit to the hard one, as Go's runtime does at start: each
/// proxied request holds two sockets, and a soft limit of 1,024 (a login shell's default) would
/// cap a sidecar at a few hundred clients. Returns the soft limit before and after.
fn raise_open_files_limit() -> std::io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let before = lim.rlim_cur;
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok((before, lim.rlim_cur))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A stand-in for pingora's request: reads its head after `head_after`, then takes `rest`.
    async fn request(head_after: Duration, rest: Duration) -> Option<&'static str> {
        tokio::time::sleep(head_after).await;
        head_read();
        tokio::time::sleep(rest).await;
        Some("answered")
    }

    #[tokio::test]
    async fn the_head_deadline_bounds_the_head_only_whether_or_not_it_was_read_at_once() {
        let head = Arc::new(AtomicBool::new(false));
        let limit = Duration::from_millis(100);
        let zero = Duration::ZERO;
        let long = Duration::from_millis(300);
        // Read in the first poll (no deadline made), then a slow upstream: answered.
        let read_at_once = async {
            head_read();
            tokio::time::sleep(long).await;
            Some("answered")
        };
        assert_eq!(within_head_timeout(read_at_once, &head, limit).await, Some("answered"));
        // Answered in the first poll.
        assert_eq!(
            within_head_timeout(request(zero, zero), &head, limit).await,
            Some("answered")
        );
        // The head arrives later but in time, then the upstream is slow: answered.
        let in_time = request(Duration::from_millis(20), long);
        assert_eq!(within_head_timeout(in_time, &head, limit).await, Some("answered"));
        // The head never arrives whole in time: dropped at the deadline, not after the request.
        let started = tokio::time::Instant::now();
        assert_eq!(within_head_timeout(request(long, zero), &head, limit).await, None);
        assert!(started.elapsed() < long, "{:?}", started.elapsed());
    }

    /// A connected pair of real sockets: pingora's server side, and the client's.
    async fn pair() -> (Stream, tokio::net::TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        (Box::new(pingora::protocols::l4::stream::Stream::from(server)), client)
    }

    /// What `protocol` decides when the client sends `first` and then waits.
    async fn decide(first: &[u8]) -> (Option<Protocol>, Stream) {
        let (mut server, mut client) = pair().await;
        client.write_all(first).await.unwrap();
        let p = protocol(&mut server, true, Duration::from_millis(200)).await;
        (p, server)
    }

    #[tokio::test]
    async fn http1_is_told_from_the_http2_preface_without_losing_a_byte() {
        for req in [
            &b"GET / HTTP/1.0\r\n\r\n"[..],
            b"POST /token HTTP/1.1\r\n",
            b"PRI /x HTTP/1.0\r\n\r\n",
        ] {
            let (p, mut server) = decide(req).await;
            assert_eq!(p, Some(Protocol::Http1), "{:?}", String::from_utf8_lossy(req));
            let mut back = vec![0; req.len()];
            server.read_exact(&mut back).await.unwrap();
            assert_eq!(back, req, "the sniffed bytes are read again");
        }
        let (p, mut server) = decide(H2_PREFACE).await;
        assert_eq!(p, Some(Protocol::Pingora));
        let mut back = [0; 24];
        server.read_exact(&mut back).await.unwrap();
        assert_eq!(&back[..], H2_PREFACE);
    }

    #[tokio::test]
    async fn the_wait_for_a_next_request_returns_its_first_bytes_and_ends_at_shutdown_or_close() {
        let (down, shutdown) = tokio::sync::watch::channel(false);
        let (mut server, mut client) = pair().await;
        // Idle: still waiting.
        let idle = tokio::time::timeout(Duration::from_millis(100), next_request(&mut server, &shutdown)).await;
        assert!(idle.is_err(), "returned while the client was silent");
        let req = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        client.write_all(req).await.unwrap();
        let first = next_request(&mut server, &shutdown).await.expect("a request");
        assert_eq!(&first[..], req, "a small request is read whole");
        assert!(first.capacity() >= HEAD_BUFFER, "pingora reads the rest into it");
        // A request longer than the buffer: the rest stays in the stream, in order.
        let long = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "x".repeat(HEAD_BUFFER));
        client.write_all(long.as_bytes()).await.unwrap();
        let mut got = next_request(&mut server, &shutdown).await.expect("a request").to_vec();
        while got.len() < long.len() {
            let mut more = vec![0; long.len() - got.len()];
            let n = server.read(&mut more).await.unwrap();
            got.extend_from_slice(&more[..n]);
        }
        assert_eq!(got, long.as_bytes());
        down.send(true).unwrap();
        assert!(
            next_request(&mut server, &shutdown).await.is_none(),
            "an idle connection closes at shutdown"
        );
        let (_down, shutdown) = tokio::sync::watch::channel(false);
        drop(client);
        assert!(
            next_request(&mut server, &shutdown).await.is_none(),
            "closed by the client"
        );
    }

    #[tokio::test]
    async fn a_silent_or_closed_connection_is_dropped_after_the_wait() {
        // Nothing at all, and the start of the preface with the rest never coming.
        for first in [&b""[..], b"PRI * HTTP/2"] {
            let t = std::time::Instant::now();
            assert_eq!(decide(first).await.0, None, "{first:?}");
            assert!(t.elapsed() >= Duration::from_millis(200));
        }
        let (mut server, client) = pair().await;
        drop(client);
        assert_eq!(protocol(&mut server, true, Duration::from_secs(10)).await, None);
        // Without cleartext HTTP/2 nothing is read here; pingora's header timeout applies.
        let (mut server, _client) = pair().await;
        assert_eq!(
            protocol(&mut server, false, Duration::from_millis(1)).await,
            Some(Protocol::Http1)
        );
    }

    #[test]
    fn slots_stop_at_the_limit_and_come_back_when_dropped() {
        // OPEN is shared with any other test in this process that takes slots; none does.
        let base = OPEN.load(Ordering::Acquire);
        let a = Slot::take(base + 2).expect("first slot");
        let b = Slot::take(base + 2).expect("second slot");
        assert!(Slot::take(base + 2).is_none(), "a third slot past the limit");
        drop(a);
        let c = Slot::take(base + 2).expect("a slot freed by a closed connection");
        drop((b, c));
        assert_eq!(OPEN.load(Ordering::Acquire), base);
    }

    #[test]
    fn the_default_limit_fits_the_open_files_limit() {
        assert_eq!(default_max(1_048_576), DEFAULT_MAX_CONNECTIONS);
        assert_eq!(default_max(20_000), DEFAULT_MAX_CONNECTIONS - 32);
        assert_eq!(default_max(1_024), 480);
        assert_eq!(default_max(10), 1);
    }

    #[test]
    fn the_open_files_limit_ends_at_the_hard_limit() {
        let (before, after) = raise_open_files_limit().unwrap();
        assert!(after >= before);
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        assert_eq!(lim.rlim_cur, lim.rlim_max);
    }
}
