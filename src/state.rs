//! Process-wide state: the live config snapshot and what outlives a reload (stores, caches,
//! throttles, metrics).

use crate::config::Snapshot;
use crate::counters::Counters;
use crate::guard::cache::TokenCache;
use crate::issuer::throttle::Throttle;
use crate::metrics::Metrics;
use crate::store::{MemoryStore, Store};
use arc_swap::ArcSwap;
use std::path::PathBuf;
use std::sync::Arc;

pub struct State {
    /// The live config. Load it once per request and pass the snapshot down.
    pub config: ArcSwap<Snapshot>,
    pub config_path: PathBuf,
    pub listen_port: Option<u16>,
    pub metrics: Metrics,
    pub store: Arc<dyn Store>,
    pub token_cache: TokenCache,
    pub throttle: Throttle,
    /// The live keys of the remote realms, kept across reloads.
    pub remote: crate::remote::Registry,
    /// Routes' per-client rate-limit buckets.
    pub rate_limits: crate::guard::ratelimit::RateLimits,
    /// This server's connections open and requests in flight.
    pub counters: Arc<Counters>,
}

impl State {
    pub fn new(mut snapshot: Snapshot, config_path: PathBuf, listen_port: Option<u16>) -> Arc<Self> {
        let remote = crate::remote::Registry::default();
        remote.adopt(&mut snapshot);
        let state = State {
            config: ArcSwap::from_pointee(snapshot),
            config_path,
            listen_port,
            metrics: Metrics::default(),
            store: Arc::new(MemoryStore::default()),
            token_cache: TokenCache::default(),
            throttle: Throttle::default(),
            remote,
            rate_limits: Default::default(),
            counters: Arc::default(),
        };
        state.note_config();
        Arc::new(state)
    }

    /// Swap in a new snapshot (a reload), keeping every non-config table.
    pub fn install(&self, mut snapshot: Snapshot) {
        self.remote.adopt(&mut snapshot);
        self.config.store(Arc::new(snapshot));
        self.note_config();
    }

    fn note_config(&self) {
        let snap = self.config.load();
        self.metrics.config_loaded(&snap.hash, crate::http_util::now());
    }
}
