//! Egress: the app's own outbound calls, sent in plain HTTP to tollgate on loopback and
//! forwarded with a fresh access token, so the app holds no secret and no token code.
//!
//! ```text
//! app ─▶ egress listener (proxy.rs) ─▶ route by host and prefix (routes.rs)
//!                                   ─▶ token cache (cache.rs) ◀─ token sources (source.rs, fetch.rs)
//!                                   ─▶ upstream, with `Authorization: Bearer <token>`
//! ```
//!
//! service.rs builds the listener's pingora services and the background refresher.

pub mod cache;
pub mod fetch;
mod metrics;
pub mod proxy;
pub mod routes;
pub mod service;
pub mod source;

pub use service::services;

use crate::state::State;
use std::sync::Arc;

/// What the egress listener's workers and its refresher share.
pub struct Shared {
    pub state: Arc<State>,
    pub cache: cache::TokenCache,
}
