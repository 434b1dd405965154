//! Per-client rate limits of routes: a token bucket per (route, client), in this replica's
//! memory.

use crate::model::Rate;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::time::Instant;

/// Buckets held at most; past it, the fullest (longest idle) are dropped first.
pub const MAX_BUCKETS: usize = 100_000;

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Default)]
pub struct RateLimits {
    /// By a keyed hash of (route, client): only verified tokens' clients reach here.
    buckets: Mutex<HashMap<u64, Bucket>>,
    keys: RandomState,
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
        let b = map.entry(key).or_insert(Bucket { tokens: burst, at: now });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * per_sec).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.tokens) / per_sec).ceil().max(1.0) as u64)
        }
    }

    pub fn len(&self) -> usize {
        self.buckets.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
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
