//! The verified-token cache: a token that verified once is not verified again while it lives.
//!
//! Only tokens whose signature checked out are ever inserted, so junk cannot flush it. Each
//! entry remembers the key set and issuer it was checked against; after a key or issuer change
//! it no longer matches and the token is verified afresh. Expiry, revocation, audience and
//! roles are still checked on every request.

use super::bearer::Identity;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;

/// Entries held at most. At ~1 KiB each this bounds the cache near 10 MiB.
pub const MAX_ENTRIES: usize = 10_000;

struct Entry {
    /// `Realm::keys_id` + issuer when the token was verified.
    checked_against: Arc<str>,
    identity: Arc<Identity>,
}

#[derive(Default)]
pub struct TokenCache {
    map: RwLock<HashMap<Box<str>, Entry>>,
}

impl TokenCache {
    pub fn get(&self, token: &str, checked_against: &str) -> Option<Arc<Identity>> {
        let map = self.map.read();
        let e = map.get(token)?;
        (&*e.checked_against == checked_against).then(|| e.identity.clone())
    }

    pub fn insert(&self, token: &str, checked_against: Arc<str>, identity: Arc<Identity>, now: u64) {
        let mut map = self.map.write();
        if map.len() >= MAX_ENTRIES {
            map.retain(|_, e| e.identity.exp >= now);
            if map.len() >= MAX_ENTRIES {
                // Still full of live tokens: make room by dropping an eighth of them.
                let drop: Vec<Box<str>> = map.keys().take(MAX_ENTRIES / 8).cloned().collect();
                for k in drop {
                    map.remove(&k);
                }
            }
        }
        map.insert(
            token.into(),
            Entry {
                checked_against,
                identity,
            },
        );
    }

    pub fn remove_jti(&self, jti: &str) {
        self.map.write().retain(|_, e| e.identity.jti != jti);
    }

    pub fn len(&self) -> usize {
        self.map.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
