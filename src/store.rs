//! Token state that is not config: revoked token ids and used assertion ids.
//!
//! Behind the [`Store`] trait so a shared backend can serve several replicas later; the
//! in-memory store here serves one replica. Every entry is forgotten once the token it
//! stands for would have expired anyway, and each table has a hard bound.

use parking_lot::Mutex;
use std::collections::HashMap;

pub trait Store: Send + Sync {
    /// Remember that the token `jti` is revoked until `exp` (Unix seconds).
    fn revoke(&self, jti: &str, exp: u64, now: u64);
    fn is_revoked(&self, jti: &str) -> bool;
    /// Record `id` as used until `exp`.
    fn use_once(&self, id: &str, exp: u64, now: u64) -> Use;
    /// Entries held, for metrics: (revoked, used assertion ids).
    fn sizes(&self) -> (usize, usize);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    First,
    Replay,
    /// The table is full of live entries: refuse (fail closed).
    Full,
}

/// Bound of each in-memory table.
pub const MAX_ENTRIES: usize = 100_000;

#[derive(Default)]
pub struct MemoryStore {
    revoked: Mutex<HashMap<Box<str>, u64>>,
    used: Mutex<HashMap<Box<str>, u64>>,
}

fn purge(map: &mut HashMap<Box<str>, u64>, now: u64) {
    map.retain(|_, exp| *exp >= now);
}

impl Store for MemoryStore {
    fn revoke(&self, jti: &str, exp: u64, now: u64) {
        let mut m = self.revoked.lock();
        if m.len() >= MAX_ENTRIES {
            purge(&mut m, now);
        }
        if m.len() >= MAX_ENTRIES {
            // Full of live revocations: drop the one closest to expiring on its own.
            if let Some(k) = m.iter().min_by_key(|(_, e)| **e).map(|(k, _)| k.clone()) {
                m.remove(&k);
            }
        }
        m.insert(jti.into(), exp);
    }

    fn is_revoked(&self, jti: &str) -> bool {
        let m = self.revoked.lock();
        !m.is_empty() && m.contains_key(jti)
    }

    fn use_once(&self, id: &str, exp: u64, now: u64) -> Use {
        let mut m = self.used.lock();
        if let Some(e) = m.get(id) {
            if *e >= now {
                return Use::Replay;
            }
        }
        if m.len() >= MAX_ENTRIES {
            purge(&mut m, now);
            if m.len() >= MAX_ENTRIES {
                return Use::Full;
            }
        }
        m.insert(id.into(), exp);
        Use::First
    }

    fn sizes(&self) -> (usize, usize) {
        (self.revoked.lock().len(), self.used.lock().len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn use_once_refuses_replay_until_expiry() {
        let s = MemoryStore::default();
        assert_eq!(s.use_once("a", 100, 50), Use::First);
        assert_eq!(s.use_once("a", 100, 60), Use::Replay);
        assert_eq!(s.use_once("a", 200, 101), Use::First, "expired entries may be reused");
    }

    #[test]
    fn revocations_are_forgotten_after_expiry_when_space_is_needed() {
        let s = MemoryStore::default();
        s.revoke("x", 10, 0);
        assert!(s.is_revoked("x"));
        assert!(!s.is_revoked("y"));
        {
            let mut m = s.revoked.lock();
            for i in 0..MAX_ENTRIES {
                m.insert(format!("f{i}").into(), 5);
            }
        }
        s.revoke("z", 100, 20);
        assert!(s.is_revoked("z"));
        assert!(!s.is_revoked("x"), "expired entries purged");
        assert_eq!(s.sizes().0, 1);
    }
}
