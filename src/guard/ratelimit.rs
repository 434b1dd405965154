//! Per-client rate limits of routes: a token bucket per (route, client), in this replica's
//! memory, and shared by every replica when there is a shared store.
//!
//! Shared buckets are still taken from here, never with a round trip on the request: every
//! [`SYNC_EVERY`] a background task gives Redis what each bucket lost here since the last
//! sync and sets the bucket to what the shared bucket holds after every replica's takes. The
//! limit thus holds across replicas to within what the replicas admit in one sync interval;
//! while Redis is down each replica limits on its own.

use crate::model::Rate;
use crate::store::redis::{RedisStore, Take};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Buckets held at most; past it, the fullest (longest idle) are dropped first.
pub const MAX_BUCKETS: usize = 100_000;
/// How often shared buckets are synced with the store.
pub const SYNC_EVERY: Duration = Duration::from_millis(100);
/// Buckets synced in one round trip at most (the others wait for the next round).
pub const MAX_SYNC: usize = 2_000;

struct Bucket {
    tokens: f64,
    at: Instant,
    /// Taken here since the last sync.
    taken: u32,
    rate: Rate,
    /// The bucket's key in the shared store (a hash of route and client); none when local.
    shared: Option<Box<str>>,
}

#[derive(Default)]
pub struct RateLimits {
    /// By a seeded hash of (route, client): only verified tokens' clients reach here, so their
    /// names are the issuer's, not an attacker's choosing. The map's own hash is foldhash too:
    /// the key is already a hash (SipHash twice cost more than the rest of the limit).
    buckets: Mutex<HashMap<u64, Bucket, foldhash::fast::RandomState>>,
    keys: foldhash::quality::RandomState,
    /// Buckets are shared through the store.
    shared: AtomicBool,
}

impl RateLimits {
    /// Takes one request from the bucket of (`route`, `client`); `Err(seconds)` until a token
    /// is back when it is empty.
    pub fn take(&self, route: &str, client: &str, rate: Rate, now: Instant) -> Result<(), u64> {
        let key = self.keys.hash_one((route, client));
        let per_sec = f64::from(rate.per) / rate.period.as_secs_f64();
        let burst = f64::from(rate.per);
        let mut map = self.buckets.lock();
        if map.len() >= MAX_BUCKETS && !map.contains_key(&key) {
            let full_after = rate.period;
            map.retain(|_, b| now.duration_since(b.at) < full_after);
            if map.len() >= MAX_BUCKETS {
                map.clear();
            }
        }
        let b = map.entry(key).or_insert_with(|| Bucket {
            tokens: burst,
            at: now,
            taken: 0,
            rate,
            shared: self.shared.load(Ordering::Relaxed).then(|| shared_key(route, client)),
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * per_sec).min(burst);
        b.at = now;
        // A reload that changes the route's rate applies to its buckets at once.
        b.rate = rate;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            b.taken = b.taken.saturating_add(1);
            Ok(())
        } else {
            Err(((1.0 - b.tokens) / per_sec).ceil().max(1.0) as u64)
        }
    }

    pub fn len(&self) -> usize {
        self.buckets.lock().len()
    }

    /// Buckets made from now on are shared through the store.
    pub fn share(&self) {
        self.shared.store(true, Ordering::Relaxed);
    }

    /// One sync with the store: what was taken here goes out, what every replica left comes
    /// back. A failed sync leaves the buckets local until the next one; while the store is
    /// down nothing is sent, and what is taken meanwhile stays local.
    pub async fn sync(&self, store: &RedisStore) {
        let mut sent: Vec<u64> = Vec::new();
        let mut takes: Vec<Take> = Vec::new();
        {
            let mut map = self.buckets.lock();
            if !store.is_up() {
                map.values_mut().for_each(|b| b.taken = 0);
                return;
            }
            for (k, b) in map.iter_mut().filter(|(_, b)| b.taken > 0 && b.shared.is_some()) {
                if takes.len() >= MAX_SYNC {
                    break;
                }
                takes.push(Take {
                    key: b.shared.as_deref().unwrap_or_default().to_string(),
                    taken: std::mem::take(&mut b.taken),
                    burst: b.rate.per,
                    per_ms: f64::from(b.rate.per) / (b.rate.period.as_secs_f64() * 1000.0),
                });
                sent.push(*k);
            }
        }
        if takes.is_empty() {
            return;
        }
        let Ok(left) = store.take(&takes).await else { return };
        let now = Instant::now();
        let mut map = self.buckets.lock();
        for (k, left) in sent.iter().zip(left) {
            if let Some(b) = map.get_mut(k) {
                // What every replica left, less what was taken here while the answer came.
                b.tokens = (left - f64::from(b.taken)).min(f64::from(b.rate.per));
                b.at = now;
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The same key at every replica for (route, client), of one length whatever the client id.
fn shared_key(route: &str, client: &str) -> Box<str> {
    let h = crate::secret::sha256(&[route.as_bytes(), client.as_bytes()]);
    hex::encode(&h[..16]).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_of_n_then_the_rate_per_client() {
        let limits = RateLimits::default();
        let rate = Rate {
            per: 3,
            period: Duration::from_secs(1),
        };
        let t = Instant::now();
        for _ in 0..3 {
            assert!(limits.take("/r", "a", rate, t).is_ok());
        }
        assert_eq!(limits.take("/r", "a", rate, t), Err(1));
        assert!(limits.take("/r", "b", rate, t).is_ok(), "another client is unaffected");
        assert!(
            limits.take("/other", "a", rate, t).is_ok(),
            "another route is unaffected"
        );
        assert!(
            limits.take("/r", "a", rate, t + Duration::from_millis(340)).is_ok(),
            "one back after 1/3 s"
        );
        assert!(limits.take("/r", "a", rate, t + Duration::from_millis(340)).is_err());
        let per_minute = Rate {
            per: 1,
            period: Duration::from_secs(60),
        };
        assert!(limits.take("/m", "a", per_minute, t).is_ok());
        assert_eq!(limits.take("/m", "a", per_minute, t + Duration::from_secs(30)), Err(30));
    }
}
