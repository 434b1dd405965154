//! The proxy app as a pingora `ServerApp`: a connection's place under `server.max_connections`,
//! then its protocol; stands in for pingora-core's app dispatch (`apps/mod.rs`:
//! `impl<T: HttpServerApp> ServerApp for T`, `process_new`) for HTTP/1, and hands HTTP/2 and
//! other ALPN protocols to it.
//!
//! Why: the limit is checked by the accept loop (`accept.rs`) before any TLS handshake, over the
//! connections of every proxy worker, and a new connection is closed at once when the count is at
//! the limit, the way Envoy's listener connection limit does (test
//! `connections_past_max_connections_are_closed_while_the_admin_port_answers`); without a bound,
//! clients that open connections and send nothing would grow memory until the open-files limit.
//! The admin listener is not counted, so `/metrics` and the probes still answer when the proxy is
//! full. The protocol is told apart by `sniff.rs` and HTTP/1 served by `http1.rs`.
//!
//! On a pingora upgrade, re-check `process_new`: what it does before HTTP/2 (the shared connection
//! digest, `h2_options`) is still reached through [`ServerApp::process_new`], and whether it has
//! gained per-connection work that HTTP/1 connections would now miss.

use super::http1::{serve_http1, IDLE_TIMEOUT};
use super::limit::warn_limit_reached;
use super::sniff::{protocol, Protocol};
use crate::counters::Connection;
use crate::state::State;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use std::sync::Arc;

/// A proxy app whose connections count against `server.max_connections` (read from the live
/// config, so a reload changes it for new connections), or `default_max` when it is not set.
pub struct Capped<A> {
    pub app: Arc<A>,
    pub state: Arc<State>,
    pub default_max: usize,
}

impl<A: HttpServerApp + Send + Sync + 'static> Capped<A> {
    /// A place under the connection limit for a connection just accepted, or `None` (counted and
    /// warned about) when the limit is reached.
    pub fn admit(&self) -> Option<Connection> {
        let max = self
            .state
            .config
            .load()
            .server
            .max_connections
            .unwrap_or(self.default_max);
        let slot = self.state.counters.connect(max);
        if slot.is_none() {
            self.state.metrics.connections_refused.inc();
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
