//! Every place tollgate stands in for, or wraps, a pingora function, so a pingora upgrade is
//! checked in this one folder. Each file's first lines name the pingora function it replaces,
//! why, and what to re-check; docs/architecture.md lists them. `pingora` is pinned to one
//! version in Cargo.toml for the same reason.
//!
//! | file | stands in for |
//! | --- | --- |
//! | `bind.rs` | binding in `ListenerEndpointBuilder::listen` (sockets bound before start) |
//! | `prebound.rs` | the server's fd table, for a pingora listening `Service` (the admin port) |
//! | `accept.rs` | the listening `Service`'s accept loop, `run_endpoint` (proxy workers) |
//! | `buffered.rs` | `ListenerConfig::l4_buffer`, applied only by pingora's own accept loop |
//! | `capped.rs` | `ServerApp::process_new` for an `HttpServerApp`: limit, then dispatch |
//! | `sniff.rs` | the unbounded h2c preface check in `process_new` |
//! | `http1.rs` | the HTTP/1 keep-alive loop in `process_new` (whole-head deadline, idle wait) |
//! | `limit.rs` | nothing in pingora: the connection limit's default and the open-files limit |

mod accept;
mod bind;
mod buffered;
mod capped;
mod http1;
mod limit;
mod prebound;
mod sniff;

pub use accept::{Endpoint, ProxyService};
pub use bind::{bind_address, prebind, Bound};
pub use capped::Capped;
pub use http1::head_read;
pub use limit::limits_at_start;
pub use prebound::Prebound;

/// A connected pair of real sockets: pingora's server side, and the client's.
#[cfg(test)]
async fn pair() -> (pingora::protocols::Stream, tokio::net::TcpStream) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = tokio::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (server, _) = l.accept().await.unwrap();
    (Box::new(pingora::protocols::l4::stream::Stream::from(server)), client)
}
