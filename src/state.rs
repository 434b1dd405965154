//! Process-wide state: the live config snapshot and what outlives a reload (stores, caches,
//! throttles, metrics).

use crate::config::Snapshot;
use crate::counters::Counters;
use crate::guard::cache::TokenCache;
use crate::issuer::shared_counter::SharedCounter;
use crate::issuer::throttle::Throttle;
use crate::metrics::Metrics;
use crate::store::redis::RedisStore;
use crate::store::{MemoryStore, Store};
use arc_swap::ArcSwap;
use std::path::PathBuf;
use std::sync::Arc;

pub struct State {
    /// The live config. Load it once per request and pass the snapshot down.
    pub config: ArcSwap<Snapshot>,
    pub config_path: PathBuf,
    pub listen_port: Option<u16>,
    pub metrics: Arc<Metrics>,
    pub store: Arc<dyn Store>,
    /// The same store when it is shared (`[store]`), for the background work it needs.
    pub shared: Option<Arc<RedisStore>>,
    pub token_cache: Arc<TokenCache>,
    pub throttle: Throttle,
    /// The live keys of the remote realms, kept across reloads.
    pub remote: crate::remote::Registry,
    /// Routes' per-client rate-limit buckets.
    pub rate_limits: crate::guard::ratelimit::RateLimits,
    /// This server's connections open and requests in flight.
    pub counters: Arc<Counters>,
}

impl State {
    /// The state of a process started with `snapshot`; `[store]` is read here, once.
    pub fn new(mut snapshot: Snapshot, config_path: PathBuf, listen_port: Option<u16>) -> Result<Arc<Self>, String> {
        let remote = crate::remote::Registry::default();
        remote.adopt(&mut snapshot);
        let metrics = Arc::new(Metrics::default());
        let token_cache = Arc::new(TokenCache::default());
        let shared = match &snapshot.store {
            Some(s) => Some(Arc::new(shared_store(s, &metrics, &token_cache)?)),
            None => None,
        };
        let (store, throttle): (Arc<dyn Store>, Throttle) = match &shared {
            Some(r) => (r.clone(), Throttle::new(Box::new(SharedCounter::new(r.clone())))),
            None => (Arc::new(MemoryStore::default()), Throttle::default()),
        };
        let state = State {
            config: ArcSwap::from_pointee(snapshot),
            config_path,
            listen_port,
            metrics,
            store,
            shared,
            token_cache,
            throttle,
            remote,
            rate_limits: Default::default(),
            counters: Arc::default(),
        };
        state.note_config();
        Ok(Arc::new(state))
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

/// The Redis store of `[store]`, its operations timed into `metrics` and its revocations
/// evicting from `cache`.
fn shared_store(
    s: &crate::config::StoreSettings,
    metrics: &Arc<Metrics>,
    cache: &Arc<TokenCache>,
) -> Result<RedisStore, String> {
    let m = metrics.clone();
    let observe = Box::new(move |op: crate::store::redis::Op, secs: Option<f64>, failed: bool| {
        let l = crate::metrics::StoreOp { op: op.label() };
        if let Some(secs) = secs {
            m.store_op_duration.get_or_create(&l).observe(secs);
        }
        if failed {
            m.store_errors.get_or_create(&l).inc();
        }
    });
    let cache = cache.clone();
    let on_revoked = Box::new(move |revoked: &dyn Fn(&str) -> bool| cache.remove_matching(revoked));
    RedisStore::new(&s.url, &s.key_prefix, s.ca_pem.as_deref(), observe, on_revoked)
        .map_err(|e| format!("store.url: {e}"))
}
