//! Serves an HTTP/1 connection's requests one after another; stands in for the HTTP/1 branch of
//! pingora-core's app dispatch (`apps/mod.rs`: `impl<T: HttpServerApp> ServerApp for T`,
//! `process_new`, its `process_new_http` loop with a 60 s keep-alive and
//! `keepalive_request_limit`).
//!
//! Why, each with a test or a measurement behind it:
//! - the whole request head must arrive within `server.client_timeout` of its first byte
//!   ([`within_head_timeout`]; `a_request_head_sent_byte_by_byte_is_cut_off_at_client_timeout`):
//!   pingora's header timeout restarts with every read;
//! - between requests a kept-alive connection holds only its stream and a 2 KB buffer
//!   ([`next_request`]): pingora makes the next request's future, session and buffer as soon as
//!   a response is sent (docs/performance-decisions.md).
//!
//! On a pingora upgrade, re-check against `process_new`: the keep-alive (60 s, off at shutdown),
//! how `HttpPersistentSettings::apply_to_session` carries settings between requests, and
//! `ServerSession::set_pipelined_prefix`, which hands the bytes [`next_request`] read to the new
//! session. HTTP/1 pipelining stays off (pingora's default): with it on, the previous request's
//! settings could carry a pipelined prefix of their own, which this loop would overwrite.

use crate::state::State;
use bytes::BytesMut;
use pingora::apps::{HttpPersistentSettings, HttpServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a connection may stay silent before it is closed: before its first request, and
/// between requests when kept alive (pingora's keep-alive, in the seconds it takes).
const IDLE_SECS: u64 = 60;

/// [`IDLE_SECS`] as a duration.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(IDLE_SECS);

/// The buffer a kept-alive connection's next request is read into while waiting for it, and
/// which pingora then parses it from and keeps while the request is served. Half of pingora's
/// own 4 KB: a request with a bearer token is ~1 KB, nginx starts with 1 KB
/// (`client_header_buffer_size`), and a longer head grows the buffer as pingora reads the rest
/// (docs/performance-decisions.md).
const HEAD_BUFFER: usize = 2048;

/// Serves an HTTP/1 connection's requests one after another, as pingora's dispatch does for
/// HTTP/1: a 60 s keep-alive, and the app's limit of requests per connection. Each request's head
/// must arrive whole within `server.client_timeout` of its first byte (see [`within_head_timeout`]).
pub async fn serve_http1<A>(app: &Arc<A>, stream: Stream, shutdown: &ShutdownWatch, state: &State)
where
    A: HttpServerApp + Send + Sync + 'static,
{
    let head = Arc::new(AtomicBool::new(false));
    let reuses = app.server_options().and_then(|o| o.keepalive_request_limit);
    let mut request = app.process_new_http(first_session(stream, !*shutdown.borrow(), reuses), shutdown);
    loop {
        let head_timeout = state.config.load().server.client_timeout;
        let reused = within_head_timeout(request, &head, head_timeout).await;
        let Some((mut stream, settings)) = reused.map(|r| r.consume()) else {
            return;
        };
        let Some(first) = next_request(&mut stream, shutdown).await else {
            return;
        };
        request = app.process_new_http(next_session(stream, settings, first), shutdown);
    }
}

/// The session of a connection's first request. Sessions are made here and in [`next_session`]
/// and handed straight to pingora's request: built in the loop, its future would keep room for a
/// 680-byte session across every await (docs/performance-decisions.md).
fn first_session(stream: Stream, keepalive: bool, reuses: Option<u32>) -> ServerSession {
    let mut session = ServerSession::new_http1(stream);
    session.set_keepalive(keepalive.then_some(IDLE_SECS));
    session.set_keepalive_reuses_remaining(reuses);
    session
}

/// The session of a kept-alive connection's next request, with the settings the previous one
/// left and the first bytes [`next_request`] read.
fn next_session(stream: Stream, settings: Option<HttpPersistentSettings>, first: BytesMut) -> ServerSession {
    let mut session = ServerSession::new_http1(stream);
    if let Some(settings) = settings {
        settings.apply_to_session(&mut session);
    }
    // pingora parses these before reading the stream again (the API it uses to carry pipelined
    // bytes from one request to the next).
    session.set_pipelined_prefix(first);
    session
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
    F: Future<Output = Option<R>>,
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
/// stream and a [`HEAD_BUFFER`]: pingora's request future and HTTP session are made when there
/// is a request to serve. Returns the buffer with the first bytes of the request,
/// read in the same system call that ended the wait, for pingora to parse before it reads again
/// (a head of up to 2 KB takes no other read) and to keep as its request-head buffer.
/// `None`: close the connection (idle past the keep-alive, closed by the client, an error, or
/// the server shutting down).
///
/// The keep-alive is one of pingora's timers (10 ms resolution, shared by the connections that
/// expire in the same 10 ms), not tokio's: arming a tokio timer due before the runtime's next
/// wake-up writes to the runtime's eventfd.
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

#[cfg(test)]
mod tests {
    use super::super::pair;
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
}
