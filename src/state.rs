//! Process-wide state: the live config snapshot and what outlives a reload (stores, caches,
//! throttles, metrics).

use crate::config::Snapshot;
use crate::counters::Counters;
use crate::guard::cache::TokenCache;
use crate::metrics::Metrics;
use crate::store::{MemoryStore, Store};
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use std::collections::HashMap;
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
        self.metrics
            .set_only("tollgate_config_info", &[("hash", &snap.hash)], 1.0);
        self.metrics.set(
            "tollgate_config_last_reload_success_timestamp_seconds",
            &[],
            crate::http_util::now() as f64,
        );
    }
}

/// Failed client authentications per key (client id, source address) in a one-minute window.
#[derive(Default)]
pub struct Throttle {
    windows: Mutex<HashMap<String, (u64, u32)>>,
}

/// Keys tracked at most; beyond that, new keys go untracked until old windows expire.
pub const THROTTLE_KEYS: usize = 50_000;
const WINDOW: u64 = 60;

impl Throttle {
    /// Seconds to wait if `key` has used up its `limit` failures in the current window.
    pub fn blocked(&self, key: &str, limit: u32, now: u64) -> Option<u64> {
        let w = self.windows.lock();
        let (start, count) = *w.get(key)?;
        (now < start + WINDOW && count >= limit).then(|| (start + WINDOW - now).max(1))
    }

    pub fn fail(&self, key: &str, now: u64) {
        let mut w = self.windows.lock();
        if !w.contains_key(key) && w.len() >= THROTTLE_KEYS {
            w.retain(|_, (start, _)| now < *start + WINDOW);
            if w.len() >= THROTTLE_KEYS {
                return;
            }
        }
        let e = w.entry(key.to_string()).or_insert((now, 0));
        if now >= e.0 + WINDOW {
            *e = (now, 0);
        }
        e.1 = e.1.saturating_add(1);
    }

    pub fn succeed(&self, key: &str) {
        self.windows.lock().remove(key);
    }

    pub fn len(&self) -> usize {
        self.windows.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_blocks_after_limit_and_resets() {
        let t = Throttle::default();
        for _ in 0..3 {
            assert!(t.blocked("c", 3, 100).is_none());
            t.fail("c", 100);
        }
        assert_eq!(t.blocked("c", 3, 110), Some(50));
        assert!(t.blocked("other", 3, 110).is_none());
        assert!(t.blocked("c", 3, 161).is_none());
    }
}
