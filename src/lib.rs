//! tollgate: a pingora sidecar that issues client-credentials tokens and enforces them.
//!
//! The request path, the module map and the pingora deviations: docs/architecture.md.

pub mod admin;
#[cfg(feature = "mimalloc")]
pub mod alloc;
pub mod client_addr;
pub mod config;
pub mod counters;
pub mod egress;
pub mod forward;
pub mod guard;
pub mod http_util;
pub mod import;
pub mod issuer;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod outbound;
pub mod outcome;
pub mod path;
pub mod proxy;
pub mod remote;
pub mod secret;
pub mod server;
pub mod state;
pub mod store;
pub mod token;
pub mod transport;
