//! Tells HTTP/1 from HTTP/2 on a new connection; stands in for the h2c preface check in
//! pingora-core's app dispatch (`apps/mod.rs`: `impl<T: HttpServerApp> ServerApp for T`,
//! `process_new`, which `try_peek`s exactly 24 bytes with no time limit).
//!
//! Why (tests `requests_shorter_than_the_http2_preface_are_answered` and
//! `a_silent_or_closed_connection_is_dropped_after_the_wait`): with cleartext HTTP/2 on, a whole
//! HTTP/1.0 request shorter than the preface (`GET / HTTP/1.0` and a blank line) never got an
//! answer, and a client that connected and sent nothing held its connection, and a place under
//! `max_connections`, for ever. Here the sniff stops as soon as the bytes cannot be the preface
//! and waits at most a given time.
//!
//! On a pingora upgrade, re-check `process_new`: if its sniff is bounded in bytes and time, this
//! file and the HTTP/1 loop in `http1.rs` can go; which ALPN values it hands to HTTP/2 or to
//! `process_custom_session` (mirrored in [`protocol`]); and `HttpServerOptions::force_custom`,
//! which tollgate does not set.

use pingora::protocols::{Stream, ALPN};
use std::time::Duration;

/// What a cleartext HTTP/2 client sends first (RFC 9113 §3.4).
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How a new connection is served.
#[derive(Debug, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.x, by tollgate's HTTP/1 loop.
    Http1,
    /// HTTP/2 (ALPN or the cleartext preface) or another ALPN protocol: pingora's own dispatch.
    Pingora,
}

/// Decides how to serve `stream` from its ALPN (TLS) or, when cleartext HTTP/2 is on, from as
/// few of its first bytes as tell the two apart; the bytes stay in the stream. `None`: the
/// client sent nothing within `wait`, or closed, or the read failed; the connection is dropped.
pub async fn protocol(stream: &mut Stream, h2c: bool, wait: Duration) -> Option<Protocol> {
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

#[cfg(test)]
mod tests {
    use super::super::pair;
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
}
