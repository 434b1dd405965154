//! Failure counts shared by every replica through Redis, counted in this replica's memory while
//! Redis cannot be reached: throttling goes on, with per-replica counts, rather than failing.

use super::throttle::{FailureCounter, MemoryCounter, Unavailable, Window, MEMORY_KEYS, WINDOW};
use crate::store::redis::RedisStore;
use async_trait::async_trait;
use std::sync::Arc;

pub struct SharedCounter {
    store: Arc<RedisStore>,
    local: MemoryCounter,
}

impl SharedCounter {
    pub fn new(store: Arc<RedisStore>) -> Self {
        SharedCounter {
            store,
            local: MemoryCounter::new(MEMORY_KEYS),
        }
    }
}

#[async_trait]
impl FailureCounter for SharedCounter {
    async fn windows(&self, keys: &[&str], now: u64) -> Result<Vec<Window>, Unavailable> {
        match self.store.windows(keys).await {
            Ok(w) => Ok(w
                .into_iter()
                .map(|(count, ttl)| Window {
                    count: u32::try_from(count).unwrap_or(u32::MAX),
                    resets_in: if count > 0 { ttl.max(1) } else { 0 },
                })
                .collect()),
            Err(_) => self.local.windows(keys, now).await,
        }
    }

    async fn fail(&self, keys: &[&str], now: u64) -> Result<(), Unavailable> {
        match self.store.fail(keys, WINDOW).await {
            Ok(()) => Ok(()),
            Err(_) => self.local.fail(keys, now).await,
        }
    }

    async fn reset(&self, key: &str) -> Result<(), Unavailable> {
        let _ = self.local.reset(key).await;
        // A reset that does not reach Redis only leaves a count that expires with its window.
        let _ = self.store.clear(key).await;
        Ok(())
    }

    /// Keys counted here while Redis was down (Redis holds the shared ones).
    fn len(&self) -> usize {
        self.local.len()
    }
}
