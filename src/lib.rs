//! tollgate: a pingora sidecar that issues client-credentials tokens and enforces them.

pub mod admin;
#[cfg(feature = "mimalloc")]
pub mod alloc;
pub mod client_addr;
pub mod config;
pub mod connections;
pub mod forward;
pub mod guard;
pub mod http_util;
pub mod issuer;
pub mod keys;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod proxy;
pub mod secret;
pub mod server;
pub mod state;
pub mod store;
